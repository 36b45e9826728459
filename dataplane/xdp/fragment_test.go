package xdp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/weftlb/weft/dataplane"
)

// fragments splits frame, an Ethernet frame of one IPv4 or IPv6 datagram,
// into two fragments whose first carries the first n bytes (a multiple of
// 8) of the IP payload, with identification id.
func fragments(t *testing.T, frame []byte, n int, id uint32) (first, second []byte) {
	t.Helper()
	if frame[12] == 0x08 && frame[13] == 0x00 { // IPv4
		hl := int(frame[14]&0x0f) * 4
		hdr, payload := frame[:14+hl], frame[14+hl:]
		mk := func(part []byte, off int, more bool) []byte {
			b := append(bytes.Clone(hdr), part...)
			binary.BigEndian.PutUint16(b[14+2:], uint16(hl+len(part)))
			binary.BigEndian.PutUint16(b[14+4:], uint16(id))
			fo := uint16(off / 8)
			if more {
				fo |= 0x2000
			}
			binary.BigEndian.PutUint16(b[14+6:], fo)
			return fixIPv4Csum(b)
		}
		return mk(payload[:n], 0, true), mk(payload[n:], n, false)
	}
	hdr, payload := frame[:14+40], frame[14+40:]
	next := frame[14+6]
	mk := func(part []byte, off int, more bool) []byte {
		fh := make([]byte, 8)
		fh[0] = next
		fo := uint16(off)
		if more {
			fo |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], fo)
		binary.BigEndian.PutUint32(fh[4:], id)
		b := append(append(bytes.Clone(hdr), fh...), part...)
		b[14+6] = 44
		return setU16(b, 14+4, uint16(8+len(part)))
	}
	return mk(payload[:n], 0, true), mk(payload[n:], n, false)
}

// TestFragments checks a DSR UDP service that forwards fragments: every
// fragment of a datagram, in either order, and the client's unfragmented
// datagrams go to one backend, picked by addresses, with only the MACs and
// TTL changed; fragments to a VIP whose services do not forward them are
// dropped and counted, others passed.
func TestFragments(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	for i, s := range cfg.Services {
		if s.Mode == ModeDSR && s.Proto == ProtoUDP {
			cfg.Services[i].Fragments = true // 192.0.2.2:53, [2001:db8::2]:53
		}
	}
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	backendOf := func(out []byte) netip.Addr {
		for a, m := range backendMAC {
			if bytes.Equal(out[:6], m) {
				return a
			}
		}
		return netip.Addr{}
	}
	// sent checks that out is in with the MACs, TTL (and IPv4 header
	// checksum) changed only, and returns the backend it went to.
	sent := func(what string, in []byte) netip.Addr {
		t.Helper()
		act, out := r.run(t, in)
		if act != xdpTX {
			t.Fatalf("%s: action %s, want TX", what, actionNames[act])
		}
		want := bytes.Clone(in)
		copy(want[:6], out[:6])
		copy(want[6:12], nodeMAC)
		if in[12] == 0x08 {
			want[14+8]--
			want = fixIPv4Csum(want)
		} else {
			want[14+7]--
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("%s: sent\n% x\nwant\n% x", what, out, want)
		}
		return backendOf(out)
	}
	for _, vip := range []string{"192.0.2.2", "2001:db8::2"} {
		used := map[netip.Addr]bool{}
		for i := range 40 {
			client := netip.AddrPortFrom(addN(netip.MustParseAddr(map[bool]string{true: "198.51.100.60", false: "2001:db8:c::60"}[ip(vip).Is4()]), uint32(i)), uint16(5000+i))
			dgram := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: client, dst: netip.AddrPortFrom(ip(vip), 53), proto: "udp",
				payload: string(bytes.Repeat([]byte{'q'}, 1200))}
			whole := dgram.frame(t)
			first, second := fragments(t, whole, 600, uint32(1000+i))
			// The later fragment first, as reordering may bring it.
			b := sent("second fragment", second)
			if got := sent("first fragment", first); got != b {
				t.Fatalf("client %v: first fragment to %v, second to %v", client, got, b)
			}
			if got := sent("whole datagram", whole); got != b {
				t.Fatalf("client %v: datagram to %v, its fragments to %v", client, got, b)
			}
			// Another port of the same client: the same backend.
			other := dgram.with(func(q *packet) { q.src = netip.AddrPortFrom(client.Addr(), client.Port()+1000) })
			if got := sent("other port", other.frame(t)); got != b {
				t.Fatalf("client %v: port %d to %v, port %d to %v", client.Addr(), client.Port()+1000, got, client.Port(), b)
			}
			used[b] = true
		}
		if len(used) < 2 {
			t.Errorf("VIP %s: 40 clients all went to %v", vip, used)
		}
	}

	before, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		dst  netip.AddrPort
		act  uint32
	}{
		{"to a fullnat udp service", netip.MustParseAddrPort("192.0.2.1:53"), xdpDrop},
		{"to a tcp service's VIP", netip.MustParseAddrPort("192.0.2.3:80"), xdpDrop},
		{"to no VIP", netip.MustParseAddrPort("203.0.113.9:53"), xdpPass},
	} {
		frame := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.61:5000"), dst: c.dst, proto: "udp",
			payload: string(make([]byte, 100))}.frame(t)
		first, second := fragments(t, frame, 64, 7)
		for _, f := range [][]byte{first, second} {
			if act, _ := r.run(t, f); act != c.act {
				t.Errorf("fragment %s: action %s, want %s", c.name, actionNames[act], actionNames[c.act])
			}
		}
	}
	after, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Global.Drops.Fragment - before.Global.Drops.Fragment; got != 4 {
		t.Errorf("%d fragment drops counted, want 4", got)
	}

	// The VIP's fragments move to another of its UDP services in one Apply.
	moved := testConfig()
	moved.Services = append(moved.Services, Service{VIP: ip("192.0.2.2"), Port: 54, Proto: "udp", Mode: "dsr", Fragments: true,
		Backends: []Backend{be("10.1.0.13", 0, 1)}})
	if err := d.Apply(context.Background(), moved); err != nil {
		t.Fatal(err)
	}
	frame := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.62:5000"),
		dst: netip.MustParseAddrPort("192.0.2.2:54"), proto: "udp", payload: string(make([]byte, 100))}.frame(t)
	_, second := fragments(t, frame, 64, 8)
	if got := sent("fragment after the move", second); got != ip("10.1.0.13") {
		t.Errorf("fragment after the move went to %v, want 10.1.0.13 (the new service's)", got)
	}
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		t.Fatal(err)
	}
	if act, _ := r.run(t, second); act != xdpDrop {
		t.Errorf("fragment once no service forwards them: action %s, want DROP", actionNames[act])
	}
}

