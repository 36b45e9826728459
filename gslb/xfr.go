package gslb

import (
	"context"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// NOTIFY retries (RFC 1996 §3.6: resend until answered, a few times).
const (
	notifyTries   = 5
	notifyTimeout = time.Second
)

// transfer answers AXFR and IXFR (RFC 5936, RFC 1995). Only the zone's
// secondaries may transfer it, over TCP; an IXFR over UDP, or one from a
// secondary that has the current serial, gets the SOA alone. IXFR keeps no
// history of changes, so it answers as AXFR does (RFC 1995 §4 allows it).
func (t *table) transfer(m *dns.Msg, q query, z *zone, opt *dns.OPT, ecs *dns.EDNS0_SUBNET) (*dns.Msg, result) {
	if !z.secondary(q.src) {
		m.Rcode = dns.RcodeRefused
		return withEDNS(m, opt, ecs, 0), result{}
	}
	ixfr := q.req.Question[0].Qtype == dns.TypeIXFR
	if ixfr {
		var theirs uint32
		have := false
		for _, rr := range q.req.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				theirs, have = soa.Serial, true
			}
		}
		if !q.tcp || (have && !serialBefore(theirs, z.serial)) {
			m.Authoritative = true
			m.Answer = []dns.RR{z.soa}
			return withEDNS(m, opt, ecs, 0), result{}
		}
	} else if !q.tcp {
		m.Rcode = dns.RcodeFormatError // AXFR is TCP only (RFC 5936 §4.2)
		return withEDNS(m, opt, ecs, 0), result{}
	}
	return m, result{transfer: z}
}

// serialBefore is RFC 1982 serial arithmetic: a comes before b.
func serialBefore(a, b uint32) bool {
	return a != b && int32(b-a) > 0
}

func (z *zone) secondary(a netip.Addr) bool {
	for _, s := range z.Secondaries {
		if s.Addr().Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}

// axfr is the zone as a transfer carries it: SOA, the data, SOA, cut into
// envelopes of a few hundred records.
func (z *zone) axfr(region string) []*dns.Envelope {
	rrs := append([]dns.RR{z.soa}, z.records(region)...)
	rrs = append(rrs, z.soa)
	var out []*dns.Envelope
	for len(rrs) > 0 {
		n := min(len(rrs), 200)
		out = append(out, &dns.Envelope{RR: rrs[:n]})
		rrs = rrs[n:]
	}
	return out
}

// notify tells a zone's secondaries its serial changed (RFC 1996), each
// until it answers or notifyTries are spent; it returns how many answered.
func notify(ctx context.Context, soa *dns.SOA, secondaries []netip.AddrPort) int {
	c := &dns.Client{Net: "udp", Timeout: notifyTimeout}
	answered := 0
	for _, s := range secondaries {
		m := new(dns.Msg)
		m.SetNotify(soa.Hdr.Name)
		m.Authoritative = true
		m.Answer = []dns.RR{soa}
		for range notifyTries {
			if ctx.Err() != nil {
				return answered
			}
			r, _, err := c.ExchangeContext(ctx, m, s.String())
			if err == nil && r.Opcode == dns.OpcodeNotify && r.Id == m.Id {
				answered++
				break
			}
		}
	}
	return answered
}
