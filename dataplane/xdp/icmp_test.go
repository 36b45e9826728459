package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// icmpError builds an ICMP error frame from src to dst quoting q (an IP
// header and the first 8 bytes of its payload). v4: destination
// unreachable, fragmentation needed; v6: packet too big.
func icmpError(t testing.TB, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, ttl uint8, q []byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	if dst.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		err = gopacket.SerializeLayers(buf, opts,
			&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}, ip,
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400}, gopacket.Payload(q))
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
		if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		body := append([]byte{0, 0, 0x05, 0x00}, q...) // MTU 1280
		err = gopacket.SerializeLayers(buf, opts,
			&layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6}, ip, icmp, gopacket.Payload(body))
	}
	if err != nil {
		t.Fatalf("build icmp error: %v", err)
	}
	return buf.Bytes()
}

// quote returns the IP header and first 8 payload bytes of p's frame, as
// an ICMP error quotes them.
func quote(t testing.TB, p packet) []byte {
	b := p.frame(t)
	return bytes.Clone(b[14 : l4Offset(b)+8])
}

// requote returns q with its addresses and ports set to src -> dst and, for
// IPv4, its header checksum recomputed.
func requote(q []byte, src, dst netip.AddrPort) []byte {
	q = bytes.Clone(q)
	if src.Addr().Is4() {
		copy(q[12:], src.Addr().AsSlice())
		copy(q[16:], dst.Addr().AsSlice())
		q[10], q[11] = 0, 0
		binary.BigEndian.PutUint16(q[10:], ^csum(q[:20]))
		binary.BigEndian.PutUint16(q[20:], src.Port())
		binary.BigEndian.PutUint16(q[22:], dst.Port())
		return q
	}
	copy(q[8:], src.Addr().AsSlice())
	copy(q[24:], dst.Addr().AsSlice())
	binary.BigEndian.PutUint16(q[40:], src.Port())
	binary.BigEndian.PutUint16(q[42:], dst.Port())
	return q
}

// TestICMPErrors: errors about tracked flows reach the host that sent the
// quoted packet, translated for FullNAT; others are passed.
func TestICMPErrors(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	router4, router6 := ip("10.1.0.1"), ip("fd00:1::1")
	clientRouter4, clientRouter6 := ip("198.51.100.1"), ip("2001:db8:c::1")

	type row struct {
		name   string
		in     []byte
		action uint32
		want   []byte
	}
	var rows []row
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
		syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: c.client, dst: netip.AddrPortFrom(ip(c.vip), 80), proto: "tcp", syn: true}
		if act, _ := r.run(t, syn.frame(t)); act != xdpTX {
			t.Fatalf("%s: syn: action %s", c.name, actionNames[act])
		}
		fwd := forwardedPkt(t, cfg, syn)
		svc := findService(cfg, syn.dst, "tcp")
		e := expect(t, cfg, svc, syn)
		bmac := backendMAC[e.backend.Addr()]
		router, clientRouter := router4, clientRouter4
		if c.client.Addr().Is6() {
			router, clientRouter = router6, clientRouter6
		}
		// The answer the client got: VIP -> client (from us in FullNAT,
		// from the backend in DSR).
		answer := syn.with(func(q *packet) { q.src, q.dst, q.ack, q.ttl = syn.dst, syn.src, true, 63 })

		// An error about the answer, from a router on the client's side.
		toVIP := icmpError(t, gwMAC, nodeMAC, clientRouter, syn.dst.Addr(), 60, quote(t, answer))
		if svc.Mode == ModeDSR {
			rows = append(rows, row{name: c.name + ": error to vip goes to the backend", in: toVIP, action: xdpTX,
				want: icmpError(t, nodeMAC, bmac, clientRouter, syn.dst.Addr(), 59, quote(t, answer))})
			continue
		}
		// FullNAT: the backend sent backend -> local; it learns of it so.
		rows = append(rows, row{name: c.name + ": error to vip goes to the backend translated", in: toVIP, action: xdpTX,
			want: icmpError(t, nodeMAC, bmac, e.local.Addr(), e.backend.Addr(), 59, requote(quote(t, answer), e.backend, e.local))})
		// An error about the forwarded packet local -> backend, from a
		// router on the backends' side, goes to the client as VIP -> client
		// about client -> VIP.
		toLocal := icmpError(t, bmac, nodeMAC, router, e.local.Addr(), 60, quote(t, fwd))
		rows = append(rows, row{name: c.name + ": error to local address goes to the client translated", in: toLocal, action: xdpTX,
			want: icmpError(t, nodeMAC, gwMAC, syn.dst.Addr(), syn.src.Addr(), 59, requote(quote(t, fwd), syn.src, syn.dst))})
		rows = append(rows, row{name: c.name + ": error with ttl 1 dropped", action: xdpDrop,
			in: icmpError(t, bmac, nodeMAC, router, e.local.Addr(), 1, quote(t, fwd))})
	}
	unknown := packet{src: netip.MustParseAddrPort("192.0.2.1:80"), dst: netip.MustParseAddrPort("198.51.100.77:1"), proto: "tcp", ack: true,
		srcMAC: gwMAC, dstMAC: nodeMAC}
	rows = append(rows,
		row{name: "error about an unknown flow passes", action: xdpPass,
			in: icmpError(t, gwMAC, nodeMAC, clientRouter4, ip("192.0.2.1"), 60, quote(t, unknown))},
		row{name: "error to another address than the quoted source passes", action: xdpPass,
			in: icmpError(t, gwMAC, nodeMAC, clientRouter4, ip("192.0.2.2"), 60, quote(t, unknown))},
		row{name: "error quoting too little passes", action: xdpPass,
			in: icmpError(t, gwMAC, nodeMAC, clientRouter4, ip("192.0.2.1"), 60, quote(t, unknown)[:22])},
	)

	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			orig := bytes.Clone(tc.in)
			got, out := r.run(t, tc.in)
			if got != tc.action {
				t.Fatalf("action = %s, want %s", actionNames[got], actionNames[tc.action])
			}
			checkOutput(t, got, out, orig, tc.want)
		})
	}
}
