package raftfsm

import (
	"fmt"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// An address pool's invariants: its prefixes overlap no other pool's; an
// address in a pool is the VIP of one load balancer at most (held); a load
// balancer that names a pool has its VIP in it. The state store allocates,
// so that two writers (two controllers, a controller and `weft apply`)
// can never be given one address: Raft orders their writes, and each sees
// the other's allocation.
var addressPoolKind = &resourceKind{
	name:  KindAddressPool,
	noun:  "address pool",
	table: tableAddressPools,
	unwrap: func(r *weftv1.Resource) proto.Message {
		if m := r.GetAddressPool(); m != nil {
			return m
		}
		return nil
	},
	wrap: func(m proto.Message) *weftv1.Resource {
		return &weftv1.Resource{Kind: &weftv1.Resource_AddressPool{AddressPool: m.(*weftv1.AddressPool)}}
	},
	check: checkAddressPool,
	users: addressPoolUsers,
}

// poolPrefixes are the pool's CIDRs; validate.AddressPool has checked them.
func poolPrefixes(p *weftv1.AddressPool) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range p.GetSpec().GetCidrs() {
		if pfx, err := netip.ParsePrefix(c); err == nil {
			out = append(out, pfx)
		}
	}
	return out
}

func poolContains(prefixes []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}

// allocatable reports whether the pool may hand out a: not an IPv4 subnet's
// network or broadcast address, nor an IPv6 subnet's router anycast address
// (RFC 4291 2.6.1), where the prefix is wide enough to have them.
func allocatable(p netip.Prefix, a netip.Addr) bool {
	first, last := a == p.Addr(), !p.Contains(a.Next())
	if p.Addr().Is4() {
		return p.Bits() > 30 || !first && !last
	}
	return p.Bits() > 126 || !first
}

// addressPool returns the named pool, or a FailedPrecondition naming the
// load balancer that refers to it.
func (tx *writeTxn) addressPool(name, lb string) (*weftv1.AddressPool, error) {
	raw, err := tx.txn.First(tableAddressPools, indexID, name)
	if err != nil {
		return nil, fmt.Errorf("look up address pool %q: %w", name, err)
	}
	if raw == nil {
		return nil, stateErrorf(FailedPrecondition, "load balancer %q: spec.addressPool: address pool %q does not exist", lb, name)
	}
	return raw.(*weftv1.AddressPool), nil
}

// allocateVIP gives a load balancer that names an address pool the pool's
// zones, when it sets none, and, when its VIP is empty, the address it
// already holds or else the pool's lowest free one.
func allocateVIP(tx *writeTxn, m proto.Message) error {
	lb := m.(*weftv1.LoadBalancer)
	s, name := lb.GetSpec(), lb.GetMetadata().GetName()
	if s.GetAddressPool() == "" {
		return nil
	}
	pool, err := tx.addressPool(s.GetAddressPool(), name)
	if err != nil {
		return err
	}
	if ps := pool.GetSpec(); s.Region == "" && s.PrimaryZone == "" && len(s.BackupZones) == 0 {
		s.Region, s.PrimaryZone, s.BackupZones = ps.GetRegion(), ps.GetPrimaryZone(), slices.Clone(ps.GetBackupZones())
	}
	if s.Vip != "" {
		return nil
	}
	prefixes := poolPrefixes(pool)
	raw, err := tx.txn.First(tableLoadBalancers, indexID, name)
	if err != nil {
		return fmt.Errorf("look up load balancer %q: %w", name, err)
	}
	if old, _ := raw.(*weftv1.LoadBalancer); old != nil && old.GetSpec().GetAddressPool() == s.AddressPool {
		if a, err := netip.ParseAddr(old.GetSpec().GetVip()); err == nil && poolContains(prefixes, a) {
			s.Vip = old.GetSpec().GetVip()
			return nil
		}
	}
	for _, p := range prefixes {
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			if !allocatable(p, a) {
				continue
			}
			held, err := tx.txn.First(tableLoadBalancers, indexVIP, a.String())
			if err != nil {
				return fmt.Errorf("look up VIP %s: %w", a, err)
			}
			if held == nil {
				s.Vip = a.String()
				return nil
			}
		}
	}
	return stateErrorf(FailedPrecondition, "load balancer %q: address pool %q has no free address", name, s.AddressPool)
}

// holdingPool returns the pool whose prefixes contain a, or nil.
func (tx *writeTxn) holdingPool(a netip.Addr) (*weftv1.AddressPool, error) {
	it, err := tx.txn.Get(tableAddressPools, indexID)
	if err != nil {
		return nil, fmt.Errorf("list address pools: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if p := raw.(*weftv1.AddressPool); poolContains(poolPrefixes(p), a) {
			return p, nil
		}
	}
	return nil, nil
}

