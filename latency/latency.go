// Package latency is a fixed-bucket duration histogram that subsystems
// update on their events (an apply, a health check) without allocating or
// locking, and that the metrics endpoint reads at scrape time.
package latency

import (
	"sync/atomic"
	"time"
)

// Bounds are the upper bounds of the buckets; a last, unbounded bucket
// follows. They span 100 µs to 10 s, what a Raft apply, a reconcile round
// or a health check takes.
var Bounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Histogram counts durations by bucket. The zero value is ready to use.
type Histogram struct {
	buckets [17]atomic.Uint64 // len(Bounds)+1
	sum     atomic.Int64
}

// Observe counts one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(Bounds) && d > Bounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot is a histogram read at one time.
type Snapshot struct {
	// Buckets counts durations by bucket of Bounds (len(Bounds)+1), not
	// cumulative.
	Buckets []uint64
	Sum     time.Duration
}

// Count is the number of durations observed.
func (s Snapshot) Count() uint64 {
	var n uint64
	for _, b := range s.Buckets {
		n += b
	}
	return n
}

// Snapshot reads the histogram. Buckets and sum are read one after
// another, so an observation under way may be in one and not yet the other.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Buckets: make([]uint64, len(h.buckets)), Sum: time.Duration(h.sum.Load())}
	for i := range h.buckets {
		s.Buckets[i] = h.buckets[i].Load()
	}
	return s
}
