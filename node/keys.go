package node

// Cluster-wide TLS session-ticket keys and the sticky-cookie key: the leader
// creates and rotates them through Raft, every node's l7 subsystem reads
// them from the state, so a session resumes and a sticky client keeps its
// member on any node.

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	"github.com/weftlb/weft/raftfsm"
)

// DefaultTicketRotation is how often the leader puts a new session-ticket
// key first. With ticketKeysKept keys a ticket resumes for between 16 and
// 24 hours after it was issued.
const DefaultTicketRotation = 8 * time.Hour

// ticketKeysKept is how many ticket keys the cluster keeps: the newest
// issues tickets, all of them decrypt.
const ticketKeysKept = 3

// leaderPoll is how often a node that is not the leader (or whose proposal
// failed) looks again.
const leaderPoll = time.Second

// proposer is the part of Raft the rotation needs.
type proposer interface {
	IsLeader() bool
	FSM() *raftfsm.FSM
	Apply(ctx context.Context, t raftfsm.CommandType, msg proto.Message) (any, uint64, error)
}

var _ proposer = (*raftfsm.Raft)(nil)

// ticketRotator proposes raftfsm.RotateTicketKeysType on the leader when
// the cluster has no ticket key yet (also creating the cookie key) and
// then whenever the newest key is `every` old. The command is a
// compare-and-set on the newest key's creation time, so a new leader
// working from a state that is not yet current, or two leaders in a row,
// never rotate twice: the loser gets Conflict and looks again.
type ticketRotator struct {
	raft  proposer
	every time.Duration
	keep  uint32
	now   func() time.Time
	log   *slog.Logger
}

func newTicketRotator(r proposer, every time.Duration, log *slog.Logger) *ticketRotator {
	return &ticketRotator{raft: r, every: every, keep: ticketKeysKept, now: time.Now, log: log}
}

// start runs the rotation until the returned stop function is called;
// stop waits for it to end.
func (k *ticketRotator) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				t.Reset(k.step(ctx))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// step proposes a rotation when this node leads and one is due, and
// returns how long to wait before the next step.
func (k *ticketRotator) step(ctx context.Context) time.Duration {
	if !k.raft.IsLeader() {
		return leaderPoll
	}
	sec := k.raft.FSM().State().Secrets()
	if sec == nil {
		return leaderPoll // the cluster's init has not committed its secrets yet
	}
	now := k.now()
	var prev int64
	if keys := sec.GetTicketKeys(); len(keys) > 0 {
		prev = keys[0].GetCreatedUnixNano()
		if due := time.Unix(0, prev).Add(k.every); now.Before(due) {
			return due.Sub(now)
		}
	}
	cmd := &statev1.RotateTicketKeysCommand{
		Key:                     &statev1.TicketKey{Key: randomKey(), CreatedUnixNano: now.UnixNano()},
		Keep:                    k.keep,
		PreviousCreatedUnixNano: prev,
	}
	if len(sec.GetCookieKey()) == 0 {
		// Made once, never rotated: a new cookie key would re-pin every
		// sticky client.
		cmd.CookieKey = randomKey()
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _, err := k.raft.Apply(actx, raftfsm.RotateTicketKeysType, cmd)
	var se *raftfsm.StateError
	switch {
	case err == nil:
		k.log.Info("rotated the TLS session-ticket keys", "keep", k.keep, "next", k.every)
		return 0 // read the new state: the next rotation is `every` away
	case errors.As(err, &se) && se.Kind == raftfsm.Conflict:
		// Another leader rotated first; look at the state it left.
	case errors.Is(err, raftfsm.ErrNotLeader), ctx.Err() != nil:
	default:
		k.log.Warn("rotate the TLS session-ticket keys", "error", err)
	}
	return leaderPoll
}

// randomKey returns 32 random bytes.
func randomKey() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}
