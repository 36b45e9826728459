package node

import (
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// lbCache keeps what a subsystem derived from each load balancer, with
// what it came from: the load balancer's row, and the rows and health
// versions of the pools its listeners name. Rows are immutable (a write
// replaces them), so a load balancer whose row and pools are the same
// objects, at the same health versions, derives the same again. With
// 10,000 load balancers, deriving every one at every round took most of
// the round (issue 15); the subsystems stay level-triggered, but a round
// derives only what changed.
type lbCache[T any] struct {
	entries map[string]*lbEntry[T]
	rounds  uint64
	// order are the values of the last round, in name order, derived at
	// from; a round with the same state and view yields them again
	// without looking at any load balancer (rounds woken by gossip and
	// the neighbor refresh, many per change at 10,000 load balancers).
	order []T
	from  derivation
	// users are the load balancers naming each pool, and health the pool's
	// health version they were derived at: a round after a change visits
	// only the load balancers the change names or reaches through a pool
	// (patch), not every one.
	users  map[string]map[string]struct{}
	health map[string]uint64
}

// derivation is what a round derived from: the committed state's index
// and the health view's version; ok is false before the first round and
// when the view's version is unknown.
type derivation struct {
	index, view uint64
	ok          bool
}

// healthVersions tell a subsystem when a Healthy's answers may have
// changed (health.Health's PoolVersion and Version): pool with the
// answers for a pool's members, view with any. The zero value: answers
// never change.
type healthVersions struct {
	pool func(pool string) uint64
	view func() uint64
}

type lbEntry[T any] struct {
	lb    *weftv1.LoadBalancer
	pools []poolSeen // in the order forPools visits them
	value T
	round uint64 // the last round that found lb
	pos   int    // in order
}

// poolSeen is a pool's name, row and health version.
type poolSeen struct {
	name   string
	pool   *weftv1.Pool
	health uint64
}

// poolsSeen returns a function giving each pool as it is in st and the
// health view, reading each once.
func poolsSeen(row func(string) *weftv1.Pool, version func(string) uint64) func(string) poolSeen {
	pools := make(map[string]poolSeen)
	return func(name string) poolSeen {
		p, ok := pools[name]
		if !ok {
			p = poolSeen{name: name, pool: row(name)}
			if version != nil {
				p.health = version(name)
			}
			pools[name] = p
		}
		return p
	}
}

// holds reports whether the values held were derived from st and the
// health view as they are, and what they are (from).
func (c *lbCache[T]) holds(st *raftfsm.State, hv healthVersions) (from derivation, held bool) {
	from = hv.at(st)
	return from, from.ok && from == c.from
}

// at is what a round of st derives from. The view's version is read
// before any answer, so a change during the round makes the next one
// derive again.
func (hv healthVersions) at(st *raftfsm.State) derivation {
	d := derivation{index: st.Index(), ok: hv.pool == nil || hv.view != nil}
	if hv.view != nil {
		d.view = hv.view()
	}
	return d
}

// derive returns each load balancer's value, in name order, calling derive
// for those whose inputs changed since the last call; same reports whether
// every value is equal to the one held before (none added or removed), so
// that what the caller made of them holds too. values are the cache's:
// read them, do not keep them past the next call.
func (c *lbCache[T]) derive(st *raftfsm.State, hv healthVersions,
	derive func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) T, equal func(a, b T) bool) (values []T, same bool) {
	from, held := c.holds(st, hv)
	if held {
		return c.order, true
	}
	same, patched := c.patch(st, hv, from, derive, equal)
	if !patched {
		same = c.full(st, hv, derive, equal)
	}
	c.from = from
	return c.order, same
}

// full derives every load balancer of st whose inputs changed, visiting
// all of them.
func (c *lbCache[T]) full(st *raftfsm.State, hv healthVersions,
	derive func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) T, equal func(a, b T) bool) bool {
	c.order = c.order[:0]
	rows := st.PoolsByName()
	seen := poolsSeen(func(name string) *weftv1.Pool { return rows[name] }, hv.pool)
	if c.entries == nil {
		c.entries = make(map[string]*lbEntry[T])
		c.users = make(map[string]map[string]struct{})
		c.health = make(map[string]uint64)
	}
	c.rounds++
	lbs := st.LoadBalancers()
	same := len(lbs) == len(c.entries)
	for _, lb := range lbs {
		name := lb.GetMetadata().GetName()
		e := c.entries[name]
		if e == nil || !e.current(lb, seen) {
			n := c.derived(name, lb, seen, derive)
			var old []poolSeen
			if e != nil {
				old = e.pools
			}
			c.track(name, old, n.pools)
			same = same && e != nil && equal(e.value, n.value)
			e, c.entries[name] = n, n
		}
		e.round, e.pos = c.rounds, len(c.order)
		c.order = append(c.order, e.value)
	}
	for name, e := range c.entries {
		if e.round != c.rounds {
			c.track(name, e.pools, nil)
			delete(c.entries, name)
			same = false
		}
	}
	return same
}

