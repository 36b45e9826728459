package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// FuzzXDP feeds arbitrary frames through the program, their checksums
// made valid first where they parse unless the input asks to keep them.
// Invariants: never XDP_ABORTED; nothing forwarded unless it is to a
// service, a tracked FullNAT reply or an ICMP error about a tracked flow;
// every forwarded frame from this node's MAC to a known next hop, with a
// valid IPv4 header checksum, and valid TCP/UDP checksums where the
// input's were (a segment of a tracked flow is not verified: its endpoint
// discards it); and a frame its endpoint would discard (a checksum fails)
// opens, establishes or closes no flow.
func FuzzXDP(f *testing.F) {
	d := newTestDataplane(f, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		f.Fatalf("Apply: %v", err)
	}
	if err := d.SetQUICRouting(quicRouting()); err != nil {
		f.Fatalf("SetQUICRouting: %v", err)
	}
	r := runner{d.objs.XdpLb}
	for _, p := range []packet{
		{src: client4, dst: netip.AddrPortFrom(quicVIP4, 443), proto: "udp", payload: quicShort(1, peerQUIC, 20)},
		{src: client6, dst: netip.AddrPortFrom(quicVIP6, 443), proto: "udp", payload: quicLong(peerQUIC)},
		{src: client4, dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true, payload: "x"},
		{src: client4, dst: netip.MustParseAddrPort("192.0.2.1:53"), proto: "udp", payload: "x"},
		{src: client6, dst: netip.MustParseAddrPort("[2001:db8::2]:80"), proto: "tcp", syn: true, vlans: []uint16{7}},
		{src: client6, dst: netip.MustParseAddrPort("[2001:db8::1]:53"), proto: "udp"},
		{src: client4, dst: netip.MustParseAddrPort("192.0.2.2:53"), proto: "udp", ipOptions: nops},
		{src: netip.MustParseAddrPort("10.1.0.11:8080"), dst: netip.MustParseAddrPort("10.0.0.100:2000"), proto: "tcp", ack: true},
	} {
		p.srcMAC, p.dstMAC = gwMAC, nodeMAC
		f.Add(p.frame(f))
	}
	f.Add(arpFrame())
	// A SYN whose TCP checksum is broken, kept so by its odd last byte (60
	// bytes: no Ethernet padding).
	bad := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.9:9"), dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true, payload: "xxxxxy"}.frame(f)
	bad[l4Offset(bad)+16] ^= 0xff
	f.Add(bad)
	answer := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("192.0.2.1:80"), dst: client4, proto: "tcp", ack: true}
	f.Add(icmpError(f, gwMAC, nodeMAC, ip("198.51.100.1"), ip("192.0.2.1"), 60, quote(f, answer)))

	// QUIC datagrams are handed to the other nodes.
	nextHops := map[string]bool{gwMAC.String(): true, clientMAC.String(): true, peerMAC.String(): true, peer2MAC.String(): true}
	for _, m := range backendMAC {
		nextHops[m.String()] = true
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN needs an Ethernet header
		}
		// The last byte's low bit keeps the checksums as they are.
		if frame[len(frame)-1]&1 == 0 {
			fixChecksums(frame)
		}
		var before string
		valid := checksumsValid(frame) == nil
		discard := !valid && !isFragment(frame)
		if discard {
			before = flowState(t, d)
		}
		// What the frame is, judged before the program rewrites it.
		fl, isFlow := parseFlow(frame)
		var toService, tracked bool
		if q, ok := quotedFlow(frame); ok {
			tracked = isTracked(d, q)
		}
		if isFlow {
			var sv lbSvcValue
			toService = d.objs.Services.Lookup(lbSvcKey{Vip: lbAddr(fl.dst.Addr()), Port: be16(fl.dst.Port()), Proto: fl.proto}, &sv) == nil
			tracked = isReply(d, fl)
		}
		act, out, err := r.try(frame)
		if err != nil {
			t.Fatalf("prog.Run: %v", err)
		}
		switch act {
		case xdpAborted:
			t.Fatalf("XDP_ABORTED for % x", frame)
		case xdpTX:
			if !toService && !tracked {
				t.Fatalf("forwarded a frame to no service and of no tracked flow: % x", frame)
			}
			if err := checksumsValid(out); err != nil && (valid || !ipv4HeaderValid(out)) {
				t.Fatalf("forwarded frame with bad checksums (%v): in % x, out % x", err, frame, out)
			}
			if src, dst := net.HardwareAddr(out[6:12]), net.HardwareAddr(out[:6]); !bytes.Equal(src, nodeMAC) || !nextHops[dst.String()] {
				t.Fatalf("forwarded frame from %v to %v, want from %v to a next hop: % x", src, dst, nodeMAC, out)
			}
		case xdpDrop, xdpPass:
		default:
			t.Fatalf("action %d", act)
		}
		if discard {
			if after := flowState(t, d); after != before {
				t.Fatalf("a frame with a bad checksum changed the flows (% x):\nbefore %s\nafter  %s", frame, before, after)
			}
		}
	})
}

