package latency

import (
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	if len(Bounds)+1 != len(new(Histogram).buckets) {
		t.Fatalf("%d bounds need %d buckets, have %d", len(Bounds), len(Bounds)+1, len(new(Histogram).buckets))
	}
	var h Histogram
	for _, d := range []time.Duration{0, 100 * time.Microsecond, 101 * time.Microsecond, time.Second, time.Minute} {
		h.Observe(d)
	}
	s := h.Snapshot()
	want := map[int]uint64{0: 2, 1: 1, 12: 1, 16: 1}
	for i, n := range s.Buckets {
		if n != want[i] {
			t.Errorf("bucket %d (le %v): got %d, want %d", i, bound(i), n, want[i])
		}
	}
	if s.Count() != 5 {
		t.Errorf("count: got %d, want 5", s.Count())
	}
	if wantSum := 201*time.Microsecond + time.Second + time.Minute; s.Sum != wantSum {
		t.Errorf("sum: got %v, want %v", s.Sum, wantSum)
	}
}

func bound(i int) any {
	if i < len(Bounds) {
		return Bounds[i]
	}
	return "+Inf"
}

func BenchmarkObserve(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i) * time.Microsecond)
	}
}
