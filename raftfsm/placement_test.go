package raftfsm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestTargetVoters(t *testing.T) {
	for n, want := range map[int]int{0: 1, 1: 1, 2: 1, 3: 3, 4: 3, 5: 5, 6: 5, 9: 5} {
		if got := targetVoters(n); got != want {
			t.Errorf("targetVoters(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestPlanPlacement(t *testing.T) {
	now := time.Unix(10000, 0)
	const deadAfter = 30 * time.Second
	ready := serverHealth{caughtUp: caughtUpRounds}
	once := serverHealth{caughtUp: 1}
	failing := serverHealth{failingSince: now.Add(-5 * time.Second)}
	dead := serverHealth{failingSince: now.Add(-time.Minute)}

	// servers builds a configuration from "id:v" (voter) and "id:n" (nonvoter).
	servers := func(specs ...string) []raft.Server {
		var out []raft.Server
		for _, s := range specs {
			id, kind, _ := strings.Cut(s, ":")
			suffrage := raft.Nonvoter
			if kind == "v" {
				suffrage = raft.Voter
			}
			out = append(out, raft.Server{Suffrage: suffrage, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":7000")})
		}
		return out
	}
	// nodes builds the node table from "id@zone".
	nodes := func(specs ...string) []*weftv1.Node {
		var out []*weftv1.Node
		for _, s := range specs {
			id, zone, _ := strings.Cut(s, "@")
			out = append(out, node(id, zone))
		}
		return out
	}

	tests := []struct {
		name    string
		servers []raft.Server
		nodes   []*weftv1.Node
		health  map[raft.ServerID]serverHealth
		want    string
	}{
		{
			name:    "single node",
			servers: servers("n1:v"),
			nodes:   nodes("n1@a"),
			want:    "",
		},
		{
			name:    "two nodes stay at one voter",
			servers: servers("n1:v", "n2:n"),
			nodes:   nodes("n1@a", "n2@b"),
			health:  map[raft.ServerID]serverHealth{"n2": ready},
			want:    "",
		},
		{
			name:    "three nodes: promote both once caught up twice",
			servers: servers("n1:v", "n2:n", "n3:n"),
			nodes:   nodes("n1@a", "n2@a", "n3@b"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready},
			want:    "promote n3, promote n2",
		},
		{
			name:    "one round caught up is not enough",
			servers: servers("n1:v", "n2:n", "n3:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c"),
			health:  map[raft.ServerID]serverHealth{"n2": once, "n3": ready},
			want:    "promote n3",
		},
		{
			name:    "failing nonvoter is not promoted",
			servers: servers("n1:v", "n2:n", "n3:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c"),
			health:  map[raft.ServerID]serverHealth{"n2": {failingSince: now, caughtUp: 5}, "n3": ready},
			want:    "promote n3",
		},
		{
			name:    "four nodes: three voters",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c", "n4@d"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready},
			want:    "",
		},
		{
			name:    "five nodes: zone with fewest voters first",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n", "n5:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c", "n4@a", "n5@d"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready, "n5": ready},
			want:    "promote n5, promote n4",
		},
		{
			name:    "never more than five voters",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:v", "n5:v", "n6:n", "n7:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c", "n4@d", "n5@e", "n6@f", "n7@g"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready, "n5": ready, "n6": ready, "n7": ready},
			want:    "",
		},
		{
			name:    "too many voters: demote from the most crowded zone",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:v"),
			nodes:   nodes("n1@a", "n2@b", "n3@b", "n4@c"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready},
			want:    "demote n3",
		},
		{
			name:    "two voters become one, never demoting the leader",
			servers: servers("n1:v", "n2:v"),
			nodes:   nodes("n1@a", "n2@a"),
			health:  map[raft.ServerID]serverHealth{"n2": ready},
			want:    "demote n2",
		},
		{
			name:    "spread voters over zones",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@a", "n3@a", "n4@b"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready},
			want:    "promote n4, demote n3",
		},
		{
			name:    "a third zone takes a voter from a zone holding two",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@a", "n3@b", "n4@c"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready},
			want:    "promote n4, demote n2",
		},
		{
			name:    "two zones for three voters is as good as it gets",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@a", "n3@b", "n4@b"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready, "n4": ready},
			want:    "",
		},
		{
			name:    "dead voter replaced by a ready nonvoter",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c", "n4@c"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": dead, "n4": ready},
			want:    "promote n4, demote n3",
		},
		{
			name:    "dead voter kept without a replacement",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c", "n4@c"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": dead, "n4": once},
			want:    "",
		},
		{
			name:    "failing but not yet dead voter is kept",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@b", "n3@c", "n4@c"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": failing, "n4": ready},
			want:    "",
		},
		{
			name:    "dead server missing from the node table is removed",
			servers: servers("n1:v", "n2:v", "n3:v", "n4:n"),
			nodes:   nodes("n1@a", "n2@b", "n4@c"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": dead, "n4": ready},
			want:    "remove n3, promote n4",
		},
		{
			name:    "dead nonvoter missing from the node table is removed",
			servers: servers("n1:v", "n2:n"),
			nodes:   nodes("n1@a"),
			health:  map[raft.ServerID]serverHealth{"n2": dead},
			want:    "remove n2",
		},
		{
			name:    "live server missing from the node table is kept",
			servers: servers("n1:v", "n2:n", "n3:n"),
			nodes:   nodes("n1@a"),
			health:  map[raft.ServerID]serverHealth{"n2": ready, "n3": ready},
			want:    "promote n2, promote n3",
		},
		{
			name:    "the leader is never judged by health",
			servers: servers("n1:v"),
			nodes:   nodes(),
			health:  map[raft.ServerID]serverHealth{"n1": dead},
			want:    "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			actions := planPlacement(placementInput{
				leader:    "n1",
				servers:   tc.servers,
				nodes:     tc.nodes,
				health:    tc.health,
				now:       now,
				deadAfter: deadAfter,
			})
			var got []string
			for _, a := range actions {
				got = append(got, fmt.Sprintf("%s %s", a.kind, a.id))
				if a.reason == "" {
					t.Errorf("%s %s has no reason", a.kind, a.id)
				}
			}
			if g := strings.Join(got, ", "); g != tc.want {
				t.Errorf("actions = %q, want %q", g, tc.want)
			}
		})
	}
}
