package gslb

import (
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// table is a Config compiled for answering: immutable once built, swapped
// whole by Apply (DESIGN.md principle 4: no query sees half a change).
type table struct {
	region string
	zones  map[string]*zone
}

// zone is one compiled zone.
type zone struct {
	Zone
	serial uint32
	hash   uint64
	soa    *dns.SOA
	// negSOA goes in the authority section of NXDOMAIN and NODATA answers,
	// with the negative-caching TTL (RFC 2308 §5: min(TTL, MINIMUM)).
	negSOA *dns.SOA
	names  map[string]*owner
}

// owner is the data at one name of a zone; a name with none is an empty
// non-terminal (NODATA, not NXDOMAIN, below it there are names).
type owner struct {
	static  map[uint16][]dns.RR
	cname   *dns.CNAME
	steered *Record
}

// compile builds the table of a checked Config; prev (may be nil) gives
// the serials of zones whose content did not change.
func compile(cfg Config, prev *table) *table {
	t := &table{region: cfg.Region, zones: make(map[string]*zone, len(cfg.Zones))}
	for _, zc := range cfg.Zones {
		z := &zone{Zone: zc, names: map[string]*owner{}}
		z.soa = &dns.SOA{Hdr: hdr(z.Name, dns.TypeSOA, z.TTL), Ns: z.PrimaryNS, Mbox: z.Hostmaster,
			Refresh: z.Refresh, Retry: z.Retry, Expire: z.Expire, Minttl: z.NegativeTTL}
		apex := z.owner(z.Name)
		for _, ns := range z.Nameservers {
			apex.add(&dns.NS{Hdr: hdr(z.Name, dns.TypeNS, z.TTL), Ns: ns})
		}
		for i := range z.Records {
			r := &z.Records[i]
			o := z.owner(r.Name)
			switch r.Type {
			case 0:
				o.steered = r
				r.rrs = make(map[netip.Addr]dns.RR, len(r.Targets))
				for _, t := range r.Targets {
					r.rrs[t.Addr] = addrRRs(r.Name, r.TTL, []netip.Addr{t.Addr})[0]
				}
			case dns.TypeA:
				for _, v := range r.Values {
					o.add(&dns.A{Hdr: hdr(r.Name, dns.TypeA, r.TTL), A: net.IP(netip.MustParseAddr(v).AsSlice())})
				}
			case dns.TypeAAAA:
				for _, v := range r.Values {
					o.add(&dns.AAAA{Hdr: hdr(r.Name, dns.TypeAAAA, r.TTL), AAAA: net.IP(netip.MustParseAddr(v).AsSlice())})
				}
			case dns.TypeCNAME:
				o.cname = &dns.CNAME{Hdr: hdr(r.Name, dns.TypeCNAME, r.TTL), Target: dns.CanonicalName(r.Values[0])}
				o.add(o.cname)
			case dns.TypeTXT:
				for _, v := range r.Values {
					o.add(&dns.TXT{Hdr: hdr(r.Name, dns.TypeTXT, r.TTL), Txt: splitTXT(v)})
				}
			}
		}
		z.hash = z.contentHash(t.region)
		z.serial = cfg.Serial
		if old := prev.zone(z.Name); old != nil {
			if old.hash == z.hash {
				z.serial = old.serial
			} else if z.serial <= old.serial {
				z.serial = old.serial + 1 // serials only grow (RFC 1982 arithmetic aside)
			}
		}
		z.soa.Serial = z.serial
		neg := *z.soa
		neg.Hdr.Ttl = min(z.TTL, z.NegativeTTL)
		z.negSOA = &neg
		apex.static[dns.TypeSOA] = []dns.RR{z.soa}
		t.zones[z.Name] = z
	}
	return t
}

// owner returns the name's data, creating it and the empty non-terminals
// between it and the apex.
func (z *zone) owner(name string) *owner {
	if o, ok := z.names[name]; ok {
		return o
	}
	o := &owner{static: map[uint16][]dns.RR{}}
	z.names[name] = o
	for n := name; n != z.Name; {
		i := strings.IndexByte(n, '.')
		n = n[i+1:]
		if _, ok := z.names[n]; !ok {
			z.names[n] = &owner{static: map[uint16][]dns.RR{}}
		}
	}
	return o
}

func (o *owner) add(rr dns.RR) {
	t := rr.Header().Rrtype
	o.static[t] = append(o.static[t], rr)
}

// zone is the zone named name, or nil.
func (t *table) zone(name string) *zone {
	if t == nil {
		return nil
	}
	return t.zones[name]
}

// zoneFor is the zone with the longest apex that name (lower case) is in.
func (t *table) zoneFor(name string) *zone {
	for n := name; n != ""; {
		if z, ok := t.zones[n]; ok {
			return z
		}
		i := strings.IndexByte(n, '.')
		if i < 0 || i == len(n)-1 {
			return nil
		}
		n = n[i+1:]
	}
	return nil
}

// contentHash covers what a transfer would carry: a changed hash is a new
// serial and a NOTIFY.
func (z *zone) contentHash(region string) uint64 {
	h := fnv.New64a()
	for _, rr := range z.records(region) {
		h.Write([]byte(rr.String()))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// records lists the zone's data but the SOA, in a fixed order, steered
// records as a client of no region would get them: what AXFR carries.
func (z *zone) records(region string) []dns.RR {
	var out []dns.RR
	for _, name := range slices.Sorted(maps.Keys(z.names)) {
		o := z.names[name]
		for _, typ := range slices.Sorted(maps.Keys(o.static)) {
			if typ != dns.TypeSOA {
				out = append(out, o.static[typ]...)
			}
		}
		if r := o.steered; r != nil {
			for _, family := range []uint16{dns.TypeA, dns.TypeAAAA} {
				ts := ofFamily(r.Targets, family)
				if len(ts) == 0 {
					continue
				}
				c := choose(r, ts, z.Regions, region, asker{})
				out = append(out, addrRRs(name, r.TTL, c.addrs)...)
			}
		}
	}
	return out
}

// ofFamily are the targets whose addresses answer qtype (A or AAAA).
func ofFamily(ts []Target, qtype uint16) []Target {
	var out []Target
	for _, t := range ts {
		if t.Addr.Is4() == (qtype == dns.TypeA) {
			out = append(out, t)
		}
	}
	return out
}

func addrRRs(name string, ttl uint32, addrs []netip.Addr) []dns.RR {
	out := make([]dns.RR, 0, len(addrs))
	for _, a := range addrs {
		if a.Is4() {
			out = append(out, &dns.A{Hdr: hdr(name, dns.TypeA, ttl), A: net.IP(a.AsSlice())})
		} else {
			out = append(out, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA, ttl), AAAA: net.IP(a.AsSlice())})
		}
	}
	return out
}

func hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// txtEscape writes a TXT value in the presentation form miekg/dns packs.
var txtEscape = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// splitTXT cuts a value into the 255-byte strings a TXT record holds.
func splitTXT(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, txtEscape.Replace(v[:255]))
		v = v[255:]
	}
	return append(out, txtEscape.Replace(v))
}
