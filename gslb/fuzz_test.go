package gslb

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// capture is a dns.ResponseWriter that keeps what the server writes, so
// the fuzzer drives the server's own handler without sockets.
type capture struct {
	remote net.Addr
	msgs   []*dns.Msg
}

func (c *capture) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (c *capture) RemoteAddr() net.Addr      { return c.remote }
func (c *capture) WriteMsg(m *dns.Msg) error { c.msgs = append(c.msgs, m); return nil }
func (c *capture) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	return len(b), c.WriteMsg(m)
}
func (c *capture) Close() error        { return nil }
func (c *capture) TsigStatus() error   { return nil }
func (c *capture) TsigTimersOnly(bool) {}
func (c *capture) Hijack()             {}
func (c *capture) Network() string     { return "udp" }

var _ dns.ResponseWriter = (*capture)(nil)

// FuzzServeDNS feeds raw messages to the server as its UDP listener would
// (miekg/dns's accept rules, then the handler): it must not panic, and
// every answer must pack, match the query's ID and fit the UDP size the
// query allows.
func FuzzServeDNS(f *testing.F) {
	for _, m := range []*dns.Msg{
		question("www.example.com.", dns.TypeA),
		question("big.example.com.", dns.TypeTXT),
		question("alias.example.com.", dns.TypeAAAA),
		question("nope.example.com.", dns.TypeMX),
		question("example.com.", dns.TypeIXFR),
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
	// The secondary may transfer (the fuzzer's queries come from it); its
	// NOTIFYs go to a loopback port nobody answers.
	z.Secondaries = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:9")}
	if err := s.Apply(context.Background(), Config{Zones: []Zone{z}}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 12 {
			return
		}
		var h dns.Header
		req := new(dns.Msg)
		if req.Unpack(b) != nil {
			return // the listener answers FORMERR itself
		}
		h = dns.Header{Id: req.Id, Qdcount: uint16(len(req.Question)), Ancount: uint16(len(req.Answer)),
			Nscount: uint16(len(req.Ns)), Arcount: uint16(len(req.Extra))}
		h.Bits = uint16(req.Opcode) << 11
		if req.Response {
			h.Bits |= 1 << 15
		}
		if dns.DefaultMsgAcceptFunc(h) != dns.MsgAccept {
			return
		}
		w := &capture{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5353}}
		s.serve(w, req, false)
		for _, m := range w.msgs {
			out, err := m.Pack()
			if err != nil {
				t.Fatalf("answer does not pack: %v\n%v", err, m)
			}
			if m.Id != req.Id {
				t.Fatalf("answer ID %d, query ID %d", m.Id, req.Id)
			}
			if limit := udpLimit(req); len(out) > limit {
				t.Fatalf("UDP answer of %d bytes, more than the %d the query allows", len(out), limit)
			}
		}
	})
}
