package raftfsm

// Voter placement: the leader keeps at most five voters, spread over zones,
// promoting non-voters once they have caught up and replacing voters that
// stopped answering. planPlacement decides (a pure function, table-tested);
// runPlacement observes and executes. hashicorp/raft-autopilot was not used:
// this small planner is easier to test and zone spreading is its core rule.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// StatsFetcher asks the server with the given raft ID and address for the
// index it has applied. The API layer supplies one that calls the peer.
type StatsFetcher func(ctx context.Context, id, addr string) (appliedIndex uint64, err error)

const (
	maxVoters = 5
	// caughtUpLag is how far behind the leader's commit index a non-voter
	// may be and still count as caught up.
	caughtUpLag = 256
	// caughtUpRounds is how many consecutive rounds a non-voter must be
	// caught up before it is promoted, so that one lucky sample is not enough.
	caughtUpRounds = 2
)

type actionKind int

const (
	actionPromote actionKind = iota + 1
	actionDemote
	actionRemove
)

func (k actionKind) String() string {
	switch k {
	case actionPromote:
		return "promote"
	case actionDemote:
		return "demote"
	case actionRemove:
		return "remove"
	}
	return fmt.Sprintf("actionKind(%d)", int(k))
}

// action is one membership change decided by planPlacement.
type action struct {
	kind    actionKind
	id      raft.ServerID
	address raft.ServerAddress
	reason  string
}

// serverHealth is what the leader has observed of one server over rounds.
type serverHealth struct {
	// failingSince is when stats fetches started failing; zero while they succeed.
	failingSince time.Time
	// caughtUp counts consecutive rounds in which the server was caught up.
	caughtUp int
}

type placementInput struct {
	leader  raft.ServerID
	servers []raft.Server
	nodes   []*weftv1.Node
	health  map[raft.ServerID]serverHealth
	now     time.Time
	// deadAfter is how long fetches must have failed for a server to be dead.
	deadAfter time.Duration
}

// targetVoters is how many voters a cluster of n servers should have. Two
// voters tolerate no more failures than one, and an even count adds none
// over the odd count below it.
func targetVoters(n int) int {
	switch {
	case n >= maxVoters:
		return maxVoters
	case n >= 3:
		return 3
	default:
		return 1
	}
}

type placed struct {
	raft.Server
	zone    string
	dead    bool
	failing bool
	ready   bool // healthy and caught up: may become a voter
}

// planPlacement returns the membership changes that bring the voters to the
// target count, spread over zones, without dead voters. Actions are in the
// order they should run; a promotion comes before the demotion it makes up
// for, so the voter count never drops below what is needed on the way.
func planPlacement(in placementInput) []action {
	zones := make(map[raft.ServerID]string, len(in.nodes))
	for _, n := range in.nodes {
		zones[raft.ServerID(n.GetMetadata().GetName())] = n.GetSpec().GetZone()
	}
	servers := slices.SortedFunc(slices.Values(in.servers), func(a, b raft.Server) int { return cmp.Compare(a.ID, b.ID) })

	var actions []action
	var voters, candidates []placed
	remaining := 0
	for _, s := range servers {
		h := in.health[s.ID]
		p := placed{Server: s, zone: zones[s.ID]}
		if s.ID != in.leader {
			p.failing = !h.failingSince.IsZero()
			p.dead = p.failing && in.now.Sub(h.failingSince) > in.deadAfter
			p.ready = !p.failing && h.caughtUp >= caughtUpRounds
		} else {
			p.ready = true
		}
		if _, known := zones[s.ID]; p.dead && !known {
			actions = append(actions, action{actionRemove, s.ID, s.Address, "dead and not in the node table"})
			continue
		}
		remaining++
		switch {
		case s.Suffrage == raft.Voter:
			voters = append(voters, p)
		case p.ready:
			candidates = append(candidates, p)
		}
	}
	target := targetVoters(remaining)

	perZone := make(map[string]int)
	for _, v := range voters {
		perZone[v.zone]++
	}
	promote := func(reason string) placed {
		// The candidate from the zone with the fewest voters, then by name.
		i := 0
		for j, c := range candidates {
			if perZone[c.zone] < perZone[candidates[i].zone] {
				i = j
			}
		}
		c := candidates[i]
		candidates = slices.Delete(candidates, i, i+1)
		voters = append(voters, c)
		perZone[c.zone]++
		actions = append(actions, action{actionPromote, c.ID, c.Address, reason})
		return c
	}
	demote := func(i int, reason string) {
		v := voters[i]
		voters = slices.Delete(voters, i, i+1)
		perZone[v.zone]--
		actions = append(actions, action{actionDemote, v.ID, v.Address, reason})
	}
	// worst returns the voter to demote first: dead, then failing, then from
	// the most crowded zone, then the last by name; never the leader. -1 when
	// only the leader is left.
	worst := func(ok func(placed) bool) int {
		w := -1
		for i, v := range voters {
			if v.ID == in.leader || !ok(v) {
				continue
			}
			if w == -1 || worse(v, voters[w], perZone) {
				w = i
			}
		}
		return w
	}

	// Replace dead voters by ready non-voters.
	for _, v := range slices.Clone(voters) {
		if !v.dead || len(candidates) == 0 {
			continue
		}
		c := promote(fmt.Sprintf("replaces dead voter %s", v.ID))
		demote(slices.IndexFunc(voters, func(p placed) bool { return p.ID == v.ID }), fmt.Sprintf("dead, replaced by %s", c.ID))
	}
	// Grow to the target.
	for len(voters) < target && len(candidates) > 0 {
		promote(fmt.Sprintf("%d voters, target %d", len(voters), target))
	}
	// Shrink to the target.
	for len(voters) > target {
		i := worst(func(placed) bool { return true })
		if i == -1 {
			break
		}
		demote(i, fmt.Sprintf("%d voters, target %d", len(voters), target))
	}
	// Move one voter to a zone with two fewer voters, if a candidate is there.
	if len(candidates) > 0 {
		best := candidates[0]
		for _, c := range candidates[1:] {
			if perZone[c.zone] < perZone[best.zone] {
				best = c
			}
		}
		i := worst(func(v placed) bool { return perZone[v.zone]-perZone[best.zone] >= 2 })
		if i != -1 {
			from := voters[i]
			c := promote(fmt.Sprintf("spreads voters over zones (zone %q)", best.zone))
			demote(slices.IndexFunc(voters, func(p placed) bool { return p.ID == from.ID }), fmt.Sprintf("zone %q has too many voters, replaced by %s", from.zone, c.ID))
		}
	}
	return actions
}

