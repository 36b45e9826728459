package health

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func testMembers(n int) []MemberKey {
	var ms []MemberKey
	for i := range n {
		ms = append(ms, MemberKey{Pool: fmt.Sprintf("pool%d", i%3), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)}), 80)})
	}
	return ms
}

func testNodes(zones ...string) []NodeInfo {
	var ns []NodeInfo
	for i, z := range zones {
		ns = append(ns, NodeInfo{Name: fmt.Sprintf("node%d", i), Zone: z})
	}
	return ns
}

func zoneOf(nodes []NodeInfo, name string) string {
	for _, n := range nodes {
		if n.Name == name {
			return n.Zone
		}
	}
	return "?"
}

func TestCheckersZoneSpread(t *testing.T) {
	tests := []struct {
		name      string
		zones     []string
		k         int
		wantCount int
		// wantZones is how many distinct zones each member's checkers span.
		wantZones int
	}{
		{"two zones, two checkers", []string{"a", "a", "b"}, 2, 2, 2},
		{"three zones, two checkers", []string{"a", "a", "b", "b", "c"}, 2, 2, 2},
		{"one zone", []string{"a", "a", "a"}, 2, 2, 1},
		{"fewer nodes than checkers", []string{"a"}, 2, 1, 1},
		{"three checkers, two zones", []string{"a", "a", "b", "b"}, 3, 3, 2},
		{"no nodes", nil, 2, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := testNodes(tc.zones...)
			for _, m := range testMembers(50) {
				got := checkers(m, nodes, tc.k)
				if len(got) != tc.wantCount {
					t.Fatalf("%v: got %d checkers %v, want %d", m, len(got), got, tc.wantCount)
				}
				zones := map[string]bool{}
				for _, c := range got {
					zones[zoneOf(nodes, c)] = true
				}
				if len(zones) != tc.wantZones {
					t.Errorf("%v: checkers %v span %d zones, want %d", m, got, len(zones), tc.wantZones)
				}
				if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
					t.Errorf("%v: checkers %v repeat a node", m, got)
				}
			}
		})
	}
}

func TestCheckersSameInAnyOrder(t *testing.T) {
	nodes := testNodes("a", "a", "b", "b", "c", "")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, m := range testMembers(100) {
		want := checkers(m, nodes, 2)
		for range 5 {
			shuffled := slices.Clone(nodes)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := checkers(m, shuffled, 2); !slices.Equal(got, want) {
				t.Fatalf("%v: got %v for order %v, want %v", m, got, shuffled, want)
			}
		}
	}
}

// A node's departure moves only the members it checked, and its arrival only
// the members it is picked for: rendezvous hashing's minimal disruption,
// kept by the zone pass.
func TestCheckersMinimalDisruption(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	zones := []string{"a", "b", "c"}
	for trial := range 40 {
		n := 2 + rng.IntN(6)
		var nodeZones []string
		for range n {
			nodeZones = append(nodeZones, zones[rng.IntN(len(zones))])
		}
		nodes := testNodes(nodeZones...)
		k := 1 + rng.IntN(3)
		gone := nodes[rng.IntN(n)].Name
		rest := slices.DeleteFunc(slices.Clone(nodes), func(x NodeInfo) bool { return x.Name == gone })
		for _, m := range testMembers(60) {
			before, after := checkers(m, nodes, k), checkers(m, rest, k)
			if !slices.Contains(before, gone) && !slices.Equal(before, after) {
				t.Fatalf("trial %d (zones %v, k %d): removing %s moved %v from %v to %v though it did not check it",
					trial, nodeZones, k, gone, m, before, after)
			}
			if slices.Contains(before, gone) {
				for _, c := range before {
					if c != gone && !slices.Contains(after, c) {
						t.Fatalf("trial %d: removing %s dropped %s from %v's checkers %v -> %v", trial, gone, c, m, before, after)
					}
				}
			}
		}
	}
}

func TestCheckersSpreadLoad(t *testing.T) {
	nodes := testNodes("a", "a", "b", "b")
	load := map[string]int{}
	ms := testMembers(400)
	for _, m := range ms {
		for _, c := range checkers(m, nodes, 2) {
			load[c]++
		}
	}
	// 800 assignments over 4 nodes: 200 each on average.
	for _, n := range nodes {
		if got := load[n.Name]; got < 150 || got > 250 {
			t.Errorf("%s checks %d members, want 150..250 (load %v)", n.Name, got, load)
		}
	}
}
