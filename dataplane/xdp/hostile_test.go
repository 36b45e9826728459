package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
)

// TestHostileFrames runs what a router would refuse, and what the
// receiving host would discard, through the program: each row's action,
// the drop reason counted, and that no flow was opened, established or
// closed by it. Forwarded rows (the controls) are byte-compared with
// independently computed checksums by runFixtures' rules.
func TestHostileFrames(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}

	// An established FullNAT flow, and a DSR one, the forged segments aim at.
	est4 := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.70:7000"),
		dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true}
	est6 := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("[2001:db8:c::70]:7000"),
		dst: netip.MustParseAddrPort("[2001:db8::2]:80"), proto: "tcp", syn: true}
	for _, p := range []packet{est4, est6} {
		for _, f := range []packet{p, p.with(func(q *packet) { q.syn, q.ack = false, true })} {
			if act, _ := r.run(t, f.frame(t)); act != xdpTX {
				t.Fatalf("establishing %v: %s", p.src, actionNames[act])
			}
		}
	}
	seg := func(p packet, f func(*packet)) packet {
		return p.with(func(q *packet) { q.syn, q.ack = false, true; q.payload = "x"; f(q) })
	}
	newSyn := func(src string) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort(src),
			dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true}
	}
	newSyn6 := func(src string) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort(src),
			dst: netip.MustParseAddrPort("[2001:db8::1]:80"), proto: "tcp", syn: true}
	}
	udp6 := func(vip string) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("[2001:db8:c::71]:5353"),
			dst: netip.AddrPortFrom(ip(vip), 53), proto: "udp", payload: "q"}
	}
	// badL4 breaks a TCP segment's checksum, badIP an IPv4 header's.
	badL4 := func(p packet) []byte { b := p.frame(t); b[l4Offset(b)+16] ^= 0xff; return b }
	badIP := func(p packet) []byte { b := p.frame(t); b[14+10] ^= 0x55; return b }
	withMAC := func(p packet, m string) packet { return p.with(func(q *packet) { q.dstMAC = mac(m) }) }
	opt := func(p packet, o ...layers.IPv4Option) packet { return p.with(func(q *packet) { q.ipOptions = o }) }
	route := func(t uint8) layers.IPv4Option {
		return layers.IPv4Option{OptionType: t, OptionLength: 7, OptionData: []byte{4, 10, 1, 0, 11}}
	}
	rr := layers.IPv4Option{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}
	ts := layers.IPv4Option{OptionType: 68, OptionLength: 8, OptionData: []byte{5, 0, 0, 0, 0, 0}}
	end := layers.IPv4Option{OptionType: 0}
	// An ICMP error about est4's reply whose quoted ports lie beyond the
	// outer datagram's total length, in what would be Ethernet padding.
	answer := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: est4.dst, dst: est4.src, proto: "tcp", ack: true}
	shortQuote := func() []byte {
		b := icmpError(t, gwMAC, nodeMAC, ip("198.51.100.1"), est4.dst.Addr(), 60, quote(t, answer))
		binary.BigEndian.PutUint16(b[14+2:], uint16(len(b)-14-8)) // cut the quoted L4 header off
		return fixIPv4Csum(b)
	}

	type row struct {
		name   string
		frame  []byte
		action uint32
		reason func(Drops) uint64 // the counter the drop is counted in
		want   []byte             // the forwarded frame, for controls
	}
	fwd := func(p packet) []byte { return forwardedPkt(t, cfg, p).frame(t) }
	rows := []row{
		// 1. Forged segments on established flows; SYNs that would open one.
		{name: "rst with bad tcp checksum", frame: badL4(seg(est4, func(q *packet) { q.rst = true })), action: xdpDrop, reason: func(d Drops) uint64 { return d.L4Checksum }},
		{name: "fin with bad tcp checksum", frame: badL4(seg(est4, func(q *packet) { q.fin = true })), action: xdpDrop, reason: func(d Drops) uint64 { return d.L4Checksum }},
		{name: "dsr v6 rst with bad tcp checksum", frame: badL4(seg(est6, func(q *packet) { q.rst = true })), action: xdpDrop, reason: func(d Drops) uint64 { return d.L4Checksum }},
		{name: "rst with bad ipv4 header checksum", frame: badIP(seg(est4, func(q *packet) { q.rst = true })), action: xdpDrop, reason: func(d Drops) uint64 { return d.IPChecksum }},
		{name: "tcp data offset 15 beyond the segment", frame: setByte(seg(est4, func(q *packet) { q.rst = true }).frame(t), 14+20+12, 0xf0), action: xdpDrop, reason: func(d Drops) uint64 { return d.Malformed }},
		{name: "syn with bad ipv4 header checksum", frame: badIP(newSyn("198.51.100.71:1")), action: xdpDrop, reason: func(d Drops) uint64 { return d.IPChecksum }},
		{name: "syn with bad tcp checksum", frame: badL4(newSyn("198.51.100.71:2")), action: xdpDrop, reason: func(d Drops) uint64 { return d.L4Checksum }},
		{name: "syn+fin", frame: newSyn("198.51.100.71:3").with(func(q *packet) { q.fin = true }).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.TCPFlags }},
		{name: "syn+rst", frame: newSyn("198.51.100.71:4").with(func(q *packet) { q.rst = true }).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.TCPFlags }},
		{name: "fin without ack on an established flow", frame: seg(est4, func(q *packet) { q.ack, q.fin = false, true }).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.TCPFlags }},
		{name: "null flags on an established flow", frame: seg(est4, func(q *packet) { q.ack = false }).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.TCPFlags }},
		// 2. Frames not addressed to this host.
		{name: "broadcast frame to a vip", frame: withMAC(newSyn("198.51.100.72:1"), "ff:ff:ff:ff:ff:ff").frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.EthDst }},
		{name: "multicast frame to a vip", frame: withMAC(newSyn("198.51.100.72:2"), "01:00:5e:00:00:01").frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.EthDst }},
		{name: "another host's frame to a vip", frame: withMAC(seg(est4, func(*packet) {}), "02:00:00:00:00:99").frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.EthDst }},
		{name: "another host's frame to another address passes", frame: withMAC(newSyn("198.51.100.72:3").with(func(q *packet) { q.dst = netip.MustParseAddrPort("203.0.113.9:80") }), "02:00:00:00:00:99").frame(t), action: xdpPass},
		// 3. An ICMP error whose quote ends before the ports.
		{name: "icmp quote beyond the ip total length passes", frame: shortQuote(), action: xdpPass},
		// 4. IPv4 options.
		{name: "loose source route", frame: opt(newSyn("198.51.100.73:1"), route(131), end).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.IPOptions }},
		{name: "strict source route", frame: opt(seg(est4, func(*packet) {}), route(137), end).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.IPOptions }},
		{name: "option length 1", frame: optBytes(t, newSyn("198.51.100.73:2"), []byte{7, 1, 0, 0}), action: xdpDrop, reason: func(d Drops) uint64 { return d.IPOptions }},
		{name: "option length past the header", frame: optBytes(t, newSyn("198.51.100.73:3"), []byte{1, 7, 9, 4}), action: xdpDrop, reason: func(d Drops) uint64 { return d.IPOptions }},
		{name: "record route forwarded", frame: opt(newSyn("198.51.100.73:4"), rr, end).frame(t), action: xdpTX, want: fwd(opt(newSyn("198.51.100.73:4"), rr, end))},
		{name: "timestamp forwarded", frame: opt(newSyn("198.51.100.73:5"), ts).frame(t), action: xdpTX, want: fwd(opt(newSyn("198.51.100.73:5"), ts))},
		// 5. IPv6 UDP without checksum, martians, UDP lengths.
		{name: "ipv6 udp checksum 0 fullnat", frame: udp6("2001:db8::1").with(func(q *packet) { q.zeroUDPCsum = true }).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.L4Checksum }},
		{name: "ipv6 udp checksum 0 dsr", frame: udp6("2001:db8::2").with(func(q *packet) { q.zeroUDPCsum = true }).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.L4Checksum }},
		{name: "udp length beyond the payload", frame: udpLen(t, 9), action: xdpDrop, reason: func(d Drops) uint64 { return d.Malformed }},
		{name: "udp length short of the payload", frame: udpLen(t, -2), action: xdpDrop, reason: func(d Drops) uint64 { return d.Malformed }},
	}
	for _, src := range []string{"0.0.0.1:1", "127.0.0.1:1", "224.0.0.1:1", "240.0.0.1:1", "255.255.255.255:1", "169.254.1.1:1", "10.0.0.1:1"} {
		rows = append(rows, row{name: "martian source " + src, frame: newSyn(src).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.Martian }})
	}
	for _, src := range []string{"[::]:1", "[::1]:1", "[ff02::1]:1", "[fe80::1]:1", "[::ffff:198.51.100.1]:1", "[fd00::1]:1"} {
		rows = append(rows, row{name: "martian source " + src, frame: newSyn6(src).frame(t), action: xdpDrop, reason: func(d Drops) uint64 { return d.Martian }})
	}

	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			before := flowState(t, d)
			dropsBefore := allDrops(t, d)
			orig := bytes.Clone(tc.frame)
			act, out := r.run(t, tc.frame)
			if act != tc.action {
				t.Fatalf("action = %s, want %s", actionNames[act], actionNames[tc.action])
			}
			checkOutput(t, act, out, orig, tc.want)
			switch act {
			case xdpTX:
				return // a control: it may open a flow
			case xdpDrop:
				if got := tc.reason(allDrops(t, d)) - tc.reason(dropsBefore); got != 1 {
					t.Errorf("the drop's reason counter grew by %d, want 1 (drops before %+v, after %+v)", got, dropsBefore, allDrops(t, d))
				}
			}
			if after := flowState(t, d); after != before {
				t.Errorf("flow state changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	// The control of the first rows: the same RST with a valid checksum
	// does close the flow.
	act, _ := r.run(t, seg(est4, func(q *packet) { q.rst = true }).frame(t))
	var ct lbCtValue
	if err := d.objs.Conntrack.Lookup(flowKey(est4.src, est4.dst, protoTCP), &ct); err != nil || act != xdpTX || ct.Flags&lbCtFlagsCT_CLOSING == 0 {
		t.Errorf("valid rst: action %s, entry %+v (%v), want XDP_TX and closing", actionNames[act], ct, err)
	}
}

// optBytes is p's IPv4 frame with raw option bytes (a multiple of 4) after
// the header, lengths and header checksum fixed.
func optBytes(t testing.TB, p packet, opts []byte) []byte {
	b := p.frame(t)
	out := append(bytes.Clone(b[:14+20]), opts...)
	out = append(out, b[14+20:]...)
	out[14] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(out[14+2:], uint16(len(out)-14))
	return fixIPv4Csum(out)
}

// udpLen is a UDP datagram to a VIP whose length field is off by delta
// from the payload it carries (checksum recomputed over what is there).
func udpLen(t testing.TB, delta int) []byte {
	p := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.74:5353"),
		dst: netip.MustParseAddrPort("192.0.2.1:53"), proto: "udp", payload: "query"}
	b := p.frame(t)
	off := l4Offset(b)
	binary.BigEndian.PutUint16(b[off+4:], uint16(len(b)-off+delta))
	b[off+6], b[off+7] = 0, 0 // no checksum: the length alone is wrong
	return b
}