// TestFragmentsValidation checks that only DSR UDP services forward
// fragments, and that of two on one VIP (which the API refuses) the first
// keeps them.
func TestFragmentsValidation(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	for _, c := range []struct {
		name string
		svc  Service
	}{
		{"tcp", Service{VIP: ip("192.0.2.20"), Port: 80, Proto: "tcp", Mode: "dsr", Fragments: true, Backends: []Backend{be("10.1.0.11", 0, 1)}}},
		{"fullnat", Service{VIP: ip("192.0.2.20"), Port: 53, Proto: "udp", Mode: "fullnat", Fragments: true, Backends: []Backend{be("10.1.0.11", 53, 1)}}},
	} {
		cfg := testConfig()
		for i, s := range cfg.Services {
			if s.VIP == ip("192.0.2.2") && s.Proto == ProtoUDP {
				cfg.Services[i].Fragments = true
			}
		}
		cfg.Services = append(cfg.Services, c.svc)
		if err := d.Apply(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Apply: %v, want ErrInvalidConfig", c.name, err)
		}
	}
	cfg := testConfig()
	cfg.Services = append(cfg.Services,
		Service{VIP: ip("192.0.2.20"), Port: 53, Proto: "udp", Mode: "dsr", Fragments: true, Backends: []Backend{be("10.1.0.11", 0, 1)}},
		Service{VIP: ip("192.0.2.20"), Port: 54, Proto: "udp", Mode: "dsr", Fragments: true, Backends: []Backend{be("10.1.0.12", 0, 1)}})
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("two services forwarding one VIP's fragments: Apply: %v", err)
	}
	frame := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.63:5000"),
		dst: netip.MustParseAddrPort("192.0.2.20:54"), proto: "udp", payload: string(make([]byte, 100))}.frame(t)
	_, second := fragments(t, frame, 64, 9)
	act, out := runner{d.objs.XdpLb}.run(t, second)
	if act != xdpTX || !bytes.Equal(out[:6], backendMAC[ip("10.1.0.11")]) {
		t.Errorf("fragment with two services forwarding: action %s to % x, want TX to the first's backend 10.1.0.11", actionNames[act], out[:6])
	}
}

