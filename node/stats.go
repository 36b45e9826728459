package node

// This node's counters for the StatsService: the L4 dataplane's per
// service and per backend, the L7 proxy's per listener and per pool member,
// and the health view, laid out by the committed load balancers.

import (
	"errors"
	"net/netip"
	"slices"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/userspace"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/health"
	"github.com/weftlb/weft/l7"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// l4Service is a tcp or udp listener as the dataplanes key it.
type l4Service struct {
	vip   netip.Addr
	port  uint16
	proto string
}

// l4Counters are a dataplane's counters brought to one form: per service,
// and per backend over all its services (the XDP program's granularity).
type l4Counters struct {
	services map[l4Service]*weftv1.TrafficCounters
	backends map[netip.AddrPort]*weftv1.TrafficCounters
}

func newL4Counters() l4Counters {
	return l4Counters{services: map[l4Service]*weftv1.TrafficCounters{}, backends: map[netip.AddrPort]*weftv1.TrafficCounters{}}
}

func (c l4Counters) backend(a netip.AddrPort) *weftv1.TrafficCounters {
	t := c.backends[a]
	if t == nil {
		t = &weftv1.TrafficCounters{}
		c.backends[a] = t
	}
	return t
}

// xdpCounters reads the XDP program's counters and the open flows this
// node counts (activeFlows), by service and by backend.
func xdpCounters(d *xdp.Dataplane, ls map[l4Service]l4Listener, counts func(dataplane.Flow) bool) (l4Counters, error) {
	out := newL4Counters()
	s, err := d.Stats()
	if err != nil {
		return out, err
	}
	for _, sv := range s.Services {
		out.services[l4Service{sv.VIP, sv.Port, sv.Proto}] = traffic(sv.Counters)
	}
	for _, b := range s.Backends {
		*out.backend(netip.AddrPortFrom(b.Addr, b.Port)) = *traffic(b.Counters)
	}
	active, add := activeFlows(ls, counts)
	err = d.Flows(func(f dataplane.Flow) bool { add(f); return true })
	for k, n := range active {
		if t := out.services[k.service]; t != nil {
			t.ActiveFlows += uint64(n)
		}
		if k.member.IsValid() {
			out.backend(k.member).ActiveFlows += uint64(n)
		}
	}
	return out, err
}

// activeKey is a service and the member of its pool a flow goes to
// (invalid for a flow to an address no longer among its members).
type activeKey struct {
	service l4Service
	member  netip.AddrPort
}

// activeFlows counts the open flows given to add that counts accepts, by
// service and member. Open means established and not closing, as IPVS's
// ActiveConn. A DSR flow names the VIP's port, so its member is found by
// address among the service's.
func activeFlows(ls map[l4Service]l4Listener, counts func(dataplane.Flow) bool) (active map[activeKey]int, add func(dataplane.Flow)) {
	active = map[activeKey]int{}
	return active, func(f dataplane.Flow) {
		if !f.Established || f.Closing || !counts(f) {
			return
		}
		proto := dataplane.ProtoTCP
		if f.Proto == 17 {
			proto = dataplane.ProtoUDP
		}
		k := activeKey{service: l4Service{f.VIP.Addr(), f.VIP.Port(), proto}}
		for _, m := range ls[k.service].members {
			if m.Addr() == f.Backend.Addr() && (m.Port() == f.Backend.Port() || f.Backend.Port() == f.VIP.Port()) {
				k.member = m
				break
			}
		}
		active[k]++
	}
}

// l4Listener is a tcp or udp listener of the committed state: its load
// balancer's and its own name, and its pool's members.
type l4Listener struct {
	lb, listener string
	members      []netip.AddrPort
}

// l4Listeners are the committed tcp and udp listeners by service.
func l4Listeners(st *raftfsm.State) map[l4Service]l4Listener {
	out := map[l4Service]l4Listener{}
	for _, lb := range st.LoadBalancers() {
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			continue
		}
		for _, l := range lb.GetSpec().GetListeners() {
			p := l.GetProtocol()
			if p != dataplane.ProtoTCP && p != dataplane.ProtoUDP {
				continue
			}
			ln := l4Listener{lb: lb.GetMetadata().GetName(), listener: l.GetName()}
			for _, m := range st.Pool(l.GetPool()).GetSpec().GetMembers() {
				if a, err := memberAddr(m); err == nil {
					ln.members = append(ln.members, a)
				}
			}
			out[l4Service{vip.Unmap(), uint16(l.GetPort()), p}] = ln
		}
	}
	return out
}

func traffic(c xdp.Counters) *weftv1.TrafficCounters {
	return &weftv1.TrafficCounters{Packets: c.Packets, Bytes: c.Bytes, NewFlows: c.NewFlows, Drops: c.Drops.Total()}
}

