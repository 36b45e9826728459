package node

import (
	"cmp"
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/weftlb/weft/health"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// healthConfig turns the committed pools and the live checking nodes into
// the health subsystem's Config (validate has filled every check's
// defaults). A pool whose row is the one converted before (rows are
// immutable) is not converted again: prev holds those, and is replaced by
// this round's.
func healthConfig(st *raftfsm.State, self string, nodes []health.NodeInfo, prev map[*weftv1.Pool]health.Pool) (health.Config, map[*weftv1.Pool]health.Pool) {
	cfg := health.Config{Self: self, Nodes: nodes}
	rows := st.PoolsByName()
	next := make(map[*weftv1.Pool]health.Pool, len(rows))
	for _, p := range rows {
		pool, ok := prev[p]
		if !ok {
			pool = health.Pool{Name: p.GetMetadata().GetName(), Check: checkSpec(p.GetSpec().GetHealthCheck())}
			for _, m := range p.GetSpec().GetMembers() {
				if a, err := memberAddr(m); err == nil {
					pool.Members = append(pool.Members, health.Member{Addr: a})
				}
			}
		}
		next[p] = pool
		cfg.Pools = append(cfg.Pools, pool)
	}
	cfg.Pools = append(cfg.Pools, dnsHealthPools(st)...)
	return cfg, next
}

// checkSpec is a validated health check as the health subsystem takes it.
func checkSpec(hc *weftv1.HealthCheck) health.CheckSpec {
	return health.CheckSpec{Type: health.CheckType(hc.GetType()), Port: uint16(hc.GetPort()), Path: hc.GetPath(),
		ExpectedCodes: hc.GetExpectedCodes(), Interval: hc.GetInterval().AsDuration(),
		Timeout: hc.GetTimeout().AsDuration(), Rise: int(hc.GetRise()), Fall: int(hc.GetFall())}
}

func memberAddr(m *weftv1.Member) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(m.GetAddress())
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(m.GetPort())), nil
}

// healthSubsystem runs this node's share of the checks of the committed
// pools (the members rendezvous hashing assigns to it among the live
// checking nodes); its view, agreed through gossip, decides which members
// the dataplane and BGP count as able to take flows.
type healthSubsystem struct {
	h    *health.Health
	self string
	// nodes returns the live checking nodes, self included.
	nodes func() []health.NodeInfo
	// pools are the last round's pools, by row (healthConfig).
	pools map[*weftv1.Pool]health.Pool
}

func (s *healthSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	cfg, pools := healthConfig(st, s.self, s.nodes(), s.pools)
	if err := s.h.Apply(ctx, cfg); err != nil {
		return err
	}
	s.pools = pools
	return nil
}

// memberHealth reports the agreed view with each member's checkers and
// this node's own probe of it.
func memberHealth(h *health.Health) []*weftv1.MemberHealth {
	probes := make(map[health.MemberKey]health.ProbeStatus)
	for _, p := range h.Probes() {
		probes[p.Member] = p
	}
	view := h.View()
	keys := slices.SortedFunc(maps.Keys(view), func(a, b health.MemberKey) int {
		return cmp.Or(strings.Compare(a.Pool, b.Pool), a.Addr.Compare(b.Addr))
	})
	out := make([]*weftv1.MemberHealth, 0, len(keys))
	for _, k := range keys {
		p := probes[k]
		out = append(out, &weftv1.MemberHealth{Pool: k.Pool, Address: k.Addr.Addr().String(), Port: uint32(k.Addr.Port()),
			Up: view[k], Checkers: h.Checkers(k), Probe: p.State, LastError: p.LastError})
	}
	return out
}

// healthy reports a member's state in the agreed view; members the view
// does not hold yet are healthy (fail open).
func (s *healthSubsystem) healthy(pool string, m *weftv1.Member) bool {
	a, err := memberAddr(m)
	if err != nil {
		return false
	}
	// Up, not View: this is asked for every member at every round.
	up, ok := s.h.Up(health.MemberKey{Pool: pool, Addr: a})
	return !ok || up
}
