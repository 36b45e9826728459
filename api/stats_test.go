package api

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/tokens"
)

// fixedStats answers LocalStats with one load balancer whose tcp listener
// counted packets and whose one backend has the given health; its top
// clients are 198.51.100.7 at packets new flows a second and other, at 1.
func fixedStats(packets uint64, health, other string) func([]string) ([]*weftv1.LoadBalancerStats, error) {
	return func([]string) ([]*weftv1.LoadBalancerStats, error) {
		return []*weftv1.LoadBalancerStats{{Name: "web", Vip: "198.51.100.10",
			TopClients: []*weftv1.TopSource{{Source: "198.51.100.7", NewFlows: float64(packets), Limited: 1}, {Source: other, NewFlows: 1}},
			Listeners: []*weftv1.ListenerStats{{
				Name: "tcp-80", Protocol: "tcp", Port: 80,
				Traffic: &weftv1.TrafficCounters{Packets: packets, Bytes: 100 * packets, NewFlows: 1, ActiveFlows: 1},
				Backends: []*weftv1.BackendStats{{Pool: "web", Address: "192.0.2.11", Port: 8080, Health: health,
					Traffic: &weftv1.TrafficCounters{Packets: packets}}},
			}}}}, nil
	}
}

// TestStats_SumsNodes: the node asked sums its counters with those of the
// other nodes (asked with the caller's token), takes the health of a node
// that holds the view, and names the nodes that did not answer: one that
// refuses connections and one gossip holds dead.
func TestStats_SumsNodes(t *testing.T) {
	n := newTestNode(t, func(c *Config) {
		c.LocalStats = fixedStats(10, HealthUnknown, "203.0.113.1")
		c.Observed = func() Observed {
			return Observed{Gossip: []*weftv1.GossipMember{{Name: "n1", State: "alive"}, {Name: "n4", State: "dead"}}}
		}
	})
	// n2 serves the same replica under another name, as a second node.
	n2 := New(Config{NodeName: "n2", Replica: n.raft, LocalStats: fixedStats(32, HealthUp, "192.0.2.200")})
	certPEM, keyPEM, err := n.ca.IssueNode("n2", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hs := serveAPI(t, n2, certPEM, keyPEM, n.ca.CertPEM)
	ctx := context.Background()
	for name, addr := range map[string]string{"n2": hs.Listener.Addr().String(), "n3": "127.0.0.1:1", "n4": "127.0.0.1:2"} {
		if _, _, err := n.raft.Apply(ctx, raftfsm.UpsertNodeType, &statev1.UpsertNodeCommand{Node: &weftv1.Node{
			Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.NodeSpec{ApiAddress: addr, RaftAddress: net.JoinHostPort("127.0.0.1", "1")},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	_, viewer := n.token(tokens.RoleViewer, 0)
	c := n.client(viewer)

	res, err := c.Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	m := res.Msg
	if got, want := m.GetNodes(), []string{"n1", "n2"}; !slices.Equal(got, want) {
		t.Errorf("nodes %v, want %v", got, want)
	}
	if len(m.GetMissing()) != 2 || m.GetMissing()[0].GetNode() != "n3" || m.GetMissing()[1].GetNode() != "n4" ||
		m.GetMissing()[1].GetReason() != "gossip holds it dead" || m.GetMissing()[0].GetReason() == "" {
		t.Errorf("missing %v, want n3 (with why) and n4 (dead)", m.GetMissing())
	}
	want := &weftv1.LoadBalancerStats{Name: "web", Vip: "198.51.100.10",
		TopClients: []*weftv1.TopSource{{Source: "198.51.100.7", NewFlows: 42, Limited: 2}, {Source: "192.0.2.200", NewFlows: 1},
			{Source: "203.0.113.1", NewFlows: 1}},
		Listeners: []*weftv1.ListenerStats{{
			Name: "tcp-80", Protocol: "tcp", Port: 80,
			Traffic: &weftv1.TrafficCounters{Packets: 42, Bytes: 4200, NewFlows: 2, ActiveFlows: 2},
			Backends: []*weftv1.BackendStats{{Pool: "web", Address: "192.0.2.11", Port: 8080, Health: HealthUp,
				Traffic: &weftv1.TrafficCounters{Packets: 42}}},
		}}}
	if len(m.GetLoadBalancers()) != 1 || !proto.Equal(m.GetLoadBalancers()[0], want) {
		t.Errorf("load balancers %v, want %v", m.GetLoadBalancers(), want)
	}

	local, err := c.Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{Local: true}))
	if err != nil {
		t.Fatal(err)
	}
	if got := local.Msg.GetLoadBalancers()[0].GetListeners()[0].GetTraffic().GetPackets(); got != 10 || !slices.Equal(local.Msg.GetNodes(), []string{"n1"}) {
		t.Errorf("local: %d packets from %v, want 10 from n1 alone", got, local.Msg.GetNodes())
	}

	_, err = c.Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{LoadBalancers: []string{"nope"}}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{LoadBalancers: []string{"Bad_Name"}}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = n.client("").Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated)
}

// TestTopSources: the sum of several nodes' top sources keeps the
// TopSourcesShown with the most new flows, most first.
func TestTopSources(t *testing.T) {
	var a, b []*weftv1.TopSource
	for i := range 12 {
		a = append(a, &weftv1.TopSource{Source: fmt.Sprintf("10.0.0.%d", i), NewFlows: float64(i)})
	}
	b = append(b, &weftv1.TopSource{Source: "10.0.0.0", NewFlows: 100}, &weftv1.TopSource{Source: "10.0.0.1", NewFlows: 0.5})
	got := topSources(addSources(addSources(nil, a), b))
	var names []string
	for _, s := range got {
		names = append(names, fmt.Sprintf("%s=%g", s.GetSource(), s.GetNewFlows()))
	}
	want := []string{"10.0.0.0=100", "10.0.0.11=11", "10.0.0.10=10", "10.0.0.9=9", "10.0.0.8=8", "10.0.0.7=7", "10.0.0.6=6",
		"10.0.0.5=5", "10.0.0.4=4", "10.0.0.3=3"}
	if !slices.Equal(names, want) {
		t.Errorf("top sources %v, want %v", names, want)
	}
}
