package node

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftlb/weft/bgp"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// BGP is how a node peers with its routers.
type BGP struct {
	// ASN is the node's AS number; 0 turns BGP off.
	ASN uint32
	// RouterID defaults to the host of the node's Raft address.
	RouterID netip.Addr
	// Peers are the routers, "ADDRESS:ASN" each.
	Peers []string
	// PrependPerZone is the AS-path prepends per backup-zone rank: the
	// first backup zone announces with this many, the second with twice.
	PrependPerZone int
}

// ParsePeer reads a "ADDRESS:ASN" router flag.
func ParsePeer(s string) (bgp.Peer, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return bgp.Peer{}, fmt.Errorf("bgp peer %q: want ADDRESS:ASN", s)
	}
	addr, err := netip.ParseAddr(strings.Trim(s[:i], "[]"))
	if err != nil {
		return bgp.Peer{}, fmt.Errorf("bgp peer %q: %w", s, err)
	}
	asn, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil || asn == 0 {
		return bgp.Peer{}, fmt.Errorf("bgp peer %q: ASN %q is not a number from 1 to 4294967295", s, s[i+1:])
	}
	return bgp.Peer{Address: addr, ASN: uint32(asn)}, nil
}

// announcements are the VIP routes a node announces (DESIGN.md "Routing
// and steering"): none while it drains; for each load balancer with a
// member able to take flows, plainly from its primary zone (or from every
// zone when it names none), with prepends from its backup zones by rank,
// and not at all from other zones. Load balancers that share a VIP (on
// other ports) give one route, with the fewest prepends among them.
func announcements(st *raftfsm.State, self, zone string, prependPerZone int, healthy Healthy) []bgp.Announcement {
	if n := st.Node(self); n != nil && n.GetSpec().GetDrain() {
		return nil
	}
	var set announcementSet
	for _, lb := range st.LoadBalancers() {
		set.add(lbRoute(lb, st.Pool, zone, prependPerZone, healthy))
	}
	return set.out
}

// route is one load balancer's part of announcements: its VIP's route,
// if the node announces it (ok).
type route struct {
	bgp.Announcement
	ok bool
}

// lbRoute is what lb asks this node, in zone, to announce; pool finds the
// pools of its listeners.
func lbRoute(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool, zone string, prependPerZone int, healthy Healthy) route {
	vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
	if err != nil || !servable(pool, lb.GetSpec().GetListeners(), healthy) {
		return route{}
	}
	prepend := -1
	switch primary := lb.GetSpec().GetPrimaryZone(); {
	case primary == "" || primary == zone:
		prepend = 0
	default:
		for i, z := range lb.GetSpec().GetBackupZones() {
			if z == zone {
				prepend = (i + 1) * prependPerZone
			}
		}
	}
	if prepend < 0 {
		return route{}
	}
	return route{bgp.Announcement{Prefix: netip.PrefixFrom(vip, vip.BitLen()), Prepend: prepend}, true}
}

// announcementSet merges routes: one a VIP, with the fewest prepends.
type announcementSet struct {
	out []bgp.Announcement
	at  map[netip.Prefix]int // index in out
}

func (s *announcementSet) add(r route) {
	if !r.ok {
		return
	}
	if i, ok := s.at[r.Prefix]; ok {
		s.out[i].Prepend = min(s.out[i].Prepend, r.Prepend)
		return
	}
	if s.at == nil {
		s.at = make(map[netip.Prefix]int)
	}
	s.at[r.Prefix] = len(s.out)
	s.out = append(s.out, r.Announcement)
}

// servable reports whether any pool of any listener (its default pool or,
// for http and https, a rule's) has a member that may take new flows; pool
// finds a pool's row.
func servable(pool func(string) *weftv1.Pool, listeners []*weftv1.Listener, healthy Healthy) bool {
	for _, l := range listeners {
		for _, name := range l7Pools(l) {
			for _, m := range pool(name).GetSpec().GetMembers() {
				if !m.GetDrain() && m.GetWeight() > 0 && healthy(name, m) {
					return true
				}
			}
		}
	}
	return false
}

// announcements are announcements(st, b.self, b.zone, b.prepend,
// b.healthy) for a node not draining, deriving again only the load
// balancers that changed.
func (b *bgpSubsystem) announcements(st *raftfsm.State) []bgp.Announcement {
	routes, same := b.lbs.derive(st, b.versions, func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) route {
		return lbRoute(lb, pool, b.zone, b.prepend, b.healthy)
	}, func(a, b route) bool { return reflect.DeepEqual(a, b) })
	if !same || b.announced == nil {
		var set announcementSet
		for _, r := range routes {
			set.add(r)
		}
		b.announced = set.out
	}
	return slices.Clip(b.announced) // callers append to it
}

// bgpStatus is the speaker's state for Status.
func bgpStatus(st bgp.Status) *weftv1.BGPStatus {
	out := &weftv1.BGPStatus{Asn: st.ASN, Draining: st.Draining}
	if st.RouterID.IsValid() {
		out.RouterId = st.RouterID.String()
	}
	if st.Err != nil {
		out.Error = st.Err.Error()
	}
	for _, p := range st.Peers {
		peer := &weftv1.BGPPeer{Address: p.Address.String(), Asn: p.ASN, State: p.State}
		if p.Established() {
			peer.EstablishedSince = timestamppb.New(p.Since)
			peer.HoldTime = durationpb.New(p.HoldTime)
		}
		out.Peers = append(out.Peers, peer)
	}
	for _, a := range st.Announced {
		out.Announced = append(out.Announced, &weftv1.BGPAnnouncement{Prefix: a.Prefix.String(), Prepend: uint32(a.Prepend)})
	}
	return out
}

// bgpSubsystem keeps the speaker's routes equal to announcements().
type bgpSubsystem struct {
	speaker *bgp.Speaker
	base    bgp.Config
	self    string
	zone    string
	prepend int
	healthy Healthy
	// versions tell the cache when healthy's answers may have changed.
	versions healthVersions
	lbs      lbCache[route]
	// announced are the announcements the values lbs holds give.
	announced []bgp.Announcement
	// ready, when set, holds the VIPs' announcements back until it
	// reports true.
	ready func() bool
	// extra are announced beside the VIPs, from every zone, while the node
	// is not draining: the anycast DNS address.
	extra []bgp.Announcement
	last  *bgp.Config
}

func (b *bgpSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	cfg := b.base
	draining := st.Node(b.self).GetSpec().GetDrain()
	if !draining && (b.ready == nil || b.ready()) {
		cfg.Announcements = b.announcements(st)
	}
	if !draining {
		cfg.Announcements = append(cfg.Announcements, b.extra...)
	}
	if b.last != nil && reflect.DeepEqual(*b.last, cfg) {
		return nil
	}
	if err := b.speaker.Apply(ctx, cfg); err != nil {
		return err
	}
	b.last = &cfg
	return nil
}
