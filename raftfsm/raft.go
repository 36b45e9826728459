package raftfsm

// Raft setup around the FSM: stores, transport, timers, and the operations
// the API layer needs (apply, consistent reads, membership).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boltdb/bolt"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/latency"
)

// Raft timers, tuned for nodes on one LAN (see README.md): a follower
// notices a dead leader after 500 ms to 1 s, and a new leader is normally
// elected well within 2 s.
const (
	heartbeatTimeout   = 500 * time.Millisecond
	electionTimeout    = 500 * time.Millisecond
	leaderLeaseTimeout = 250 * time.Millisecond
	commitTimeout      = 5 * time.Millisecond
)

// Defaults for Config fields left zero, and fixed transport settings.
const (
	defaultSnapshotThreshold = 8192
	defaultDeadServerTimeout = 30 * time.Second
	defaultPlacementInterval = 2 * time.Second
	snapshotsRetained        = 3
	transportMaxPool         = 3
	transportTimeout         = 5 * time.Second
	logCacheSize             = 512
	raftDBFile               = "raft.db"
)

// ErrNotLeader is returned by operations that only the leader can perform.
var ErrNotLeader = errors.New("not the raft leader")

// Config configures a Raft node.
type Config struct {
	// ID is the node name, used as the raft server ID.
	ID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// BindAddr is the host:port raft listens on.
	BindAddr string
	// AdvertiseAddr is the host:port other nodes dial; defaults to the
	// address actually bound (so a BindAddr with port 0 works in tests).
	AdvertiseAddr string
	// TLS holds the node certificate and the cluster CA. It is used to
	// listen (client certificates required and verified) and to dial
	// (server certificate verified against the CA).
	TLS *tls.Config
	// Bootstrap makes this node the single voter of a new cluster when the
	// data directory holds no raft state. Ignored otherwise.
	Bootstrap bool

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one (default 8192).
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks the threshold (raft's default when 0).
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log (raft's default when 0).
	TrailingLogs uint64

	// FetchStats asks another server for its applied index, for voter
	// placement. Nil assumes every server is reachable and caught up.
	FetchStats StatsFetcher
	// DeadServerTimeout is how long a server's stats must have failed before
	// placement treats it as dead (default 30 s).
	DeadServerTimeout time.Duration
	// PlacementInterval is how often the leader revisits voter placement (default 2 s).
	PlacementInterval time.Duration
	// EventBuffer is how many resource change events the FSM keeps (default 4096).
	EventBuffer int

	// Logger receives raft's logs (slog.Default when nil).
	Logger *slog.Logger
}

// Raft is one node of the Weft raft cluster with its FSM.
type Raft struct {
	cfg       Config
	logger    *slog.Logger
	fsm       *FSM
	raft      *raft.Raft
	logs      raft.LogStore
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport

	notifyCh chan bool
	snaps    raft.SnapshotStore
	// leaderObs delivers raft's leader observations, counted in
	// leaderChanges; applyLatency times Apply.
	leaderObs     chan raft.Observation
	leaderChanges atomic.Uint64
	applyLatency  latency.Histogram
	stop          chan struct{}
	done          chan struct{}
	closeOnce     sync.Once
	closeErr      error
}

// Open starts a raft node on cfg.DataDir, restoring its state from the
// latest snapshot and the log.
func Open(cfg Config) (*Raft, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.BindAddr == "" {
		return nil, errors.New("open raft: ID, DataDir and BindAddr are required")
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = defaultSnapshotThreshold
	}
	if cfg.DeadServerTimeout == 0 {
		cfg.DeadServerTimeout = defaultDeadServerTimeout
	}
	if cfg.PlacementInterval == 0 {
		cfg.PlacementInterval = defaultPlacementInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	logger := cfg.Logger.With("component", "raft", "node", cfg.ID)
	hl := newHCLog(logger)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft: %w", err)
	}
	r := &Raft{
		cfg:       cfg,
		logger:    logger,
		fsm:       NewFSM(cfg.EventBuffer),
		notifyCh:  make(chan bool, 1),
		leaderObs: make(chan raft.Observation, 16),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if err := r.open(hl); err != nil {
		r.closeResources()
		return nil, fmt.Errorf("open raft: %w", err)
	}
	go r.watchLeadership()
	return r, nil
}

func (r *Raft) open(hl *slogHCLog) error {
	var err error
	// A timeout, so that a second agent on the same directory fails
	// instead of waiting for bolt's file lock for ever.
	r.store, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(r.cfg.DataDir, raftDBFile),
		BoltOptions: &bolt.Options{Timeout: 5 * time.Second},
	})
	if err != nil {
		return fmt.Errorf("open %s: %w", raftDBFile, err)
	}
	r.logs, err = raft.NewLogCache(logCacheSize, r.store)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(r.cfg.DataDir, snapshotsRetained, hl)
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	r.snaps = snaps
	stream, err := newTLSStreamLayer(r.cfg.BindAddr, r.cfg.AdvertiseAddr, r.cfg.TLS)
	if err != nil {
		return err
	}
	r.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  hl,
	})

	conf := r.raftConfig(hl)
	if r.cfg.Bootstrap {
		exists, err := raft.HasExistingState(r.logs, r.store, snaps)
		if err != nil {
			return fmt.Errorf("check existing state: %w", err)
		}
		if !exists {
			boot := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter,
				ID:       conf.LocalID,
				Address:  r.transport.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(conf, r.logs, r.store, snaps, r.transport, boot); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
		}
	}
	r.raft, err = raft.NewRaft(conf, r.fsm, r.logs, r.store, snaps, r.transport)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	// Not blocking: a full channel drops an observation rather than
	// stall raft; watchLeadership reads it at once.
	r.raft.RegisterObserver(raft.NewObserver(r.leaderObs, false, func(o *raft.Observation) bool {
		lo, ok := o.Data.(raft.LeaderObservation)
		return ok && lo.LeaderID != ""
	}))
	return nil
}

