package gossip

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is memberlist's view of a Gossip: node meta, user messages,
// push-pull state and membership events.
type delegate struct{ g *Gossip }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	d.g.metaMu.Lock()
	defer d.g.metaMu.Unlock()
	return d.g.meta
}

// NotifyMsg delivers a message to its topic's handler the first time it is
// seen and relays it once, so a message reaches every node even if its
// origin's own retransmissions miss some.
func (d *delegate) NotifyMsg(b []byte) {
	g := d.g
	msg, err := decodeMessage(bytes.Clone(b)) // memberlist reuses b
	if err != nil {
		g.dropped.Add(1)
		g.log.Debug("gossip: undecodable message", "err", err)
		return
	}
	if msg.origin == g.name {
		return // our own, relayed back
	}
	if !g.firstSight(msgKey{msg.origin, msg.id}) {
		g.dupes.Add(1)
		return
	}
	g.queueMessage(msg.encode())
	g.mu.Lock()
	h := g.handlers[msg.topic]
	g.mu.Unlock()
	if h != nil {
		g.received.Add(1)
		h(msg.origin, msg.payload)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	g := d.g
	g.mu.Lock()
	topics := make([]string, 0, len(g.states))
	for t := range g.states {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	locals := make([]func() []byte, len(topics))
	for i, t := range topics {
		locals[i] = g.states[t].local
	}
	g.mu.Unlock()
	// The providers run without g.mu: they may take their own locks.
	states := make([][]byte, len(topics))
	for i, f := range locals {
		states[i] = f()
	}
	return encodeState(g.name, topics, states)
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	g := d.g
	type delivery struct {
		merge  func(string, []byte)
		origin string
		state  []byte
	}
	var ds []delivery
	g.mu.Lock()
	err := decodeState(bytes.Clone(buf), func(origin, topic string, state []byte) {
		if h, ok := g.states[topic]; ok {
			ds = append(ds, delivery{h.merge, origin, state})
		}
	})
	g.mu.Unlock()
	if err != nil {
		g.dropped.Add(1)
		g.log.Warn("gossip: undecodable push-pull state", "err", err)
		return
	}
	for _, x := range ds {
		x.merge(x.origin, x.state)
	}
}

// The event methods run under memberlist's node lock: they only copy the
// node into the member table.

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.g.observe(n, false) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.observe(n, false) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.g.observe(n, true) }

// observe records a node as alive, or as gone when gone is set. memberlist
// v0.7 never fills Node.State (its own record shadows it), so a departure is
// told from a failure by the leaving flag the node put in its meta (Leave).
func (g *Gossip) observe(n *memberlist.Node, gone bool) {
	var meta NodeMeta
	if err := meta.UnmarshalBinary(n.Meta); err != nil {
		// Keep the member with empty meta: membership matters more.
		g.log.Warn("gossip: undecodable node meta", "node", n.Name, "err", err)
	}
	state := StateAlive
	switch {
	case gone && meta.leaving:
		state = StateLeft
	case gone:
		state = StateDead
	}
	meta.leaving = false
	addr, _ := netip.AddrFromSlice(n.Addr)
	now := time.Now()

	g.mu.Lock()
	defer g.mu.Unlock()
	m := &Member{Name: n.Name, Addr: netip.AddrPortFrom(addr.Unmap(), n.Port), State: state, Meta: meta, Since: now}
	if old, ok := g.members[n.Name]; ok && old.State == state {
		m.Since = old.Since
	}
	g.members[n.Name] = m
	for name, o := range g.members {
		if o.State != StateAlive && now.Sub(o.Since) > deadRetention {
			delete(g.members, name)
		}
	}
	g.notifyLocked()
}
