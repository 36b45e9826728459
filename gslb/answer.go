package gslb

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Message sizes.
const (
	// MaxUDPSize is the largest UDP response sent, and the EDNS buffer
	// size advertised: DNS Flag Day 2020's 1232 bytes, which fits the
	// IPv6 minimum MTU without fragmentation.
	MaxUDPSize = 1232
	// maxChase bounds in-zone CNAME chains followed in one answer.
	maxChase = 8
)

// query is one question as the server sees it.
type query struct {
	req *dns.Msg
	// src is the resolver's address.
	src netip.Addr
	tcp bool
	// pick varies per query (weighted draws, rotation).
	pick uint64
}

// result tells the server what an answer was, for its counters.
type result struct {
	failOpen bool
	why      func() string // nil for answers no policy chose
	scope    int
	// transfer is set for AXFR and IXFR queries allowed over TCP: the
	// server streams the zone instead of sending the message.
	transfer *zone
}

// respond answers q from t. It never returns nil: every query that reaches
// it gets an answer (the server may still drop it: rate limiting).
func (t *table) respond(q query) (*dns.Msg, result) {
	req := q.req
	m := new(dns.Msg)
	m.SetReply(req)
	m.Compress = true
	var res result
	opt := req.IsEdns0()
	var ecs *dns.EDNS0_SUBNET
	if opt != nil {
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			m.SetEdns0(MaxUDPSize, false)
			return m, res
		}
		for _, o := range opt.Option {
			if s, ok := o.(*dns.EDNS0_SUBNET); ok {
				ecs = s
			}
		}
	}
	client, ok := clientPrefix(ecs, q.src)
	if !ok {
		m.Rcode = dns.RcodeFormatError
		return withEDNS(m, opt, nil, 0), res
	}
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		m.Rcode = dns.RcodeNotImplemented
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
		}
		return withEDNS(m, opt, nil, 0), res
	}
	question := req.Question[0]
	name := strings.ToLower(question.Name)
	z := t.zoneFor(name)
	if z == nil || (question.Qclass != dns.ClassINET && question.Qclass != dns.ClassANY) {
		m.Rcode = dns.RcodeRefused // not ours: no recursion, no referral
		return withEDNS(m, opt, ecs, 0), res
	}
	switch question.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		return t.transfer(m, q, z, opt, ecs)
	}
	m.Authoritative = true
	res = t.answer(m, z, name, question.Qtype, asker{client: client, pick: q.pick})
	return withEDNS(m, opt, ecs, res.scope), res
}

// answer fills m with the zone's data for name and qtype (RFC 1034
// §4.3.2 for one zone with no delegations).
func (t *table) answer(m *dns.Msg, z *zone, name string, qtype uint16, a asker) result {
	var res result
	for range maxChase {
		o := z.names[name]
		if o == nil {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{z.negSOA}
			return res
		}
		if qtype == dns.TypeANY {
			// RFC 8482 §4.2: one synthesised HINFO instead of everything.
			m.Answer = append(m.Answer, &dns.HINFO{Hdr: hdr(name, dns.TypeHINFO, z.TTL), Cpu: "RFC8482"})
			return res
		}
		if o.cname != nil && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, o.cname)
			target := o.cname.Target
			if t.zoneFor(target) != z {
				return res // out of the zone: the resolver follows it
			}
			name = target
			continue
		}
		m.Answer = append(m.Answer, o.static[qtype]...)
		if r := o.steered; r != nil && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
			if ts := ofFamily(r.Targets, qtype); len(ts) > 0 {
				c := choose(r, ts, z.Regions, t.region, a)
				r.answerRRs(m, c.addrs)
				res = result{failOpen: c.failOpen, why: c.why, scope: c.scope}
			}
		}
		if qtype == dns.TypeNS && name == z.Name {
			m.Extra = append(m.Extra, z.glue()...)
		}
		if len(m.Answer) == 0 || (qtype != dns.TypeCNAME && m.Answer[len(m.Answer)-1].Header().Rrtype == dns.TypeCNAME) {
			m.Ns = []dns.RR{z.negSOA} // NODATA (RFC 2308 §2.2)
		}
		return res
	}
	m.Rcode = dns.RcodeServerFailure // a CNAME loop in the zone
	return res
}

// glue are the in-zone addresses of the zone's name servers.
func (z *zone) glue() []dns.RR {
	var out []dns.RR
	for _, ns := range z.Nameservers {
		if o := z.names[ns]; o != nil {
			out = append(out, o.static[dns.TypeA]...)
			out = append(out, o.static[dns.TypeAAAA]...)
		}
	}
	return out
}

// clientPrefix is the prefix that decides geo: the ECS source prefix when
// the query has one that is not /0 (RFC 7871 §7.1.2), else the resolver's
// address. ok is false for an ECS option RFC 7871 §7.1.3 answers FORMERR.
func clientPrefix(ecs *dns.EDNS0_SUBNET, src netip.Addr) (netip.Prefix, bool) {
	var resolver netip.Prefix
	if src.IsValid() {
		src = src.Unmap()
		resolver = netip.PrefixFrom(src, src.BitLen())
	}
	if ecs == nil {
		return resolver, true
	}
	var bits int
	switch ecs.Family {
	case 1:
		bits = 32
	case 2:
		bits = 128
	default:
		return netip.Prefix{}, false
	}
	if int(ecs.SourceNetmask) > bits || ecs.SourceScope != 0 {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(ecs.Address)
	if !ok {
		return netip.Prefix{}, false
	}
	if bits == 32 {
		a = a.Unmap()
	}
	if a.BitLen() != bits {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, int(ecs.SourceNetmask))
	if p.Masked().Addr() != a {
		return netip.Prefix{}, false // bits set past the source prefix
	}
	if ecs.SourceNetmask == 0 {
		return resolver, true
	}
	return p, true
}

// withEDNS adds the OPT record to the reply of a query that had one, with
// the ECS option echoed and its scope set (RFC 7871 §7.2.1).
func withEDNS(m *dns.Msg, opt *dns.OPT, ecs *dns.EDNS0_SUBNET, scope int) *dns.Msg {
	if opt == nil {
		return m
	}
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(MaxUDPSize)
	if m.Rcode > 0xF {
		o.SetExtendedRcode(uint16(m.Rcode))
	}
	if ecs != nil {
		e := *ecs
		e.SourceScope = uint8(scope)
		if ecs.SourceNetmask == 0 {
			e.SourceScope = 0
		}
		e.Address = append(net.IP(nil), ecs.Address...)
		o.Option = append(o.Option, &e)
	}
	m.Extra = append(m.Extra, o)
	return m
}

// udpLimit is the largest UDP response a query allows (RFC 6891 §6.2.5).
func udpLimit(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(dns.MinMsgSize, min(int(opt.UDPSize()), MaxUDPSize))
	}
	return dns.MinMsgSize
}
