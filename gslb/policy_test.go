package gslb

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func target(name string, prio, weight uint32, region string, healthy bool) Target {
	return Target{Name: name, Addr: netip.MustParseAddr("192.0.2." + name), Priority: prio, Weight: weight,
		Region: region, Healthy: healthy}
}

func TestChoose(t *testing.T) {
	regions := []Region{{Name: "eu", Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}}
	eu := asker{client: netip.MustParsePrefix("203.0.113.9/32")}
	cases := []struct {
		name     string
		policy   Policy
		max      int
		targets  []Target
		q        asker
		want     string // addresses' last bytes, in order
		failOpen bool
		reason   string
	}{
		{name: "failover: the lowest priority", policy: Failover,
			targets: []Target{target("2", 2, 1, "", true), target("1", 1, 1, "", true)}, want: "1", reason: "priority 1"},
		{name: "failover: next priority when the first is down", policy: Failover,
			targets: []Target{target("1", 1, 1, "", false), target("2", 2, 1, "", true), target("3", 2, 1, "", true)},
			want:    "2 3", reason: "before it down: 1"},
		{name: "failover: all down fails open", policy: Failover,
			targets: []Target{target("1", 1, 1, "", false), target("2", 2, 1, "", false)}, want: "1 2", failOpen: true, reason: "fail open"},
		{name: "all-healthy: capped and rotated", policy: AllHealthy, max: 2, q: asker{pick: 1},
			targets: []Target{target("1", 0, 1, "", true), target("2", 0, 1, "", false), target("3", 0, 1, "", true), target("4", 0, 1, "", true)},
			want:    "3 4", reason: "3 of 4 targets healthy"},
		{name: "geo: the client's region", policy: Geo, q: eu,
			targets: []Target{target("1", 0, 1, "us", true), target("2", 0, 1, "eu", true)}, want: "2", reason: "in region eu"},
		{name: "geo: region without healthy targets takes every healthy one", policy: Geo, q: eu,
			targets: []Target{target("1", 0, 1, "us", true), target("2", 0, 1, "eu", false), target("3", 0, 1, "ap", true)},
			want:    "1 3", reason: "has no healthy target"},
		{name: "nearest: the answering node's region", policy: Nearest,
			targets: []Target{target("1", 0, 1, "us", true), target("2", 0, 1, "ap", true)}, want: "2", reason: "region ap"},
		{name: "weighted: one by weight", policy: Weighted, q: asker{pick: 3},
			targets: []Target{target("1", 0, 3, "", true), target("2", 0, 1, "", true)}, want: "2", reason: "1=3, 2=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &Record{Policy: tc.policy, MaxAnswers: cmp.Or(tc.max, DefaultMaxAnswers)}
			c := choose(r, tc.targets, regions, "ap", tc.q)
			var got []string
			for _, a := range c.addrs {
				got = append(got, fmt.Sprint(a.As4()[3]))
			}
			if strings.Join(got, " ") != tc.want || c.failOpen != tc.failOpen {
				t.Errorf("got %v fail-open %v, want %s fail-open %v (%s)", got, c.failOpen, tc.want, tc.failOpen, c.why())
			}
			if !strings.Contains(c.why(), tc.reason) {
				t.Errorf("reason %q does not say %q", c.why(), tc.reason)
			}
		})
	}
}

// TestWeightedShares draws many queries' picks as the server makes them
// and checks each target's share against its weight.
func TestWeightedShares(t *testing.T) {
	s := &Server{}
	targets := []Target{target("1", 0, 1, "", true), target("2", 0, 3, "", true), target("3", 0, 6, "", false)}
	counts := map[netip.Addr]int{}
	const n = 40000
	for range n {
		c := weighted(slices.DeleteFunc(slices.Clone(targets), func(t Target) bool { return !t.Healthy }), s.pick())
		counts[c.addrs[0]]++
	}
	for _, tc := range []struct {
		target Target
		want   float64
	}{{targets[0], 0.25}, {targets[1], 0.75}, {targets[2], 0}} {
		got := float64(counts[tc.target.Addr]) / n
		if got < tc.want-0.02 || got > tc.want+0.02 {
			t.Errorf("target %s: share %.3f, want %.2f±0.02", tc.target.Name, got, tc.want)
		}
	}
}
