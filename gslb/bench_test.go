package gslb

import (
	"context"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkHandleUDP is the cost of one UDP query through the server's
// datagram path (unpack, answer, pack), without the sockets.
func BenchmarkHandleUDP(b *testing.B) {
	s, err := New(Options{Addr: "127.0.0.1:0", RateLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Apply(context.Background(), Config{Region: "us", Zones: []Zone{testZone()}}); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    *dns.Msg
	}{
		{"static", question("ns1.example.com.", dns.TypeA)},
		{"failover", question("www.example.com.", dns.TypeA)},
		{"geo-ecs", withECS(question("geo.example.com.", dns.TypeA), "203.0.113.0", 24)},
		{"nxdomain", question("nope.example.com.", dns.TypeA)},
	} {
		q, err := tc.m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, MaxUDPSize)
		src := netip.MustParseAddr("192.0.2.7")
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s.handleUDP(q, src, buf) == nil {
					b.Fatal("no answer")
				}
			}
		})
	}
}
