package node

import (
	"context"
	"net/netip"
	"reflect"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/weftlb/weft/dataplane"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// Healthy reports whether a pool member may take new flows; until the
// health subsystem runs, every member is.
type Healthy func(pool string, m *weftv1.Member) bool

func allHealthy(string, *weftv1.Member) bool { return true }

// dataplaneConfig turns the committed state into the L4 dataplane's
// Config: one service per tcp or udp listener, its pool's members as
// backends; drained and unhealthy members keep weight 0, so they take no
// new flows while their open ones finish. Load balancers come sorted by
// name and listeners in order, so equal states give equal Configs.
func dataplaneConfig(st *raftfsm.State, local []netip.Addr, healthy Healthy) dataplane.Config {
	cfg := dataplane.Config{LocalAddrs: local}
	for _, lb := range st.LoadBalancers() {
		cfg.Services = append(cfg.Services, lbServices(lb, st.Pool, healthy)...)
	}
	return cfg
}

// lbServices are the services of one load balancer's tcp and udp
// listeners, pool finding their pools.
func lbServices(lb *weftv1.LoadBalancer, pool func(name string) *weftv1.Pool, healthy Healthy) []dataplane.Service {
	vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
	if err != nil {
		return nil // validated before it was committed
	}
	var out []dataplane.Service
	for _, l := range lb.GetSpec().GetListeners() {
		if !l4(l) {
			continue
		}
		svc := dataplane.Service{VIP: vip, Port: uint16(l.GetPort()), Proto: l.GetProtocol(),
			Mode: l.GetMode(), Scheduler: l.GetScheduler(), NewFlowRate: l.GetNewFlowRate(),
			Fragments: l.GetForwardFragments()}
		for _, m := range pool(l.GetPool()).GetSpec().GetMembers() {
			addr, err := netip.ParseAddr(m.GetAddress())
			if err != nil {
				continue
			}
			w := uint32(m.GetWeight())
			if m.GetDrain() || !healthy(l.GetPool(), m) {
				w = 0
			}
			svc.Backends = append(svc.Backends, dataplane.Backend{Addr: addr, Port: uint16(m.GetPort()), Weight: w})
		}
		out = append(out, svc)
	}
	return out
}

func l4(l *weftv1.Listener) bool {
	return l.GetProtocol() == dataplane.ProtoTCP || l.GetProtocol() == dataplane.ProtoUDP
}

// dataplaneSubsystem applies the state to a dataplane driver, skipping
// states that give the Config it already runs.
//
// With 10,000 load balancers, deriving every service and comparing the
// whole Config took most of a round; so each load balancer's services are
// kept with what they came from (its row, its pools' rows and their health
// versions; rows are immutable, a write replaces them) and derived again
// only when one of those changed.
type dataplaneSubsystem struct {
	driver  dataplane.Driver
	local   []netip.Addr
	healthy Healthy
	// poolVersion, if set, changes whenever healthy's answer for a member
	// of the pool may have (health.Health.PoolVersion); unset, healthy's
	// answers never change.
	poolVersion func(pool string) uint64
	// iface, for XDP, is where next-hop MACs are read from, through nl.
	iface string
	nl    *netlink.Handle
	// last is the Config applied, derived the load balancers' services as
	// held; nil after a failed Apply.
	last    *dataplane.Config
	derived map[string]*lbDerived
	rounds  uint64
}

// lbDerived is one load balancer's services and what they were derived
// from.
type lbDerived struct {
	lb       *weftv1.LoadBalancer
	pools    []poolSeen // one per tcp or udp listener
	services []dataplane.Service
	round    uint64 // the last round that found lb
}

// poolSeen is a pool's row and health version.
type poolSeen struct {
	pool   *weftv1.Pool
	health uint64
}

func (d *dataplaneSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	cfg, same := d.config(st)
	if d.iface != "" {
		var err error
		if cfg.Neighbors, cfg.Gateway, err = neighbors(d.nl, d.iface); err != nil {
			return err
		}
	}
	if d.last != nil && same && reflect.DeepEqual(d.last.Neighbors, cfg.Neighbors) &&
		reflect.DeepEqual(d.last.Gateway, cfg.Gateway) && slices.Equal(d.last.LocalAddrs, cfg.LocalAddrs) {
		return nil
	}
	if err := d.driver.Apply(ctx, cfg); err != nil {
		d.last = nil
		return err
	}
	d.last = &cfg
	return nil
}

// config is dataplaneConfig(st, d.local, d.healthy), deriving only the
// load balancers whose inputs changed, and whether its services are those
// derived last time.
func (d *dataplaneSubsystem) config(st *raftfsm.State) (dataplane.Config, bool) {
	pools := make(map[string]poolSeen)
	seen := func(name string) poolSeen {
		p, ok := pools[name]
		if !ok {
			p.pool = st.Pool(name)
			if d.poolVersion != nil {
				p.health = d.poolVersion(name)
			}
			pools[name] = p
		}
		return p
	}
	if d.derived == nil {
		d.derived = make(map[string]*lbDerived)
	}
	d.rounds++
	round := d.rounds
	cfg := dataplane.Config{LocalAddrs: d.local}
	lbs := st.LoadBalancers()
	same := len(lbs) == len(d.derived)
	for _, lb := range lbs {
		name := lb.GetMetadata().GetName()
		e := d.derived[name]
		if e == nil || !e.current(lb, seen) {
			n := &lbDerived{lb: lb, services: lbServices(lb, func(name string) *weftv1.Pool { return seen(name).pool }, d.healthy)}
			for _, l := range lb.GetSpec().GetListeners() {
				if l4(l) {
					n.pools = append(n.pools, seen(l.GetPool()))
				}
			}
			same = same && e != nil && reflect.DeepEqual(e.services, n.services)
			e, d.derived[name] = n, n
		}
		e.round = round
		cfg.Services = append(cfg.Services, e.services...)
	}
	for name, e := range d.derived {
		if e.round != round {
			delete(d.derived, name)
			same = false
		}
	}
	return cfg, same
}

// current reports whether e was derived from lb and its pools as they are.
func (e *lbDerived) current(lb *weftv1.LoadBalancer, seen func(string) poolSeen) bool {
	if e.lb != lb {
		return false
	}
	i := 0
	for _, l := range lb.GetSpec().GetListeners() {
		if l4(l) {
			if seen(l.GetPool()) != e.pools[i] {
				return false
			}
			i++
		}
	}
	return true
}
