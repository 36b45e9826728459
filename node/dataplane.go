package node

import (
	"context"
	"net/netip"
	"reflect"

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
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			continue // validated before it was committed
		}
		for _, l := range lb.GetSpec().GetListeners() {
			if l.GetProtocol() != dataplane.ProtoTCP && l.GetProtocol() != dataplane.ProtoUDP {
				continue
			}
			svc := dataplane.Service{VIP: vip, Port: uint16(l.GetPort()), Proto: l.GetProtocol(),
				Mode: l.GetMode(), Scheduler: l.GetScheduler(), NewFlowRate: l.GetNewFlowRate(),
				Fragments: l.GetForwardFragments()}
			pool := st.Pool(l.GetPool())
			for _, m := range pool.GetSpec().GetMembers() {
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
			cfg.Services = append(cfg.Services, svc)
		}
	}
	return cfg
}

// dataplaneSubsystem applies the state to a dataplane driver, skipping
// states that give the Config it already runs.
type dataplaneSubsystem struct {
	driver  dataplane.Driver
	local   []netip.Addr
	healthy Healthy
	// iface, for XDP, is where next-hop MACs are read from, through nl.
	iface string
	nl    *netlink.Handle
	last  *dataplane.Config
}

func (d *dataplaneSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	cfg := dataplaneConfig(st, d.local, d.healthy)
	if d.iface != "" {
		var err error
		if cfg.Neighbors, cfg.Gateway, err = neighbors(d.nl, d.iface); err != nil {
			return err
		}
	}
	if d.last != nil && reflect.DeepEqual(*d.last, cfg) {
		return nil
	}
	if err := d.driver.Apply(ctx, cfg); err != nil {
		return err
	}
	d.last = &cfg
	return nil
}
