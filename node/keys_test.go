package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	"github.com/weftlb/weft/raftfsm"
)

// fsmProposer applies commands straight to an FSM, as a one-node Raft would.
type fsmProposer struct {
	t      *testing.T
	fsm    *raftfsm.FSM
	index  uint64
	leader bool
	// before runs ahead of the next proposal (another leader's write).
	before func()
	props  int
}

func (p *fsmProposer) IsLeader() bool    { return p.leader }
func (p *fsmProposer) FSM() *raftfsm.FSM { return p.fsm }
func (p *fsmProposer) apply(t raftfsm.CommandType, msg proto.Message) any {
	data, err := raftfsm.Encode(t, msg)
	if err != nil {
		p.t.Fatal(err)
	}
	p.index++
	return p.fsm.Apply(&raft.Log{Index: p.index, Data: data})
}

func (p *fsmProposer) Apply(_ context.Context, t raftfsm.CommandType, msg proto.Message) (any, uint64, error) {
	if !p.leader {
		return nil, 0, raftfsm.ErrNotLeader
	}
	if p.before != nil {
		p.before()
		p.before = nil
	}
	p.props++
	resp := p.apply(t, msg)
	if err, ok := resp.(error); ok {
		return nil, p.index, err
	}
	return resp, p.index, nil
}

func TestTicketRotator(t *testing.T) {
	p := &fsmProposer{t: t, fsm: raftfsm.NewFSM(0), leader: true}
	clock := time.Unix(1_800_000_000, 0)
	k := newTicketRotator(p, 8*time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	k.now = func() time.Time { return clock }
	ctx := context.Background()
	keys := func() []*statev1.TicketKey { return p.fsm.State().Secrets().GetTicketKeys() }

	// Before init has committed the secrets there is nothing to rotate.
	if d := k.step(ctx); d != leaderPoll || p.props != 0 {
		t.Fatalf("without secrets: step = %v after %d proposals, want %v after 0", d, p.props, leaderPoll)
	}
	p.apply(raftfsm.InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{ClusterId: "c"}})

	// A follower never proposes.
	p.leader = false
	if d := k.step(ctx); d != leaderPoll || p.props != 0 {
		t.Fatalf("follower: step = %v after %d proposals, want %v after 0", d, p.props, leaderPoll)
	}
	p.leader = true

	// The first key comes at once, with the cookie key.
	if d := k.step(ctx); d != 0 {
		t.Fatalf("first rotation: step = %v, want 0 (look again at once)", d)
	}
	cookie := p.fsm.State().Secrets().GetCookieKey()
	if got := keys(); len(got) != 1 || len(got[0].GetKey()) != 32 || got[0].GetCreatedUnixNano() != clock.UnixNano() {
		t.Fatalf("after the first rotation: keys %v, want one 32-byte key created now", got)
	}
	if len(cookie) != 32 {
		t.Fatalf("cookie key is %d bytes, want 32", len(cookie))
	}
	// Not due yet: wait for the rest of the interval.
	clock = clock.Add(3 * time.Hour)
	if d := k.step(ctx); d != 5*time.Hour || p.props != 1 {
		t.Fatalf("not due: step = %v after %d proposals, want 5h after 1", d, p.props)
	}
	// Due: four more rotations keep the newest three, newest first; the
	// cookie key never changes.
	clock = clock.Add(-3 * time.Hour) // back to the first key: each due 8h after the last
	for i := 0; i < 4; i++ {
		clock = clock.Add(8 * time.Hour)
		if d := k.step(ctx); d != 0 {
			t.Fatalf("rotation %d: step = %v, want 0", i+2, d)
		}
	}
	got := keys()
	if len(got) != ticketKeysKept {
		t.Fatalf("after 5 rotations: %d keys, want %d", len(got), ticketKeysKept)
	}
	for i, want := range []time.Time{clock, clock.Add(-8 * time.Hour), clock.Add(-16 * time.Hour)} {
		if got[i].GetCreatedUnixNano() != want.UnixNano() {
			t.Errorf("key %d created %v, want %v", i, time.Unix(0, got[i].GetCreatedUnixNano()), want)
		}
	}
	if !bytes.Equal(p.fsm.State().Secrets().GetCookieKey(), cookie) {
		t.Error("the cookie key changed on rotation")
	}

	// Another leader rotates between our read and our proposal: the
	// compare-and-set refuses ours (Conflict), which is not an error to
	// report, and the next step sees the other rotation.
	clock = clock.Add(8 * time.Hour)
	other := &statev1.RotateTicketKeysCommand{Key: &statev1.TicketKey{Key: randomKey(), CreatedUnixNano: clock.UnixNano() - 1},
		Keep: ticketKeysKept, PreviousCreatedUnixNano: got[0].GetCreatedUnixNano()}
	p.before = func() { p.apply(raftfsm.RotateTicketKeysType, other) }
	if d := k.step(ctx); d != leaderPoll {
		t.Fatalf("conflicting rotation: step = %v, want %v", d, leaderPoll)
	}
	if newest := keys()[0].GetCreatedUnixNano(); newest != other.GetKey().GetCreatedUnixNano() {
		t.Fatalf("after the conflict the newest key was created %d, want the other leader's %d", newest, other.GetKey().GetCreatedUnixNano())
	}
	if d := k.step(ctx); d != 8*time.Hour-1 {
		t.Fatalf("after the other leader's rotation: step = %v, want 8h-1ns", d)
	}
}

func TestTicketRotatorStop(t *testing.T) {
	p := &fsmProposer{t: t, fsm: raftfsm.NewFSM(0)}
	stop := newTicketRotator(p, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil))).start()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return within 5s")
	}
}
