package gslb

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds raw datagrams to the server's UDP path as its reader
// hands them over: it must not panic, and every answer must unpack, carry
// the query's ID and fit the UDP size the query allows (512 bytes for
// one that does not unpack).
func FuzzServeDNS(f *testing.F) {
	for _, m := range []*dns.Msg{
		question("www.example.com.", dns.TypeA),
		question("big.example.com.", dns.TypeTXT),
		question("alias.example.com.", dns.TypeAAAA),
		question("nope.example.com.", dns.TypeMX),
		question("example.com.", dns.TypeIXFR),
		question("example.com.", dns.TypeAXFR),
		withECS(question("geo.example.com.", dns.TypeA), "203.0.113.0", 24),
		withECS(question("geo.example.com.", dns.TypeAAAA), "2001:db8::", 48),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s, err := New(Options{Addr: "127.0.0.1:0", RateLimit: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	z := testZone()
	// The fuzzer's queries come from the secondary, so transfers are
	// allowed; its NOTIFYs go to a loopback port nobody answers.
	src := netip.MustParseAddr("127.0.0.2")
	z.Secondaries = []netip.AddrPort{netip.AddrPortFrom(src, 9)}
	if err := s.Apply(context.Background(), Config{Zones: []Zone{z}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := s.handleUDP(b, src, make([]byte, 0, MaxUDPSize))
		if out == nil {
			return
		}
		limit := dns.MinMsgSize
		req := new(dns.Msg)
		if req.Unpack(b) == nil {
			limit = udpLimit(req)
		}
		if len(out) > limit {
			t.Fatalf("UDP answer of %d bytes, more than the %d the query allows", len(out), limit)
		}
		m := new(dns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
		if id := binary.BigEndian.Uint16(b); m.Id != id || !m.Response {
			t.Fatalf("answer ID %d (response %v), query ID %d", m.Id, m.Response, id)
		}
	})
}
