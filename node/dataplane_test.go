package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

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

// recordingDriver keeps the Configs applied; fail makes the next Apply fail.
type recordingDriver struct {
	nopDriver
	applied []dataplane.Config
	fail    bool
}

func (r *recordingDriver) Apply(_ context.Context, cfg dataplane.Config) error {
	if r.fail {
		r.fail = false
		return errors.New("apply failed")
	}
	// A driver keeps no slice of cfg (dataplane.Driver).
	cfg.Services = slices.Clone(cfg.Services)
	r.applied = append(r.applied, cfg)
	return nil
}

// The subsystem derives again only the load balancers whose rows, pools'
// rows or pools' health changed, yet applies what dataplaneConfig derives
// from the whole state, and only when that changed.
func TestDataplaneSubsystemDerivesWhatChanged(t *testing.T) {
	f := raftfsm.NewFSM(0)
	run := committer(t, f)
	commit := func(rs ...*weftv1.Resource) {
		run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs})
	}
	for i := range 3 {
		commit(benchPool(i, 3), benchLB(i))
	}
	// A health view of its own: members listed down, a version per pool.
	down := map[string]bool{}
	versions := map[string]uint64{}
	view := uint64(0) // moves with any of versions
	healthy := func(pool string, m *weftv1.Member) bool { return !down[pool+"/"+m.GetAddress()] }
	drv := &recordingDriver{}
	local := []netip.Addr{netip.MustParseAddr("198.18.1.11")}
	d := &dataplaneSubsystem{driver: drv, healthy: healthy, local: local, versions: healthVersions{
		pool: func(p string) uint64 { return versions[p] }, view: func() uint64 { return view }}}
	member := func(pool int) string { return benchPool(pool, 1).GetPool().GetSpec().GetMembers()[0].GetAddress() }
	deleteLB := func() {
		run(raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{Kind: raftfsm.KindLoadBalancer, Name: "lb2"})
	}
	steps := []struct {
		name    string
		change  func()
		applies bool
	}{
		{"first round", func() {}, true},
		{"nothing changed", func() {}, false},
		{"a member added", func() { commit(benchPool(1, 4)) }, true},
		{"a load balancer's listener changed", func() {
			lb := benchLB(0)
			lb.GetLoadBalancer().Spec.Listeners[0].Port = 81
			commit(lb)
		}, true},
		{"a member down in the view", func() { down["pool2/"+member(2)] = true; versions["pool2"]++; view++ }, true},
		{"the view's version alone changed", func() { versions["pool0"]++; view++ }, false},
		{"a load balancer added", func() { commit(benchPool(3, 2), benchLB(3)) }, true},
		{"a load balancer removed", deleteLB, true},
		{"an Apply failed", func() { commit(benchPool(0, 2)); drv.fail = true }, false},
		{"retried unchanged", func() {}, true},
	}
	for _, s := range steps {
		s.change()
		before := len(drv.applied)
		err := d.apply(context.Background(), f.State())
		if (err != nil) != (s.name == "an Apply failed") {
			t.Fatalf("%s: apply error %v", s.name, err)
		}
		if got := len(drv.applied) > before; got != s.applies {
			t.Fatalf("%s: applied %v, want %v", s.name, got, s.applies)
		}
		if err != nil {
			continue
		}
		if want := dataplaneConfig(f.State(), local, healthy); !reflect.DeepEqual(drv.applied[len(drv.applied)-1], want) {
			t.Fatalf("%s: applied\n%+v\nwant what dataplaneConfig derives\n%+v", s.name, drv.applied[len(drv.applied)-1], want)
		}
	}
}

// committer returns a function committing commands to f at the next log
// index, as Raft would, the resources of ApplyResources validated first as
// the API does.
func committer(tb testing.TB, f *raftfsm.FSM) func(raftfsm.CommandType, proto.Message) {
	index := uint64(1)
	return func(typ raftfsm.CommandType, msg proto.Message) {
		tb.Helper()
		if c, ok := msg.(*statev1.ApplyResourcesCommand); ok {
			for _, r := range c.GetResources() {
				if err := validate.Resource(r); err != nil {
					tb.Fatal(err)
				}
			}
		}
		data, err := raftfsm.Encode(typ, msg)
		if err != nil {
			tb.Fatal(err)
		}
		index++
		if err, ok := f.Apply(&raft.Log{Index: index, Data: data}).(error); ok {
			tb.Fatal(err)
		}
	}
}

