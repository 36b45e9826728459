package validate

import (
	"fmt"
	"net/netip"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// maxPoolCIDRs bounds an address pool's prefixes.
const maxPoolCIDRs = 64

// AddressPool normalises and validates p in place; see Resource. Each CIDR
// is stored in canonical form; overlaps with other pools and the addresses
// load balancers hold are the state store's to check.
func AddressPool(p *weftv1.AddressPool) error {
	c, err := metadata(kindAddressPool, p.GetMetadata())
	if err != nil {
		return err
	}
	if p.Spec == nil {
		p.Spec = &weftv1.AddressPoolSpec{}
	}
	s := p.Spec
	switch {
	case len(s.Cidrs) == 0:
		return c.fail("spec.cidrs", "at least one CIDR is required")
	case len(s.Cidrs) > maxPoolCIDRs:
		return c.fail("spec.cidrs", "%d CIDRs (at most %d)", len(s.Cidrs), maxPoolCIDRs)
	}
	var prefixes []netip.Prefix
	for i, cidr := range s.Cidrs {
		field := fmt.Sprintf("spec.cidrs[%d]", i)
		pfx, err := netip.ParsePrefix(cidr)
		if err != nil {
			return c.fail(field, "%q is not a CIDR (such as 192.0.2.0/28 or 2001:db8::/120)", cidr)
		}
		a := pfx.Addr()
		switch {
		case a.Zone() != "":
			return c.fail(field, "%q has a zone; use a prefix without %%zone", cidr)
		case a.Is4In6():
			return c.fail(field, "%q is an IPv4-mapped prefix; write it as IPv4", cidr)
		case pfx.Masked() != pfx:
			return c.fail(field, "%q has bits set past the prefix length; write %s", cidr, pfx.Masked())
		case a.IsUnspecified() && pfx.Bits() == 0:
			return c.fail(field, "%q is every address", cidr)
		case a.IsMulticast():
			return c.fail(field, "%q is multicast", cidr)
		}
		for j, q := range prefixes {
			if q.Overlaps(pfx) {
				return c.fail(field, "%s overlaps spec.cidrs[%d] (%s)", pfx, j, q)
			}
		}
		prefixes = append(prefixes, pfx)
		s.Cidrs[i] = pfx.String()
	}
	return c.zones(s.Region, s.PrimaryZone, s.BackupZones)
}
