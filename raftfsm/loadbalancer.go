package raftfsm

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/validate"
)

var loadBalancerKind = &resourceKind{
	name:  KindLoadBalancer,
	noun:  "load balancer",
	table: tableLoadBalancers,
	unwrap: func(r *weftv1.Resource) proto.Message {
		if m := r.GetLoadBalancer(); m != nil {
			return m
		}
		return nil
	},
	wrap: func(m proto.Message) *weftv1.Resource {
		return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: m.(*weftv1.LoadBalancer)}}
	},
	prepare: allocateVIP,
	check:   checkLoadBalancer,
	users:   loadBalancerUsers,
}

// listenerName is the listener's name, or the default the API would give it.
func listenerName(l *weftv1.Listener) string {
	if l.GetName() != "" {
		return l.GetName()
	}
	return fmt.Sprintf("%s-%d", l.GetProtocol(), l.GetPort())
}

// vipKey is a VIP in canonical form, so that two spellings of one IPv6
// address are one key; "" stays "".
func vipKey(vip string) string {
	if a, err := netip.ParseAddr(vip); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return vip
}

// addressKeys are what two listeners must not share: "vip:port/transport"
// for each transport the listener runs over (validate.Transports: http and
// https on tcp, an https listener with http3 on udp too). The VIP is
// canonicalised so that two spellings of one IPv6 address collide.
func addressKeys(vip string, l *weftv1.Listener) []string {
	vip = vipKey(vip)
	hostPort := net.JoinHostPort(vip, strconv.FormatUint(uint64(l.GetPort()), 10))
	var keys []string
	for _, tr := range validate.Transports(l) {
		keys = append(keys, hostPort+"/"+tr)
	}
	return keys
}

// loadBalancerPools are the pools named by any listener or rule of lb.
func loadBalancerPools(lb *weftv1.LoadBalancer) []string {
	var pools []string
	for _, l := range lb.GetSpec().GetListeners() {
		if p := l.GetPool(); p != "" {
			pools = append(pools, p)
		}
		for _, r := range l.GetRules() {
			if p := r.GetPool(); p != "" {
				pools = append(pools, p)
			}
		}
	}
	return pools
}

// loadBalancerCertificates are the certificates named by any listener of lb.
func loadBalancerCertificates(lb *weftv1.LoadBalancer) []string {
	var certs []string
	for _, l := range lb.GetSpec().GetListeners() {
		certs = append(certs, l.GetCertificates()...)
	}
	return certs
}

// loadBalancerAddresses are the addressKeys of lb's listeners.
func loadBalancerAddresses(lb *weftv1.LoadBalancer) []string {
	var addrs []string
	for _, l := range lb.GetSpec().GetListeners() {
		addrs = append(addrs, addressKeys(lb.GetSpec().GetVip(), l)...)
	}
	return addrs
}

// checkLoadBalancer verifies that every pool and certificate lb names exists
// and that none of its listener addresses is used twice.
func checkLoadBalancer(tx *writeTxn, m proto.Message) error {
	lb := m.(*weftv1.LoadBalancer)
	name := lb.GetMetadata().GetName()
	own := make(map[string]string) // address -> listener of lb using it
	for _, l := range lb.GetSpec().GetListeners() {
		ln := listenerName(l)
		if p := l.GetPool(); p != "" {
			if err := tx.mustExist(tablePools, p, "load balancer %q: listener %q: pool %q does not exist", name, ln, p); err != nil {
				return err
			}
		}
		for i, r := range l.GetRules() {
			if p := r.GetPool(); p != "" {
				if err := tx.mustExist(tablePools, p, "load balancer %q: listener %q: rule %d: pool %q does not exist", name, ln, i+1, p); err != nil {
					return err
				}
			}
		}
		for _, c := range l.GetCertificates() {
			if err := tx.mustExist(tableCertificates, c, "load balancer %q: listener %q: certificate %q does not exist", name, ln, c); err != nil {
				return err
			}
		}

		for _, addr := range addressKeys(lb.GetSpec().GetVip(), l) {
			if other, ok := own[addr]; ok {
				return stateErrorf(AlreadyExists, "load balancer %q: listener %q: %s is already used by listener %q", name, ln, addr, other)
			}
			own[addr] = ln
			it, err := tx.txn.Get(tableLoadBalancers, indexAddress, addr)
			if err != nil {
				return fmt.Errorf("look up address %s: %w", addr, err)
			}
			for raw := it.Next(); raw != nil; raw = it.Next() {
				if other := raw.(*weftv1.LoadBalancer).GetMetadata().GetName(); other != name {
					return stateErrorf(AlreadyExists, "load balancer %q: listener %q: %s is already used by load balancer %q", name, ln, addr, other)
				}
			}
		}
	}
	return checkHeldVIP(tx, lb)
}

// loadBalancerUsers refuses to delete a load balancer that a DNS record targets.
func loadBalancerUsers(tx *writeTxn, name string) error {
	raw, err := tx.txn.First(tableDNSRecords, indexLoadBalancer, name)
	if err != nil {
		return fmt.Errorf("look up users of load balancer %q: %w", name, err)
	}
	if raw != nil {
		return stateErrorf(FailedPrecondition, "load balancer %q is used by DNS record %q", name, raw.(*weftv1.DNSRecord).GetMetadata().GetName())
	}
	return nil
}

// mustExist returns a FailedPrecondition with the given message when table
// has no row with the given id.
func (tx *writeTxn) mustExist(table, id, format string, args ...any) error {
	ok, err := tx.exists(table, id)
	if err != nil {
		return err
	}
	if !ok {
		return stateErrorf(FailedPrecondition, format, args...)
	}
	return nil
}

// LoadBalancer returns the named load balancer, or nil.
func (s *State) LoadBalancer(name string) *weftv1.LoadBalancer {
	return getRow[*weftv1.LoadBalancer](s, tableLoadBalancers, name)
}

// LoadBalancers returns every load balancer, sorted by name; the slice is
// read once per State and shared by its callers.
func (s *State) LoadBalancers() []*weftv1.LoadBalancer {
	s.lbs.once.Do(func() { s.lbs.rows = listRows[*weftv1.LoadBalancer](s, tableLoadBalancers) })
	return s.lbs.rows
}
