package xdp

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/maglev"
)

// The test network: a client behind the gateway, the node, backends on link.
var (
	nodeMAC    = mac("02:00:00:00:00:01")
	gwMAC      = mac("02:00:00:00:00:fe")
	clientMAC  = mac("02:00:00:00:00:c1") // an on-link client (neighbor)
	backendMAC = map[netip.Addr]net.HardwareAddr{
		ip("10.1.0.11"):  mac("02:00:00:00:01:11"),
		ip("10.1.0.12"):  mac("02:00:00:00:01:12"),
		ip("10.1.0.13"):  mac("02:00:00:00:01:13"),
		ip("fd00:1::11"): mac("02:00:00:00:06:11"),
		ip("fd00:1::12"): mac("02:00:00:00:06:12"),
	}
	local4 = ip("10.0.0.100")
	local6 = ip("fd00::100")
	// The node's own interface addresses.
	nodeAddr4 = ip("10.0.0.1")
	nodeAddr6 = ip("fd00::1")

	client4 = netip.MustParseAddrPort("198.51.100.7:40000")
	client6 = netip.MustParseAddrPort("[2001:db8:c::7]:40000")
	onlink4 = netip.MustParseAddrPort("10.0.0.50:40001") // client with a neighbor entry
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func be(addr string, port uint16, w uint32) Backend {
	return Backend{Addr: ip(addr), Port: port, Weight: w}
}

// testConfig has every mode x family x protocol, plus special services.
func testConfig() Config {
	b4 := []Backend{be("10.1.0.11", 8080, 1), be("10.1.0.12", 8080, 1)}
	b6 := []Backend{be("fd00:1::11", 8080, 1), be("fd00:1::12", 8080, 1)}
	neigh := map[netip.Addr]net.HardwareAddr{onlink4.Addr(): clientMAC}
	for a, m := range backendMAC {
		neigh[a] = m
	}
	return Config{
		Services: []Service{
			{VIP: ip("192.0.2.1"), Port: 80, Proto: "tcp", Mode: "fullnat", Backends: b4},
			{VIP: ip("192.0.2.1"), Port: 53, Proto: "udp", Mode: "fullnat", Backends: b4},
			{VIP: ip("192.0.2.2"), Port: 80, Proto: "tcp", Mode: "dsr", Backends: b4},
			{VIP: ip("192.0.2.2"), Port: 53, Proto: "udp", Mode: "dsr", Backends: b4},
			{VIP: ip("2001:db8::1"), Port: 80, Proto: "tcp", Mode: "fullnat", Backends: b6},
			{VIP: ip("2001:db8::1"), Port: 53, Proto: "udp", Mode: "fullnat", Backends: b6},
			{VIP: ip("2001:db8::2"), Port: 80, Proto: "tcp", Mode: "dsr", Backends: b6},
			{VIP: ip("2001:db8::2"), Port: 53, Proto: "udp", Mode: "dsr", Backends: b6},
			{VIP: ip("192.0.2.3"), Port: 80, Proto: "tcp", Mode: "fullnat", Scheduler: "source-hash", Backends: b4},
			{VIP: ip("192.0.2.4"), Port: 80, Proto: "tcp", Mode: "fullnat", Backends: []Backend{be("10.1.0.11", 8080, 0)}},
			{VIP: ip("192.0.2.5"), Port: 80, Proto: "tcp", Mode: "dsr", Backends: []Backend{be("10.1.0.99", 0, 1)}},
		},
		LocalAddrs: []netip.Addr{local4, local6},
		Neighbors:  neigh,
		Gateway:    gwMAC,
	}
}

const testTableSize = 1009

// expect computes what the program should do with a new flow of p to svc:
// the backend (as Go picks it from the same Maglev table) and, for
// FullNAT, the local address and port.
type expectation struct {
	backend netip.AddrPort
	local   netip.AddrPort
}

func expect(t testing.TB, cfg Config, svc Service, p packet) expectation {
	t.Helper()
	mbs := make([]maglev.Backend, len(svc.Backends))
	for i, b := range svc.Backends {
		mbs[i] = maglev.Backend{ID: b.ID(), Weight: b.Weight}
	}
	tbl, err := maglev.Build(mbs, testTableSize)
	if err != nil {
		t.Fatal(err)
	}
	proto := uint8(protoTCP)
	if p.proto == "udp" {
		proto = protoUDP
	}
	h := dataplane.FlowHash(p.src, p.dst, proto)
	sh := h
	if svc.Scheduler == SchedulerSourceHash {
		sh = dataplane.SourceHash(p.src.Addr())
	}
	mb, ok := tbl.Lookup(uint64(sh))
	if !ok {
		t.Fatalf("no backend for %v", p.src)
	}
	var e expectation
	e.backend = netip.MustParseAddrPort(mb.ID)
	if svc.Mode == ModeDSR {
		return e
	}
	var locals []netip.Addr
	for _, a := range cfg.LocalAddrs {
		if a.Is4() == p.dst.Addr().Is4() {
			locals = append(locals, a)
		}
	}
	port := natPortMin + natHash(h)%natPortRange
	e.local = netip.AddrPortFrom(locals[h%uint32(len(locals))], uint16(port))
	return e
}

// The FullNAT port range, NAT_PORT_MIN and NAT_PORT_MAX of ../bpf/consts.h.
const (
	natPortMin   = 1024
	natPortRange = 32767 - natPortMin + 1
)

// natHash mirrors nat_hash (../bpf/hash.h): the FullNAT port choice
// derived from a flow hash.
func natHash(flow uint32) uint32 {
	h := flow ^ 0x6e617470 // NAT_HASH_SEED
	h ^= 4
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

func findService(cfg Config, dst netip.AddrPort, proto string) Service {
	for _, s := range cfg.Services {
		if s.VIP == dst.Addr() && s.Port == dst.Port() && s.Proto == proto {
			return s
		}
	}
	panic("no service " + dst.String())
}

type fixture struct {
	name   string
	in     packet
	raw    []byte // used instead of in when set
	action uint32
	want   packet // the output for XDP_TX
	// wantRaw, when set, is the output instead of want.
	wantRaw []byte
}

func TestFixtures(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}

	base := func(src netip.AddrPort, vip string, port uint16, proto string) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: netip.AddrPortFrom(ip(vip), port),
			proto: proto, syn: proto == "tcp", payload: "hello"}
	}
	forwarded := func(p packet) packet { return forwardedPkt(t, cfg, p) }
	// reply is the backend's answer to forwarded FullNAT packet f, and
	// replied what the program makes of it for the original p.
	reply := func(f packet) packet {
		return f.with(func(q *packet) {
			q.srcMAC, q.dstMAC = f.dstMAC, nodeMAC
			q.src, q.dst = f.dst, f.src
			q.ttl = 64
			q.ack = f.proto == "tcp"
			q.payload = "world"
		})
	}
	replied := func(p packet, nextHop net.HardwareAddr) packet {
		return p.with(func(q *packet) {
			q.srcMAC, q.dstMAC = nodeMAC, nextHop
			q.src, q.dst = p.dst, p.src
			q.ttl = 63
			q.ack = p.proto == "tcp"
			q.payload = "world"
		})
	}
	ackOf := func(p packet) packet {
		return p.with(func(q *packet) { q.syn, q.ack, q.payload = false, true, "data" })
	}

	var rows []fixture
	// Each mode x family x protocol: first packet, table hit, and for
	// FullNAT the reply.
	for _, c := range []struct {
		name   string
		client netip.AddrPort
		vip    string
	}{
		{"fullnat v4", client4, "192.0.2.1"},
		{"dsr v4", client4, "192.0.2.2"},
		{"fullnat v6", client6, "2001:db8::1"},
		{"dsr v6", client6, "2001:db8::2"},
	} {
		for _, proto := range []string{"tcp", "udp"} {
			port := uint16(80)
			if proto == "udp" {
				port = 53
			}
			first := base(c.client, c.vip, port, proto)
			next := first.with(func(q *packet) { q.payload = "more" })
			if proto == "tcp" {
				next = ackOf(first)
			}
			rows = append(rows,
				fixture{name: c.name + " " + proto + " first packet", in: first, action: xdpTX, want: forwarded(first)},
				fixture{name: c.name + " " + proto + " table hit", in: next, action: xdpTX, want: forwarded(next)},
			)
			if findService(cfg, first.dst, proto).Mode == ModeFullNAT {
				rows = append(rows, fixture{name: c.name + " " + proto + " reply", in: reply(forwarded(first)),
					action: xdpTX, want: replied(first, gwMAC)})
			}
		}
	}

	v4syn := base(client4, "192.0.2.1", 80, "tcp")
	other := func(f func(*packet)) packet { return v4syn.with(f) }
	rows = append(rows,
		fixture{name: "reply of an unknown flow passes",
			in: reply(forwarded(base(onlink4, "192.0.2.1", 80, "tcp"))), action: xdpPass},
		fixture{name: "on-link client first packet", in: base(onlink4, "192.0.2.1", 80, "tcp"),
			action: xdpTX, want: forwarded(base(onlink4, "192.0.2.1", 80, "tcp"))},
		fixture{name: "fullnat reply to on-link client after its flow",
			in: reply(forwarded(base(onlink4, "192.0.2.1", 80, "tcp"))), action: xdpTX,
			want: replied(base(onlink4, "192.0.2.1", 80, "tcp"), clientMAC)},
		fixture{name: "tcp non-syn miss dropped", in: ackOf(base(netip.MustParseAddrPort("198.51.100.8:1234"), "192.0.2.1", 80, "tcp")), action: xdpDrop},
		fixture{name: "tcp syn-ack miss dropped", in: base(netip.MustParseAddrPort("198.51.100.8:1235"), "192.0.2.1", 80, "tcp").with(func(q *packet) { q.ack = true }), action: xdpDrop},
		// A flow ECMP moved from another node: DSR forwards it by the Maglev table.
		fixture{name: "dsr v6 tcp non-syn miss forwarded", in: ackOf(base(netip.MustParseAddrPort("[2001:db8:c::8]:1"), "2001:db8::2", 80, "tcp")),
			action: xdpTX, want: forwarded(ackOf(base(netip.MustParseAddrPort("[2001:db8:c::8]:1"), "2001:db8::2", 80, "tcp")))},
		fixture{name: "dsr v4 tcp non-syn miss forwarded", in: ackOf(base(netip.MustParseAddrPort("198.51.100.8:1236"), "192.0.2.2", 80, "tcp")),
			action: xdpTX, want: forwarded(ackOf(base(netip.MustParseAddrPort("198.51.100.8:1236"), "192.0.2.2", 80, "tcp")))},
		fixture{name: "vip on another port passes", in: other(func(q *packet) { q.dst = netip.MustParseAddrPort("192.0.2.1:443") }), action: xdpPass},
		fixture{name: "vip port with other protocol passes", in: other(func(q *packet) { q.dst = netip.MustParseAddrPort("192.0.2.1:80"); q.proto = "udp"; q.syn = false }), action: xdpPass},
		fixture{name: "other address passes", in: other(func(q *packet) { q.dst = netip.MustParseAddrPort("203.0.113.9:80") }), action: xdpPass},
		fixture{name: "other v6 address passes", in: base(client6, "2001:db8::99", 80, "tcp"), action: xdpPass},
		fixture{name: "icmp echo to vip passes", in: other(func(q *packet) { q.proto = "icmp" }), action: xdpPass},
		fixture{name: "icmpv6 echo to vip passes", in: base(client6, "2001:db8::1", 0, "icmp"), action: xdpPass},
		fixture{name: "arp passes", raw: arpFrame(), action: xdpPass},
		fixture{name: "ipv4 options fullnat", in: other(func(q *packet) { q.ipOptions = nops; q.src = netip.MustParseAddrPort("198.51.100.9:5000") }),
			action: xdpTX, want: forwarded(other(func(q *packet) { q.ipOptions = nops; q.src = netip.MustParseAddrPort("198.51.100.9:5000") }))},
		fixture{name: "ipv4 options dsr", in: base(client4, "192.0.2.2", 80, "tcp").with(func(q *packet) { q.ipOptions = nops; q.src = netip.MustParseAddrPort("198.51.100.9:5001") }),
			action: xdpTX, want: forwarded(base(client4, "192.0.2.2", 80, "tcp").with(func(q *packet) { q.ipOptions = nops; q.src = netip.MustParseAddrPort("198.51.100.9:5001") }))},
		fixture{name: "802.1Q fullnat", in: other(func(q *packet) { q.vlans = []uint16{10}; q.src = netip.MustParseAddrPort("198.51.100.10:5000") }),
			action: xdpTX, want: forwarded(other(func(q *packet) { q.vlans = []uint16{10}; q.src = netip.MustParseAddrPort("198.51.100.10:5000") }))},
		fixture{name: "QinQ dsr v6", in: base(client6, "2001:db8::2", 53, "udp").with(func(q *packet) { q.vlans = []uint16{100, 10} }),
			action: xdpTX, want: forwarded(base(client6, "2001:db8::2", 53, "udp").with(func(q *packet) { q.vlans = []uint16{100, 10} }))},
		fixture{name: "udp without checksum fullnat", in: base(client4, "192.0.2.1", 53, "udp").with(func(q *packet) { q.zeroUDPCsum = true; q.src = netip.MustParseAddrPort("198.51.100.11:53") }),
			action: xdpTX, want: forwarded(base(client4, "192.0.2.1", 53, "udp").with(func(q *packet) { q.zeroUDPCsum = true; q.src = netip.MustParseAddrPort("198.51.100.11:53") }))},
		fixture{name: "source-hash: first flow", in: base(netip.MustParseAddrPort("198.51.100.20:1000"), "192.0.2.3", 80, "tcp"),
			action: xdpTX, want: forwarded(base(netip.MustParseAddrPort("198.51.100.20:1000"), "192.0.2.3", 80, "tcp"))},
		fixture{name: "source-hash: second flow of the client", in: base(netip.MustParseAddrPort("198.51.100.20:1001"), "192.0.2.3", 80, "tcp"),
			action: xdpTX, want: forwarded(base(netip.MustParseAddrPort("198.51.100.20:1001"), "192.0.2.3", 80, "tcp"))},
		fixture{name: "ttl 1 dropped", in: other(func(q *packet) { q.ttl = 1 }), action: xdpDrop},
		fixture{name: "hop limit 1 dropped", in: base(client6, "2001:db8::2", 80, "tcp").with(func(q *packet) { q.ttl = 1 }), action: xdpDrop},
		fixture{name: "ttl 1 to other address passes", in: other(func(q *packet) { q.ttl = 1; q.dst = netip.MustParseAddrPort("203.0.113.9:80") }), action: xdpPass},
		fixture{name: "ttl 2 forwarded with ttl 1", in: other(func(q *packet) { q.ttl = 2; q.src = netip.MustParseAddrPort("198.51.100.12:5000") }),
			action: xdpTX, want: forwarded(other(func(q *packet) { q.ttl = 2; q.src = netip.MustParseAddrPort("198.51.100.12:5000") })).with(func(q *packet) { q.ttl = 1 })},
		fixture{name: "reply with ttl 1 dropped", in: reply(forwarded(v4syn)).with(func(q *packet) { q.ttl = 1 }), action: xdpDrop},
		fixture{name: "service without backend drops", in: base(client4, "192.0.2.4", 80, "tcp"), action: xdpDrop},
		fixture{name: "dsr backend without neighbor drops", in: base(client4, "192.0.2.5", 80, "tcp"), action: xdpDrop},
		fixture{name: "ipv4 first fragment to vip dropped", in: other(func(q *packet) { q.mf = true }), action: xdpDrop},
		fixture{name: "ipv4 later fragment to vip dropped", in: other(func(q *packet) { q.fragOffset = 100 }), action: xdpDrop},
		fixture{name: "ipv4 fragment to other address passes", in: other(func(q *packet) { q.mf = true; q.dst = netip.MustParseAddrPort("203.0.113.9:80") }), action: xdpPass},
		fixture{name: "ipv6 fragment to vip dropped", raw: v6Fragment(t, base(client6, "2001:db8::1", 53, "udp")), action: xdpDrop},
		fixture{name: "ipv6 fragment to other address passes", raw: v6Fragment(t, base(client6, "2001:db8::99", 53, "udp")), action: xdpPass},
		fixture{name: "truncated ipv4 header passes", raw: v4syn.frame(t)[:14+12], action: xdpPass},
		fixture{name: "truncated ipv6 header passes", raw: base(client6, "2001:db8::1", 80, "tcp").frame(t)[:14+30], action: xdpPass},
		fixture{name: "truncated vlan tag passes", raw: other(func(q *packet) { q.vlans = []uint16{10} }).frame(t)[:16], action: xdpPass},
		fixture{name: "ipv4 total length beyond frame to vip dropped", raw: setU16(v4syn.frame(t), 14+2, 1000), action: xdpDrop},
		fixture{name: "tcp header beyond ipv4 total length to vip dropped", raw: fixIPv4Csum(setU16(v4syn.frame(t), 14+2, 24)), action: xdpDrop},
		fixture{name: "tcp header truncated to vip dropped", raw: truncateIP(t, v4syn, 10), action: xdpDrop},
		fixture{name: "tcp header truncated to other address passes", raw: truncateIP(t, other(func(q *packet) { q.dst = netip.MustParseAddrPort("203.0.113.9:80") }), 10), action: xdpPass},
		fixture{name: "udp header truncated to v6 vip dropped", raw: truncateIP(t, base(client6, "2001:db8::1", 53, "udp"), 4), action: xdpDrop},
		fixture{name: "ipv4 ihl below 5 passes", raw: setByte(v4syn.frame(t), 14, 0x44), action: xdpPass},
		fixture{name: "ipv4 version 6 in ipv4 ethertype passes", raw: setByte(v4syn.frame(t), 14, 0x65), action: xdpPass},
		fixture{name: "tcp data offset below 5 to vip dropped", raw: setByte(v4syn.frame(t), 14+20+12, 0x40), action: xdpDrop},
		fixture{name: "ipv6 no-next-header to vip passes", raw: setByte(base(client6, "2001:db8::1", 80, "tcp").frame(t), 14+6, 59), action: xdpPass},
	)

	runFixtures(t, r, rows)
	if len(rows) < 40 {
		t.Errorf("%d fixture rows, want at least 40", len(rows))
	}
}