// flowState summarises the connection and FullNAT reverse tables (keys
// and flags; times left out): what a forged segment must not change.
func flowState(t testing.TB, d *Dataplane) string {
	t.Helper()
	var sb strings.Builder
	var k lbFlowKey
	var ct lbCtValue
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &ct) {
		fmt.Fprintf(&sb, "ct %v:%d flags %d; ", k.Src, k.Sport, ct.Flags)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate conntrack: %v", err)
	}
	var nv lbNatValue
	it = d.objs.NatReverse.Iterate()
	for it.Next(&k, &nv) {
		fmt.Fprintf(&sb, "nat %v:%d flags %d; ", k.Dst, k.Dport, nv.Flags)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate nat_reverse: %v", err)
	}
	return sb.String()
}

// allDrops sums the drop counters of every service and the global ones.
func allDrops(t testing.TB, d *Dataplane) Drops {
	t.Helper()
	st, err := d.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	sum := st.Global.Drops
	for _, s := range st.Services {
		sum = addDrops(sum, s.Drops)
	}
	return sum
}

func addDrops(a, b Drops) Drops {
	return Drops{TTL: a.TTL + b.TTL, NoConn: a.NoConn + b.NoConn, NoBackend: a.NoBackend + b.NoBackend,
		NoNeighbor: a.NoNeighbor + b.NoNeighbor, NATPorts: a.NATPorts + b.NATPorts, Fragment: a.Fragment + b.Fragment,
		Malformed: a.Malformed + b.Malformed, EthDst: a.EthDst + b.EthDst, IPChecksum: a.IPChecksum + b.IPChecksum,
		IPOptions: a.IPOptions + b.IPOptions, Martian: a.Martian + b.Martian, L4Checksum: a.L4Checksum + b.L4Checksum,
		TCPFlags: a.TCPFlags + b.TCPFlags}
}

// TestNeighborChangeReachesFlows: a flow's entry caches its next hop's
// MAC; a changed neighbor or gateway MAC reaches the flows already
// established.
func TestNeighborChangeReachesFlows(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.80:8000"),
		dst: netip.MustParseAddrPort("192.0.2.2:80"), proto: "tcp", syn: true}
	ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
	if act, _ := r.run(t, syn.frame(t)); act != xdpTX {
		t.Fatalf("syn: %s", actionNames[act])
	}
	be := expect(t, cfg, findService(cfg, syn.dst, "tcp"), syn).backend.Addr()
	next := func() string {
		act, out := r.run(t, ack.frame(t))
		if act != xdpTX {
			t.Fatalf("ack: %s", actionNames[act])
		}
		return net.HardwareAddr(out[:6]).String()
	}
	if got := next(); got != backendMAC[be].String() {
		t.Fatalf("next hop %s, want %s", got, backendMAC[be])
	}
	moved := mac("02:00:00:00:0a:aa")
	cfg.Neighbors = maps.Clone(cfg.Neighbors)
	cfg.Neighbors[be] = moved
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := next(); got != moved.String() {
		t.Errorf("after the neighbor moved: next hop %s, want %s", got, moved)
	}
}
