package xdp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

var (
	quicVIP4  = ip("192.0.2.10")   // an https listener's VIP with http3
	quicVIP6  = ip("2001:db8::10") // the same, IPv6
	peer2MAC  = mac("02:00:00:00:00:03")
	selfQUIC  = uint16(101) // this node's server id: never in quic_servers
	peerQUIC  = uint16(102) // peerMAC's
	peer2QUIC = uint16(103) // peer2MAC's
)

// quicRouting has http3 on port 443 of quicVIP4, quicVIP6 and 192.0.2.1
// (a VIP with L4 services too), and two other nodes' server ids.
func quicRouting() QUICRouting {
	return QUICRouting{
		Ports: []netip.AddrPort{netip.AddrPortFrom(quicVIP4, 443), netip.AddrPortFrom(quicVIP6, 443),
			netip.AddrPortFrom(ip("192.0.2.1"), 443)},
		Servers: map[uint16]net.HardwareAddr{peerQUIC: peerMAC, peer2QUIC: peer2MAC},
	}
}

// quicShort is a short-header QUIC packet whose destination connection ID
// has the layout of l7/quiccid.go with the given version bits and server
// id, followed by n bytes of packet number and ciphertext.
func quicShort(version byte, id uint16, n int) string {
	b := []byte{0x40 | 0x01, version<<6 | 0x15, 0, 0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5}
	binary.BigEndian.PutUint16(b[2:], id)
	for i := range n {
		b = append(b, byte(i))
	}
	return string(b)
}

// quicLong is a long-header (Initial) packet whose destination connection
// ID begins with bytes that would name id in a short header.
func quicLong(id uint16) string {
	b := []byte{0xc0, 0, 0, 0, 1, 8, 0x40, 0, 0, 1, 2, 3, 4, 5}
	binary.BigEndian.PutUint16(b[1:], id) // the version field
	binary.BigEndian.PutUint16(b[7:], id)
	return string(b) + string(make([]byte, 40))
}