// Random changes, a few per round, to load balancers, pools and the health
// view: each round applies what dataplaneConfig derives from the whole
// state, though most rounds derive only what the FSM's changes name
// (lbCache.patch). With a ring of 8 events some rounds' changes are
// dropped, and the cache must visit every load balancer instead.
func TestDataplaneSubsystemRandomChangesMatchFresh(t *testing.T) {
	for _, ring := range []int{0, 8} {
		t.Run(fmt.Sprintf("ring-%d", ring), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(ring)))
			f := raftfsm.NewFSM(ring)
			run := committer(t, f)
			commit := func(rs ...*weftv1.Resource) {
				run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs})
			}
			const size = 12
			members := map[int]int{} // pool -> members
			lbs := map[int]*weftv1.Resource{}
			for i := range size {
				members[i] = 2
				lbs[i] = benchLB(i)
				commit(benchPool(i, 2), lbs[i])
			}
			down := map[string]bool{}
			versions := map[string]uint64{}
			view := uint64(0)
			healthy := func(pool string, m *weftv1.Member) bool { return !down[pool+"/"+m.GetAddress()] }
			drv := &recordingDriver{}
			local := []netip.Addr{netip.MustParseAddr("198.18.1.11")}
			d := &dataplaneSubsystem{driver: drv, healthy: healthy, local: local, versions: healthVersions{
				pool: func(p string) uint64 { return versions[p] }, view: func() uint64 { return view }}}
			used := func(pool int) bool {
				for _, lb := range lbs {
					for _, l := range lb.GetLoadBalancer().GetSpec().GetListeners() {
						if l.GetPool() == fmt.Sprintf("pool%d", pool) {
							return true
						}
					}
				}
				return false
			}
			some := func(m map[int]int) int { return pick(rng, m) }
			someLB := func() int { return pick(rng, lbs) }
			changes := []func(){
				func() { // members of a pool
					p := some(members)
					members[p] = 1 + rng.IntN(4)
					commit(benchPool(p, members[p]))
				},
				func() { // a listener's port
					if i := someLB(); i >= 0 {
						lbs[i] = proto.Clone(lbs[i]).(*weftv1.Resource)
						lbs[i].GetLoadBalancer().Spec.Listeners[0].Port = uint32(80 + rng.IntN(3))
						commit(lbs[i])
					}
				},
				func() { // a listener moved to another pool, or a second listener
					if i := someLB(); i >= 0 {
						lbs[i] = proto.Clone(lbs[i]).(*weftv1.Resource)
						spec := lbs[i].GetLoadBalancer().Spec
						pool := fmt.Sprintf("pool%d", some(members))
						if len(spec.Listeners) == 1 && rng.IntN(2) == 0 {
							spec.Listeners = append(spec.Listeners, &weftv1.Listener{Port: 443, Protocol: "tcp", Pool: pool})
						} else {
							spec.Listeners[len(spec.Listeners)-1].Pool = pool
						}
						commit(lbs[i])
					}
				},
				func() { // a load balancer added, with a pool of its own
					i := size + rng.IntN(3*size)
					if lbs[i] == nil {
						members[i] = 1
						lbs[i] = benchLB(i)
						commit(benchPool(i, 1), lbs[i])
					}
				},
				func() { // a load balancer removed
					if i := someLB(); i >= 0 && len(lbs) > 1 {
						delete(lbs, i)
						run(raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{Kind: raftfsm.KindLoadBalancer, Name: fmt.Sprintf("lb%d", i)})
					}
				},
				func() { // a pool no load balancer names removed
					if p := some(members); !used(p) {
						delete(members, p)
						run(raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{Kind: raftfsm.KindPool, Name: fmt.Sprintf("pool%d", p)})
					}
				},
				func() { // a member goes down or up in the view
					p := some(members)
					m := benchPool(p, members[p]).GetPool().GetSpec().GetMembers()[rng.IntN(members[p])].GetAddress()
					key := fmt.Sprintf("pool%d/%s", p, m)
					down[key] = !down[key]
					versions[fmt.Sprintf("pool%d", p)]++
					view++
				},
				func() { // the view's version moves, no answer changes
					versions[fmt.Sprintf("pool%d", some(members))]++
					view++
				},
			}
			rounds := 400
			for round := range rounds {
				for range 1 + rng.IntN(3) {
					changes[rng.IntN(len(changes))]()
				}
				if err := d.apply(context.Background(), f.State()); err != nil {
					t.Fatal(err)
				}
				want := dataplaneConfig(f.State(), local, healthy)
				if got := drv.applied[len(drv.applied)-1]; !reflect.DeepEqual(got, want) {
					t.Fatalf("round %d: applied\n%+v\nwant what dataplaneConfig derives\n%+v", round, got, want)
				}
			}
			// The patch did most rounds (full ones: adds, removals, a
			// dropped change).
			if full := int(d.lbs.rounds); full > rounds*3/4 {
				t.Errorf("%d of %d rounds visited every load balancer", full, rounds)
			}
			t.Logf("%d of %d rounds visited every load balancer", d.lbs.rounds, rounds)
		})
	}
}

// pick is one of m's keys, or -1 when m is empty.
func pick[V any](rng *rand.Rand, m map[int]V) int {
	if len(m) == 0 {
		return -1
	}
	keys := slices.Sorted(maps.Keys(m))
	return keys[rng.IntN(len(keys))]
}
