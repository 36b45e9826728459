package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weftlb/weft/latency"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// retryDelay is how soon a subsystem whose apply failed is tried again.
const retryDelay = time.Second

// subsystem is a part of the node that the reconciler keeps in line with
// the committed state (DESIGN.md principle 3: it is given the whole state
// each time and makes reality match it, idempotently).
type subsystem struct {
	name  string
	apply func(ctx context.Context, st *raftfsm.State) error

	mu      sync.Mutex
	applied uint64
	// err is the last apply's error, of the state at failedIndex.
	err         error
	failedIndex uint64
	// failures counts failed applies; duration times every apply.
	failures uint64
	duration latency.Histogram
}

// reconciler applies every new state to every subsystem. It never misses
// a change: it waits on the FSM's change channel taken before reading the
// state, and a failed apply is retried with the then-current state.
type reconciler struct {
	fsm  *raftfsm.FSM
	subs []*subsystem
	log  *slog.Logger
	// wake are other sources of change (the health view): each returns a
	// channel closed at its next change.
	wake []func() <-chan struct{}

	// roundMu guards roundDone, closed and replaced at the end of every
	// round, for waitApplied.
	roundMu   sync.Mutex
	roundDone chan struct{}
}

func (r *reconciler) run(ctx context.Context) {
	poke := make(chan struct{}, 1)
	for _, w := range r.wake {
		go func() {
			for {
				select {
				case <-w():
					select {
					case poke <- struct{}{}:
					default:
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		changed := r.fsm.Changed()
		st := r.fsm.State()
		failed := false
		for _, s := range r.subs {
			start := time.Now()
			err := s.apply(ctx, st)
			s.duration.Observe(time.Since(start))
			s.mu.Lock()
			if err == nil {
				s.applied = st.Index()
			} else {
				s.failures++
				s.failedIndex = st.Index()
				if s.err == nil || s.err.Error() != err.Error() {
					r.log.Error("apply state", "subsystem", s.name, "index", st.Index(), "error", err)
				}
			}
			s.err = err
			s.mu.Unlock()
			failed = failed || err != nil
		}
		r.endRound()
		var retry <-chan time.Time
		if failed {
			retry = time.After(retryDelay)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-poke:
		case <-retry:
		}
	}
}

// nextRound returns a channel closed when the round after this call ends.
func (r *reconciler) nextRound() <-chan struct{} {
	r.roundMu.Lock()
	defer r.roundMu.Unlock()
	if r.roundDone == nil {
		r.roundDone = make(chan struct{})
	}
	return r.roundDone
}

func (r *reconciler) endRound() {
	r.roundMu.Lock()
	defer r.roundMu.Unlock()
	if r.roundDone != nil {
		close(r.roundDone)
		r.roundDone = nil
	}
}

// waitApplied returns once every subsystem has applied index or more. It
// fails when a subsystem's apply of a state at index or later failed (it
// is retried, but the caller hears at once), or with ctx's error when ctx
// ends first.
func (r *reconciler) waitApplied(ctx context.Context, index uint64) error {
	for {
		next := r.nextRound()
		low, err := r.progress(index)
		if err != nil {
			return err
		}
		if low >= index {
			return nil
		}
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progress is the lowest index the subsystems have applied, and the
// error of one whose last apply, of index or a later state, failed.
func (r *reconciler) progress(index uint64) (uint64, error) {
	var low uint64
	for i, s := range r.subs {
		s.mu.Lock()
		if i == 0 || s.applied < low {
			low = s.applied
		}
		err := s.err
		if err != nil && s.failedIndex >= index && s.applied < index {
			err = fmt.Errorf("%s failed to apply index %d: %w", s.name, s.failedIndex, err)
		} else {
			err = nil
		}
		s.mu.Unlock()
		if err != nil {
			return low, err
		}
	}
	return low, nil
}

// appliedByOthers is the lowest index the subsystems other than gossip
// have applied: what this node runs of the committed state. A node with no
// other subsystem runs every state it has: current.
func (r *reconciler) appliedByOthers(current uint64) uint64 {
	low, first := current, true
	for _, s := range r.subs {
		if s.name == gossipSubsystemName {
			continue
		}
		s.mu.Lock()
		if first || s.applied < low {
			low, first = s.applied, false
		}
		s.mu.Unlock()
	}
	return low
}

// status reports each subsystem's applied index and last error.
func (r *reconciler) status() []*weftv1.SubsystemStatus {
	var out []*weftv1.SubsystemStatus
	for _, s := range r.subs {
		s.mu.Lock()
		st := &weftv1.SubsystemStatus{Name: s.name, AppliedIndex: s.applied}
		if s.err != nil {
			st.Error = s.err.Error()
		}
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// subsystemMetrics are a subsystem's figures for the metrics endpoint.
type subsystemMetrics struct {
	name     string
	applied  uint64
	failures uint64
	duration latency.Snapshot
}

func (r *reconciler) metrics() []subsystemMetrics {
	out := make([]subsystemMetrics, 0, len(r.subs))
	for _, s := range r.subs {
		s.mu.Lock()
		m := subsystemMetrics{name: s.name, applied: s.applied, failures: s.failures}
		s.mu.Unlock()
		m.duration = s.duration.Snapshot()
		out = append(out, m)
	}
	return out
}
