package flowsync

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/dataplane"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// benchSyncer is a syncer of n nodes' table whose streams to every peer
// count as up, so that report queues what it would send.
func benchSyncer(b *testing.B, n int) (*Syncer, []dataplane.Flow) {
	d := newFakeDriver()
	s := New(Config{Self: "node00", Driver: d, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}})
	var ms []Member
	var ns []Node
	for i := range n {
		name := fmt.Sprintf("node%02d", i)
		zone := []string{"a", "b", "c"}[i%3]
		ms = append(ms, Member{Name: name, Zone: zone})
		ns = append(ns, Node{Name: name, Zone: zone, Flows: true, Local: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, 2, byte(i)})}})
	}
	plan := Plan(ms, testBuckets)
	plan.Epoch = 1
	cur, err := decodeTable(plan, testBuckets)
	if err != nil {
		b.Fatal(err)
	}
	s.cur = cur
	s.nodes, s.heirs = map[string]Node{}, map[netip.Addr][]string{}
	for _, nd := range ns {
		s.nodes[nd.Name] = nd
		s.addrOwner[nd.Local[0]] = nd.Name
		if nd.Name != s.cfg.Self {
			p := newPeer(s, nd.Name, "")
			p.up = true
			s.peers[nd.Name] = p
		}
	}
	for a, owner := range s.addrOwner {
		s.heirs[a] = heirs(a, Member{Name: owner, Zone: s.nodes[owner].Zone}, ms)
	}
	flows := make([]dataplane.Flow, 1024)
	for i := range flows {
		flows[i] = dataplane.Flow{Client: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(1024+i)),
			VIP: netip.MustParseAddrPort("198.51.100.10:80"), Proto: 6, Backend: netip.MustParseAddrPort("198.18.1.21:8080"),
			Local: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 2, 0}), uint16(2000+i)), Established: true}
	}
	return s, flows
}

// BenchmarkReport is the Go cost of sending one reported FullNAT flow: its
// targets, its encoding, and its queueing for each target; then the
// protobuf marshal of the message it travels in.
func BenchmarkReport(b *testing.B) {
	for _, n := range []int{3, 100} {
		b.Run(fmt.Sprintf("nodes-%d", n), func(b *testing.B) {
			s, flows := benchSyncer(b, n)
			copies := 0
			for b.Loop() {
				s.report(flows)
				for _, p := range s.peers {
					if batch := p.take(); len(batch) > 0 {
						copies += len(batch)
						if _, err := proto.Marshal(&weftv1.SyncRequest{Flows: batch}); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
			b.ReportMetric(float64(copies)/float64(b.N*len(flows)), "copies/flow")
		})
	}
}

// BenchmarkInstall is the Go cost of receiving one synced flow: the
// message's decoding and the checks, up to the dataplane's write.
func BenchmarkInstall(b *testing.B) {
	s, flows := benchSyncer(b, 3)
	var ws []*weftv1.SyncedFlow
	for _, f := range flows {
		ws = append(ws, toWire(f, dataplane.InstallForward|dataplane.InstallReply))
	}
	msg, err := proto.Marshal(&weftv1.SyncRequest{Flows: ws})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var req weftv1.SyncRequest
		if err := proto.Unmarshal(msg, &req); err != nil {
			b.Fatal(err)
		}
		if err := s.install("node01", req.GetFlows()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(flows)), "ns/flow")
}
