package topflows

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var (
	vip  = netip.MustParseAddr("192.0.2.1")
	vip6 = netip.MustParseAddr("2001:db8::1")
)

func addrN(base string, n uint32) netip.Addr {
	a := netip.MustParseAddr(base).As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// TestHeavyHittersInAFlood: a few heavy clients among a random-source
// flood of many times Capacity addresses are found, in order, with rates
// close to what they sent; the flood's prefix leads the prefixes; the
// summary never holds more than Capacity keys.
func TestHeavyHittersInAFlood(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	tr := New(4, c.now)
	rng := rand.New(rand.NewPCG(1, 2))
	heavy := []struct {
		addr netip.Addr
		n    int
	}{{netip.MustParseAddr("198.51.100.7"), 3000}, {netip.MustParseAddr("198.51.100.8"), 2000}, {netip.MustParseAddr("203.0.113.9"), 1000}}
	var seq []netip.Addr
	for _, h := range heavy {
		for range h.n {
			seq = append(seq, h.addr)
		}
	}
	for range 20000 { // random sources in 100.64.0.0/16
		seq = append(seq, addrN("100.64.0.0", rng.Uint32N(1<<16)))
	}
	rng.Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
	for i, a := range seq {
		tr.Add(vip, a, i%2 == 0)
	}
	if n := len(tr.cur[vip].clients.counts); n > Capacity {
		t.Fatalf("summary holds %d keys, more than %d", n, Capacity)
	}
	c.t = c.t.Add(5 * time.Second)
	clients, prefixes := tr.Top(vip, 3)
	if len(clients) != 3 {
		t.Fatalf("Top: %d clients, want 3", len(clients))
	}
	for i, h := range heavy {
		got := clients[i]
		if got.Source != netip.PrefixFrom(h.addr, 32) {
			t.Errorf("client %d: %v, want %v (all: %v)", i, got.Source, h.addr, clients)
			continue
		}
		// Each sample stands for 4 flows, over 5 s; the summary may
		// overcount by its smallest count.
		want := float64(h.n) * 4 / 5
		if got.NewFlows < want || got.NewFlows > want*1.2 {
			t.Errorf("client %v: %.0f new flows/s, want %.0f (at most 20%% over)", h.addr, got.NewFlows, want)
		}
		if got.Limited <= 0 || got.Limited > got.NewFlows {
			t.Errorf("client %v: %.0f limited of %.0f", h.addr, got.Limited, got.NewFlows)
		}
	}
	if prefixes[0].Source != netip.MustParsePrefix("198.51.100.0/24") {
		t.Errorf("top prefix %v, want 198.51.100.0/24 (all: %v)", prefixes[0].Source, prefixes)
	}
	if want := float64(5000) * 4 / 5; prefixes[0].NewFlows < want || prefixes[0].NewFlows > want*1.2 {
		t.Errorf("top prefix: %.0f new flows/s, want %.0f", prefixes[0].NewFlows, want)
	}
}

// TestWindows: rates cover the current and the last window; samples older
// than that are gone, and so is a VIP with none for two windows. VIPs and
// families are counted apart, IPv6 clients under their /48.
func TestWindows(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	tr := New(1, c.now)
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:1:2::5")
	for range 100 {
		tr.Add(vip, a, false)
	}
	for range 30 {
		tr.Add(vip6, b, true)
	}
	c.t = c.t.Add(Window) // a new window: the first is the last one now
	for range 50 {
		tr.Add(vip, a, false)
	}
	c.t = c.t.Add(Window / 2)
	clients, _ := tr.Top(vip, 10)
	if len(clients) != 1 || clients[0].NewFlows != 150/15.0 || clients[0].Limited != 0 {
		t.Errorf("after 1.5 windows: %v, want %v at 10 flows/s", clients, a)
	}
	clients, prefixes := tr.Top(vip6, 10)
	if len(clients) != 1 || clients[0].Source != netip.PrefixFrom(b, 128) || clients[0].Limited != 2 {
		t.Errorf("IPv6 VIP: %v, want %v at 2 limited flows/s", clients, b)
	}
	if len(prefixes) != 1 || prefixes[0].Source != netip.MustParsePrefix("2001:db8:1::/48") {
		t.Errorf("IPv6 prefixes: %v, want 2001:db8:1::/48", prefixes)
	}
	c.t = c.t.Add(Window) // the first window is gone, the second is the last
	clients, _ = tr.Top(vip, 10)
	if len(clients) != 1 || clients[0].NewFlows != 50/15.0 {
		t.Errorf("after 2.5 windows: %v, want 50 flows over 15 s", clients)
	}
	if clients, _ := tr.Top(vip6, 10); len(clients) != 0 {
		t.Errorf("IPv6 VIP with no sample for two windows: %v, want none", clients)
	}
	c.t = c.t.Add(3 * Window)
	if clients, _ := tr.Top(vip, 10); len(clients) != 0 {
		t.Errorf("after a long pause: %v, want none", clients)
	}
}