func (r *Raft) raftConfig(hl *slogHCLog) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(r.cfg.ID)
	c.HeartbeatTimeout = heartbeatTimeout
	c.ElectionTimeout = electionTimeout
	c.LeaderLeaseTimeout = leaderLeaseTimeout
	c.CommitTimeout = commitTimeout
	// Concurrent proposals share one disk write and one round trip.
	c.BatchApplyCh = true
	c.SnapshotThreshold = r.cfg.SnapshotThreshold
	if r.cfg.SnapshotInterval != 0 {
		c.SnapshotInterval = r.cfg.SnapshotInterval
	}
	if r.cfg.TrailingLogs != 0 {
		c.TrailingLogs = r.cfg.TrailingLogs
	}
	c.Logger = hl
	c.NotifyCh = r.notifyCh
	return c
}

// FSM returns the node's state machine.
func (r *Raft) FSM() *FSM { return r.fsm }

// Apply proposes a command, waits until this node has applied it, and returns
// the FSM's response and the command's log index. An error response of the
// FSM (a *StateError) is returned as err. ErrNotLeader when this node is not
// the leader. When ctx ends first, or the error is raft.ErrLeadershipLost,
// the command may still be applied.
func (r *Raft) Apply(ctx context.Context, t CommandType, msg proto.Message) (resp any, index uint64, err error) {
	if !r.IsLeader() {
		return nil, 0, ErrNotLeader
	}
	data, err := Encode(t, msg)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	f := r.raft.Apply(data, enqueueTimeout(ctx))
	if err := wait(ctx, f); err != nil {
		return nil, 0, fmt.Errorf("apply %v: %w", t, err)
	}
	r.applyLatency.Observe(time.Since(start))
	resp = f.Response()
	if err, ok := resp.(error); ok {
		return nil, f.Index(), err
	}
	return resp, f.Index(), nil
}