func TestQUICRouting(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := d.SetQUICRouting(quicRouting()); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	dgram := func(vip netip.Addr, port uint16, payload string) packet {
		src := client4
		if vip.Is6() {
			src = client6
		}
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: netip.AddrPortFrom(vip, port), proto: "udp", payload: payload}
	}
	to := func(m net.HardwareAddr) func(packet) packet {
		return func(p packet) packet { return p.with(func(q *packet) { q.srcMAC, q.dstMAC = nodeMAC, m }) }
	}
	toPeer, toPeer2 := to(peerMAC), to(peer2MAC)
	short := dgram(quicVIP4, 443, quicShort(1, peerQUIC, 24))
	// A UDP length that leaves only 7 bytes of the connection ID, the rest
	// of the frame being padding.
	shortUDPLen := short.frame(t)
	off := l4Offset(shortUDPLen)
	binary.BigEndian.PutUint16(shortUDPLen[off+4:], 8+1+7)
	l4 := dgram(ip("192.0.2.1"), 53, quicShort(1, peerQUIC, 24))
	rows := []fixture{
		{name: "peer's id handed to it", in: short, action: xdpTX, want: toPeer(short)},
		{name: "other peer's id handed to it", in: dgram(quicVIP4, 443, quicShort(1, peer2QUIC, 24)), action: xdpTX,
			want: toPeer2(dgram(quicVIP4, 443, quicShort(1, peer2QUIC, 24)))},
		{name: "ipv6 peer's id handed to it", in: dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24)), action: xdpTX,
			want: toPeer(dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24)))},
		{name: "port of a VIP with L4 services handed", in: dgram(ip("192.0.2.1"), 443, quicShort(1, peerQUIC, 24)), action: xdpTX,
			want: toPeer(dgram(ip("192.0.2.1"), 443, quicShort(1, peerQUIC, 24)))},
		{name: "802.1Q tag kept", in: short.with(func(q *packet) { q.vlans = []uint16{10} }), action: xdpTX,
			want: toPeer(short.with(func(q *packet) { q.vlans = []uint16{10} }))},
		{name: "shortest connection ID handed", in: dgram(quicVIP4, 443, quicShort(1, peerQUIC, 0)), action: xdpTX,
			want: toPeer(dgram(quicVIP4, 443, quicShort(1, peerQUIC, 0)))},
		{name: "own id passes", in: dgram(quicVIP4, 443, quicShort(1, selfQUIC, 24)), action: xdpPass},
		{name: "unknown id passes", in: dgram(quicVIP4, 443, quicShort(1, 4242, 24)), action: xdpPass},
		{name: "ipv6 own id passes", in: dgram(quicVIP6, 443, quicShort(1, selfQUIC, 24)), action: xdpPass},
		{name: "long header passes", in: dgram(quicVIP4, 443, quicLong(peerQUIC)), action: xdpPass},
		{name: "version bits 00 pass", in: dgram(quicVIP4, 443, quicShort(0, peerQUIC, 24)), action: xdpPass},
		{name: "version bits 10 pass", in: dgram(quicVIP4, 443, quicShort(2, peerQUIC, 24)), action: xdpPass},
		{name: "version bits 11 pass", in: dgram(quicVIP6, 443, quicShort(3, peerQUIC, 24)), action: xdpPass},
		{name: "connection ID cut short passes", in: dgram(quicVIP4, 443, quicShort(1, peerQUIC, 0)[:8]), action: xdpPass},
		{name: "empty datagram passes", in: dgram(quicVIP4, 443, ""), action: xdpPass},
		{name: "udp length short of a connection ID passes", raw: shortUDPLen, action: xdpPass},
		{name: "other port of the VIP passes", in: dgram(quicVIP4, 444, quicShort(1, peerQUIC, 24)), action: xdpPass},
		{name: "tcp to the port passes", in: short.with(func(q *packet) { q.proto, q.ack = "tcp", true }), action: xdpPass},
		{name: "handed over already passes", in: short.with(func(q *packet) { q.srcMAC = peer2MAC }), action: xdpPass},
		{name: "frame for another host passes", in: short.with(func(q *packet) { q.dstMAC = peer2MAC }), action: xdpPass},
		{name: "fragment passes", in: short.with(func(q *packet) { q.mf = true }), action: xdpPass},
		{name: "l4 udp service forwards as before", in: l4, action: xdpTX, want: forwardedPkt(t, cfg, l4)},
	}
	runFixtures(t, r, rows)
	c, err := d.FlowCounters()
	if err != nil {
		t.Fatal(err)
	}
	if c.RedirectQUIC != 6 || c.RedirectForward != 0 {
		t.Errorf("counters %+v, want 6 QUIC datagrams handed over and no flow", c)
	}

	// A server gone and a port removed: their datagrams pass; what stays
	// is handed on.
	q := quicRouting()
	delete(q.Servers, peer2QUIC)
	q.Ports = q.Ports[1:]
	if err := d.SetQUICRouting(q); err != nil {
		t.Fatal(err)
	}
	runFixtures(t, r, []fixture{
		{name: "gone server's id passes", in: dgram(quicVIP6, 443, quicShort(1, peer2QUIC, 24)), action: xdpPass},
		{name: "removed port passes", in: short, action: xdpPass},
		{name: "frame of the gone server may be handed on", in: dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24)).with(func(q *packet) { q.srcMAC = peer2MAC }),
			action: xdpTX, want: toPeer(dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24)))},
		{name: "kept port handed", in: dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24)), action: xdpTX,
			want: toPeer(dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24)))},
	})
	if bit := vipBit(quicVIP4); d.state.vipFilter.vips[bit] != 0 {
		t.Errorf("vip_filter: %v's bit still counted %d times", quicVIP4, d.state.vipFilter.vips[bit])
	}

	// An L4 service on an HTTP/3 port's key (listeners changed between two
	// rounds) takes its entry; the port has it back once the service goes.
	l4q := dgram(quicVIP6, 443, quicShort(1, peerQUIC, 24))
	with := testConfig()
	with.Services = append(with.Services, Service{VIP: quicVIP6, Port: 443, Proto: "udp", Mode: "dsr", Backends: with.Services[7].Backends})
	if err := d.Apply(context.Background(), with); err != nil {
		t.Fatal(err)
	}
	runFixtures(t, r, []fixture{{name: "l4 service on the key forwards", in: l4q, action: xdpTX, want: forwardedPkt(t, with, l4q)}})
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	runFixtures(t, r, []fixture{{name: "port back once the service went", in: l4q, action: xdpTX, want: toPeer(l4q)}})

	// Nothing routed: the program passes them all.
	if err := d.SetQUICRouting(QUICRouting{}); err != nil {
		t.Fatal(err)
	}
	runFixtures(t, r, []fixture{{name: "no routing passes", in: l4q, action: xdpPass}})
	var n int
	iter := d.objs.QuicServers.Iterate()
	var k uint32
	var v lbPeer
	for iter.Next(&k, &v) {
		n++
	}
	if err := iter.Err(); err != nil || n != 0 {
		t.Errorf("quic_servers has %d entries (%v) after routing was cleared", n, err)
	}
	for _, a := range []netip.Addr{quicVIP4, quicVIP6} {
		if n := d.state.vipFilter.vips[vipBit(a)]; n != 0 {
			t.Errorf("vip_filter: %v's bit counted %d times after routing was cleared", a, n)
		}
	}
}

func TestQUICRoutingInvalid(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	for _, r := range []QUICRouting{
		{Servers: map[uint16]net.HardwareAddr{1: {1, 2, 3}}},
		{Servers: map[uint16]net.HardwareAddr{1: peerMAC, 2: peerMAC}},
		{Ports: []netip.AddrPort{netip.AddrPortFrom(quicVIP4, 0)}},
		{Ports: []netip.AddrPort{{}}},
	} {
		if err := d.SetQUICRouting(r); err == nil {
			t.Errorf("SetQUICRouting(%+v) = nil, want an error", r)
		}
	}
}
