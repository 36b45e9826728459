package node

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/weftlb/weft/bgp"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestAnnouncements(t *testing.T) {
	member := func(addr string, drain bool, w int32) *weftv1.Member {
		return &weftv1.Member{Address: addr, Port: 80, Drain: drain, Weight: weight(w)}
	}
	pools := []*weftv1.Pool{
		{Metadata: &weftv1.Metadata{Name: "up"}, Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{member("192.0.2.1", false, 100)}}},
		{Metadata: &weftv1.Metadata{Name: "drained"}, Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{member("192.0.2.2", true, 100), member("192.0.2.3", false, 0)}}},
	}
	lb := func(name, vip, pool, primary string, backups ...string) *weftv1.LoadBalancer {
		return &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.LoadBalancerSpec{
			Vip: vip, PrimaryZone: primary, BackupZones: backups,
			Listeners: []*weftv1.Listener{{Port: 80, Protocol: "tcp", Pool: pool}}}}
	}
	var rs []*weftv1.Resource
	for _, p := range pools {
		rs = append(rs, &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: p}})
	}
	for _, l := range []*weftv1.LoadBalancer{
		lb("a-first", "198.51.100.1", "up", "a", "b", "c"),
		lb("anywhere", "198.51.100.2", "up", ""),
		lb("b-first", "2001:db8::10", "up", "b"),
		lb("nothing-to-serve", "198.51.100.4", "drained", ""),
		// Another port of a-first's VIP, preferred in zone c: one route.
		{Metadata: &weftv1.Metadata{Name: "shares-a-first"}, Spec: &weftv1.LoadBalancerSpec{Vip: "198.51.100.1", PrimaryZone: "c",
			Listeners: []*weftv1.Listener{{Port: 81, Protocol: "tcp", Pool: "up"}}}},
		// An http listener whose only servable pool is a rule's.
		{Metadata: &weftv1.Metadata{Name: "rules-only"}, Spec: &weftv1.LoadBalancerSpec{Vip: "198.51.100.5",
			Listeners: []*weftv1.Listener{{Port: 80, Protocol: "http", Pool: "drained",
				Rules: []*weftv1.Rule{{PathPrefix: "/api/", Pool: "up"}}}}}},
	} {
		rs = append(rs, &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: l}})
	}
	st := stateOf(t, rs...)
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	for _, tc := range []struct {
		zone string
		want []bgp.Announcement
	}{
		{"a", []bgp.Announcement{{Prefix: p("198.51.100.1/32")}, {Prefix: p("198.51.100.2/32")}, {Prefix: p("198.51.100.5/32")}}},
		{"b", []bgp.Announcement{{Prefix: p("198.51.100.1/32"), Prepend: 2}, {Prefix: p("198.51.100.2/32")}, {Prefix: p("2001:db8::10/128")}, {Prefix: p("198.51.100.5/32")}}},
		{"c", []bgp.Announcement{{Prefix: p("198.51.100.1/32")}, {Prefix: p("198.51.100.2/32")}, {Prefix: p("198.51.100.5/32")}}},
	} {
		if got := announcements(st, "n1", tc.zone, 2, allHealthy); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("zone %s: got %v, want %v", tc.zone, got, tc.want)
		}
	}
	none := func(string, *weftv1.Member) bool { return false }
	if got := announcements(st, "n1", "a", 2, none); got != nil {
		t.Errorf("with every member down: got %v, want no routes", got)
	}
}

func TestParsePeer(t *testing.T) {
	if p, err := ParsePeer("198.18.1.1:64512"); err != nil || p.Address != netip.MustParseAddr("198.18.1.1") || p.ASN != 64512 {
		t.Errorf("ParsePeer = %v, %v", p, err)
	}
	if p, err := ParsePeer("[2001:db8::1]:64512"); err != nil || !p.Address.Is6() {
		t.Errorf("ParsePeer IPv6 = %v, %v", p, err)
	}
	for _, bad := range []string{"198.18.1.1", "router:64512", "198.18.1.1:0", "198.18.1.1:x"} {
		if _, err := ParsePeer(bad); err == nil {
			t.Errorf("ParsePeer(%q) succeeded", bad)
		}
	}
}
