package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// TestReconcilerWaitApplied: waitApplied returns once every subsystem has
// applied the index, not before; it reports a subsystem's failure to
// apply it at once, and ctx's end.
func TestReconcilerWaitApplied(t *testing.T) {
	f := raftfsm.NewFSM(0)
	commit := committer(t, f)
	pool := func(name string) {
		commit(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: []*weftv1.Resource{
			{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.PoolSpec{}}}}}})
	}
	// slow blocks its applies until released; failing fails from index
	// failFrom on.
	release := make(chan struct{})
	var failFrom atomic.Uint64
	r := &reconciler{fsm: f, log: slog.New(slog.DiscardHandler), subs: []*subsystem{
		{name: "fast", apply: func(context.Context, *raftfsm.State) error { return nil }},
		{name: "slow", apply: func(ctx context.Context, st *raftfsm.State) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}},
		{name: "failing", apply: func(_ context.Context, st *raftfsm.State) error {
			if n := failFrom.Load(); n != 0 && st.Index() >= n {
				return errors.New("no room")
			}
			return nil
		}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	defer func() { cancel(); <-done }()

	pool("a")
	index := f.State().Index()
	waited := make(chan error, 1)
	go func() { waited <- r.waitApplied(context.Background(), index) }()
	select {
	case err := <-waited:
		t.Fatalf("waitApplied returned %v before the slow subsystem applied index %d", err, index)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("waitApplied: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitApplied did not return once every subsystem applied the index")
	}
	if low, _ := r.progress(index); low < index {
		t.Fatalf("waitApplied returned with a subsystem at %d, want %d", low, index)
	}

	// A failure to apply the index is reported without waiting for ctx.
	failFrom.Store(index + 1)
	pool("b")
	err := r.waitApplied(context.Background(), index+1)
	if err == nil || !strings.Contains(err.Error(), "failing failed to apply index") || !strings.Contains(err.Error(), "no room") {
		t.Fatalf("waitApplied with a failing subsystem: %v", err)
	}
	// An index not committed yet waits for ctx.
	short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer stop()
	if err := r.waitApplied(short, index+100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitApplied of an index to come: %v, want the deadline", err)
	}
}
