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

// convert is pool p as the health subsystem takes it (validate has
// filled every check's default). A row converted before (rows are
// immutable) is not converted again: s.pools holds the conversions by pool
// name.
func (s *healthSubsystem) convert(name string, p *weftv1.Pool) health.Pool {
	if c, ok := s.pools[name]; ok && c.row == p {
		return c.pool
	}
	c := convertedPool{row: p, pool: health.Pool{Name: name, Check: checkSpec(p.GetSpec().GetHealthCheck())}}
	for _, m := range p.GetSpec().GetMembers() {
		if a, err := memberAddr(m); err == nil {
			c.pool.Members = append(c.pool.Members, health.Member{Addr: a})
		}
	}
	if s.pools == nil {
		s.pools = make(map[string]convertedPool)
	}
	s.pools[name] = c
	return c.pool
}

// config is the Config of the committed pools and DNS records in st and
// the live checking nodes (sorted by name), and whether it is the one last
// applied: a round of the same state and nodes (one woken by the health
// view's own gossip) gives the health subsystem nothing to do.
func (s *healthSubsystem) config(st *raftfsm.State, nodes []health.NodeInfo) (cfg health.Config, held bool) {
	if s.at != nil && st.Index() == s.at.Index() && slices.Equal(nodes, s.given) {
		return health.Config{}, true
	}
	if !s.patch(st) {
		s.full(st)
	}
	// Apply keeps no slice of its Config: s.list is given as it is unless
	// DNS records add pools (a copy of 10,000 pools per round was most of
	// the round's garbage).
	pools := s.list
	if dns := dnsHealthPools(st); len(dns) > 0 {
		pools = slices.Concat(s.list, dns)
	}
	return health.Config{Self: s.self, Nodes: nodes, Pools: pools}, false
}

// full converts every pool of st into s.list.
func (s *healthSubsystem) full(st *raftfsm.State) {
	rows := st.PoolsByName()
	s.list, s.pos = s.list[:0], make(map[string]int, len(rows))
	for name, p := range rows {
		s.pos[name] = len(s.list)
		s.list = append(s.list, s.convert(name, p))
	}
	if len(s.pools) > len(rows) {
		for name := range s.pools {
			if rows[name] == nil {
				delete(s.pools, name)
			}
		}
	}
}

// patch brings s.list from the state last applied to st through the pool
// changes between them (st.Changes), converting only the pools changed; it
// reports false when it cannot (no state applied, changes not all kept).
func (s *healthSubsystem) patch(st *raftfsm.State) bool {
	if s.at == nil {
		return false
	}
	events, complete := st.Changes(s.at.Index())
	if !complete {
		return false
	}
	for _, ev := range events {
		if raftfsm.KindOf(ev.Resource) != raftfsm.KindPool {
			continue
		}
		p := ev.Resource.GetPool()
		name := p.GetMetadata().GetName()
		i, ok := s.pos[name]
		switch {
		case ev.Type == raftfsm.EventPut && ok:
			s.list[i] = s.convert(name, p)
		case ev.Type == raftfsm.EventPut:
			s.pos[name] = len(s.list)
			s.list = append(s.list, s.convert(name, p))
		case ok: // deleted: the last pool takes its place
			last := len(s.list) - 1
			s.list[i] = s.list[last]
			s.pos[s.list[i].Name] = i
			s.list = s.list[:last]
			delete(s.pos, name)
			delete(s.pools, name)
		}
	}
	return true
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
	// pools are convert's conversions of the pool rows.
	pools map[string]convertedPool
	// list are the pools of the state last applied, at, each at its
	// position (pos) by name; given are the nodes then. at is nil before
	// the first Apply and after a failed one.
	list  []health.Pool
	pos   map[string]int
	at    *raftfsm.State
	given []health.NodeInfo
}

func (s *healthSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	nodes := slices.SortedFunc(slices.Values(s.nodes()), func(a, b health.NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	cfg, held := s.config(st, nodes)
	if held {
		return nil
	}
	if err := s.h.Apply(ctx, cfg); err != nil {
		s.at = nil
		return err
	}
	s.at, s.given = st, nodes
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
