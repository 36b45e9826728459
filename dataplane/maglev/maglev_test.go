package maglev

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// testBackends returns n backends with IDs in the benchmarking range
// 198.18.0.0/15 and weight(i) as the weight of the i-th.
func testBackends(n int, weight func(i int) uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{ID: fmt.Sprintf("198.18.%d.%d:8080", i/250, i%250+1), Weight: weight(i)}
	}
	return bs
}

func equalWeights(int) uint32 { return 1 }

// unequalWeights cycles through 1..10, the spread of a pool with mixed
// instance sizes.
func unequalWeights(i int) uint32 { return uint32(i%10 + 1) }

func mustBuild(t testing.TB, bs []Backend, m uint32) Table {
	t.Helper()
	tbl, err := Build(bs, m)
	if err != nil {
		t.Fatalf("Build(%d backends, %d): %v", len(bs), m, err)
	}
	return tbl
}

// TestPopulatePaperExample replays the example of the Maglev paper (section
// 3.4, table 1): M = 7, with offsets and skips given instead of hashed.
func TestPopulatePaperExample(t *testing.T) {
	b0 := slot{pos: 3, skip: 4, weight: 1, index: 0}
	b1 := slot{pos: 0, skip: 2, weight: 1, index: 1}
	b2 := slot{pos: 3, skip: 1, weight: 1, index: 2}
	tests := []struct {
		name string
		live []slot
		want []int32
	}{
		{"before", []slot{b0, b1, b2}, []int32{1, 0, 1, 0, 2, 2, 0}},
		{"after removing B1", []slot{b0, b2}, []int32{0, 0, 0, 0, 2, 2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := slices.Repeat([]int32{NoBackend}, 7)
			populate(got, slices.Clone(tc.live), 1)
			if !slices.Equal(got, tc.want) {
				t.Errorf("table = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidateSize(t *testing.T) {
	tests := []struct {
		m       uint32
		wantErr bool
	}{
		{0, true},
		{2, true},
		{97, true}, // prime but below MinSize
		{MinSize, false},
		{65536, true},
		{DefaultSize, false},
		{655373, false},
		{655375, true},
		{MaxSize, false},
		{4294967291, true}, // prime but above MaxSize
	}
	for _, tc := range tests {
		err := ValidateSize(tc.m)
		if gotErr := err != nil; gotErr != tc.wantErr {
			t.Errorf("ValidateSize(%d) = %v, want error: %v", tc.m, err, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrInvalidSize) {
			t.Errorf("ValidateSize(%d) = %v, want it to wrap ErrInvalidSize", tc.m, err)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name     string
		backends []Backend
		m        uint32
		want     error
	}{
		{"non-prime size", testBackends(3, equalWeights), 65536, ErrInvalidSize},
		{"size too small", testBackends(3, equalWeights), 7, ErrInvalidSize},
		{"empty id", []Backend{{ID: "192.0.2.11:8080", Weight: 1}, {ID: "", Weight: 1}}, DefaultSize, ErrInvalidBackends},
		{"duplicate id", []Backend{{ID: "192.0.2.11:8080", Weight: 1}, {ID: "192.0.2.12:8080", Weight: 2}, {ID: "192.0.2.11:8080", Weight: 3}}, DefaultSize, ErrInvalidBackends},
		{"duplicate id of weight 0", []Backend{{ID: "192.0.2.11:8080"}, {ID: "192.0.2.11:8080"}}, DefaultSize, ErrInvalidBackends},
		{"more backends than entries", testBackends(102, equalWeights), 101, ErrInvalidBackends},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl, err := Build(tc.backends, tc.m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Build error = %v, want one wrapping %v", err, tc.want)
			}
			if tbl.Entries != nil || tbl.Backends != nil {
				t.Errorf("Build returned a table with its error: %d entries, %d backends", len(tbl.Entries), len(tbl.Backends))
			}
		})
	}
}

func TestBuildNoBackend(t *testing.T) {
	tests := []struct {
		name     string
		backends []Backend
	}{
		{"nil", nil},
		{"empty", []Backend{}},
		{"all weight 0", []Backend{{ID: "192.0.2.11:8080"}, {ID: "192.0.2.12:8080"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := mustBuild(t, tc.backends, DefaultSize)
			if got := len(tbl.Entries); got != DefaultSize {
				t.Fatalf("len(Entries) = %d, want %d", got, DefaultSize)
			}
			if i := slices.IndexFunc(tbl.Entries, func(e int32) bool { return e != NoBackend }); i >= 0 {
				t.Errorf("Entries[%d] = %d, want NoBackend", i, tbl.Entries[i])
			}
			if got := len(tbl.Backends); got != len(tc.backends) {
				t.Errorf("len(Backends) = %d, want %d", got, len(tc.backends))
			}
			if b, ok := tbl.Lookup(12345); ok {
				t.Errorf("Lookup = %v, true; want false", b)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	if b, ok := (Table{}).Lookup(1); ok {
		t.Errorf("zero Table: Lookup = %v, true; want false", b)
	}
	tbl := mustBuild(t, testBackends(10, unequalWeights), DefaultSize)
	for _, h := range []uint64{0, 1, DefaultSize - 1, DefaultSize, 1<<63 + 12345, ^uint64(0)} {
		want := tbl.Backends[tbl.Entries[h%DefaultSize]]
		if got, ok := tbl.Lookup(h); !ok || got != want {
			t.Errorf("Lookup(%#x) = %v, %v; want %v, true", h, got, ok, want)
		}
	}
}

// TestBuildOrderIndependent checks that shuffling the input changes nothing,
// and that Build leaves its input as it was.
func TestBuildOrderIndependent(t *testing.T) {
	bs := testBackends(100, unequalWeights)
	bs[7].Weight = 0
	want := mustBuild(t, bs, DefaultSize)
	if !slices.IsSortedFunc(want.Backends, func(a, b Backend) int { return strings.Compare(a.ID, b.ID) }) {
		t.Fatalf("Backends not sorted by ID")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5 {
		in := slices.Clone(bs)
		rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		orig := slices.Clone(in)
		got := mustBuild(t, in, DefaultSize)
		if !slices.Equal(in, orig) {
			t.Fatalf("shuffle %d: Build modified its input", i)
		}
		if !slices.Equal(got.Backends, want.Backends) {
			t.Errorf("shuffle %d: Backends differ from the unshuffled build", i)
		}
		if !slices.Equal(got.Entries, want.Entries) {
			t.Errorf("shuffle %d: Entries differ from the unshuffled build", i)
		}
	}
}

// TestBuildShares checks that every backend's share of the entries is
// within 1% of M of its share of the total weight, with M > 100*N.
func TestBuildShares(t *testing.T) {
	weights := []struct {
		name string
		fn   func(int) uint32
	}{
		{"equal", equalWeights},
		{"1..10", unequalWeights},
		{"0..100", func(i int) uint32 { return uint32(i * 37 % 101) }},
		{"one heavy", oneHeavy},
		{"large", func(i int) uint32 { return 1<<31 + uint32(i)<<24 }},
	}
	for _, n := range []int{3, 10, 100} {
		for _, w := range weights {
			t.Run(fmt.Sprintf("N=%d/%s", n, w.name), func(t *testing.T) {
				bs := testBackends(n, w.fn)
				tbl := mustBuild(t, bs, DefaultSize)
				counts := countEntries(t, tbl)
				var total float64
				for _, b := range tbl.Backends {
					total += float64(b.Weight)
				}
				var worst float64
				for i, b := range tbl.Backends {
					if b.Weight == 0 && counts[i] != 0 {
						t.Errorf("backend %s of weight 0 has %d entries, want 0", b.ID, counts[i])
					}
					got := float64(counts[i]) / DefaultSize
					want := float64(b.Weight) / total
					if d := abs(got - want); d > 0.01 {
						t.Errorf("backend %s: share %.5f, want %.5f ± 0.01", b.ID, got, want)
					} else {
						worst = max(worst, d)
					}
				}
				t.Logf("largest |share - weight share| = %.6f", worst)
			})
		}
	}
}

// countEntries returns how many entries point to each backend, failing the
// test on an entry that is not a valid index.
func countEntries(t testing.TB, tbl Table) []int {
	t.Helper()
	counts := make([]int, len(tbl.Backends))
	for i, e := range tbl.Entries {
		if e < 0 || int(e) >= len(tbl.Backends) {
			t.Fatalf("Entries[%d] = %d, want an index below %d", i, e, len(tbl.Backends))
		}
		counts[e]++
	}
	return counts
}

// oneHeavy gives the first backend weight 100 and the others 1, the
// costliest case for the population loop (many rounds with few turns).
func oneHeavy(i int) uint32 {
	if i == 0 {
		return 100
	}
	return 1
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestGolden pins the hash keys and the population order: a change here
// means nodes running different versions would send the same flow to
// different backends, which must be a deliberate, announced decision.
func TestGolden(t *testing.T) {
	tbl := mustBuild(t, []Backend{
		{ID: "192.0.2.13:8080", Weight: 1},
		{ID: "192.0.2.11:8080", Weight: 2},
		{ID: "192.0.2.12:8080", Weight: 0},
		{ID: "[2001:db8::1]:443", Weight: 3},
	}, MinSize)
	// Sorted: 192.0.2.11 (0, weight 2), .12 (1, weight 0), .13 (2, weight 1),
	// [2001:db8::1] (3, weight 3).
	want := []int32{
		3, 0, 3, 0, 0, 3, 0, 3, 0, 0, 0, 3, 3, 2, 3, 3, 3, 3, 3, 2, 3, 2, 2, 2, 2,
		3, 2, 3, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 3, 3, 3, 3, 3, 3, 3, 3, 0,
		3, 0, 3, 2, 2, 2, 3, 0, 0, 0, 0, 0, 0, 3, 2, 3, 3, 2, 3, 0, 3, 3, 3, 3, 3,
		3, 3, 3, 0, 3, 0, 3, 0, 3, 0, 3, 0, 0, 2, 2, 3, 2, 3, 2, 3, 3, 2, 3, 0, 3,
		0,
	}
	if !slices.Equal(tbl.Entries, want) {
		t.Errorf("Entries = %#v\nwant %#v", tbl.Entries, want)
	}
}