// ipv4HeaderValid reports whether b's IPv4 header checksum (if b is IPv4)
// is valid.
func ipv4HeaderValid(b []byte) bool {
	h, ok := locate(b)
	return !ok || h.v6 || csum(b[h.ip:h.l4]) == 0xffff
}

// isFragment reports whether b is an IP fragment: a first fragment's
// TCP/UDP checksum covers bytes it does not carry.
func isFragment(b []byte) bool {
	h, ok := locate(b)
	if !ok {
		return false
	}
	if h.v6 {
		return b[h.ip+6] == 44
	}
	return binary.BigEndian.Uint16(b[h.ip+6:])&0x3fff != 0
}

// quotedFlow returns the 5-tuple of the TCP or UDP packet an ICMP or
// ICMPv6 message quotes, reversed: the tuple of the flow it answered.
func quotedFlow(b []byte) (flowTuple, bool) {
	h, ok := locate(b)
	if !ok || (h.proto != 1 && h.proto != 58) || len(b) < h.l4+8 {
		return flowTuple{}, false
	}
	q := b[h.l4+8:]
	var src, dst netip.Addr
	var l4 []byte
	var proto byte
	switch {
	case !h.v6 && len(q) >= 20 && q[0]>>4 == 4 && q[0]&0x0f >= 5 && len(q) >= int(q[0]&0x0f)*4+4:
		src, dst = netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
		l4, proto = q[int(q[0]&0x0f)*4:], q[9]
	case h.v6 && len(q) >= 44 && q[0]>>4 == 6:
		src, dst = netip.AddrFrom16([16]byte(q[8:24])), netip.AddrFrom16([16]byte(q[24:40]))
		l4, proto = q[40:], q[6]
	default:
		return flowTuple{}, false
	}
	sp, dp := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	return flowTuple{netip.AddrPortFrom(dst, dp), netip.AddrPortFrom(src, sp), proto}, true
}

// isTracked reports whether f is in a connection table (conntrack or
// ct_new) or is the reply tuple of a FullNAT flow.
func isTracked(d *Dataplane, f flowTuple) bool {
	if isReply(d, f) {
		return true
	}
	var ct lbCtValue
	for _, m := range []*ebpf.Map{d.objs.Conntrack, d.objs.CtNew} {
		if m.Lookup(f.key(), &ct) == nil && ct.Flags&lbCtFlagsCT_VALID != 0 {
			return true
		}
	}
	return false
}

// isReply reports whether f is the reply tuple of a FullNAT flow,
// established (nat_reverse) or new (nat_new).
func isReply(d *Dataplane, f flowTuple) bool {
	var nv lbNatValue
	return d.objs.NatReverse.Lookup(f.key(), &nv) == nil || d.objs.NatNew.Lookup(f.key(), &nv) == nil
}

type flowTuple struct {
	src, dst netip.AddrPort
	proto    uint8
}

