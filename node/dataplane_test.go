package node

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/weftlb/weft/dataplane"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/validate"
)

func weight(w int32) *int32 { return &w }

// stateOf commits resources to a fresh FSM, as Raft would.
func stateOf(t testing.TB, rs ...*weftv1.Resource) *raftfsm.State {
	t.Helper()
	for _, r := range rs {
		if err := validate.Resource(r); err != nil {
			t.Fatal(err)
		}
	}
	f := raftfsm.NewFSM(0)
	data, err := raftfsm.Encode(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs})
	if err != nil {
		t.Fatal(err)
	}
	if err, ok := f.Apply(&raft.Log{Index: 10, Data: data}).(error); ok {
		t.Fatal(err)
	}
	return f.State()
}

func TestDataplaneConfig(t *testing.T) {
	pool := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{
		{Address: "192.0.2.11", Port: 8080},
		{Address: "192.0.2.12", Port: 8080, Weight: weight(50)},
		{Address: "192.0.2.13", Port: 8080, Drain: true},
		{Address: "192.0.2.14", Port: 8080},
	}}}
	lb := &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "198.51.100.10",
		Listeners: []*weftv1.Listener{
			{Port: 80, Protocol: "tcp", Pool: "web"},
			{Port: 53, Protocol: "udp", Mode: "dsr", Scheduler: "source-hash", NewFlowRate: 5000, Pool: "web"},
			{Port: 8443, Protocol: "http", Pool: "web"}, // L7: not the L4 dataplane's
		},
	}}
	st := stateOf(t,
		&weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: pool}},
		&weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: lb}})
	down := func(_ string, m *weftv1.Member) bool { return m.GetAddress() != "192.0.2.14" }
	local := []netip.Addr{netip.MustParseAddr("198.18.1.11")}
	got := dataplaneConfig(st, local, down)

	backends := []dataplane.Backend{
		{Addr: netip.MustParseAddr("192.0.2.11"), Port: 8080, Weight: 100},
		{Addr: netip.MustParseAddr("192.0.2.12"), Port: 8080, Weight: 50},
		{Addr: netip.MustParseAddr("192.0.2.13"), Port: 8080, Weight: 0}, // draining
		{Addr: netip.MustParseAddr("192.0.2.14"), Port: 8080, Weight: 0}, // unhealthy
	}
	vip := netip.MustParseAddr("198.51.100.10")
	want := dataplane.Config{LocalAddrs: local, Services: []dataplane.Service{
		{VIP: vip, Port: 80, Proto: "tcp", Mode: "fullnat", Scheduler: "maglev", Backends: backends},
		{VIP: vip, Port: 53, Proto: "udp", Mode: "dsr", Scheduler: "source-hash", NewFlowRate: 5000, Backends: backends},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dataplaneConfig:\ngot  %+v\nwant %+v", got, want)
	}
	// The same state gives the same Config (the reconciler skips it).
	if again := dataplaneConfig(st, local, down); !reflect.DeepEqual(again, got) {
		t.Error("dataplaneConfig is not deterministic")
	}
}