// worse reports whether voter a should be demoted before voter b.
func worse(a, b placed, perZone map[string]int) bool {
	if a.dead != b.dead {
		return a.dead
	}
	if a.failing != b.failing {
		return a.failing
	}
	if perZone[a.zone] != perZone[b.zone] {
		return perZone[a.zone] > perZone[b.zone]
	}
	return a.ID > b.ID
}

// runPlacement revisits placement every PlacementInterval until ctx ends
// (leadership lost or Close).
func (r *Raft) runPlacement(ctx context.Context) {
	health := make(map[raft.ServerID]serverHealth)
	t := time.NewTicker(r.cfg.PlacementInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.placementRound(ctx, health); err != nil && ctx.Err() == nil {
			r.logger.Warn("voter placement", "error", err)
		}
	}
}

func (r *Raft) placementRound(ctx context.Context, health map[raft.ServerID]serverHealth) error {
	f := r.raft.GetConfiguration()
	if err := wait(ctx, f); err != nil {
		return fmt.Errorf("get configuration: %w", err)
	}
	servers := f.Configuration().Servers
	self := raft.ServerID(r.cfg.ID)
	commit := r.raft.CommitIndex()
	now := time.Now()

	applied := r.fetchAll(ctx, servers, self)
	seen := make(map[raft.ServerID]bool, len(servers))
	for _, s := range servers {
		seen[s.ID] = true
		if s.ID == self {
			continue
		}
		h := health[s.ID]
		res := applied[s.ID]
		switch {
		case res.err != nil:
			if h.failingSince.IsZero() {
				h.failingSince = now
			}
			h.caughtUp = 0
		case res.index+caughtUpLag >= commit:
			h.failingSince = time.Time{}
			h.caughtUp++
		default:
			h.failingSince = time.Time{}
			h.caughtUp = 0
		}
		health[s.ID] = h
	}
	for id := range health {
		if !seen[id] {
			delete(health, id)
		}
	}

	actions := planPlacement(placementInput{
		leader:    self,
		servers:   servers,
		nodes:     r.fsm.State().Nodes(),
		health:    health,
		now:       now,
		deadAfter: r.cfg.DeadServerTimeout,
	})
	for _, a := range actions {
		r.logger.Info("voter placement", "action", a.kind.String(), "server", string(a.id), "reason", a.reason)
		var fut raft.IndexFuture
		switch a.kind {
		case actionPromote:
			fut = r.raft.AddVoter(a.id, a.address, 0, 0)
		case actionDemote:
			fut = r.raft.DemoteVoter(a.id, 0, 0)
		case actionRemove:
			fut = r.raft.RemoveServer(a.id, 0, 0)
		}
		if err := wait(ctx, fut); err != nil {
			// Later actions were planned assuming this one; plan again next round.
			return fmt.Errorf("%s %s: %w", a.kind, a.id, err)
		}
	}
	return nil
}

type fetchResult struct {
	index uint64
	err   error
}

// fetchAll asks every other server for its applied index, in parallel, for
// at most one placement interval. A fetch that has not answered by then
// counts as failed; it is not waited for, so that a fetcher ignoring its
// context cannot hold up leadership changes. With no StatsFetcher every
// server is taken to be caught up.
func (r *Raft) fetchAll(ctx context.Context, servers []raft.Server, self raft.ServerID) map[raft.ServerID]fetchResult {
	out := make(map[raft.ServerID]fetchResult, len(servers))
	if r.cfg.FetchStats == nil {
		commit := r.raft.CommitIndex()
		for _, s := range servers {
			out[s.ID] = fetchResult{index: commit}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PlacementInterval)
	defer cancel()
	type answer struct {
		id raft.ServerID
		fetchResult
	}
	answers := make(chan answer, len(servers))
	pending := make(map[raft.ServerID]bool, len(servers))
	for _, s := range servers {
		if s.ID == self {
			continue
		}
		pending[s.ID] = true
		go func() {
			idx, err := r.cfg.FetchStats(ctx, string(s.ID), string(s.Address))
			answers <- answer{s.ID, fetchResult{idx, err}}
		}()
	}
	for len(pending) > 0 {
		select {
		case a := <-answers:
			out[a.id] = a.fetchResult
			delete(pending, a.id)
		case <-ctx.Done():
			for id := range pending {
				out[id] = fetchResult{err: fmt.Errorf("fetch stats: %w", ctx.Err())}
			}
			return out
		}
	}
	return out
}