// ConsistentRead makes the FSM's state at least as new as every write
// committed before the call (a ReadIndex read): it notes the commit index,
// confirms leadership with a quorum, and waits until the FSM has applied up
// to the noted index. State() read afterwards is linearizable.
// ErrNotLeader when this node is not the leader.
func (r *Raft) ConsistentRead(ctx context.Context) error {
	if !r.IsLeader() {
		return ErrNotLeader
	}
	ci, err := r.ownTermCommitIndex(ctx)
	if err != nil {
		return fmt.Errorf("consistent read: %w", err)
	}
	if err := wait(ctx, r.raft.VerifyLeader()); err != nil {
		return fmt.Errorf("consistent read: %w", err)
	}
	target, err := r.lastCommandAtOrBefore(ci)
	if err != nil {
		return fmt.Errorf("consistent read: %w", err)
	}
	if err := r.waitApplied(ctx, target); err != nil {
		return fmt.Errorf("consistent read: %w", err)
	}
	return nil
}

// ownTermCommitIndex returns the commit index once it is known to cover
// every entry committed by earlier leaders: a new leader learns that only
// when an entry of its own term commits, so until then it waits on a barrier.
func (r *Raft) ownTermCommitIndex(ctx context.Context) (uint64, error) {
	ci := r.raft.CommitIndex()
	var l raft.Log
	// An entry that cannot be read (compacted, or an I/O error) only sends
	// the read down the slower path, which does not depend on it.
	if ci > 0 && r.logs.GetLog(ci, &l) == nil && l.Term == r.raft.CurrentTerm() {
		return ci, nil
	}
	if err := wait(ctx, r.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		return 0, err
	}
	return r.raft.CommitIndex(), nil
}