// reassemble joins two fragments of one datagram (as fragments makes them)
// into the frame of the whole datagram, with IPv4 identification id.
func reassemble(t *testing.T, first, second []byte, id uint16) []byte {
	t.Helper()
	if first[12] == 0x08 {
		hl := int(first[14]&0x0f) * 4
		b := append(bytes.Clone(first), second[14+hl:]...)
		binary.BigEndian.PutUint16(b[14+2:], uint16(len(b)-14))
		binary.BigEndian.PutUint16(b[14+4:], id)
		binary.BigEndian.PutUint16(b[14+6:], 0)
		return fixIPv4Csum(b)
	}
	b := append(bytes.Clone(first[:14+40]), first[14+48:]...)
	b = append(b, second[14+48:]...)
	b[14+6] = first[14+40]
	return setU16(b, 14+4, uint16(len(b)-14-40))
}

// TestReplyFragments checks that a FullNAT reply that comes in fragments
// (a large DNS answer) is translated back: its first fragment as a whole
// reply would be, the later one by its addresses, so the client reassembles
// the datagram a whole reply would have been, UDP checksum included; a
// later fragment whose first never came goes where a reply of no flow
// goes.
func TestReplyFragments(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	for _, c := range []struct{ client, vip string }{
		{"198.51.100.70:5300", "192.0.2.1:53"},
		{"[2001:db8:c::70]:5300", "[2001:db8::1]:53"},
	} {
		query := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort(c.client), dst: netip.MustParseAddrPort(c.vip), proto: "udp",
			payload: "query"}
		if act, _ := r.run(t, query.frame(t)); act != xdpTX {
			t.Fatalf("%s: query: action %s", c.vip, actionNames[act])
		}
		e := expect(t, cfg, findService(cfg, query.dst, "udp"), query)
		answer := string(bytes.Repeat([]byte("answer-"), 200)) // 1400 bytes
		reply := packet{srcMAC: backendMAC[e.backend.Addr()], dstMAC: nodeMAC, src: e.backend, dst: e.local, proto: "udp", payload: answer}
		first, second := fragments(t, reply.frame(t), 704, 0x4242)
		var outs [2][]byte
		for i, f := range [][]byte{first, second} {
			act, out := r.run(t, f)
			if act != xdpTX {
				t.Fatalf("%s: reply fragment %d: action %s, want TX", c.vip, i+1, actionNames[act])
			}
			if first[12] == 0x08 && !bytes.Equal(out, fixIPv4Csum(bytes.Clone(out))) {
				t.Errorf("%s: reply fragment %d: bad IPv4 header checksum", c.vip, i+1)
			}
			outs[i] = out
		}
		want := packet{srcMAC: nodeMAC, dstMAC: gwMAC, src: query.dst, dst: query.src, proto: "udp", ttl: 63, payload: answer}.frame(t)
		if got := reassemble(t, outs[0], outs[1], binary.BigEndian.Uint16(want[14+4:])); !bytes.Equal(got, want) {
			t.Errorf("%s: the translated fragments make\n%s", c.vip, frameDiff(got, want))
		}
		// A later fragment whose first never came is the stack's, as a
		// reply of no flow is, where the local address is not the
		// cluster's.
		_, orphan := fragments(t, reply.frame(t), 704, 0x4343)
		if act, _ := r.run(t, orphan); act != xdpPass {
			t.Errorf("%s: a later fragment without its first: action %s, want PASS", c.vip, actionNames[act])
		}
	}

	// To a local address another node holds: handed to it, as a whole
	// reply of no flow here is.
	if err := d.SetFlowRouting(routing(d, dataplane.TargetSelf, false)); err != nil {
		t.Fatal(err)
	}
	reply := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("10.1.0.11:53"), dst: netip.AddrPortFrom(peerAddr, 2000),
		proto: "udp", payload: string(make([]byte, 1000))}
	_, orphan := fragments(t, reply.frame(t), 504, 0x4444)
	if act, out := r.run(t, orphan); act != xdpTX || !bytes.Equal(out[:6], peerMAC) {
		t.Errorf("a fragment to a local address another node holds: action %s to % x, want TX to the holder % x", actionNames[act], out[:6], peerMAC)
	}
}