// patch derives again the load balancers the changes since the last round
// (st.Changes) name or reach through their pools' rows and health, and
// those only. It does nothing and reports false when it cannot: the
// changes are not all known, or a load balancer was added or removed
// (order would move; full does it).
func (c *lbCache[T]) patch(st *raftfsm.State, hv healthVersions, from derivation,
	derive func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) T, equal func(a, b T) bool) (same, patched bool) {
	if !c.from.ok || !from.ok {
		return false, false
	}
	events, complete := st.Changes(c.from.index)
	if !complete {
		return false, false
	}
	dirty := make(map[string]bool)
	for _, ev := range events {
		switch raftfsm.KindOf(ev.Resource) {
		case raftfsm.KindLoadBalancer:
			name := ev.Resource.GetLoadBalancer().GetMetadata().GetName()
			if ev.Type != raftfsm.EventPut || c.entries[name] == nil {
				return false, false
			}
			dirty[name] = true
		case raftfsm.KindPool:
			for name := range c.users[ev.Resource.GetPool().GetMetadata().GetName()] {
				dirty[name] = true
			}
		}
	}
	if hv.pool != nil && from.view != c.from.view {
		for pool, v := range c.health {
			if hv.pool(pool) != v {
				for name := range c.users[pool] {
					dirty[name] = true
				}
			}
		}
	}
	lbs := make(map[string]*weftv1.LoadBalancer, len(dirty))
	for name := range dirty {
		if lbs[name] = st.LoadBalancer(name); lbs[name] == nil {
			return false, false // removed after all: the events said otherwise
		}
	}
	seen := poolsSeen(st.Pool, hv.pool)
	same = true
	for name, lb := range lbs {
		e := c.entries[name]
		n := c.derived(name, lb, seen, derive)
		c.track(name, e.pools, n.pools)
		same = same && equal(e.value, n.value)
		n.round, n.pos = e.round, e.pos
		c.entries[name], c.order[e.pos] = n, n.value
	}
	return same, true
}

// derived is lb's entry, derived from its pools as seen.
func (c *lbCache[T]) derived(name string, lb *weftv1.LoadBalancer, seen func(string) poolSeen,
	derive func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) T) *lbEntry[T] {
	n := &lbEntry[T]{lb: lb, value: derive(lb, func(pool string) *weftv1.Pool { return seen(pool).pool })}
	forPools(lb, func(pool string) bool {
		n.pools = append(n.pools, seen(pool))
		return true
	})
	return n
}

// track records that the load balancer name was derived from pools, no
// longer from old.
func (c *lbCache[T]) track(name string, old, pools []poolSeen) {
	for _, p := range old {
		if u := c.users[p.name]; u != nil {
			delete(u, name)
			if len(u) == 0 {
				delete(c.users, p.name)
				delete(c.health, p.name)
			}
		}
	}
	for _, p := range pools {
		u := c.users[p.name]
		if u == nil {
			u = make(map[string]struct{})
			c.users[p.name] = u
		}
		u[name] = struct{}{}
		c.health[p.name] = p.health
	}
}

// current reports whether e was derived from lb and its pools as they are.
func (e *lbEntry[T]) current(lb *weftv1.LoadBalancer, seen func(string) poolSeen) bool {
	if e.lb != lb {
		return false
	}
	i := 0
	return forPools(lb, func(pool string) bool {
		ok := i < len(e.pools) && seen(pool) == e.pools[i]
		i++
		return ok
	})
}

// forPools calls fn with every pool lb's listeners name (l7Pools of each),
// until fn returns false; it reports whether none did.
func forPools(lb *weftv1.LoadBalancer, fn func(pool string) bool) bool {
	for _, l := range lb.GetSpec().GetListeners() {
		if p := l.GetPool(); p != "" && !fn(p) {
			return false
		}
		for _, r := range l.GetRules() {
			if p := r.GetPool(); p != "" && !fn(p) {
				return false
			}
		}
	}
	return true
}
