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
// immutable) is not converted again: cache holds the conversions by pool
// name, and is brought up to date in place.
func healthConfig(st *raftfsm.State, self string, nodes []health.NodeInfo, cache map[string]convertedPool) health.Config {
	rows := st.PoolsByName()
	cfg := health.Config{Self: self, Nodes: nodes, Pools: make([]health.Pool, 0, len(rows))}
	for name, p := range rows {
		c, ok := cache[name]
		if !ok || c.row != p {
			c = convertedPool{row: p, pool: health.Pool{Name: name, Check: checkSpec(p.GetSpec().GetHealthCheck())}}
			for _, m := range p.GetSpec().GetMembers() {
				if a, err := memberAddr(m); err == nil {
					c.pool.Members = append(c.pool.Members, health.Member{Addr: a})
				}
			}
			cache[name] = c
		}
		cfg.Pools = append(cfg.Pools, c.pool)
	}
	if len(cache) > len(rows) {
		for name := range cache {
			if rows[name] == nil {
				delete(cache, name)
			}
		}
	}
	cfg.Pools = append(cfg.Pools, dnsHealthPools(st)...)
	return cfg
}

// convertedPool is a pool row and what healthConfig made of it.
type convertedPool struct {
	row  *weftv1.Pool
	pool health.Pool
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
	// pools are healthConfig's conversions of the pool rows.
	pools map[string]convertedPool
}

func (s *healthSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	if s.pools == nil {
		s.pools = make(map[string]convertedPool)
	}
	return s.h.Apply(ctx, healthConfig(st, s.self, s.nodes(), s.pools))
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
