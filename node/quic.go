package node

// The quic subsystem on XDP nodes: the HTTP/3 ports of the committed state
// and the QUIC server ids gossip knows of the other nodes, written to the
// XDP program, which hands a datagram of a migrated connection to the node
// its connection ID names (dataplane/bpf/quic.h, l7/quiccid.go).

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/gossip"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// startQUICRouting adds the quic subsystem for the XDP program d and
// tells gossip this node's server id and MAC on the program's interface.
func (a *Agent) startQUICRouting(d *xdp.Dataplane) error {
	iface, err := net.InterfaceByName(a.cfg.Interface)
	if err != nil {
		return fmt.Errorf("quic routing: %w", err)
	}
	meta := &gossip.QUICMeta{ServerID: a.cfg.QUICServerID}
	if len(iface.HardwareAddr) == 6 {
		meta.MAC = iface.HardwareAddr
	}
	a.gossip.cfg.Meta.QUIC = meta
	s := &quicSubsystem{router: d, self: a.id.Name, id: a.cfg.QUICServerID, log: a.cfg.Logger,
		members: func() []gossip.Member {
			if g := a.gossip.gossiper(); g != nil {
				return g.Members()
			}
			return nil
		}}
	a.rec.subs = append(a.rec.subs, &subsystem{name: "quic", apply: s.apply})
	return nil
}

// quicRouter is the XDP program's QUIC routing.
type quicRouter interface {
	SetQUICRouting(xdp.QUICRouting) error
}

var _ quicRouter = (*xdp.Dataplane)(nil)

// quicSubsystem keeps the program's QUIC routing in line with the state
// (which ports serve HTTP/3) and gossip (which node has which server id,
// at which MAC).
type quicSubsystem struct {
	router quicRouter
	self   string // this node's name
	id     uint16 // this node's server id
	// members are the nodes gossip knows; nil before gossip started.
	members func() []gossip.Member
	log     *slog.Logger

	// ports are the HTTP/3 ports of at, derived again only when a change
	// since touched a load balancer with one.
	at    *raftfsm.State
	ports []netip.AddrPort
	// last is the routing written; nil before the first and after a
	// failure.
	last *xdp.QUICRouting
	// collided are the server ids claimed by several nodes, as last
	// logged.
	collided string
}

func (s *quicSubsystem) apply(_ context.Context, st *raftfsm.State) error {
	if s.at == nil || !s.portsUnchanged(st) {
		s.ports = quicPorts(st)
	}
	s.at = st
	var members []gossip.Member
	if s.members != nil {
		members = s.members()
	}
	servers, collided := quicServers(s.self, s.id, members)
	if c := describeCollisions(collided); c != s.collided {
		if c != "" {
			s.log.Warn("QUIC server ids claimed by several nodes: their migrated connections are not routed", "ids", c)
		}
		s.collided = c
	}
	r := xdp.QUICRouting{Ports: s.ports, Servers: servers}
	if s.last != nil && slices.Equal(s.last.Ports, r.Ports) &&
		maps.EqualFunc(s.last.Servers, r.Servers, func(a, b net.HardwareAddr) bool { return string(a) == string(b) }) {
		return nil
	}
	if err := s.router.SetQUICRouting(r); err != nil {
		s.last = nil
		return fmt.Errorf("quic routing: %w", err)
	}
	s.last = &r
	return nil
}

// portsUnchanged reports whether st has the HTTP/3 ports of s.at: no change
// since touched a load balancer with an https listener serving HTTP/3.
func (s *quicSubsystem) portsUnchanged(st *raftfsm.State) bool {
	events, complete := st.Changes(s.at.Index())
	if !complete {
		return false
	}
	for _, ev := range events {
		if raftfsm.KindOf(ev.Resource) != raftfsm.KindLoadBalancer {
			continue
		}
		// A put's row, or the row before the change.
		lb := ev.Resource.GetLoadBalancer()
		if hasHTTP3(lb) || hasHTTP3(s.at.LoadBalancer(lb.GetMetadata().GetName())) {
			return false
		}
	}
	return true
}

// quicPorts are the VIP:port of every https listener serving HTTP/3, in
// the state's order (load balancers by name).
func quicPorts(st *raftfsm.State) []netip.AddrPort {
	var out []netip.AddrPort
	for _, lb := range st.LoadBalancers() {
		if !hasHTTP3(lb) {
			continue
		}
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			continue // validated before it was committed
		}
		for _, l := range lb.GetSpec().GetListeners() {
			if isHTTP3(l) {
				out = append(out, netip.AddrPortFrom(vip, uint16(l.GetPort())))
			}
		}
	}
	return out
}

func isHTTP3(l *weftv1.Listener) bool { return l.GetProtocol() == "https" && l.GetHttp3() }

func hasHTTP3(lb *weftv1.LoadBalancer) bool {
	return slices.ContainsFunc(lb.GetSpec().GetListeners(), isHTTP3)
}

// quicServers are the server ids of the other live nodes that can be
// handed datagrams (those that gossip a MAC) -> their MACs. An id that two
// nodes claim (this one included) is left out, and so are the ids of a MAC
// that two nodes give: either node may hold such an id's connections, and
// the stack here answers as it did before routing. Those ids are returned
// with the nodes that claim them.
func quicServers(self string, selfID uint16, members []gossip.Member) (map[uint16]net.HardwareAddr, map[uint16][]string) {
	claims := map[uint16][]string{selfID: {self}}
	macs := map[uint16]net.HardwareAddr{}
	byMAC := map[string][]uint16{}
	for _, m := range members {
		q := m.Meta.QUIC
		if m.Name == self || q == nil || m.State == gossip.StateDead || m.State == gossip.StateLeft {
			continue
		}
		claims[q.ServerID] = append(claims[q.ServerID], m.Name)
		if len(q.MAC) == 6 {
			macs[q.ServerID] = q.MAC
			byMAC[string(q.MAC)] = append(byMAC[string(q.MAC)], q.ServerID)
		}
	}
	var collided map[uint16][]string
	bad := func(id uint16) {
		if collided == nil {
			collided = map[uint16][]string{}
		}
		collided[id] = claims[id]
		delete(macs, id)
	}
	for id, names := range claims {
		if len(names) > 1 {
			bad(id)
		}
	}
	for _, ids := range byMAC {
		if len(ids) > 1 {
			for _, id := range ids {
				bad(id)
			}
		}
	}
	delete(macs, selfID)
	return macs, collided
}

// describeCollisions is collided as one sorted line ("" for none).
func describeCollisions(collided map[uint16][]string) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(collided)) {
		names := slices.Clone(collided[id])
		slices.Sort(names)
		parts = append(parts, fmt.Sprintf("%d: %s", id, strings.Join(names, ",")))
	}
	return strings.Join(parts, "; ")
}
