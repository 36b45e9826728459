package gslb

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Policy steers a record's answers among its targets.
type Policy string

// Policies (DESIGN.md "Resource model": DNSRecord).
const (
	// Failover answers the healthy targets of the lowest priority that has one.
	Failover Policy = "failover"
	// Weighted answers one healthy target per query, drawn by weight.
	Weighted Policy = "weighted"
	// Geo answers the healthy targets of the client's region: by EDNS
	// Client Subnet when the query has one, else the resolver's address.
	Geo Policy = "geo"
	// AllHealthy answers every healthy target, up to MaxAnswers, rotated.
	AllHealthy Policy = "all-healthy"
	// Nearest answers the healthy targets of the answering node's region.
	Nearest Policy = "nearest"
)

// Zone defaults (RFC 1912's recommendations, and a short negative TTL so a
// name added after a miss is found soon).
const (
	DefaultRefresh     = 3600
	DefaultRetry       = 600
	DefaultExpire      = 604800
	DefaultNegativeTTL = 30
	DefaultZoneTTL     = 3600
	DefaultMaxAnswers  = 8
)

// Config is the whole DNS configuration of one node.
type Config struct {
	// Region is the answering node's region, for Nearest.
	Region string
	// Serial is the serial a zone takes when its content changes (the Raft
	// index of the state, so it grows); an unchanged zone keeps its serial.
	Serial uint32
	Zones  []Zone
}

// Zone is one zone served authoritatively.
type Zone struct {
	// Name is the apex, lower case with the trailing dot.
	Name string
	// PrimaryNS and Hostmaster are the SOA MNAME and RNAME; Nameservers
	// the apex NS set. Empty fields take defaults under the zone.
	PrimaryNS   string
	Hostmaster  string
	Nameservers []string
	// Refresh, Retry, Expire and NegativeTTL are the SOA fields (seconds);
	// TTL is that of the SOA and NS records. Zero takes the defaults.
	Refresh, Retry, Expire, NegativeTTL, TTL uint32
	// Secondaries are sent NOTIFY on changes and may transfer the zone.
	Secondaries []netip.AddrPort
	// Regions map client prefixes to regions for Geo.
	Regions []Region
	Records []Record
}

// Region is a named set of client prefixes.
type Region struct {
	Name     string
	Prefixes []netip.Prefix
}

// Record is the data at one name. A static record has Type and Values; a
// steered one Policy and Targets. Several Records may share a name (an A
// and a TXT) but not a type, and a CNAME stands alone.
type Record struct {
	// Name is the owner, lower case with the trailing dot, in the zone.
	Name string
	// Source names the record for status (the DNSRecord resource).
	Source string
	TTL    uint32
	// Type is dns.TypeA, TypeAAAA, TypeCNAME or TypeTXT for static data.
	Type   uint16
	Values []string
	Policy Policy
	// Targets are the steered record's candidates.
	Targets []Target
	// MaxAnswers caps AllHealthy answers (0: DefaultMaxAnswers).
	MaxAnswers int

	// rrs are the targets' records, built once by compile and shared,
	// read only, by every answer.
	rrs map[netip.Addr]dns.RR
}

// answerRRs are the records of the chosen addresses.
func (r *Record) answerRRs(m *dns.Msg, addrs []netip.Addr) {
	for _, a := range addrs {
		m.Answer = append(m.Answer, r.rrs[a])
	}
}

// Target is one address a steered record may answer.
type Target struct {
	// Name is what status calls the target: the load balancer's name, or
	// the address.
	Name     string
	Addr     netip.Addr
	Region   string
	Weight   uint32
	Priority uint32
	// Healthy is the target's state as the caller decided it (the agreed
	// health view and BGP); Reason says why, for status.
	Healthy bool
	Reason  string
}

// check validates c and fills the defaults of a copy; an invalid config
// changes nothing.
func (c Config) check() (Config, error) {
	out := c
	out.Zones = make([]Zone, len(c.Zones))
	seen := map[string]bool{}
	for i, z := range c.Zones {
		z, err := z.check()
		if err != nil {
			return Config{}, err
		}
		if seen[z.Name] {
			return Config{}, fmt.Errorf("zone %s: configured twice", z.Name)
		}
		seen[z.Name] = true
		out.Zones[i] = z
	}
	return out, nil
}

