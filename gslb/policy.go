package gslb

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// choice is a steered record's answer to one query, and why.
type choice struct {
	addrs []netip.Addr
	// scope is the EDNS Client Subnet scope of the answer: the prefix
	// length of client addresses that get the same one (0: every client).
	scope    int
	failOpen bool
	// why says how the addresses were chosen; it is only called when
	// someone asks (status, `weft dns query`), not per query served.
	why func() string
}

// asker is what a policy may know of the query: the client prefix that
// decides geo (the ECS source prefix, or the resolver's address as a host
// prefix; invalid when neither) and a number that varies per query, for
// weighted draws and rotation.
type asker struct {
	client netip.Prefix
	pick   uint64
	// region, when regionKnown, is the geo region instead of the
	// client's: status explains each region's answer.
	region      string
	regionKnown bool
}

// geo is the client's region and the ECS scope of that decision.
func (q asker) geo(regions []Region) (string, int) {
	if q.regionKnown {
		return q.region, 0
	}
	return geoRegion(regions, q.client)
}

// choose applies r's policy to targets (those of the queried address
// family). regions are the zone's, self the answering node's region. It is
// a pure function: status and `weft dns query` explain what queries get.
func choose(r *Record, targets []Target, regions []Region, self string, q asker) choice {
	var healthy []Target
	for _, t := range targets {
		if t.Healthy {
			healthy = append(healthy, t)
		}
	}
	if len(healthy) == 0 {
		c := choice{addrs: capped(addrsOf(targets), r.MaxAnswers, 0), failOpen: true, why: func() string {
			return fmt.Sprintf("no target is healthy (%s): answering every one (fail open)", names(targets))
		}}
		if r.Policy == Geo {
			_, c.scope = q.geo(regions)
		}
		return c
	}
	switch r.Policy {
	case Failover:
		return failover(targets, healthy)
	case Weighted:
		return weighted(healthy, q.pick)
	case Geo:
		region, scope := q.geo(regions)
		who := func() string {
			if q.regionKnown {
				return "geo: a client"
			}
			return "geo: client " + clientText(q.client)
		}
		c := inRegion(r, healthy, region, q.pick, who)
		c.scope = scope
		return c
	case Nearest:
		return inRegion(r, healthy, self, q.pick, func() string { return "nearest: answering node" })
	default: // AllHealthy
		return choice{addrs: capped(addrsOf(healthy), r.MaxAnswers, q.pick), why: func() string {
			return fmt.Sprintf("all-healthy: %d of %d targets healthy (%s)", len(healthy), len(targets), names(healthy))
		}}
	}
}

// failover answers the healthy targets of the lowest priority that has
// one, naming the better ones that are down.
func failover(all, healthy []Target) choice {
	best := slices.MinFunc(healthy, func(a, b Target) int { return cmp.Compare(a.Priority, b.Priority) }).Priority
	var chosen, down []Target
	for _, t := range healthy {
		if t.Priority == best {
			chosen = append(chosen, t)
		}
	}
	for _, t := range all {
		if t.Priority < best {
			down = append(down, t)
		}
	}
	return choice{addrs: addrsOf(chosen), why: func() string {
		reason := fmt.Sprintf("failover: priority %d (%s)", best, names(chosen))
		if len(down) > 0 {
			reason += fmt.Sprintf("; before it down: %s", names(down))
		}
		return reason
	}}
}

// weighted draws one healthy target with probability weight/total; pick
// is uniform per query. Weights of zero are drawn only when all are zero.
func weighted(healthy []Target, pick uint64) choice {
	var total uint64
	for _, t := range healthy {
		total += uint64(t.Weight)
	}
	why := func() string { return fmt.Sprintf("weighted: one per query by weight among %s", weights(healthy)) }
	if total == 0 {
		return choice{addrs: []netip.Addr{healthy[pick%uint64(len(healthy))].Addr}, why: why}
	}
	n := pick % total
	for _, t := range healthy {
		if n < uint64(t.Weight) {
			return choice{addrs: []netip.Addr{t.Addr}, why: why}
		}
		n -= uint64(t.Weight)
	}
	panic("unreachable: n < total")
}

