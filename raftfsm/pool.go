package raftfsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

var poolKind = &resourceKind{
	name:  KindPool,
	noun:  "pool",
	table: tablePools,
	unwrap: func(r *weftv1.Resource) proto.Message {
		if m := r.GetPool(); m != nil {
			return m
		}
		return nil
	},
	wrap: func(m proto.Message) *weftv1.Resource {
		return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: m.(*weftv1.Pool)}}
	},
	users: poolUsers,
}

// poolUsers refuses to delete a pool that a listener or rule names.
func poolUsers(tx *writeTxn, name string) error {
	raw, err := tx.txn.First(tableLoadBalancers, indexPool, name)
	if err != nil {
		return fmt.Errorf("look up users of pool %q: %w", name, err)
	}
	if raw == nil {
		return nil
	}
	lb := raw.(*weftv1.LoadBalancer)
	for _, l := range lb.GetSpec().GetListeners() {
		uses := l.GetPool() == name
		for _, r := range l.GetRules() {
			uses = uses || r.GetPool() == name
		}
		if uses {
			return stateErrorf(FailedPrecondition, "pool %q is used by load balancer %q listener %q", name, lb.GetMetadata().GetName(), listenerName(l))
		}
	}
	return stateErrorf(FailedPrecondition, "pool %q is used by load balancer %q", name, lb.GetMetadata().GetName())
}

// Pool returns the named pool, or nil.
func (s *State) Pool(name string) *weftv1.Pool {
	return getRow[*weftv1.Pool](s, tablePools, name)
}

// PoolsByName returns every pool by name, listed once per State: for
// callers that look up the pools of every load balancer, which Pool's
// lookups one by one cost several times over. The map is shared: read only.
func (s *State) PoolsByName() map[string]*weftv1.Pool {
	s.pools.once.Do(func() {
		rows := s.Pools()
		s.pools.byName = make(map[string]*weftv1.Pool, len(rows))
		for _, p := range rows {
			s.pools.byName[p.GetMetadata().GetName()] = p
		}
	})
	return s.pools.byName
}

// Pools returns every pool, sorted by name.
func (s *State) Pools() []*weftv1.Pool {
	return listRows[*weftv1.Pool](s, tablePools)
}
