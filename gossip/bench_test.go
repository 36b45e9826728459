package gossip

import (
	"testing"

	"github.com/hashicorp/memberlist"
)

// BenchmarkQueueMessage queues a broadcast while the queue is full (as when
// messages arrive faster than gossip sends them): the cost each received
// message pays before it is relayed.
func BenchmarkQueueMessage(b *testing.B) {
	g := &Gossip{queue: &memberlist.TransmitLimitedQueue{NumNodes: func() int { return 5 }, RetransmitMult: 4}}
	msg := message{origin: "node1", topic: "health", payload: make([]byte, 100)}
	for i := 0; i < maxQueued; i++ {
		msg.id = uint64(i)
		g.queueMessage(msg.encode())
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		msg.id = uint64(maxQueued + i)
		g.queueMessage(msg.encode())
	}
}