// runFixtures runs each row through the program: its action, and the
// frame it sends (with valid checksums) or passes unchanged.
func runFixtures(t *testing.T, r runner, rows []fixture) {
	t.Helper()
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.raw
			if in == nil {
				in = tc.in.frame(t)
			}
			orig := bytes.Clone(in)
			got, out := r.run(t, in)
			if got != tc.action {
				t.Fatalf("action = %s, want %s", actionNames[got], actionNames[tc.action])
			}
			want := tc.wantRaw
			if want == nil && got == xdpTX {
				want = tc.want.frame(t)
			}
			checkOutput(t, got, out, orig, want)
		})
	}
}

// checkOutput checks what a run made of frame orig: a sent frame (XDP_TX)
// is want, with valid checksums; a passed one is unchanged.
func checkOutput(t *testing.T, act uint32, out, orig, want []byte) {
	t.Helper()
	switch act {
	case xdpTX:
		if !bytes.Equal(out, want) {
			t.Fatalf("output frame differs:\n%s", frameDiff(out, want))
		}
		if err := checksumsValid(out); err != nil {
			t.Errorf("output checksums: %v", err)
		}
	case xdpPass:
		if !bytes.Equal(out, orig) {
			t.Fatalf("passed frame was changed:\n%s", frameDiff(out, orig))
		}
	}
}

