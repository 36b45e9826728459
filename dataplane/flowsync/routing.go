package flowsync

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/weftlb/weft/dataplane"
)

// routeLoop rewrites the dataplane's routing whenever something it depends
// on changed (Apply, a peer up or down, a peer or this node ready), and
// drops the previous table once every live owner has pulled the current
// one.
func (s *Syncer) routeLoop() {
	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	var last *dataplane.FlowRouting
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-tick.C:
		}
		s.mu.Lock()
		s.maybePullLocked()
		s.mu.Unlock()
		r, moved := s.routing()
		if last != nil && sameRouting(*last, r) {
			continue
		}
		if err := s.cfg.Driver.SetFlowRouting(r); err != nil {
			s.log.Error("write flow routing", "error", err)
			continue
		}
		last = &r
		for _, m := range moved {
			s.announce(m.addr, m.at)
		}
	}
}

// move is a local address that changed holder, to announce where it now is.
type move struct {
	addr netip.Addr
	at   net.HardwareAddr
}

// routing computes the dataplane's routing from the tables and the peers'
// states, and returns the local addresses of other nodes whose holder
// changed from or to this node: one it took over, and one it let go of
// (its node is back, but servers may still send its replies here), which
// is announced at its holder's MAC.
func (s *Syncer) routing() (dataplane.FlowRouting, []move) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropPrevLocked()
	r := dataplane.FlowRouting{Sync: true, MAC: s.cfg.MAC, Owners: make([]uint32, s.buckets),
		Local: map[netip.Addr]dataplane.LocalTarget{}}
	// Peers are indexed in name order; only those whose MAC is known can
	// be handed packets.
	index := map[string]uint32{}
	for _, name := range slices.Sorted(maps.Keys(s.peers)) {
		if mac := s.nodes[name].MAC; len(mac) == 6 {
			index[name] = uint32(len(r.Peers))
			r.Peers = append(r.Peers, mac)
		}
	}
	target := func(name string) uint32 {
		if i, ok := index[name]; ok && name != s.cfg.Self {
			return i
		}
		return dataplane.TargetSelf
	}
	epoch := s.epochLocked()
	for b := range r.Owners {
		r.Owners[b] = s.bucketTargetLocked(b, epoch, target)
	}
	ready := s.readyLocked()
	var moved []move
	held, taken := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, n := range s.nodes {
		for _, a := range n.Local {
			a = a.Unmap()
			var t dataplane.LocalTarget
			switch {
			case n.Name == s.cfg.Self:
				// This node's own: it answers for them, and until it has
				// pulled their flows back, hands misses to the heir that
				// kept them.
				t = dataplane.LocalTarget{Target: dataplane.TargetSelf, Held: true}
				if !ready {
					t.Target = target(s.heirLocked(a, ""))
				}
			case s.lostLocked(n, a):
				// Its node is lost (or has not pulled back yet): the
				// first live heir holds it.
				taken[a] = true
				h := s.heirLocked(a, "")
				t = dataplane.LocalTarget{Target: target(h), Held: h == s.cfg.Self}
			default:
				t.Target = target(n.Name)
			}
			r.Local[a] = t
			held[a] = t.Held
			switch {
			case n.Name == s.cfg.Self:
			case t.Held && !s.held[a]:
				moved = append(moved, move{a, s.cfg.MAC})
			case !t.Held && s.held[a] && t.Target != dataplane.TargetSelf:
				moved = append(moved, move{a, r.Peers[t.Target]})
			}
		}
	}
	s.held, s.takenOver = held, taken
	return r, moved
}

// lostLocked reports whether node n's local address a needs a holder
// other than n: gossip knows n is gone, or its stream, up before, is down;
// once so, until n is back and has pulled its flows. A node whose stream
// was never up (this node just started) is not lost unless gossip says
// so, nor is one that is still pulling at the cluster's start.
func (s *Syncer) lostLocked(n Node, a netip.Addr) bool {
	p := s.peers[n.Name]
	lost := n.Gone || (p != nil && p.wasUp() && !p.isUp())
	if !lost && s.takenOver[a] && !s.readyForLocked(n.Name, 0) {
		lost = true
	}
	return lost
}

// bucketTargetLocked is where client packets of bucket b's unknown flows
// go: its first owner in the current table that has pulled that table's
// flows; if none has, its first live owner in the previous table, which
// still holds them; else this node.
func (s *Syncer) bucketTargetLocked(b int, epoch uint64, target func(string) uint32) uint32 {
	if s.cur != nil {
		for i := range s.cur.replicas {
			if o := s.cur.owner(b, i); s.readyForLocked(o, epoch) {
				return target(o)
			}
		}
	}
	if s.prev != nil {
		for i := range s.prev.replicas {
			if o := s.prev.owner(b, i); s.liveLocked(o) {
				return target(o)
			}
		}
	}
	return dataplane.TargetSelf
}

// dropPrevLocked forgets the previous table once every live owner of the
// current one has pulled its flows.
func (s *Syncer) dropPrevLocked() {
	if s.prev == nil || s.cur == nil {
		return
	}
	for _, name := range s.cur.nodes {
		if s.liveLocked(name) && !s.readyForLocked(name, s.cur.epoch) {
			return
		}
	}
	s.prev = nil
}

// announceAll announces this node's own local addresses, once it holds
// their flows, so that servers send replies here again.
func (s *Syncer) announceAll() {
	for _, a := range s.cfg.Local {
		s.announce(a, s.cfg.MAC)
	}
}

func (s *Syncer) announce(a netip.Addr, at net.HardwareAddr) {
	if s.cfg.Announce == nil {
		return
	}
	if err := s.cfg.Announce(a, at); err != nil {
		s.log.Warn("announce local address", "address", a, "at", at, "error", err)
		return
	}
	s.log.Info("announced local address", "address", a, "at", at)
}

func sameRouting(a, b dataplane.FlowRouting) bool {
	return a.Sync == b.Sync && slices.Equal(a.MAC, b.MAC) && slices.Equal(a.Owners, b.Owners) &&
		slices.EqualFunc(a.Peers, b.Peers, func(x, y net.HardwareAddr) bool { return slices.Equal(x, y) }) &&
		maps.Equal(a.Local, b.Local)
}
