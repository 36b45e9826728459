package raftfsm

import (
	"fmt"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// State is an immutable snapshot of the state store at one log index. It is
// cheap to take and safe to use from any goroutine; later writes do not show
// through. Returned messages and slices are shared with the store and
// other callers: callers must not mutate them (clone first).
type State struct {
	txn *memdb.Txn
	// fsm is the FSM the state was taken from, for Changes; nil for the
	// states EvaluateResources builds.
	fsm *FSM
	// lbs is every load balancer, listed once: each subsystem of a
	// reconciler round ranges over them (10,000 at scale).
	lbs struct {
		once sync.Once
		rows []*weftv1.LoadBalancer
	}
	// pools is every pool by name, built once when a round's subsystems
	// look up the pools of every load balancer.
	pools struct {
		once   sync.Once
		byName map[string]*weftv1.Pool
	}
}

// Index is the log index of the last command applied to this state
// (including commands that were rejected with an error), or the index
// recorded in the snapshot it was restored from.
func (s *State) Index() uint64 {
	raw := s.first(tableIndex, singletonID)
	if raw == nil {
		return 0
	}
	return raw.(*indexRow).Value
}

// Changes returns the changes of user resources (Events) after index
// from, up to the state's own index, oldest first. complete is false when
// some are not known: the FSM keeps the last EventBuffer events, forgets
// them at a restore, and may not have recorded the state's own index yet;
// a state not taken from an FSM knows none. The caller then reads the
// whole state.
func (s *State) Changes(from uint64) (events []Event, complete bool) {
	if s.fsm == nil {
		return nil, false
	}
	return s.fsm.changes(from, s.Index())
}

// Resource returns the named resource of the given kind (KindPool, ...), or
// nil when it does not exist or the kind is unknown.
func (s *State) Resource(kind, name string) *weftv1.Resource {
	k := kindByName(kind)
	if k == nil {
		return nil
	}
	raw := s.first(k.table, name)
	if raw == nil {
		return nil
	}
	return k.wrap(raw.(proto.Message))
}

// Resources returns every user resource, by kind in dependency order
// (AddressPool, Certificate, Pool, LoadBalancer, DNSRecord), then by name. Applying
// them in this order never refers to a resource not yet applied.
func (s *State) Resources() []*weftv1.Resource {
	var out []*weftv1.Resource
	for _, k := range resourceKinds {
		for _, raw := range s.all(k.table) {
			out = append(out, k.wrap(raw.(proto.Message)))
		}
	}
	return out
}

// ResourcesAfter calls yield with the resources of kind (KindPool, ...)
// named after after ("": all), in name order, until yield returns false:
// a listing can resume where a page ended without reading what came
// before. An unknown kind has none.
func (s *State) ResourcesAfter(kind, after string, yield func(*weftv1.Resource) bool) {
	k := kindByName(kind)
	if k == nil {
		return
	}
	var it memdb.ResultIterator
	var err error
	if after == "" {
		it, err = s.txn.Get(k.table, indexID)
	} else {
		it, err = s.txn.LowerBound(k.table, indexID, after)
	}
	if err != nil {
		panic(fmt.Sprintf("raftfsm: list %s: %v", k.table, err))
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if after != "" && metadataOf(raw.(proto.Message)).GetName() == after {
			continue // LowerBound starts at after itself
		}
		if !yield(k.wrap(raw.(proto.Message))) {
			return
		}
	}
}

// first returns the row of table with the given id, or nil.
func (s *State) first(table, id string) any {
	raw, err := s.txn.First(table, indexID, id)
	if err != nil {
		// Only a table or index missing from the schema fails a read.
		panic(fmt.Sprintf("raftfsm: read %s: %v", table, err))
	}
	return raw
}

// all returns every row of table in id order.
func (s *State) all(table string) []any {
	it, err := s.txn.Get(table, indexID)
	if err != nil {
		panic(fmt.Sprintf("raftfsm: list %s: %v", table, err))
	}
	var out []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw)
	}
	return out
}

func getRow[T any](s *State, table, id string) T {
	v, _ := s.first(table, id).(T)
	return v
}

func listRows[T any](s *State, table string) []T {
	rows := s.all(table)
	out := make([]T, len(rows))
	for i, raw := range rows {
		out[i] = raw.(T)
	}
	return out
}
