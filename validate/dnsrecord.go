package validate

import (
	"fmt"
	"strings"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// DNS record defaults and limits.
const (
	defaultTTL          = 30
	maxTTL              = 86400
	defaultTargetWeight = 1
	maxTargetWeight     = 1000
)

// DNSRecord normalises and validates d in place; see Resource. The FQDN is
// stored in lower case with a trailing dot, the form the GSLB answers for.
func DNSRecord(d *weftv1.DNSRecord) error {
	c, err := metadata(kindDNSRecord, d.GetMetadata())
	if err != nil {
		return err
	}
	if d.Spec == nil {
		d.Spec = &weftv1.DNSRecordSpec{}
	}
	s := d.Spec
	fqdn := strings.TrimSuffix(strings.ToLower(s.Fqdn), ".")
	if p := hostProblem(fqdn); p != "" {
		return c.fail("spec.fqdn", "%s", p)
	}
	s.Fqdn = fqdn + "."
	if err := c.oneOf("spec.policy", s.Policy, "failover", "weighted", "geo", "all-healthy"); err != nil {
		return err
	}
	if len(s.Targets) == 0 {
		return c.fail("spec.targets", "must have at least one target")
	}
	for i, t := range s.Targets {
		if err := c.target(i, t); err != nil {
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