// inRegion answers the healthy targets of region, or every healthy target
// when the region has none (or there is no region).
func inRegion(r *Record, healthy []Target, region string, pick uint64, who func() string) choice {
	var in []Target
	for _, t := range healthy {
		if region != "" && t.Region == region {
			in = append(in, t)
		}
	}
	switch {
	case region == "":
		return choice{addrs: capped(addrsOf(healthy), r.MaxAnswers, pick), why: func() string {
			return who() + " is in no region: answering every healthy target (" + names(healthy) + ")"
		}}
	case len(in) == 0:
		return choice{addrs: capped(addrsOf(healthy), r.MaxAnswers, pick), why: func() string {
			return fmt.Sprintf("%s is in region %s, which has no healthy target: answering every healthy target (%s)", who(), region, names(healthy))
		}}
	}
	return choice{addrs: capped(addrsOf(in), r.MaxAnswers, pick), why: func() string {
		return fmt.Sprintf("%s is in region %s (%s)", who(), region, names(in))
	}}
}

// geoRegion is the region of the longest prefix holding the client's
// address, and the scope of that decision: the shortest prefix of the
// client's address all of whose addresses get the same region.
func geoRegion(regions []Region, client netip.Prefix) (string, int) {
	if !client.IsValid() {
		return "", 0
	}
	a := client.Addr()
	region := regionOf(regions, netip.PrefixFrom(a, a.BitLen()))
	for bits := 0; bits < a.BitLen(); bits++ {
		if uniform(regions, netip.PrefixFrom(a, bits).Masked(), region) {
			return region, bits
		}
	}
	return region, a.BitLen()
}

// regionOf is the region of the longest prefix that contains block.
func regionOf(regions []Region, block netip.Prefix) string {
	best, bits := "", -1
	for _, r := range regions {
		for _, p := range r.Prefixes {
			if p.Addr().Is4() == block.Addr().Is4() && p.Bits() <= block.Bits() && p.Bits() > bits && p.Contains(block.Addr()) {
				best, bits = r.Name, p.Bits()
			}
		}
	}
	return best
}

// uniform reports whether every address of block is in region: the
// longest prefix containing the block says so, and so does every prefix
// inside it.
func uniform(regions []Region, block netip.Prefix, region string) bool {
	if regionOf(regions, block) != region {
		return false
	}
	for _, r := range regions {
		if r.Name == region {
			continue
		}
		for _, p := range r.Prefixes {
			if p.Addr().Is4() == block.Addr().Is4() && p.Bits() > block.Bits() && block.Contains(p.Addr()) {
				return false
			}
		}
	}
	return true
}

func clientText(p netip.Prefix) string {
	if !p.IsValid() {
		return "(unknown)"
	}
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// capped is at most max addresses, rotated by pick so that clients spread
// over all of them.
func capped(addrs []netip.Addr, max int, pick uint64) []netip.Addr {
	if len(addrs) == 0 {
		return addrs
	}
	start := int(pick % uint64(len(addrs)))
	out := make([]netip.Addr, 0, min(len(addrs), max))
	for i := range min(len(addrs), max) {
		out = append(out, addrs[(start+i)%len(addrs)])
	}
	return out
}

func addrsOf(ts []Target) []netip.Addr {
	out := make([]netip.Addr, len(ts))
	for i, t := range ts {
		out[i] = t.Addr
	}
	return out
}

func names(ts []Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.Name
	}
	return strings.Join(s, ", ")
}

func weights(ts []Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = fmt.Sprintf("%s=%d", t.Name, t.Weight)
	}
	return strings.Join(s, ", ")
}