// lastCommandAtOrBefore returns the index of the last command entry at or
// before ci that the FSM has not applied yet, or 0 when there is none.
// Raft's own applied index cannot be used: it advances when entries are
// handed to the FSM goroutine, not when the FSM has applied them, and
// entries that are not commands (no-ops, configurations) never reach the FSM.
func (r *Raft) lastCommandAtOrBefore(ci uint64) (uint64, error) {
	for i := ci; i > r.fsm.AppliedIndex(); i-- {
		var l raft.Log
		err := r.logs.GetLog(i, &l)
		if errors.Is(err, raft.ErrLogNotFound) {
			// Compacted into a snapshot of this FSM: applied already.
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}

func (r *Raft) waitApplied(ctx context.Context, index uint64) error {
	for {
		changed := r.fsm.Changed()
		if r.fsm.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// IsLeader reports whether this node is the leader now.
func (r *Raft) IsLeader() bool { return r.raft.State() == raft.Leader }

// Leader returns the current leader's ID and address, or empty strings when
// none is known.
func (r *Raft) Leader() (id, addr string) {
	a, i := r.raft.LeaderWithID()
	return string(i), string(a)
}

// AddNonvoter adds a server that replicates the log without voting (or
// updates its address). Voter placement promotes it when it has caught up.
func (r *Raft) AddNonvoter(ctx context.Context, id, addr string) error {
	if err := wait(ctx, r.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))); err != nil {
		return fmt.Errorf("add nonvoter %s: %w", id, err)
	}
	return nil
}

// RemoveServer removes a server from the cluster configuration.
func (r *Raft) RemoveServer(ctx context.Context, id string) error {
	if err := wait(ctx, r.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return nil
}

// TransferLeadership hands leadership to the voter with the given ID, or to
// the most up-to-date voter when id is "".
func (r *Raft) TransferLeadership(ctx context.Context, id string) error {
	if id == "" {
		if err := wait(ctx, r.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("transfer leadership: %w", err)
		}
		return nil
	}
	servers, err := r.Servers()
	if err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	for _, s := range servers {
		if string(s.ID) == id {
			if err := wait(ctx, r.raft.LeadershipTransferToServer(s.ID, s.Address)); err != nil {
				return fmt.Errorf("transfer leadership to %s: %w", id, err)
			}
			return nil
		}
	}
	return fmt.Errorf("transfer leadership: server %q is not in the cluster", id)
}

// Servers returns the latest cluster configuration.
func (r *Raft) Servers() ([]raft.Server, error) {
	f := r.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("get configuration: %w", err)
	}
	conf := f.Configuration()
	return conf.Clone().Servers, nil
}

// Stats returns this node's raft state ("leader", "follower", "candidate",
// "shutdown"), term, commit index and applied index.
func (r *Raft) Stats() (state string, term, commitIndex, appliedIndex uint64) {
	return strings.ToLower(r.raft.State().String()), r.raft.CurrentTerm(), r.raft.CommitIndex(), r.raft.AppliedIndex()
}

// Metrics are figures of this node's Raft for the metrics endpoint.
type Metrics struct {
	// State, Term, CommitIndex and AppliedIndex are Stats'.
	State                           string
	Term, CommitIndex, AppliedIndex uint64
	LastLogIndex                    uint64
	// LeaderChanges counts the leaders this node has learnt of since it
	// started (itself included).
	LeaderChanges uint64
	// ApplyLatency times Apply on this node (when leader): from proposal
	// to applied here, commit on a quorum included.
	ApplyLatency latency.Snapshot
	// SnapshotIndex and SnapshotBytes are the newest snapshot's (0: none).
	SnapshotIndex uint64
	SnapshotBytes int64
}

// Metrics reads the figures.
func (r *Raft) Metrics() Metrics {
	m := Metrics{LeaderChanges: r.leaderChanges.Load(), ApplyLatency: r.applyLatency.Snapshot(),
		LastLogIndex: r.raft.LastIndex()}
	m.State, m.Term, m.CommitIndex, m.AppliedIndex = r.Stats()
	if snaps, err := r.snaps.List(); err == nil && len(snaps) > 0 {
		m.SnapshotIndex, m.SnapshotBytes = snaps[0].Index, snaps[0].Size
	}
	return m
}

// LeaderCh delivers true when this node becomes leader and false when it
// stops being leader. It has room for one value and keeps only the latest,
// so it suits one consumer.
func (r *Raft) LeaderCh() <-chan bool { return r.raft.LeaderCh() }

// Snapshot takes a snapshot now (and truncates the log past TrailingLogs).
func (r *Raft) Snapshot() error {
	if err := r.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Close shuts raft down and closes the transport and the stores. It does not
// hand over leadership: call TransferLeadership first for a graceful stop.
func (r *Raft) Close() error {
	r.closeOnce.Do(func() {
		close(r.stop)
		<-r.done
		if err := r.raft.Shutdown().Error(); err != nil {
			r.closeErr = fmt.Errorf("shut down raft: %w", err)
		}
		r.closeErr = errors.Join(r.closeErr, r.closeResources())
	})
	return r.closeErr
}

func (r *Raft) closeResources() error {
	var errs []error
	if r.transport != nil {
		if err := r.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	if r.store != nil {
		if err := r.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", raftDBFile, err))
		}
	}
	return errors.Join(errs...)
}

// watchLeadership runs voter placement while this node is the leader.
func (r *Raft) watchLeadership() {
	defer close(r.done)
	stopPlacement := func() {}
	defer func() { stopPlacement() }()
	for {
		select {
		case leader := <-r.notifyCh:
			stopPlacement()
			stopPlacement = func() {}
			if leader {
				stopPlacement = r.startPlacement()
			}
		case <-r.leaderObs:
			r.leaderChanges.Add(1)
		case <-r.stop:
			return
		}
	}
}

// startPlacement starts the placement loop and returns a function that
// stops it and waits for it to end. Placement waits on raft futures with its
// context, so stopping is prompt even while raft is stepping down.
func (r *Raft) startPlacement() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.runPlacement(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// wait waits for a raft future, or for ctx to end (the operation may then
// still complete). raft's ErrNotLeader becomes ErrNotLeader.
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueueTimeout bounds how long raft may wait to accept an operation: the
// time left in ctx, or no bound.
func enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Nanosecond
	}
	return 0
}
