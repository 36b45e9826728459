package xdp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// TestNATPortProbe: when two client flows derive the same FullNAT source
// (local address and port) towards the same backend, the second takes the
// next port while the first is live, or the same port once the first has
// expired; replies reach their own client.
func TestNATPortProbe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expire  bool // the first flow's reverse entry is aged past its lifetime
		refresh bool // then the first flow sends a packet
		offset  uint16
	}{
		{"live flow keeps its port", false, false, 1},
		{"expired flow's port is taken over", true, false, 0},
		{"a packet of the flow refreshes its port", true, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { testNATPort(t, tc.expire, tc.refresh, tc.offset) })
	}
}

func testNATPort(t *testing.T, expire, refresh bool, offset uint16) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	svc := findService(cfg, netip.MustParseAddrPort("192.0.2.1:80"), "tcp")
	syn := func(src netip.AddrPort) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: netip.AddrPortFrom(svc.VIP, svc.Port), proto: "tcp", syn: true}
	}
	// Find two clients with the same derived source and backend.
	seen := map[expectation]netip.AddrPort{}
	var first, second netip.AddrPort
	for i := 0; first == (netip.AddrPort{}); i++ {
		c := netip.AddrPortFrom(addN(ip("100.64.0.0"), uint32(i/50000)), uint16(1024+i%50000))
		e := expect(t, cfg, svc, syn(c))
		if prev, ok := seen[e]; ok && e.local.Port() < natPortMin+natPortRange-1 {
			first, second = prev, c
		}
		seen[e] = c
	}
	e := expect(t, cfg, svc, syn(first))
	sources := map[netip.AddrPort]netip.AddrPort{}
	for _, c := range []netip.AddrPort{first, second} {
		act, out := r.run(t, syn(c).frame(t))
		if act != xdpTX {
			t.Fatalf("syn from %v: action %s", c, actionNames[act])
		}
		src, dst := tuple(out)
		if dst != e.backend {
			t.Fatalf("syn from %v went to %v, want %v", c, dst, e.backend)
		}
		sources[c] = src
		if expire && c == first {
			ageNAT(t, d, flowTuple{e.backend, src, protoTCP}, 31)
		}
		if refresh && c == first {
			ack := syn(first).with(func(q *packet) { q.syn, q.ack = false, true })
			if act, _ := r.run(t, ack.frame(t)); act != xdpTX {
				t.Fatalf("ack of the first flow: action %s", actionNames[act])
			}
		}
	}
	if sources[first] != e.local {
		t.Errorf("first flow's source = %v, want %v", sources[first], e.local)
	}
	if want := netip.AddrPortFrom(e.local.Addr(), e.local.Port()+offset); sources[second] != want {
		t.Errorf("colliding flow's source = %v, want %v", sources[second], want)
	}
	if offset == 0 {
		// The port now belongs to the second flow.
		reply := packet{srcMAC: backendMAC[e.backend.Addr()], dstMAC: nodeMAC, src: e.backend, dst: e.local, proto: "tcp", syn: true, ack: true}
		act, out := r.run(t, reply.frame(t))
		if act != xdpTX {
			t.Fatalf("reply: action %s", actionNames[act])
		}
		if _, dst := tuple(out); dst != second {
			t.Errorf("reply to the taken-over port went to %v, want %v", dst, second)
		}
		return
	}
	for _, c := range []netip.AddrPort{first, second} {
		reply := packet{srcMAC: backendMAC[e.backend.Addr()], dstMAC: nodeMAC, src: e.backend, dst: sources[c], proto: "tcp", syn: true, ack: true}
		act, out := r.run(t, reply.frame(t))
		if act != xdpTX {
			t.Fatalf("reply to %v: action %s", c, actionNames[act])
		}
		if _, dst := tuple(out); dst != c {
			t.Errorf("reply for client %v went to %v", c, dst)
		}
	}
}

// ageNAT makes a reverse entry (nat_reverse or nat_new) last seen secs
// ago.
func ageNAT(t *testing.T, d *Dataplane, f flowTuple, secs uint32) {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatalf("clock: %v", err)
	}
	for _, m := range []*ebpf.Map{d.objs.NatReverse, d.objs.NatNew} {
		var nv lbNatValue
		if m.Lookup(f.key(), &nv) != nil {
			continue
		}
		nv.LastSeen = uint32(ts.Sec) - secs
		if err := m.Put(f.key(), nv); err != nil {
			t.Fatalf("update %v: %v", f, err)
		}
		return
	}
	t.Fatalf("%v is in no reverse table", f)
}

// tuple returns the source and destination of an IPv4 TCP frame.
func tuple(frame []byte) (src, dst netip.AddrPort) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ip4 := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	s, _ := netip.AddrFromSlice(ip4.SrcIP)
	d, _ := netip.AddrFromSlice(ip4.DstIP)
	return netip.AddrPortFrom(s.Unmap(), uint16(tcp.SrcPort)), netip.AddrPortFrom(d.Unmap(), uint16(tcp.DstPort))
}