// checkHeldVIP verifies that lb's VIP is in the address pool it names, and
// that a VIP in any pool is lb's alone.
func checkHeldVIP(tx *writeTxn, lb *weftv1.LoadBalancer) error {
	name, s := lb.GetMetadata().GetName(), lb.GetSpec()
	vip, err := netip.ParseAddr(s.GetVip())
	if err != nil {
		return stateErrorf(Invalid, "load balancer %q: spec.vip: %q is not an IP address", name, s.GetVip())
	}
	vip = vip.Unmap()
	if s.GetAddressPool() != "" {
		pool, err := tx.addressPool(s.GetAddressPool(), name)
		if err != nil {
			return err
		}
		if !poolContains(poolPrefixes(pool), vip) {
			return stateErrorf(FailedPrecondition, "load balancer %q: spec.vip: %s is not in address pool %q %v", name, vip, s.GetAddressPool(), pool.GetSpec().GetCidrs())
		}
	}
	pool, err := tx.holdingPool(vip)
	if err != nil || pool == nil {
		return err
	}
	it, err := tx.txn.Get(tableLoadBalancers, indexVIP, vip.String())
	if err != nil {
		return fmt.Errorf("look up VIP %s: %w", vip, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if other := raw.(*weftv1.LoadBalancer).GetMetadata().GetName(); other != name {
			return stateErrorf(AlreadyExists, "load balancer %q: spec.vip: %s of address pool %q is held by load balancer %q", name, vip, pool.GetMetadata().GetName(), other)
		}
	}
	return nil
}

// checkAddressPool verifies that the pool overlaps no other, that the load
// balancers naming it keep their VIPs inside it, and that no two load
// balancers share an address it now covers.
func checkAddressPool(tx *writeTxn, m proto.Message) error {
	pool := m.(*weftv1.AddressPool)
	name := pool.GetMetadata().GetName()
	prefixes := poolPrefixes(pool)
	it, err := tx.txn.Get(tableAddressPools, indexID)
	if err != nil {
		return fmt.Errorf("list address pools: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		other := raw.(*weftv1.AddressPool)
		if other.GetMetadata().GetName() == name {
			continue
		}
		for i, p := range prefixes {
			for _, q := range poolPrefixes(other) {
				if p.Overlaps(q) {
					return stateErrorf(AlreadyExists, "address pool %q: spec.cidrs[%d]: %s overlaps %s of address pool %q", name, i, p, q, other.GetMetadata().GetName())
				}
			}
		}
	}
	lbs, err := tx.txn.Get(tableLoadBalancers, indexID)
	if err != nil {
		return fmt.Errorf("list load balancers: %w", err)
	}
	holder := map[netip.Addr]string{}
	for raw := lbs.Next(); raw != nil; raw = lbs.Next() {
		lb := raw.(*weftv1.LoadBalancer)
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			continue
		}
		vip, lbName := vip.Unmap(), lb.GetMetadata().GetName()
		in := poolContains(prefixes, vip)
		switch {
		case lb.GetSpec().GetAddressPool() == name && !in:
			return stateErrorf(FailedPrecondition, "address pool %q: spec.cidrs: load balancer %q holds %s, which the pool would no longer contain", name, lbName, vip)
		case !in:
		case holder[vip] != "":
			return stateErrorf(FailedPrecondition, "address pool %q: spec.cidrs: %s is the VIP of load balancers %q and %q, and an address in a pool is held by one", name, vip, holder[vip], lbName)
		default:
			holder[vip] = lbName
		}
	}
	return nil
}

// addressPoolUsers refuses to delete a pool a load balancer takes its VIP from.
func addressPoolUsers(tx *writeTxn, name string) error {
	raw, err := tx.txn.First(tableLoadBalancers, indexAddressPool, name)
	if err != nil {
		return fmt.Errorf("look up users of address pool %q: %w", name, err)
	}
	if raw != nil {
		lb := raw.(*weftv1.LoadBalancer)
		return stateErrorf(FailedPrecondition, "address pool %q is used by load balancer %q (VIP %s)", name, lb.GetMetadata().GetName(), lb.GetSpec().GetVip())
	}
	return nil
}

// AddressPool returns the named address pool, or nil.
func (s *State) AddressPool(name string) *weftv1.AddressPool {
	return getRow[*weftv1.AddressPool](s, tableAddressPools, name)
}

// AddressPools returns every address pool, sorted by name.
func (s *State) AddressPools() []*weftv1.AddressPool {
	return listRows[*weftv1.AddressPool](s, tableAddressPools)
}