// key is f's conntrack (or nat_reverse) key.
func (f flowTuple) key() lbFlowKey { return flowKey(f.src, f.dst, f.proto) }

// l3 locates the IP and L4 headers of a frame by the program's rules (up
// to two VLAN tags, IPv4 with options, IPv6 without extension headers).
type l3 struct {
	ip, l4, end int // offsets; end is where the IP packet ends
	v6          bool
	proto       byte
}

func locate(b []byte) (l3, bool) {
	off := 12
	var et uint16
	for i := 0; ; i++ {
		if len(b) < off+2 {
			return l3{}, false
		}
		et = binary.BigEndian.Uint16(b[off:])
		if (et != 0x8100 && et != 0x88a8) || i == 2 {
			break
		}
		off += 4
	}
	off += 2
	switch et {
	case 0x0800:
		if len(b) < off+20 || b[off]>>4 != 4 || b[off]&0x0f < 5 {
			return l3{}, false
		}
		hl := int(b[off]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(b[off+2:]))
		if len(b) < off+hl || tot < hl || len(b) < off+tot {
			return l3{}, false
		}
		return l3{ip: off, l4: off + hl, end: off + tot, proto: b[off+9]}, true
	case 0x86dd:
		if len(b) < off+40 || b[off]>>4 != 6 {
			return l3{}, false
		}
		end := off + 40 + int(binary.BigEndian.Uint16(b[off+4:]))
		if len(b) < end {
			return l3{}, false
		}
		return l3{ip: off, l4: off + 40, end: end, v6: true, proto: b[off+6]}, true
	}
	return l3{}, false
}

// parseFlow returns the 5-tuple of a TCP or UDP frame.
func parseFlow(b []byte) (flowTuple, bool) {
	h, ok := locate(b)
	if !ok || (h.proto != protoTCP && h.proto != protoUDP) || h.end-h.l4 < 8 {
		return flowTuple{}, false
	}
	var src, dst netip.Addr
	if h.v6 {
		src = netip.AddrFrom16([16]byte(b[h.ip+8 : h.ip+24]))
		dst = netip.AddrFrom16([16]byte(b[h.ip+24 : h.ip+40]))
	} else {
		src = netip.AddrFrom4([4]byte(b[h.ip+12 : h.ip+16]))
		dst = netip.AddrFrom4([4]byte(b[h.ip+16 : h.ip+20]))
	}
	sp := binary.BigEndian.Uint16(b[h.l4:])
	dp := binary.BigEndian.Uint16(b[h.l4+2:])
	return flowTuple{netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp), h.proto}, true
}

// fixChecksums makes the IPv4 header and TCP/UDP checksums of b valid
// where b parses far enough.
func fixChecksums(b []byte) {
	h, ok := locate(b)
	if !ok {
		return
	}
	if !h.v6 {
		b[h.ip+10], b[h.ip+11] = 0, 0
		binary.BigEndian.PutUint16(b[h.ip+10:], ^csum(b[h.ip:h.l4]))
	}
	l4 := b[h.l4:h.end]
	var pseudo []byte
	if h.v6 {
		pseudo = append(pseudo, b[h.ip+8:h.ip+40]...)
		pseudo = append(pseudo, 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, h.proto)
	} else {
		pseudo = append(pseudo, b[h.ip+12:h.ip+20]...)
		pseudo = append(pseudo, 0, h.proto, byte(len(l4)>>8), byte(len(l4)))
	}
	var at int
	switch {
	case h.proto == protoTCP && len(l4) >= 20:
		at = 16
	case h.proto == protoUDP && len(l4) >= 8:
		at = 6
		if !h.v6 && l4[6] == 0 && l4[7] == 0 {
			return // no checksum
		}
	default:
		return
	}
	l4[at], l4[at+1] = 0, 0
	s := ^csum(append(pseudo, l4...))
	if s == 0 && h.proto == protoUDP {
		s = 0xffff
	}
	binary.BigEndian.PutUint16(l4[at:], s)
}
