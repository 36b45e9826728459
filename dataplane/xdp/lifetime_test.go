package xdp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestEntryLifetime: TCP flags and time decide how long a connection-table
// entry decides a flow's backend.
func TestEntryLifetime(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	r := runner{d.objs.XdpLb}
	ctx := context.Background()
	vip := netip.MustParseAddrPort("192.0.2.2:80")
	b1, b2, b3 := be("10.1.0.11", 0, 1), be("10.1.0.12", 0, 1), be("10.1.0.13", 0, 1)
	cfgWith := func(bs ...Backend) Config {
		cfg := testConfig()
		cfg.Services = []Service{{VIP: vip.Addr(), Port: vip.Port(), Proto: "tcp", Mode: "dsr", Backends: bs},
			{VIP: vip.Addr(), Port: 53, Proto: "udp", Mode: "dsr", Backends: bs}}
		return cfg
	}
	apply := func(cfg Config) {
		t.Helper()
		if err := d.Apply(ctx, cfg); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	seg := func(src netip.AddrPort, syn, ack, fin bool) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: vip, proto: "tcp", syn: syn, ack: ack, fin: fin}
	}
	// send returns the backend a frame went to, or "" when not forwarded.
	send := func(f []byte) string {
		t.Helper()
		act, out := r.run(t, f)
		if act != xdpTX {
			return ""
		}
		for a, m := range backendMAC {
			if string(m) == string(out[:6]) {
				return a.String()
			}
		}
		t.Fatalf("forwarded to unknown MAC % x", out[:6])
		return ""
	}
	synFrame := func(src netip.AddrPort) []byte { return seg(src, true, false, false).frame(t) }
	ackFrame := func(src netip.AddrPort) []byte { return seg(src, false, true, false).frame(t) }
	finFrame := func(src netip.AddrPort) []byte { return seg(src, false, true, true).frame(t) }

	// clientMoving finds a client whose flow the table of next maps to
	// another backend than the table of cur does.
	clientMoving := func(cur, next Config) (netip.AddrPort, string, string) {
		for i := range 1000 {
			c := netip.AddrPortFrom(client4.Addr(), uint16(3000+i))
			p := seg(c, true, false, false)
			a := expect(t, cur, cur.Services[0], p).backend.Addr().String()
			b := expect(t, next, next.Services[0], p).backend.Addr().String()
			if a != b {
				return c, a, b
			}
		}
		t.Fatal("no client moves between the tables")
		return netip.AddrPort{}, "", ""
	}

	t.Run("syn retransmission keeps a live backend", func(t *testing.T) {
		cur, next := cfgWith(b1, b2), cfgWith(b1, b2, b3)
		apply(cur)
		c, was, _ := clientMoving(cur, next)
		if got := send(synFrame(c)); got != was {
			t.Fatalf("syn went to %q, want %q", got, was)
		}
		apply(next)
		if got := send(synFrame(c)); got != was {
			t.Errorf("retransmitted syn went to %q, want %q (its tracked backend)", got, was)
		}
	})
	t.Run("syn after fin opens a new flow", func(t *testing.T) {
		cur, next := cfgWith(b1, b2), cfgWith(b1, b2, withWeight(b3, 3))
		apply(cur)
		c, was, will := clientMoving(cur, next)
		send(synFrame(c))
		send(ackFrame(c))
		apply(next)
		if got := send(finFrame(c)); got != was {
			t.Fatalf("fin went to %q, want %q", got, was)
		}
		if got := send(synFrame(c)); got != will {
			t.Errorf("syn reusing the tuple after a fin went to %q, want %q (the new table's)", got, will)
		}
	})
	t.Run("syn to a removed backend opens a new flow", func(t *testing.T) {
		apply(cfgWith(b1, b2, b3))
		var c netip.AddrPort
		var was string
		for i := range 100 {
			c = netip.AddrPortFrom(client4.Addr(), uint16(5000+i))
			if was = send(synFrame(c)); was == "10.1.0.13" {
				break
			}
		}
		if was != "10.1.0.13" {
			t.Fatal("no flow went to 10.1.0.13")
		}
		apply(cfgWith(b1, b2))
		if got := send(synFrame(c)); got == was || got == "" {
			t.Errorf("syn of a flow on the removed backend went to %q, want another backend", got)
		}
	})
	t.Run("syn to a backend that takes no new flows opens a new flow", func(t *testing.T) {
		// A failed health check (or a drain) sets the weight to 0: the
		// backend's established flows continue, but a SYN reusing a
		// tracked tuple (a refused DSR connection never closes its
		// entry) goes to a backend that takes new flows.
		apply(cfgWith(b1, b2, b3))
		var c netip.AddrPort
		var was string
		for i := range 100 {
			c = netip.AddrPortFrom(client4.Addr(), uint16(6000+i))
			if was = send(synFrame(c)); was == "10.1.0.13" {
				break
			}
		}
		if was != "10.1.0.13" {
			t.Fatal("no flow went to 10.1.0.13")
		}
		est := netip.AddrPortFrom(client4.Addr(), 6500)
		for i := 0; send(synFrame(est)) != "10.1.0.13"; i++ {
			if est = netip.AddrPortFrom(client4.Addr(), uint16(6501+i)); i == 100 {
				t.Fatal("no second flow went to 10.1.0.13")
			}
		}
		send(ackFrame(est))
		apply(cfgWith(b1, b2, withWeight(b3, 0)))
		if got := send(ackFrame(est)); got != "10.1.0.13" {
			t.Errorf("ack of an established flow on the weight-0 backend went to %q, want 10.1.0.13", got)
		}
		if got := send(synFrame(c)); got == was || got == "" {
			t.Errorf("syn reusing a tuple of the weight-0 backend went to %q, want another backend", got)
		}
		apply(cfgWith(b1, b2, b3))
		c2 := netip.AddrPortFrom(client4.Addr(), 6600)
		for i := 0; send(synFrame(c2)) != "10.1.0.13"; i++ {
			if c2 = netip.AddrPortFrom(client4.Addr(), uint16(6601+i)); i == 100 {
				t.Fatal("10.1.0.13 takes no new flows after its weight came back")
			}
		}
		if got := send(synFrame(c2)); got != "10.1.0.13" {
			t.Errorf("retransmitted syn to the restored backend went to %q, want 10.1.0.13", got)
		}
	})
	t.Run("expired entries are gone", func(t *testing.T) {
		cur, next := cfgWith(b1, b2), cfgWith(b1, b2, b3)
		apply(cur)
		tcp, was, will := clientMoving(cur, next)
		send(synFrame(tcp))
		if got := send(ackFrame(tcp)); got != was {
			t.Fatalf("ack of a fresh flow went to %q, want %q", got, was)
		}
		udp := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: tcp, dst: netip.AddrPortFrom(vip.Addr(), 53), proto: "udp"}
		send(udp.frame(t))
		apply(next)
		age(t, d, flowTuple{tcp, vip, protoTCP}, 901)
		age(t, d, flowTuple{tcp, udp.dst, protoUDP}, 301)
		// A DSR segment that misses goes by the table (as a flow moved
		// from another node would), no longer by the expired entry.
		if got := send(ackFrame(tcp)); got != will {
			t.Errorf("ack of an expired flow went to %q, want %q (the table's)", got, will)
		}
		before, _ := d.Stats()
		send(udp.frame(t))
		after, _ := d.Stats()
		if n := newFlows(after, 53) - newFlows(before, 53); n != 1 {
			t.Errorf("udp packet of an expired flow: %d new flows, want 1", n)
		}
	})
}

func withWeight(b Backend, w uint32) Backend {
	b.Weight = w
	return b
}

func newFlows(st Stats, port uint16) uint64 {
	for _, s := range st.Services {
		if s.Port == port {
			return s.NewFlows
		}
	}
	return 0
}

// age makes the flow's conntrack (or ct_new) entry last seen secs ago.
func age(t *testing.T, d *Dataplane, f flowTuple, secs uint32) {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatalf("clock: %v", err)
	}
	// Established flows are in conntrack, new ones (one packet) in ct_new.
	for _, m := range []*ebpf.Map{d.objs.Conntrack, d.objs.CtNew} {
		var ct lbCtValue
		if m.Lookup(f.key(), &ct) != nil {
			continue
		}
		ct.LastSeen = uint32(ts.Sec) - secs
		if err := m.Put(f.key(), ct); err != nil {
			t.Fatalf("update %v: %v", f, err)
		}
		return
	}
	t.Fatalf("%v is in no connection table", f)
}
