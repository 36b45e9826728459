package l7

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the latency histogram buckets; a
// last, unbounded bucket follows.
var LatencyBounds = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second,
}

// Stats is a snapshot of the proxy's counters, for the metrics endpoint.
type Stats struct {
	Listeners []ListenerStats
	Routes    []RouteStats
	Members   []MemberStats
}

// ListenerStats counts the requests of one listener.
type ListenerStats struct {
	Listener string
	Counters
}

// RouteStats counts the requests of one route ("default" for the default
// pool, "none" for requests nothing matched).
type RouteStats struct {
	Listener, Route string
	Counters
}

// MemberStats counts the attempts sent to one pool member.
type MemberStats struct {
	Pool     string
	Addr     string
	InFlight int64
	Ejected  bool
	Counters
}

// Counters are request counts by status class and a latency histogram.
type Counters struct {
	Requests uint64
	// Status counts responses by class: Status[2] is 2xx; Status[0] counts
	// requests that got no status (client gone, reset).
	Status [6]uint64
	// Latency counts requests by LatencyBounds bucket (len(LatencyBounds)+1).
	Latency []uint64
	// LatencySum is the total time of all requests.
	LatencySum time.Duration
}

// counters is the live, atomically updated form of Counters.
type counters struct {
	requests atomic.Uint64
	status   [6]atomic.Uint64
	buckets  [15]atomic.Uint64
	sum      atomic.Int64
}

func (c *counters) observe(status int, d time.Duration) {
	c.requests.Add(1)
	class := status / 100
	if class < 0 || class > 5 {
		class = 0
	}
	c.status[class].Add(1)
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	c.buckets[i].Add(1)
	c.sum.Add(int64(d))
}

func (c *counters) snapshot() Counters {
	s := Counters{
		Requests:   c.requests.Load(),
		Latency:    make([]uint64, len(c.buckets)),
		LatencySum: time.Duration(c.sum.Load()),
	}
	for i := range c.status {
		s.Status[i] = c.status[i].Load()
	}
	for i := range c.buckets {
		s.Latency[i] = c.buckets[i].Load()
	}
	return s
}
