package maglev

import (
	"fmt"
	"testing"
)

// BenchmarkBuild measures a whole Build, sorting and hashing included. The
// Maglev paper reports 1.8 ms for M = 65537 (N not stated).
func BenchmarkBuild(b *testing.B) {
	cases := []struct {
		n      int
		m      uint32
		weight string
		fn     func(int) uint32
	}{
		{10, DefaultSize, "equal", equalWeights},
		{100, DefaultSize, "equal", equalWeights},
		{1000, DefaultSize, "equal", equalWeights},
		{100, 655373, "equal", equalWeights},
		{100, DefaultSize, "1..10", unequalWeights},
		{100, DefaultSize, "one-heavy", oneHeavy},
		{1000, DefaultSize, "one-heavy", oneHeavy},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("N=%d/M=%d/%s", c.n, c.m, c.weight), func(b *testing.B) {
			bs := testBackends(c.n, c.fn)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(bs, c.m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	tbl := mustBuild(b, testBackends(100, equalWeights), DefaultSize)
	// A multiplicative sequence stands in for flow hashes without paying
	// for a real hash inside the loop.
	h := uint64(0x9e3779b97f4a7c15)
	var hits int
	for b.Loop() {
		h *= 0x9e3779b97f4a7c15
		if _, ok := tbl.Lookup(h); ok {
			hits++
		}
	}
	if hits == 0 {
		b.Fatal("no lookup found a backend")
	}
}
