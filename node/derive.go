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
}

// poolSeen is a pool's row and health version.
type poolSeen struct {
	pool   *weftv1.Pool
	health uint64
}

// holds reports whether the values held were derived from st and the
// health view as they are, and what they are (from).
func (c *lbCache[T]) holds(st *raftfsm.State, hv healthVersions) (from derivation, held bool) {
	// The view's version is read before any answer, so a change during
	// the round makes the next one derive again.
	from = derivation{index: st.Index(), ok: hv.pool == nil || hv.view != nil}
	if hv.view != nil {
		from.view = hv.view()
	}
	return from, from.ok && from == c.from
}

// derive yields each load balancer's value, in name order, calling derive
// for those whose inputs changed since the last call; it reports whether
// every value is equal to the one held before (none added or removed).
func (c *lbCache[T]) derive(st *raftfsm.State, hv healthVersions,
	derive func(lb *weftv1.LoadBalancer, pool func(string) *weftv1.Pool) T, equal func(a, b T) bool, yield func(T)) bool {
	from, held := c.holds(st, hv)
	if held {
		for _, v := range c.order {
			yield(v)
		}
		return true
	}
	c.from, c.order = from, c.order[:0]
	poolVersion := hv.pool
	rows := st.PoolsByName()
	pools := make(map[string]poolSeen)
	seen := func(name string) poolSeen {
		p, ok := pools[name]
		if !ok {
			p.pool = rows[name]
			if poolVersion != nil {
				p.health = poolVersion(name)
			}
			pools[name] = p
		}
		return p
	}
	row := func(name string) *weftv1.Pool { return seen(name).pool }
	if c.entries == nil {
		c.entries = make(map[string]*lbEntry[T])
	}
	c.rounds++
	lbs := st.LoadBalancers()
	same := len(lbs) == len(c.entries)
	for _, lb := range lbs {
		name := lb.GetMetadata().GetName()
		e := c.entries[name]
		if e == nil || !e.current(lb, seen) {
			n := &lbEntry[T]{lb: lb, value: derive(lb, row)}
			forPools(lb, func(pool string) bool {
				n.pools = append(n.pools, seen(pool))
				return true
			})
			same = same && e != nil && equal(e.value, n.value)
			e, c.entries[name] = n, n
		}
		e.round = c.rounds
		c.order = append(c.order, e.value)
		yield(e.value)
	}
	for name, e := range c.entries {
		if e.round != c.rounds {
			delete(c.entries, name)
			same = false
		}
	}
	return same
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
