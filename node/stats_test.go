package node

import (
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/health"
	"github.com/weftlb/weft/l7"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// TestLoadBalancerStats: the counters of both dataplanes' form and of the
// L7 proxy land under the committed listeners and their pools' members,
// with health from the view, and only for the load balancers asked.
func TestLoadBalancerStats(t *testing.T) {
	web := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{
		{Address: "192.0.2.11", Port: 8080},
		{Address: "192.0.2.12", Port: 8080, Drain: true},
	}}}
	apiPool := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "api"}, Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{
		{Address: "192.0.2.21", Port: 9000},
	}}}
	lb := &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "shop"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "198.51.100.10",
		Listeners: []*weftv1.Listener{
			{Port: 80, Protocol: "tcp", Pool: "web"},
			{Port: 8080, Protocol: "http", Pool: "web", Rules: []*weftv1.Rule{
				{PathPrefix: "/api/", Pool: "api"}, {PathPrefix: "/v2/", Pool: "api"},
			}},
		},
	}}
	other := &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "other"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "198.51.100.11", Listeners: []*weftv1.Listener{{Port: 80, Protocol: "tcp", Pool: "web"}}}}
	st := stateOf(t,
		&weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: web}},
		&weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: apiPool}},
		&weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: lb}},
		&weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: other}})

	vip := netip.MustParseAddr("198.51.100.10")
	l4 := newL4Counters()
	l4.services[l4Service{vip, 80, "tcp"}] = &weftv1.TrafficCounters{Packets: 9, Bytes: 900, NewFlows: 3, ActiveFlows: 1, Drops: 2}
	*l4.backend(netip.MustParseAddrPort("192.0.2.11:8080")) = weftv1.TrafficCounters{Packets: 9, NewFlows: 3}
	l7s := l7.Stats{
		Listeners: []l7.ListenerStats{{Listener: "shop/http-8080", Counters: l7.Counters{Requests: 7, Status: [6]uint64{1, 0, 5, 0, 0, 1}}}},
		Members: []l7.MemberStats{
			{Pool: "web", Addr: "192.0.2.12:8080", Counters: l7.Counters{Requests: 2, Status: [6]uint64{0, 0, 2}}},
			{Pool: "api", Addr: "192.0.2.21:9000", Counters: l7.Counters{Requests: 4, Status: [6]uint64{1, 0, 2, 0, 0, 1}, LatencySum: time.Second}},
		},
	}
	view := map[health.MemberKey]bool{
		{Pool: "web", Addr: netip.MustParseAddrPort("192.0.2.11:8080")}: true,
		{Pool: "web", Addr: netip.MustParseAddrPort("192.0.2.12:8080")}: false,
	}
	got := loadBalancerStats(st, []string{"shop"}, l4, l7CountersOf(l7s), view)

	want := &weftv1.LoadBalancerStats{Name: "shop", Vip: "198.51.100.10", Listeners: []*weftv1.ListenerStats{
		{Name: "tcp-80", Protocol: "tcp", Port: 80,
			Traffic: &weftv1.TrafficCounters{Packets: 9, Bytes: 900, NewFlows: 3, ActiveFlows: 1, Drops: 2},
			Backends: []*weftv1.BackendStats{
				{Pool: "web", Address: "192.0.2.11", Port: 8080, Health: api.HealthUp, Traffic: &weftv1.TrafficCounters{Packets: 9, NewFlows: 3}},
				{Pool: "web", Address: "192.0.2.12", Port: 8080, Health: api.HealthDown, Drain: true},
			}},
		{Name: "http-8080", Protocol: "http", Port: 8080,
			Requests: &weftv1.RequestCounters{Requests: 7, NoStatus: 1, Status_2Xx: 5, Status_5Xx: 1},
			Backends: []*weftv1.BackendStats{
				{Pool: "web", Address: "192.0.2.11", Port: 8080, Health: api.HealthUp},
				{Pool: "web", Address: "192.0.2.12", Port: 8080, Health: api.HealthDown, Drain: true,
					Requests: &weftv1.RequestCounters{Requests: 2, Status_2Xx: 2}},
				{Pool: "api", Address: "192.0.2.21", Port: 9000, Health: api.HealthUnknown,
					Requests: &weftv1.RequestCounters{Requests: 4, NoStatus: 1, Status_2Xx: 2, Status_5Xx: 1}},
			}},
	}}
	if len(got) != 1 || !proto.Equal(got[0], want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if all := loadBalancerStats(st, nil, l4, l7CountersOf(l7s), nil); len(all) != 2 ||
		all[1].GetListeners()[0].GetBackends()[0].GetHealth() != api.HealthUnknown {
		t.Errorf("without names or a view: %v, want both load balancers, health unknown", all)
	}
}
