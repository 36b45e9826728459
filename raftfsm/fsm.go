package raftfsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// DefaultEventBuffer is how many resource change events the FSM keeps for
// Events when NewFSM is given 0.
const DefaultEventBuffer = 4096

// FSM is Weft's Raft state machine: it applies typed commands to a go-memdb
// state store, snapshots and restores it, and records resource change events.
// Raft calls Apply, Snapshot and Restore from one goroutine; State, Events and
// Changed may be called from any goroutine.
type FSM struct {
	db      atomic.Pointer[memdb.MemDB]
	applied atomic.Uint64

	mu      sync.Mutex
	ring    eventRing
	changed chan struct{} // closed and replaced at every apply or restore
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an empty FSM keeping the last eventBuffer resource change
// events (DefaultEventBuffer when 0).
func NewFSM(eventBuffer int) *FSM {
	if eventBuffer <= 0 {
		eventBuffer = DefaultEventBuffer
	}
	f := &FSM{ring: newEventRing(eventBuffer), changed: make(chan struct{})}
	f.db.Store(newMemDB())
	return f
}

// State returns an immutable snapshot of the current state.
func (f *FSM) State() *State {
	return &State{txn: f.db.Load().Txn(false), fsm: f}
}

// AppliedIndex is the index of the last log entry the FSM applied (or
// restored). It equals State().Index() without opening a transaction.
func (f *FSM) AppliedIndex() uint64 {
	return f.applied.Load()
}

// Changed returns a channel that is closed at the next apply or restore.
// Take it before reading State, then wait on it, to miss no change.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Events returns the resource change events with Index > from, oldest first.
// reset is true when some of those events are no longer kept (the ring
// overflowed, or a snapshot was restored after from): the caller must then
// list State() again and continue from its Index. notify is closed at the
// next applied change, for waiting.
func (f *FSM) Events(from uint64) (events []Event, reset bool, notify <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	events, reset = f.ring.since(from)
	return events, reset, f.changed
}

// changes are the events with from < Index <= to, and whether all of them
// are kept.
func (f *FSM) changes(from, to uint64) ([]Event, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ring.between(from, to)
}

// handler applies the body of one command type at a log index and returns
// the FSM response.
type handler func(f *FSM, index uint64, body []byte) any

// handlers has one entry per known command type.
var handlers = map[CommandType]handler{
	ApplyResourcesType:   handle(ApplyResourcesType, (*writeTxn).applyResources),
	DeleteResourceType:   handle(DeleteResourceType, (*writeTxn).deleteResource),
	InitClusterType:      handle(InitClusterType, (*writeTxn).initCluster),
	UpsertNodeType:       handle(UpsertNodeType, (*writeTxn).upsertNode),
	DeleteNodeType:       handle(DeleteNodeType, (*writeTxn).deleteNode),
	SetNodeDrainType:     handle(SetNodeDrainType, (*writeTxn).setNodeDrain),
	CreateJoinTokenType:  handle(CreateJoinTokenType, (*writeTxn).createJoinToken),
	ConsumeJoinTokenType: handle(ConsumeJoinTokenType, (*writeTxn).consumeJoinToken),
	RevokeJoinTokenType:  handle(RevokeJoinTokenType, (*writeTxn).revokeJoinToken),
	CreateAPITokenType:   handle(CreateAPITokenType, (*writeTxn).createAPIToken),
	RevokeAPITokenType:   handle(RevokeAPITokenType, (*writeTxn).revokeAPIToken),
	RotateTicketKeysType: handle(RotateTicketKeysType, (*writeTxn).rotateTicketKeys),
	SetFlowOwnershipType: handle(SetFlowOwnershipType, (*writeTxn).setFlowOwnership),
}

// handle builds the handler of one command type: decode the body into a
// fresh C, then run fn as one state-store transaction at the log index.
func handle[C any, PC interface {
	*C
	proto.Message
}, R any](t CommandType, fn func(*writeTxn, PC) (R, error)) handler {
	return func(f *FSM, index uint64, body []byte) any {
		cmd := PC(new(C))
		if err := proto.Unmarshal(body, cmd); err != nil {
			// Every replica would fail the same way; going on would apply a
			// log whose meaning we do not know.
			panic(fmt.Sprintf("raftfsm: log entry %d: decode %v command: %v", index, t, err))
		}
		return f.write(index, func(tx *writeTxn) (any, error) { return fn(tx, cmd) })
	}
}

// Apply applies one committed log entry. It panics on an entry it cannot
// decode and on an unknown command type without IgnoreUnknownFlag, since
// skipping either would let this replica diverge from the others.
func (f *FSM) Apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftfsm: log entry %d is empty", l.Index))
	}
	t := CommandType(l.Data[0])
	h, ok := handlers[t]
	if !ok {
		if t&IgnoreUnknownFlag == 0 {
			panic(fmt.Sprintf("raftfsm: log entry %d: unknown command type %d (upgrade this node)", l.Index, uint8(t)))
		}
		return f.write(l.Index, func(*writeTxn) (any, error) { return nil, nil })
	}
	return h(f, l.Index, l.Data[1:])
}

// writeTxn is one state-store write at one log index. Handlers run their
// transaction through it; the FSM commits it and publishes its events.
type writeTxn struct {
	txn    *memdb.Txn
	index  uint64
	events []Event
}

// write runs fn in a write transaction at index. On error nothing fn did is
// kept and the error is the response; either way the applied index advances,
// so that every replica records the same index for the same log.
func (f *FSM) write(index uint64, fn func(tx *writeTxn) (any, error)) any {
	db := f.db.Load()
	tx := &writeTxn{txn: db.Txn(true), index: index}
	resp, err := fn(tx)
	if err != nil {
		tx.txn.Abort()
		tx = &writeTxn{txn: db.Txn(true), index: index}
		resp = err
	}
	if err := tx.txn.Insert(tableIndex, &indexRow{Value: index}); err != nil {
		panic(fmt.Sprintf("raftfsm: log entry %d: record applied index: %v", index, err))
	}
	tx.txn.Commit()

	f.applied.Store(index)
	f.mu.Lock()
	f.ring.add(index, tx.events)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	return resp
}

// swap replaces the whole store with db, restored at index.
func (f *FSM) swap(db *memdb.MemDB, index uint64) {
	f.db.Store(db)
	f.applied.Store(index)
	f.mu.Lock()
	f.ring.reset(index)
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}
