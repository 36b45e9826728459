package flowsync

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
)

const testBuckets = 4096

func members(zones ...string) []Member {
	var ms []Member
	for i, z := range zones {
		ms = append(ms, Member{Name: fmt.Sprintf("node%02d", i+1), Zone: z})
	}
	return ms
}

func mustTable(t *testing.T, ms []Member) *table {
	t.Helper()
	tb, err := decodeTable(Plan(ms, testBuckets), testBuckets)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestPlanIsDeterministic(t *testing.T) {
	ms := members("a", "a", "b", "b", "c")
	want := Plan(ms, testBuckets)
	shuffled := slices.Clone(ms)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if got := Plan(append(shuffled, ms[0]), testBuckets); !proto.Equal(got, want) {
		t.Errorf("the plan depends on the order of members or on duplicates")
	}
}

func TestPlanSpreadsOverZones(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zones []string
	}{
		{"lab", []string{"a", "a", "b"}},
		{"three zones", []string{"a", "a", "b", "b", "c", "c"}},
		{"one zone", []string{"a", "a", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := members(tc.zones...)
			zone := map[string]string{}
			for _, m := range ms {
				zone[m.Name] = m.Zone
			}
			tb := mustTable(t, ms)
			first := map[string]int{}
			multiZone := len(slices.Compact(slices.Sorted(slices.Values(tc.zones)))) > 1
			for b := range testBuckets {
				o := tb.ownersOf(b)
				if len(o) != Replicas || o[0] == o[1] {
					t.Fatalf("bucket %d: owners %v, want %d distinct", b, o, Replicas)
				}
				if multiZone && zone[o[0]] == zone[o[1]] {
					t.Fatalf("bucket %d: owners %v are both in zone %s", b, o, zone[o[0]])
				}
				first[o[0]]++
			}
			// Each node owns about its share of buckets first.
			for _, m := range ms {
				share := float64(first[m.Name]) / testBuckets * float64(len(ms))
				if share < 0.8 || share > 1.2 {
					t.Errorf("%s owns %d buckets first, %.2f of its share", m.Name, first[m.Name], share)
				}
			}
		})
	}
}

func TestPlanMovesLittle(t *testing.T) {
	before := members("a", "a", "b", "b", "c")
	after := append(slices.Clone(before), Member{Name: "node06", Zone: "c"})
	tb, ta := mustTable(t, before), mustTable(t, after)
	moved := 0
	for b := range testBuckets {
		ob, oa := tb.ownersOf(b), ta.ownersOf(b)
		for i := range ob {
			if ob[i] != oa[i] && oa[i] != "node06" {
				moved++
			}
		}
	}
	// A new node takes buckets; nobody else's change hands but where the
	// zone rule reorders (the new node is the first of its zone there).
	if frac := float64(moved) / (testBuckets * Replicas); frac > 0.1 {
		t.Errorf("%.1f%% of owner slots moved between old nodes when one joined, want under 10%%", 100*frac)
	}
}

func TestPlanEdges(t *testing.T) {
	if o := Plan(nil, testBuckets); o.GetReplicas() != 0 || len(o.GetOwners()) != 0 {
		t.Errorf("plan of no members = %v, want empty", o)
	}
	tb := mustTable(t, members("a"))
	if o := tb.ownersOf(7); !slices.Equal(o, []string{"node01"}) {
		t.Errorf("single node: owners %v, want [node01]", o)
	}
	if _, err := decodeTable(Plan(members("a", "b"), 16), testBuckets); err == nil {
		t.Errorf("a table of 16 buckets decoded for %d", testBuckets)
	}
}

func TestHeirs(t *testing.T) {
	ms := members("a", "a", "b", "b")
	owner := ms[0]
	counts := map[string]int{}
	for i := range 400 {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		h := heirs(a, owner, ms)
		if len(h) != 3 || slices.Contains(h, owner.Name) {
			t.Fatalf("heirs of %v: %v, want the 3 other nodes", a, h)
		}
		// Other zones first.
		if h[0] == "node02" || h[1] == "node02" || h[2] != "node02" {
			t.Fatalf("heirs of %v: %v, want node02 (the owner's zone) last", a, h)
		}
		counts[h[0]]++
	}
	if counts["node03"] < 150 || counts["node04"] < 150 {
		t.Errorf("first heirs %v: the owner's addresses should spread over the other zone's nodes", counts)
	}
}
