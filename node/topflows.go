package node

// The top clients and source prefixes of each VIP: the XDP program samples
// new flows (--sample-new-flows), a reader counts them (dataplane/topflows)
// and the StatsService serves the counts with each load balancer.

import (
	"context"
	"errors"
	"net/netip"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/dataplane/topflows"
	"github.com/weftlb/weft/dataplane/xdp"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// DefaultSampleNewFlows is --sample-new-flows's default: one new flow in
// 16, about 5 ns more per new flow and a sample per 16 flows to Go.
const DefaultSampleNewFlows = 16

// startSampling counts d's new-flow samples until the agent closes, if
// sampling is on.
func (a *Agent) startSampling(d *xdp.Dataplane) {
	if a.cfg.SampleNewFlows == 0 {
		return
	}
	a.topFlows = topflows.New(a.cfg.SampleNewFlows, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.stopSamples = func() { cancel(); <-done }
	go func() {
		defer close(done)
		err := d.ReadSamples(ctx, func(ss []xdp.FlowSample) {
			for _, s := range ss {
				a.topFlows.Add(s.VIP, s.Client, s.Limited)
			}
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			a.cfg.Logger.Error("new-flow samples: reading stopped", "err", err)
		}
	}()
}

// addTopSources sets each load balancer's top clients and prefixes.
func addTopSources(t *topflows.Tracker, lbs []*weftv1.LoadBalancerStats) {
	for _, lb := range lbs {
		vip, err := netip.ParseAddr(lb.GetVip())
		if err != nil {
			continue
		}
		clients, prefixes := t.Top(vip, api.TopSourcesShown)
		lb.TopClients, lb.TopPrefixes = topSourcesOf(clients), topSourcesOf(prefixes)
	}
}

func topSourcesOf(s []topflows.Source) []*weftv1.TopSource {
	var out []*weftv1.TopSource
	for _, x := range s {
		src := x.Source.String()
		if x.Source.IsSingleIP() {
			src = x.Source.Addr().String()
		}
		out = append(out, &weftv1.TopSource{Source: src, NewFlows: x.NewFlows, Limited: x.Limited})
	}
	return out
}
