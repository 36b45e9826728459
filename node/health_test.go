package node

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weftlb/weft/health"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// Random changes to pools and the checking nodes: the Config of each round
// that is not held, patched from the FSM's changes or converted whole (a
// ring of 8 events drops some), holds the pools a fresh subsystem converts
// from the whole state; a round with the state and nodes of the last is
// held.
func TestHealthSubsystemConfigMatchesFresh(t *testing.T) {
	for _, ring := range []int{0, 8} {
		t.Run(fmt.Sprintf("ring-%d", ring), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(ring)))
			f := raftfsm.NewFSM(ring)
			run := committer(t, f)
			pool := func(i, members int) *weftv1.Resource {
				r := benchPool(i, members)
				if i%3 == 0 {
					r.GetPool().Spec.HealthCheck = &weftv1.HealthCheck{Port: uint32(9000 + rng.IntN(3))}
				}
				return r
			}
			members := map[int]int{}
			for i := range 10 {
				members[i] = 2
				run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: []*weftv1.Resource{pool(i, 2)}})
			}
			// Pools 100-102 are the load balancers', never removed.
			for i := 100; i < 103; i++ {
				run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: []*weftv1.Resource{pool(i, 1)}})
			}
			nodes := []health.NodeInfo{{Name: "n1", Zone: "a"}, {Name: "n2", Zone: "b"}}
			s := &healthSubsystem{self: "n1"}
			changes := []func(){
				func() { // a pool's members or check
					p := pick(rng, members)
					members[p] = 1 + rng.IntN(4)
					run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: []*weftv1.Resource{pool(p, members[p])}})
				},
				func() { // a pool added or removed
					if p := rng.IntN(20); members[p] == 0 {
						members[p] = 1
						run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: []*weftv1.Resource{pool(p, 1)}})
					} else {
						delete(members, p)
						run(raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{Kind: raftfsm.KindPool, Name: fmt.Sprintf("pool%d", p)})
					}
				},
				func() { // a load balancer, which the health subsystem ignores
					run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: []*weftv1.Resource{benchLB(100 + rng.IntN(3))}})
				},
				func() { // a checking node joins or leaves
					if len(nodes) == 3 {
						nodes = nodes[:2]
					} else {
						nodes = append(slices.Clone(nodes), health.NodeInfo{Name: "n3", Zone: "c"})
					}
				},
				func() {}, // nothing
			}
			byName := func(a, b health.Pool) int { return strings.Compare(a.Name, b.Name) }
			held := 0
			for round := range 400 {
				changes[rng.IntN(len(changes))]()
				st := f.State()
				cfg, ok := s.config(st, nodes)
				unchanged := s.at != nil && s.at.Index() == st.Index() && slices.Equal(s.given, nodes)
				if ok != unchanged {
					t.Fatalf("round %d: held %v, want %v", round, ok, unchanged)
				}
				if ok {
					held++
					continue
				}
				want, _ := (&healthSubsystem{self: "n1"}).config(st, nodes)
				// cfg.Pools is s.list: sorted in a copy.
				cfg.Pools = slices.SortedFunc(slices.Values(cfg.Pools), byName)
				slices.SortFunc(want.Pools, byName)
				if !reflect.DeepEqual(cfg, want) {
					t.Fatalf("round %d: config\n%+v\nwant\n%+v", round, cfg, want)
				}
				s.at, s.given = st, nodes
			}
			if held == 0 {
				t.Errorf("no round was held")
			}
		})
	}
}
