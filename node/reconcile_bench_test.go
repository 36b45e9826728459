package node

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/health"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// BenchmarkReconcileChange measures what one change (a member added to or
// removed from one pool) costs a node with n load balancers committed
// (each a VIP with a tcp listener to a pool of its own of three members):
// the FSM applying the entry, then the rounds of the health, dataplane
// (to a driver that does nothing) and BGP subsystems deriving their
// configurations from the whole state, as the reconciler does. Reported
// per part in ms/op: fsm-ms, health-ms, dataplane-ms, bgp-ms; and the live
// heap after a round (heap-MiB).
func BenchmarkReconcileChange(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("lbs-%d", n), func(b *testing.B) {
			f := raftfsm.NewFSM(0)
			var rs []*weftv1.Resource
			for i := range n {
				rs = append(rs, benchPool(i, 3), benchLB(i))
			}
			run := committer(b, f)
			commit := func(rs ...*weftv1.Resource) {
				run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs})
			}
			commit(rs...)
			h := health.New(nil, nil)
			defer h.Close()
			// The checks are another node's: this one runs no probe.
			hs := &healthSubsystem{h: h, self: "node1", nodes: func() []health.NodeInfo { return []health.NodeInfo{{Name: "node2"}} }}
			dp := &dataplaneSubsystem{driver: nopDriver{}, healthy: hs.healthy, versions: healthVersions{pool: h.PoolVersion, view: h.Version}, local: []netip.Addr{netip.MustParseAddr("198.18.1.11")}}
			bgp := &bgpSubsystem{self: "node1", zone: "a", prepend: 2, healthy: hs.healthy, versions: healthVersions{pool: h.PoolVersion, view: h.Version}}
			ctx := context.Background()
			var fsmT, healthT, dpT, bgpT time.Duration
			round := func() {
				t0 := time.Now()
				st := f.State()
				t1 := time.Now()
				if err := hs.apply(ctx, st); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if err := dp.apply(ctx, st); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				bgp.announcements(st)
				t4 := time.Now()
				fsmT += t1.Sub(t0)
				healthT += t2.Sub(t1)
				dpT += t3.Sub(t2)
				bgpT += t4.Sub(t3)
			}
			round()
			fsmT, healthT, dpT, bgpT = 0, 0, 0, 0
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				commit(benchPool(0, 3-i%2))
				fsmT += time.Since(t0)
				round()
			}
			ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 / float64(b.N) }
			b.ReportMetric(ms(fsmT), "fsm-ms")
			b.ReportMetric(ms(healthT), "health-ms")
			b.ReportMetric(ms(dpT), "dataplane-ms")
			b.ReportMetric(ms(bgpT), "bgp-ms")
			// What the state and the subsystems' copies of it hold.
			var m runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m)
			b.ReportMetric(float64(m.HeapAlloc)/(1<<20), "heap-MiB")
		})
	}
}

func benchPool(i, members int) *weftv1.Resource {
	p := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: fmt.Sprintf("pool%d", i)}, Spec: &weftv1.PoolSpec{}}
	for j := range members {
		p.Spec.Members = append(p.Spec.Members, &weftv1.Member{
			Address: fmt.Sprintf("10.%d.%d.%d", 1+i/62500, i/250%250, 4*(i%250)/4+j+1), Port: 8080})
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: p}}
}

func benchLB(i int) *weftv1.Resource {
	return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{
		Metadata: &weftv1.Metadata{Name: fmt.Sprintf("lb%d", i)},
		Spec: &weftv1.LoadBalancerSpec{Vip: fmt.Sprintf("198.%d.%d.%d", 18+i/65536%2, i/256%256, i%256),
			Listeners: []*weftv1.Listener{{Port: 80, Protocol: "tcp", Pool: fmt.Sprintf("pool%d", i)}}},
	}}}
}

// nopDriver is a dataplane that applies nothing.
type nopDriver struct{ dataplane.Driver }

func (nopDriver) Apply(context.Context, dataplane.Config) error { return nil }
