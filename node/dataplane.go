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
// states that give the Config it already runs; it derives again only the
// load balancers whose inputs changed (lbCache).
type dataplaneSubsystem struct {
	driver  dataplane.Driver
	local   []netip.Addr
	healthy Healthy
	// versions tell the cache when healthy's answers may have changed.
	versions healthVersions
	// iface, for XDP, is where next-hop MACs are read from, through nl.
	iface string
	nl    *netlink.Handle
	// last is the Config applied, derived from the services lbs holds; nil
	// after a failed Apply. spare is the array of the Config applied
	// before it, which the next change's services are built in (drivers
	// keep no slice of a Config): at 10,000 load balancers a new array a
	// change was a megabyte of garbage.
	last  *dataplane.Config
	spare []dataplane.Service
	lbs   lbCache[[]dataplane.Service]
}

func (d *dataplaneSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	cfg := dataplane.Config{LocalAddrs: d.local}
	lbs, same := d.lbs.derive(st, d.versions, func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) []dataplane.Service {
		return lbServices(lb, pool, d.healthy)
	}, func(a, b []dataplane.Service) bool { return reflect.DeepEqual(a, b) })
	if same = same && d.last != nil; same {
		// What was applied is what the state and view give.
		cfg.Services = d.last.Services
	} else {
		cfg.Services = d.spare[:0]
		for _, s := range lbs {
			cfg.Services = append(cfg.Services, s...)
		}
		clear(cfg.Services[len(cfg.Services):cap(cfg.Services)]) // no backends held past their use
	}
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
	err := d.driver.Apply(ctx, cfg)
	if d.last != nil && !same {
		d.spare = d.last.Services
	} else if !same {
		d.spare = nil // cfg.Services is the spare array: keep no alias of it
	}
	if err != nil {
		d.last = nil
		return err
	}
	d.last = &cfg
	return nil
}