// forwardedPkt is what a new or tracked flow's packet p becomes.
func forwardedPkt(t testing.TB, cfg Config, p packet) packet {
	svc := findService(cfg, p.dst, p.proto)
	e := expect(t, cfg, svc, p)
	return p.with(func(q *packet) {
		q.srcMAC, q.dstMAC = nodeMAC, backendMAC[e.backend.Addr()]
		q.ttl = 63
		if svc.Mode == ModeFullNAT {
			q.src, q.dst = e.local, e.backend
		}
	})
}

func arpFrame() []byte {
	b := make([]byte, 60)
	copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:], gwMAC)
	b[12], b[13] = 0x08, 0x06
	return b
}

func setU16(b []byte, off int, v uint16) []byte {
	b[off], b[off+1] = byte(v>>8), byte(v)
	return b
}

func setByte(b []byte, off int, v byte) []byte {
	b[off] = v
	return b
}

// fixIPv4Csum recomputes the IPv4 header checksum of an untagged frame.
func fixIPv4Csum(b []byte) []byte {
	hl := int(b[14]&0x0f) * 4
	b[14+10], b[14+11] = 0, 0
	s := ^csum(b[14 : 14+hl])
	b[14+10], b[14+11] = byte(s>>8), byte(s)
	return b
}

// truncateIP cuts p's frame to keep n bytes of L4 header, with IP lengths
// (and the IPv4 checksum) consistent with the cut.
func truncateIP(t testing.TB, p packet, n int) []byte {
	b := p.frame(t)
	off := l4Offset(b)
	b = b[:off+n]
	if p.dst.Addr().Is6() {
		return setU16(b, 14+4, uint16(n))
	}
	return fixIPv4Csum(setU16(b, 14+2, uint16(off+n-14)))
}

// v6Fragment returns p's frame with a fragment header (first fragment,
// more to come) between the IPv6 and L4 headers.
func v6Fragment(t testing.TB, p packet) []byte {
	b := p.frame(t)
	l4 := bytes.Clone(b[14+40:])
	next := b[14+6]
	frag := []byte{next, 0, 0, 1, 0, 0, 0, 42} // offset 0, M=1, id 42
	out := append(bytes.Clone(b[:14+40]), frag...)
	out = append(out, l4...)
	out[14+6] = 44
	pl := int(b[14+4])<<8 | int(b[14+5])
	return setU16(out, 14+4, uint16(pl+8))
}