// userspaceCounters reads the userspace dataplane's counters: it counts
// flows and bytes, no packets; a service's are the sum of its backends'.
func userspaceCounters(f *userspace.Forwarder) l4Counters {
	out := newL4Counters()
	for _, s := range f.Stats() {
		t := &weftv1.TrafficCounters{Drops: s.NoBackend + s.DialFailed}
		for id, b := range s.Backends {
			t.Bytes += b.Bytes
			t.NewFlows += b.NewFlows
			t.ActiveFlows += b.Active
			a, err := netip.ParseAddrPort(id)
			if err != nil {
				continue // ids are Backend.ID()
			}
			bt := out.backend(a)
			bt.Bytes += b.Bytes
			bt.NewFlows += b.NewFlows
			bt.ActiveFlows += b.Active
		}
		out.services[l4Service{s.VIP, s.Port, s.Proto}] = t
	}
	return out
}

// l7Counters are the L7 proxy's counters by listener name and by pool
// member.
type l7Counters struct {
	listeners map[string]*weftv1.RequestCounters
	members   map[[2]string]*weftv1.RequestCounters // pool, address:port
}

func l7CountersOf(s l7.Stats) l7Counters {
	out := l7Counters{listeners: map[string]*weftv1.RequestCounters{}, members: map[[2]string]*weftv1.RequestCounters{}}
	for _, l := range s.Listeners {
		out.listeners[l.Listener] = requests(l.Counters)
	}
	for _, m := range s.Members {
		out.members[[2]string{m.Pool, m.Addr}] = requests(m.Counters)
	}
	return out
}

func requests(c l7.Counters) *weftv1.RequestCounters {
	return &weftv1.RequestCounters{Requests: c.Requests, NoStatus: c.Status[0], Status_1Xx: c.Status[1],
		Status_2Xx: c.Status[2], Status_3Xx: c.Status[3], Status_4Xx: c.Status[4], Status_5Xx: c.Status[5]}
}

// loadBalancerStats lays the counters out by the committed load balancers
// named (all when none): each listener with its counters and its pools'
// members, their health from view (nil: this node holds none).
func loadBalancerStats(st *raftfsm.State, names []string, l4 l4Counters, l7c l7Counters, view map[health.MemberKey]bool) []*weftv1.LoadBalancerStats {
	var out []*weftv1.LoadBalancerStats
	for _, lb := range st.LoadBalancers() {
		name := lb.GetMetadata().GetName()
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			continue // validated before it was committed
		}
		ls := &weftv1.LoadBalancerStats{Name: name, Vip: vip.String()}
		for _, l := range lb.GetSpec().GetListeners() {
			s := &weftv1.ListenerStats{Name: l.GetName(), Protocol: l.GetProtocol(), Port: l.GetPort()}
			l7Listener := l.GetProtocol() == "http" || l.GetProtocol() == "https"
			if l7Listener {
				s.Requests = l7c.listeners[name+"/"+l.GetName()]
			} else {
				s.Traffic = l4.services[l4Service{vip, uint16(l.GetPort()), l.GetProtocol()}]
			}
			seen := map[string]bool{}
			for _, pool := range l7Pools(l) {
				if seen[pool] {
					continue
				}
				seen[pool] = true
				for _, m := range st.Pool(pool).GetSpec().GetMembers() {
					a, err := memberAddr(m)
					if err != nil {
						continue
					}
					b := &weftv1.BackendStats{Pool: pool, Address: a.Addr().String(), Port: uint32(a.Port()),
						Health: api.HealthUnknown, Drain: m.GetDrain()}
					if up, ok := view[health.MemberKey{Pool: pool, Addr: a}]; ok {
						b.Health = api.HealthDown
						if up {
							b.Health = api.HealthUp
						}
					}
					if l7Listener {
						b.Requests = l7c.members[[2]string{pool, a.String()}]
					} else {
						b.Traffic = l4.backends[a]
					}
					s.Backends = append(s.Backends, b)
				}
			}
			ls.Listeners = append(ls.Listeners, s)
		}
		out = append(out, ls)
	}
	return out
}

// flowCounter says which flows of its connection tables this node counts
// as its own. Flow sync keeps copies of a flow on several nodes: each
// counts the flows whose bucket it owns first, which have a copy there, so
// that counts summed over the nodes count each flow once.
func (a *Agent) flowCounter() func(dataplane.Flow) bool {
	if a.flowsync == nil {
		return func(dataplane.Flow) bool { return true }
	}
	owner := a.flowsync.FirstOwner()
	return func(f dataplane.Flow) bool { o := owner(f); return o == "" || o == a.id.Name }
}

// localStats is this node's counters, for api.Config.LocalStats.
func (a *Agent) localStats(names []string) ([]*weftv1.LoadBalancerStats, error) {
	select {
	case <-a.started:
	default:
		return nil, errors.New("still starting")
	}
	st := a.raft.FSM().State()
	l4 := newL4Counters()
	switch d := a.dataplane.(type) {
	case *xdp.Dataplane:
		var err error
		if l4, err = xdpCounters(d, l4Listeners(st), a.flowCounter()); err != nil {
			return nil, err
		}
	case *userspace.Forwarder:
		l4 = userspaceCounters(d)
	}
	var l7s l7.Stats
	if a.l7 != nil {
		l7s = a.l7.proxy.Stats()
	}
	var view map[health.MemberKey]bool
	if a.health != nil {
		view = a.health.View()
	}
	out := loadBalancerStats(st, names, l4, l7CountersOf(l7s), view)
	if a.topFlows != nil {
		addTopSources(a.topFlows, out)
	}
	return out, nil
}
