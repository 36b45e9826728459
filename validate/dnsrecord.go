package validate

import (
	"fmt"
	"net/netip"
	"strings"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// DNS record defaults and limits.
const (
	defaultTTL          = 30
	maxTTL              = 86400
	defaultTargetWeight = 1
	maxTargetWeight     = 1000
	maxTargets          = 64
	defaultMaxAnswers   = 8
	// maxTXT bounds a TXT value: with the rest of an answer it still fits
	// a TCP message many times over, and UDP answers are truncated.
	maxTXT        = 4000
	maxValues     = 64
	maxRegionNets = 1024
	// Zone defaults (RFC 1912's recommendations; a short negative TTL so a
	// name added after a miss is found soon).
	defaultRefresh     = 3600
	defaultRetry       = 600
	defaultExpire      = 604800
	defaultNegativeTTL = 30
	maxSOATimer        = 1<<31 - 1
)

// DNSRecord normalises and validates d in place; see Resource. The FQDN and
// every name are stored in lower case with a trailing dot, the form the
// GSLB answers for. A record is a steered one (policy and targets), a
// static one (type and values), or neither; any of them may also be its
// zone's apex (zone).
func DNSRecord(d *weftv1.DNSRecord) error {
	c, err := metadata(kindDNSRecord, d.GetMetadata())
	if err != nil {
		return err
	}
	if d.Spec == nil {
		d.Spec = &weftv1.DNSRecordSpec{}
	}
	s := d.Spec
	if s.Fqdn, err = c.fqdn("spec.fqdn", s.Fqdn); err != nil {
		return err
	}
	switch {
	case s.Type != "":
		err = c.staticRecord(s)
	case s.Policy != "" || len(s.Targets) > 0 || s.Zone == nil:
		err = c.steeredRecord(s)
	case len(s.Values) > 0:
		err = c.fail("spec.values", "only static records have values; set spec.type (A, AAAA, CNAME or TXT)")
	}
	if err != nil {
		return err
	}
	if s.Zone != nil {
		if err := c.zone(s.Fqdn, s.Zone); err != nil {
			return err
		}
	}
	if s.Ttl == 0 {
		s.Ttl = defaultTTL
	}
	if s.Ttl > maxTTL {
		return c.fail("spec.ttl", "%d is not valid (1..%d)", s.Ttl, maxTTL)
	}
	return nil
}

// fqdn checks a domain name and returns it lower case with the dot.
func (c checker) fqdn(field, s string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	if p := hostProblem(name); p != "" {
		return "", c.fail(field, "%s", p)
	}
	return name + ".", nil
}

func (c checker) steeredRecord(s *weftv1.DNSRecordSpec) error {
	if err := c.oneOf("spec.policy", s.Policy, "failover", "weighted", "geo", "all-healthy", "nearest"); err != nil {
		if s.Policy == "" {
			return c.fail("spec.policy", "must be set (failover, weighted, geo, all-healthy or nearest), or spec.type for a static record, or spec.zone for a zone apex")
		}
		return err
	}
	if len(s.Values) > 0 {
		return c.fail("spec.values", "a record with a policy answers its targets; values are for static records (spec.type)")
	}
	if len(s.Targets) == 0 {
		return c.fail("spec.targets", "must have at least one target")
	}
	if len(s.Targets) > maxTargets {
		return c.fail("spec.targets", "has %d targets (at most %d)", len(s.Targets), maxTargets)
	}
	addresses := 0
	for i, t := range s.Targets {
		if err := c.target(i, t); err != nil {
			return err
		}
		if t.Address != "" {
			addresses++
		}
	}
	if s.MaxAnswers == 0 {
		s.MaxAnswers = defaultMaxAnswers
	}
	if s.MaxAnswers > maxTargets {
		return c.fail("spec.maxAnswers", "%d is not valid (1..%d)", s.MaxAnswers, maxTargets)
	}
	if s.HealthCheck == nil {
		return nil
	}
	switch {
	case addresses == 0:
		return c.fail("spec.healthCheck", "checks address targets, and this record has none (load balancers' health comes from their pools)")
	case s.HealthCheck.Port == 0:
		return c.fail("spec.healthCheck.port", "must be set: address targets have no port of their own")
	}
	return c.healthCheck(s.HealthCheck)
}

func (c checker) staticRecord(s *weftv1.DNSRecordSpec) error {
	s.Type = strings.ToUpper(s.Type)
	if err := c.oneOf("spec.type", s.Type, "A", "AAAA", "CNAME", "TXT"); err != nil {
		return err
	}
	switch {
	case s.Policy != "" || len(s.Targets) > 0:
		return c.fail("spec.type", "a static %s record has values, not a policy and targets", s.Type)
	case s.HealthCheck != nil:
		return c.fail("spec.healthCheck", "only records with address targets are checked")
	case s.MaxAnswers != 0:
		return c.fail("spec.maxAnswers", "only records with targets have a cap on answers")
	case len(s.Values) == 0:
		return c.fail("spec.values", "must have at least one value for a %s record", s.Type)
	case len(s.Values) > maxValues:
		return c.fail("spec.values", "has %d values (at most %d)", len(s.Values), maxValues)
	case s.Type == "CNAME" && len(s.Values) != 1:
		return c.fail("spec.values", "a CNAME has exactly one value, got %d", len(s.Values))
	case s.Type == "CNAME" && s.Zone != nil:
		return c.fail("spec.type", "a zone apex cannot be a CNAME: it has the SOA and NS records")
	}
	for i, v := range s.Values {
		field := fmt.Sprintf("spec.values[%d]", i)
		switch s.Type {
		case "A", "AAAA":
			a, err := c.address(field, v)
			if err != nil {
				return err
			}
			if netip.MustParseAddr(a).Is4() != (s.Type == "A") {
				return c.fail(field, "%s is not an %s address", v, map[bool]string{true: "IPv4", false: "IPv6"}[s.Type == "A"])
			}
			s.Values[i] = a
		case "CNAME":
			name, err := c.fqdn(field, v)
			if err != nil {
				return err
			}
			s.Values[i] = name
		case "TXT":
			if len(v) > maxTXT {
				return c.fail(field, "is %d bytes long (at most %d)", len(v), maxTXT)
			}
		}
	}
	return nil
}

func (c checker) target(i int, t *weftv1.DNSTarget) error {
	field := fmt.Sprintf("spec.targets[%d]", i)
	switch {
	case t == nil:
		return c.fail(field, "must not be null")
	case t.LoadBalancer == "" && t.Address == "":
		return c.fail(field, "must set exactly one of loadBalancer and address; it sets neither")
	case t.LoadBalancer != "" && t.Address != "":
		return c.fail(field, "must set exactly one of loadBalancer and address; it sets both")
	case t.LoadBalancer != "":
		if err := c.label(field+".loadBalancer", t.LoadBalancer); err != nil {
			return err
		}
	default:
		a, err := c.address(field+".address", t.Address)
		if err != nil {
			return err
		}
		t.Address = a
	}
	if err := c.optionalLabel(field+".region", t.Region); err != nil {
		return err
	}
	if t.Weight == 0 {
		t.Weight = defaultTargetWeight
	}
	if t.Weight > maxTargetWeight {
		return c.fail(field+".weight", "must be 0..%d, got %d", maxTargetWeight, t.Weight)
	}
	return nil
}

// zone fills a zone apex's defaults and checks its fields.
func (c checker) zone(apex string, z *weftv1.DNSZone) error {
	var err error
	if z.PrimaryNs == "" {
		z.PrimaryNs = "ns1." + apex
	}
	if z.PrimaryNs, err = c.fqdn("spec.zone.primaryNs", z.PrimaryNs); err != nil {
		return err
	}
	if z.Hostmaster == "" {
		z.Hostmaster = "hostmaster." + apex
	}
	if z.Hostmaster, err = c.fqdn("spec.zone.hostmaster", z.Hostmaster); err != nil {
		return err
	}
	if len(z.Nameservers) == 0 {
		z.Nameservers = []string{z.PrimaryNs}
	}
	for i := range z.Nameservers {
		if z.Nameservers[i], err = c.fqdn(fmt.Sprintf("spec.zone.nameservers[%d]", i), z.Nameservers[i]); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		field string
		v     *uint32
		def   uint32
		max   uint32
	}{
		{"refresh", &z.Refresh, defaultRefresh, maxSOATimer},
		{"retry", &z.Retry, defaultRetry, maxSOATimer},
		{"expire", &z.Expire, defaultExpire, maxSOATimer},
		{"negativeTtl", &z.NegativeTtl, defaultNegativeTTL, maxTTL},
	} {
		if *t.v == 0 {
			*t.v = t.def
		}
		if *t.v > t.max {
			return c.fail("spec.zone."+t.field, "%d is not valid (1..%d)", *t.v, t.max)
		}
	}
	for i, s := range z.Secondaries {
		field := fmt.Sprintf("spec.zone.secondaries[%d]", i)
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return c.fail(field, "%q is not an IP address or IP:port", s)
			}
			ap = netip.AddrPortFrom(a, 53)
		}
		if ap.Port() == 0 {
			return c.fail(field, "port 0 is not valid (1-65535)")
		}
		a, err := c.address(field, ap.Addr().String())
		if err != nil {
			return err
		}
		z.Secondaries[i] = netip.AddrPortFrom(netip.MustParseAddr(a), ap.Port()).String()
	}
	seen := map[string]int{}
	nets := 0
	for i, r := range z.Regions {
		field := fmt.Sprintf("spec.zone.regions[%d]", i)
		if r == nil {
			return c.fail(field, "must not be null")
		}
		if err := c.label(field+".name", r.Name); err != nil {
			return err
		}
		if j, dup := seen[r.Name]; dup {
			return c.fail(field+".name", "%q is already spec.zone.regions[%d]", r.Name, j)
		}
		seen[r.Name] = i
		if len(r.Cidrs) == 0 {
			return c.fail(field+".cidrs", "must have at least one prefix")
		}
		for j, s := range r.Cidrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return c.fail(fmt.Sprintf("%s.cidrs[%d]", field, j), "%q is not a prefix such as 203.0.113.0/24", s)
			}
			r.Cidrs[j] = p.Masked().String()
			nets++
		}
	}
	if nets > maxRegionNets {
		return c.fail("spec.zone.regions", "have %d prefixes (at most %d)", nets, maxRegionNets)
	}
	return nil
}
