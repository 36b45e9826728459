package node

import (
	"context"
	"net/netip"

	"github.com/weftlb/weft/health"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// noPublisher publishes verdicts nowhere. Until gossip is wired into the
// agent, each node is the only live node its health subsystem knows: it
// checks every member itself and derives the view from its own probes.
type noPublisher struct{}

func (noPublisher) Broadcast(string, []byte) {}

// healthConfig turns the committed pools into the health subsystem's
// Config (validate has filled every check's defaults).
func healthConfig(st *raftfsm.State, self, zone string) health.Config {
	cfg := health.Config{Self: self, Nodes: []health.NodeInfo{{Name: self, Zone: zone}}}
	for _, p := range st.Pools() {
		hc := p.GetSpec().GetHealthCheck()
		pool := health.Pool{Name: p.GetMetadata().GetName(), Check: health.CheckSpec{
			Type: health.CheckType(hc.GetType()), Port: uint16(hc.GetPort()), Path: hc.GetPath(),
			ExpectedCodes: hc.GetExpectedCodes(), Interval: hc.GetInterval().AsDuration(),
			Timeout: hc.GetTimeout().AsDuration(), Rise: int(hc.GetRise()), Fall: int(hc.GetFall()),
		}}
		for _, m := range p.GetSpec().GetMembers() {
			if a, err := memberAddr(m); err == nil {
				pool.Members = append(pool.Members, health.Member{Addr: a})
			}
		}
		cfg.Pools = append(cfg.Pools, pool)
	}
	return cfg
}

func memberAddr(m *weftv1.Member) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(m.GetAddress())
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(m.GetPort())), nil
}

// healthSubsystem runs the checks of the committed pools; its view decides
// which members the dataplane and BGP count as able to take flows.
type healthSubsystem struct {
	h          *health.Health
	self, zone string
}

func (s *healthSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	return s.h.Apply(ctx, healthConfig(st, s.self, s.zone))
}

// healthy reports a member's state in the agreed view; members the view
// does not hold yet are healthy (fail open).
func (s *healthSubsystem) healthy(pool string, m *weftv1.Member) bool {
	a, err := memberAddr(m)
	if err != nil {
		return false
	}
	up, ok := s.h.View()[health.MemberKey{Pool: pool, Addr: a}]
	return !ok || up
}
