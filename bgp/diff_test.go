package bgp

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func peer(addr string, asn uint32) Peer {
	return Peer{Address: netip.MustParseAddr(addr), ASN: asn, Port: 179, HoldTime: 3 * time.Second, KeepaliveInterval: time.Second}
}

func ann(prefix string, prepend int) Announcement {
	return Announcement{Prefix: netip.MustParsePrefix(prefix), Prepend: prepend}
}

func peerMap(ps ...Peer) map[netip.Addr]Peer {
	m := map[netip.Addr]Peer{}
	for _, p := range ps {
		m[p.Address] = p
	}
	return m
}

func annMap(as ...Announcement) map[netip.Prefix]Announcement {
	m := map[netip.Prefix]Announcement{}
	for _, a := range as {
		m[a.Prefix] = a
	}
	return m
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestPlanPeers(t *testing.T) {
	r1, r2, r6 := peer("198.18.200.1", 64512), peer("198.18.200.5", 64512), peer("2001:db8::1", 64512)
	r1Password := r1
	r1Password.Password = "secret"
	r2Hold := r2
	r2Hold.HoldTime = 9 * time.Second

	tests := []struct {
		name string
		have map[netip.Addr]Peer
		want []Peer
		plan peerPlan
	}{
		{name: "empty", have: peerMap(), want: nil, plan: peerPlan{}},
		{name: "add all, sorted", have: peerMap(), want: []Peer{r6, r2, r1}, plan: peerPlan{add: []Peer{r1, r2, r6}}},
		{name: "unchanged", have: peerMap(r1, r2), want: []Peer{r2, r1}, plan: peerPlan{}},
		{name: "remove all", have: peerMap(r1, r6), want: nil, plan: peerPlan{remove: addrs("198.18.200.1", "2001:db8::1")}},
		{
			name: "changed settings re-create the peer",
			have: peerMap(r1, r2), want: []Peer{r1Password, r2Hold},
			plan: peerPlan{remove: addrs("198.18.200.1", "198.18.200.5"), add: []Peer{r1Password, r2Hold}},
		},
		{
			name: "add, keep and remove at once",
			have: peerMap(r1, r2), want: []Peer{r2, r6},
			plan: peerPlan{remove: addrs("198.18.200.1"), add: []Peer{r6}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planPeers(tc.have, tc.want)
			if !reflect.DeepEqual(got, tc.plan) {
				t.Errorf("planPeers() = %+v, want %+v", got, tc.plan)
			}
		})
	}
}

func TestPlanPaths(t *testing.T) {
	v1, v2, v6 := ann("198.51.100.10/32", 0), ann("198.51.100.2/32", 0), ann("2001:db8:51::10/128", 0)
	v1Prepend := ann("198.51.100.10/32", 2)
	v1Med := v1
	v1Med.MED = 50
	v1Comm := v1
	v1Comm.Communities = []uint32{64513<<16 | 1}
	v1Comm2 := v1
	v1Comm2.Communities = []uint32{64513<<16 | 2}
	v1NextHop := v1
	v1NextHop.NextHop = netip.MustParseAddr("198.18.1.11")

	tests := []struct {
		name string
		have map[netip.Prefix]Announcement
		want []Announcement
		plan pathPlan
	}{
		{name: "empty", have: annMap(), plan: pathPlan{}},
		{name: "announce all, sorted by address", have: annMap(), want: []Announcement{v6, v1, v2}, plan: pathPlan{announce: []Announcement{v2, v1, v6}}},
		{name: "unchanged", have: annMap(v1, v6), want: []Announcement{v6, v1}, plan: pathPlan{}},
		{name: "withdraw all", have: annMap(v1, v2, v6), plan: pathPlan{withdraw: []netip.Prefix{v2.Prefix, v1.Prefix, v6.Prefix}}},
		{name: "prepend change re-announces without withdrawing", have: annMap(v1), want: []Announcement{v1Prepend}, plan: pathPlan{announce: []Announcement{v1Prepend}}},
		{name: "med change", have: annMap(v1), want: []Announcement{v1Med}, plan: pathPlan{announce: []Announcement{v1Med}}},
		{name: "next hop change", have: annMap(v1), want: []Announcement{v1NextHop}, plan: pathPlan{announce: []Announcement{v1NextHop}}},
		{name: "community added", have: annMap(v1), want: []Announcement{v1Comm}, plan: pathPlan{announce: []Announcement{v1Comm}}},
		{name: "community changed", have: annMap(v1Comm), want: []Announcement{v1Comm2}, plan: pathPlan{announce: []Announcement{v1Comm2}}},
		{name: "same communities", have: annMap(v1Comm), want: []Announcement{v1Comm}, plan: pathPlan{}},
		{
			name: "announce, keep and withdraw at once",
			have: annMap(v1, v2), want: []Announcement{v2, v6},
			plan: pathPlan{withdraw: []netip.Prefix{v1.Prefix}, announce: []Announcement{v6}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planPaths(tc.have, tc.want)
			if !reflect.DeepEqual(got, tc.plan) {
				t.Errorf("planPaths() = %+v, want %+v", got, tc.plan)
			}
		})
	}
}

func TestNeedsRestart(t *testing.T) {
	base := global{routerID: netip.MustParseAddr("198.18.1.11"), asn: 64513, listenPort: -1}
	otherID, otherASN, otherPort := base, base, base
	otherID.routerID = netip.MustParseAddr("198.18.1.12")
	otherASN.asn = 64514
	otherPort.listenPort = 1790
	tests := []struct {
		name    string
		running *global
		next    global
		want    bool
	}{
		{name: "not running", running: nil, next: base, want: true},
		{name: "same", running: &base, next: base, want: false},
		{name: "router id", running: &base, next: otherID, want: true},
		{name: "asn", running: &base, next: otherASN, want: true},
		{name: "listen port", running: &base, next: otherPort, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := needsRestart(tc.running, tc.next); got != tc.want {
				t.Errorf("needsRestart() = %v, want %v", got, tc.want)
			}
		})
	}
}
