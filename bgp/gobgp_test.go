package bgp

import (
	"net/netip"
	"reflect"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
)

// route is what a GoBGP path says, decoded for comparison.
type route struct {
	prefix      string
	nextHop     string
	asPath      []uint32
	med         uint32
	communities []uint32
}

func decodePath(t *testing.T, p *api.Path) route {
	t.Helper()
	var r route
	nlri, err := p.GetNlri().UnmarshalNew()
	if err != nil {
		t.Fatalf("decode nlri: %v", err)
	}
	if pfx, ok := nlri.(*api.IPAddressPrefix); ok {
		r.prefix = netip.PrefixFrom(netip.MustParseAddr(pfx.GetPrefix()), int(pfx.GetPrefixLen())).String()
	}
	for _, a := range p.GetPattrs() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("decode attribute: %v", err)
		}
		switch m := m.(type) {
		case *api.NextHopAttribute:
			r.nextHop = m.GetNextHop()
		case *api.MpReachNLRIAttribute:
			r.nextHop = m.GetNextHops()[0]
		case *api.AsPathAttribute:
			for _, s := range m.GetSegments() {
				r.asPath = append(r.asPath, s.GetNumbers()...)
			}
		case *api.MultiExitDiscAttribute:
			r.med = m.GetMed()
		case *api.CommunitiesAttribute:
			r.communities = m.GetCommunities()
		}
	}
	return r
}

func TestAPIPath(t *testing.T) {
	tests := []struct {
		name string
		ann  Announcement
		want route
	}{
		{
			name: "plain ipv4, session address as next hop",
			ann:  Announcement{Prefix: netip.MustParsePrefix("198.51.100.10/32")},
			want: route{prefix: "198.51.100.10/32", nextHop: "0.0.0.0"},
		},
		{
			name: "ipv4 with prepends, med and communities",
			ann: Announcement{
				Prefix: netip.MustParsePrefix("198.51.100.10/32"), NextHop: netip.MustParseAddr("198.18.1.11"),
				Prepend: 3, MED: 20, Communities: []uint32{64513<<16 | 7},
			},
			want: route{prefix: "198.51.100.10/32", nextHop: "198.18.1.11", asPath: []uint32{64513, 64513, 64513}, med: 20, communities: []uint32{64513<<16 | 7}},
		},
		{
			name: "ipv6 through mp_reach",
			ann:  Announcement{Prefix: netip.MustParsePrefix("2001:db8:51::10/128"), NextHop: netip.MustParseAddr("2001:db8:1::11"), Prepend: 1},
			want: route{prefix: "2001:db8:51::10/128", nextHop: "2001:db8:1::11", asPath: []uint32{64513}},
		},
		{
			name: "ipv6 without next hop",
			ann:  Announcement{Prefix: netip.MustParsePrefix("2001:db8:51::10/128")},
			want: route{prefix: "2001:db8:51::10/128", nextHop: "::"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := apiPath(64513, tc.ann)
			if err != nil {
				t.Fatalf("apiPath() error = %v", err)
			}
			if got := decodePath(t, p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("apiPath() = %+v, want %+v", got, tc.want)
			}
			if wantFamily := familyOf(tc.ann.Prefix.Addr()); p.GetFamily() != wantFamily {
				t.Errorf("family = %v, want %v", p.GetFamily(), wantFamily)
			}
		})
	}
}
