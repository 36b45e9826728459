package main

import (
	"strings"
	"testing"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestPrintFlowSync(t *testing.T) {
	var b strings.Builder
	err := printStatus(&b, &weftv1.StatusResponse{NodeName: "node1", FlowSync: &weftv1.FlowSyncStatus{
		Epoch: 42, ReadyEpoch: 40, Buckets: 4096, Primary: 1365, Backup: 1366, Held: []string{"198.18.1.111", "198.18.1.112"},
		Reported: 10, Sent: 20, SentBytes: 940, Received: 7, Installed: 7,
		Peers: []*weftv1.FlowSyncPeer{{Name: "node2", State: "up", ReadyEpoch: 42, Backlog: 3, LagMs: 2, Sent: 12}},
	}}, false)
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"flow sync: ownership epoch 42, pulling (holds epoch 40); owns 1365 of 4096 buckets first, 1366 second",
		"answers for local addresses: 198.18.1.111, 198.18.1.112",
		"20 copies sent (940 bytes, 0 unsent), 7 received, 7 installed",
		"node2", "up",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := printStatus(&b, &weftv1.StatusResponse{NodeName: "node1"}, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "flow sync") {
		t.Errorf("status without flow sync shows it:\n%s", b.String())
	}
}
