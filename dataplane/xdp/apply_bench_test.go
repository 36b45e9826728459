package xdp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkApplyMemberChange measures one Apply that changes one member of
// a FullNAT service of n backends, with the default Maglev table size: it
// removes the oldest member and adds a new one in turn (n, n-1, n, ...
// members, never the same set twice), and reports the table entries
// written per change. The standby table holds the table of two changes
// before, so a change writes about two changes' worth of entries.
// "settled": the grace period after the previous change has passed (not
// timed), as when changes are milliseconds apart; "back-to-back": each
// change waits for the previous one's grace period.
func BenchmarkApplyMemberChange(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, settled := range []bool{true, false} {
			name := fmt.Sprintf("backends-%d/back-to-back", n)
			if settled {
				name = fmt.Sprintf("backends-%d/settled", n)
			}
			b.Run(name, func(b *testing.B) {
				d := newTestDataplane(b, Options{ConnTrackSize: 1024})
				ctx := context.Background()
				if err := d.Apply(ctx, rollingConfig(0, n)); err != nil {
					b.Fatalf("Apply: %v", err)
				}
				written := d.state.entriesWritten
				b.ResetTimer()
				for i := range b.N {
					if settled {
						b.StopTimer()
						d.mu.Lock()
						d.awaitGrace()
						d.mu.Unlock()
						b.StartTimer()
					}
					if err := d.Apply(ctx, rollingConfig(i+1, n)); err != nil {
						b.Fatalf("Apply: %v", err)
					}
				}
				b.ReportMetric(float64(d.state.entriesWritten-written)/float64(b.N), "entries/op")
			})
		}
	}
}

// rollingConfig is one FullNAT service whose members, after change
// changes from n, are backends [change/2+change%2, n+change/2) of a
// numbered sequence: each change removes the oldest member (odd
// changes) or adds the next (even ones).
func rollingConfig(change, n int) Config {
	cfg := Config{LocalAddrs: []netip.Addr{local4}, Gateway: gwMAC}
	s := Service{VIP: ip("192.0.2.1"), Port: 80, Proto: "tcp", Mode: ModeFullNAT}
	for i := change/2 + change%2; i < n+change/2; i++ {
		s.Backends = append(s.Backends, Backend{Addr: addN(ip("10.2.0.0"), uint32(i+1)), Port: 8080, Weight: 1})
	}
	cfg.Services = []Service{s}
	return cfg
}

// BenchmarkApplyServices measures one Apply that changes one member of
// one of n services (three members each, of their own), with M = 1021 as
// a node of 10,000 services would be sized: what the diff against what
// is applied costs as the services grow.
func BenchmarkApplyServices(b *testing.B) {
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("services-%d", n), func(b *testing.B) {
			d := newTestDataplane(b, Options{ConnTrackSize: 1024, TableSize: 1021, MaxServices: 10000, MaxBackends: 40000})
			cfg := Config{LocalAddrs: []netip.Addr{local4}, Gateway: gwMAC}
			for i := range n {
				s := Service{VIP: addN(ip("192.0.2.0"), uint32(i/100)), Port: uint16(1000 + i%100), Proto: "tcp", Mode: ModeFullNAT}
				for j := range 3 {
					s.Backends = append(s.Backends, Backend{Addr: addN(ip("10.5.0.0"), uint32(4*i+j)), Port: 8080, Weight: 1})
				}
				cfg.Services = append(cfg.Services, s)
			}
			ctx := context.Background()
			if err := d.Apply(ctx, cfg); err != nil {
				b.Fatalf("Apply: %v", err)
			}
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				d.mu.Lock()
				d.awaitGrace()
				d.mu.Unlock()
				// The first service's third member comes and goes.
				next := cfg
				next.Services = append([]Service(nil), cfg.Services...)
				if i%2 == 0 {
					next.Services[0].Backends = next.Services[0].Backends[:2]
				}
				b.StartTimer()
				if err := d.Apply(ctx, next); err != nil {
					b.Fatalf("Apply: %v", err)
				}
			}
		})
	}
}