func (z Zone) check() (Zone, error) {
	name, err := canonical(z.Name)
	if err != nil {
		return Zone{}, fmt.Errorf("zone %q: %w", z.Name, err)
	}
	z.Name = name
	fail := func(format string, args ...any) error {
		return fmt.Errorf("zone %s: %s", name, fmt.Sprintf(format, args...))
	}
	z.PrimaryNS = cmp.Or(z.PrimaryNS, "ns1."+name)
	z.Hostmaster = cmp.Or(z.Hostmaster, "hostmaster."+name)
	if len(z.Nameservers) == 0 {
		z.Nameservers = []string{z.PrimaryNS}
	}
	for _, p := range []*string{&z.PrimaryNS, &z.Hostmaster} {
		if *p, err = canonical(*p); err != nil {
			return Zone{}, fail("SOA name: %v", err)
		}
	}
	z.Nameservers = slices.Clone(z.Nameservers)
	for i := range z.Nameservers {
		if z.Nameservers[i], err = canonical(z.Nameservers[i]); err != nil {
			return Zone{}, fail("nameserver: %v", err)
		}
	}
	z.Refresh = cmp.Or(z.Refresh, DefaultRefresh)
	z.Retry = cmp.Or(z.Retry, DefaultRetry)
	z.Expire = cmp.Or(z.Expire, DefaultExpire)
	z.NegativeTTL = cmp.Or(z.NegativeTTL, DefaultNegativeTTL)
	z.TTL = cmp.Or(z.TTL, DefaultZoneTTL)
	regions := map[string]bool{}
	for _, r := range z.Regions {
		if r.Name == "" || regions[r.Name] {
			return Zone{}, fail("region %q: empty or repeated name", r.Name)
		}
		regions[r.Name] = true
	}
	z.Records = slices.Clone(z.Records)
	types := map[string]map[uint16]string{} // name -> type -> source
	for i := range z.Records {
		r := &z.Records[i]
		if r.Name, err = canonical(r.Name); err != nil {
			return Zone{}, fail("record %s: %v", r.Source, err)
		}
		if !dns.IsSubDomain(name, r.Name) {
			return Zone{}, fail("record %s: %s is not in the zone", r.Source, r.Name)
		}
		if err := r.check(); err != nil {
			return Zone{}, fail("record %s (%s): %v", r.Source, r.Name, err)
		}
		kinds := []uint16{r.Type}
		if r.Policy != "" {
			kinds = []uint16{dns.TypeA, dns.TypeAAAA}
		}
		if types[r.Name] == nil {
			types[r.Name] = map[uint16]string{}
		}
		for _, t := range kinds {
			if other, ok := types[r.Name][t]; ok {
				return Zone{}, fail("records %s and %s both answer %s %s", other, r.Source, r.Name, dns.TypeToString[t])
			}
			types[r.Name][t] = r.Source
		}
	}
	for owner, ts := range types {
		if _, ok := ts[dns.TypeCNAME]; ok && (len(ts) > 1 || owner == name) {
			return Zone{}, fail("record %s: a CNAME must be the only data at %s, and not at the apex", ts[dns.TypeCNAME], owner)
		}
	}
	return z, nil
}

func (r *Record) check() error {
	if (r.Policy == "") == (r.Type == 0) {
		return errors.New("a record has either a type (static) or a policy (steered)")
	}
	if r.Policy != "" {
		switch r.Policy {
		case Failover, Weighted, Geo, AllHealthy, Nearest:
		default:
			return fmt.Errorf("policy %q is not one of failover, weighted, geo, all-healthy, nearest", r.Policy)
		}
		if len(r.Targets) == 0 {
			return errors.New("a steered record needs targets")
		}
		for _, t := range r.Targets {
			if !t.Addr.IsValid() {
				return fmt.Errorf("target %q has no address", t.Name)
			}
		}
		if r.MaxAnswers == 0 {
			r.MaxAnswers = DefaultMaxAnswers
		}
		r.Targets = slices.Clone(r.Targets)
		return nil
	}
	if len(r.Values) == 0 {
		return errors.New("a static record needs values")
	}
	switch r.Type {
	case dns.TypeA, dns.TypeAAAA:
		for _, v := range r.Values {
			a, err := netip.ParseAddr(v)
			if err != nil || a.Is4() != (r.Type == dns.TypeA) {
				return fmt.Errorf("%q is not an %s address", v, dns.TypeToString[r.Type])
			}
		}
	case dns.TypeCNAME:
		if len(r.Values) != 1 {
			return fmt.Errorf("a CNAME has one value, not %d", len(r.Values))
		}
		if _, err := canonical(r.Values[0]); err != nil {
			return fmt.Errorf("CNAME target: %w", err)
		}
	case dns.TypeTXT:
		for _, v := range r.Values {
			if len(v) > 255*16 {
				return fmt.Errorf("a TXT value of %d bytes is too long", len(v))
			}
		}
	default:
		return fmt.Errorf("type %s is not A, AAAA, CNAME or TXT", dns.TypeToString[r.Type])
	}
	return nil
}

// canonical is a name in lower case with the trailing dot, or an error.
func canonical(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	n := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(n); !ok {
		return "", fmt.Errorf("%q is not a domain name", name)
	}
	return n, nil
}

// TypeOf is the record type named s ("A", "txt"), or 0.
func TypeOf(s string) uint16 {
	return dns.StringToType[strings.ToUpper(s)]
}
