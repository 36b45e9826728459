package validate

import (
	"testing"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestNode(t *testing.T) {
	node := func(edit func(*weftv1.NodeSpec)) *weftv1.Node {
		s := &weftv1.NodeSpec{Region: "lab", Zone: "a", RaftAddress: "10.0.0.1:7401", ApiAddress: "10.0.0.1:7400",
			GossipAddress: "10.0.0.1:7946"}
		edit(s)
		return &weftv1.Node{Metadata: &weftv1.Metadata{Name: "n1"}, Spec: s}
	}
	tests := []struct {
		name string
		node *weftv1.Node
		want string
	}{
		{"valid", node(func(*weftv1.NodeSpec) {}), ""},
		{"no gossip address (joined before gossip)", node(func(s *weftv1.NodeSpec) { s.GossipAddress = "" }), ""},
		{"zone", node(func(s *weftv1.NodeSpec) { s.Zone = "A_1" }), `node "n1": spec.zone: "A_1" has character 'A'; use a-z, 0-9 and '-'`},
		{"raft address", node(func(s *weftv1.NodeSpec) { s.RaftAddress = "10.0.0.1" }), `node "n1": spec.raftAddress: "10.0.0.1" is not host:port`},
		{"gossip address", node(func(s *weftv1.NodeSpec) { s.GossipAddress = "10.0.0.1:x" }), `node "n1": spec.gossipAddress: port "x" is not a number`},
		{"gossip port", node(func(s *weftv1.NodeSpec) { s.GossipAddress = "10.0.0.1:70000" }), `node "n1": spec.gossipAddress: 70000 is not valid (1-65535)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if err := Node(tc.node); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Node() error:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
