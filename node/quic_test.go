package node

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/gossip"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

var (
	mac2 = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	mac3 = net.HardwareAddr{2, 0, 0, 0, 0, 3}
)

func quicMember(name string, st gossip.State, id uint16, mac net.HardwareAddr) gossip.Member {
	return gossip.Member{Name: name, State: st, Meta: gossip.NodeMeta{QUIC: &gossip.QUICMeta{ServerID: id, MAC: mac}}}
}

func TestQUICServers(t *testing.T) {
	alive, dead, left := gossip.StateAlive, gossip.StateDead, gossip.StateLeft
	tests := []struct {
		name     string
		members  []gossip.Member
		want     map[uint16]net.HardwareAddr
		collided map[uint16][]string
	}{
		{name: "alone"},
		{name: "self in the members", members: []gossip.Member{quicMember("node1", alive, 101, mac3)}},
		{name: "a peer", members: []gossip.Member{quicMember("node2", alive, 102, mac2)},
			want: map[uint16]net.HardwareAddr{102: mac2}},
		{name: "two peers", members: []gossip.Member{quicMember("node2", alive, 102, mac2), quicMember("node3", alive, 103, mac3)},
			want: map[uint16]net.HardwareAddr{102: mac2, 103: mac3}},
		{name: "a peer without XDP", members: []gossip.Member{quicMember("node2", alive, 102, nil)}},
		{name: "a peer without http3", members: []gossip.Member{{Name: "node2", State: alive}}},
		{name: "dead and departed peers", members: []gossip.Member{quicMember("node2", dead, 102, mac2), quicMember("node3", left, 103, mac3)}},
		{name: "two peers with one id", members: []gossip.Member{quicMember("node2", alive, 102, mac2), quicMember("node3", alive, 102, mac3)},
			collided: map[uint16][]string{102: {"node2", "node3"}}},
		{name: "a peer with this node's id", members: []gossip.Member{quicMember("node2", alive, 101, mac2), quicMember("node3", alive, 103, mac3)},
			want: map[uint16]net.HardwareAddr{103: mac3}, collided: map[uint16][]string{101: {"node1", "node2"}}},
		{name: "one id, the other node without XDP", members: []gossip.Member{quicMember("node2", alive, 102, mac2), quicMember("node3", alive, 102, nil)},
			collided: map[uint16][]string{102: {"node2", "node3"}}},
		{name: "a dead node's id taken over", members: []gossip.Member{quicMember("node2", dead, 102, mac2), quicMember("node3", alive, 102, mac3)},
			want: map[uint16]net.HardwareAddr{102: mac3}},
		{name: "two ids at one MAC", members: []gossip.Member{quicMember("node2", alive, 102, mac2), quicMember("node3", alive, 103, mac2)},
			collided: map[uint16][]string{102: {"node2"}, 103: {"node3"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, collided := quicServers("node1", 101, tc.members)
			if len(got) != 0 || len(tc.want) != 0 {
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("servers %v, want %v", got, tc.want)
				}
			}
			if len(collided) != 0 || len(tc.collided) != 0 {
				if !reflect.DeepEqual(collided, tc.collided) {
					t.Errorf("collided %v, want %v", collided, tc.collided)
				}
			}
		})
	}
}

// recordingQUIC records the routings written.
type recordingQUIC struct {
	written []xdp.QUICRouting
	fail    bool
}

func (r *recordingQUIC) SetQUICRouting(q xdp.QUICRouting) error {
	if r.fail {
		r.fail = false
		return errors.New("map full")
	}
	r.written = append(r.written, q)
	return nil
}

func h3LB(name, vip string, port uint32) *weftv1.Resource {
	return res(&weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.LoadBalancerSpec{Vip: vip,
		Listeners: []*weftv1.Listener{
			{Port: 80, Protocol: "http", Pool: "pool0"},
			{Port: port, Protocol: "https", Pool: "pool0", Certificates: []string{"site"}, Http3: true},
		}}})
}

func TestQUICSubsystem(t *testing.T) {
	f := raftfsm.NewFSM(0)
	run := committer(t, f)
	commit := func(rs ...*weftv1.Resource) {
		run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs})
	}
	commit(benchPool(0, 2), res(testCert(t, "site", "www.example.com")), h3LB("h3", "198.51.100.10", 443), benchPool(1, 1), benchLB(1))
	members := []gossip.Member{quicMember("node2", gossip.StateAlive, 102, mac2)}
	rec := &recordingQUIC{}
	s := &quicSubsystem{router: rec, self: "node1", id: 101, log: slog.New(slog.DiscardHandler),
		members: func() []gossip.Member { return slices.Clone(members) }}
	steps := []struct {
		name    string
		change  func()
		writes  bool
		servers map[uint16]net.HardwareAddr
	}{
		{"first round", func() {}, true, map[uint16]net.HardwareAddr{102: mac2}},
		{"nothing changed", func() {}, false, nil},
		{"an L4 load balancer added", func() { commit(benchPool(2, 1), benchLB(2)) }, false, nil},
		{"an http3 port changed", func() { commit(h3LB("h3", "198.51.100.10", 8443)) }, true, map[uint16]net.HardwareAddr{102: mac2}},
		{"a second http3 load balancer", func() { commit(h3LB("a-h3", "2001:db8::10", 443)) }, true, map[uint16]net.HardwareAddr{102: mac2}},
		{"a node joined", func() { members = append(members, quicMember("node3", gossip.StateAlive, 103, mac3)) }, true,
			map[uint16]net.HardwareAddr{102: mac2, 103: mac3}},
		{"it took node2's id", func() { members[1] = quicMember("node3", gossip.StateAlive, 102, mac3) }, true, map[uint16]net.HardwareAddr{}},
		{"node2 died", func() { members[0].State = gossip.StateDead }, true, map[uint16]net.HardwareAddr{102: mac3}},
		{"a write failed", func() { rec.fail = true; commit(h3LB("h3", "198.51.100.10", 443)) }, false, nil},
		{"retried", func() {}, true, map[uint16]net.HardwareAddr{102: mac3}},
		{"http3 load balancer removed", func() {
			run(raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{Kind: raftfsm.KindLoadBalancer, Name: "a-h3"})
		}, true, map[uint16]net.HardwareAddr{102: mac3}},
	}
	for _, step := range steps {
		step.change()
		before := len(rec.written)
		err := s.apply(context.Background(), f.State())
		if (err != nil) != (step.name == "a write failed") {
			t.Fatalf("%s: apply error %v", step.name, err)
		}
		if got := len(rec.written) > before; got != step.writes {
			t.Fatalf("%s: wrote %v, want %v", step.name, got, step.writes)
		}
		// Whether written or not, what the program has is what the whole
		// state and the view give.
		if want := quicPorts(f.State()); !slices.Equal(s.ports, want) {
			t.Fatalf("%s: ports %v, want %v", step.name, s.ports, want)
		}
		if !step.writes {
			continue
		}
		got := rec.written[len(rec.written)-1]
		if !slices.Equal(got.Ports, s.ports) {
			t.Errorf("%s: wrote ports %v, want %v", step.name, got.Ports, s.ports)
		}
		if !maps.EqualFunc(got.Servers, step.servers, func(a, b net.HardwareAddr) bool { return string(a) == string(b) }) {
			t.Errorf("%s: wrote servers %v, want %v", step.name, got.Servers, step.servers)
		}
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.10:443")}
	if !slices.Equal(s.ports, want) {
		t.Errorf("final ports %v, want %v", s.ports, want)
	}
}
