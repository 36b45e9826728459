package l7

import (
	"crypto/tls"
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

// ListenerStats counts the requests and connections of one listener.
type ListenerStats struct {
	Listener string
	// Connections are the client connections open now.
	Connections int64
	// TLSHandshakes counts completed TLS handshakes, TLSResumed those of
	// them that resumed a session.
	TLSHandshakes, TLSResumed uint64
	// WebSocketUpgrades counts requests answered 101 Switching Protocols;
	// HTTP2Streams requests that came over HTTP/2.
	WebSocketUpgrades, HTTP2Streams uint64
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
	// IdleConns are the member's kept-alive HTTP/1.1 connections waiting
	// for a request (of the event loops and of the direct path).
	IdleConns int
	// ConnectErrors counts failed connects, ResponseErrors attempts that
	// connected but got no response head (closed, malformed, timed out);
	// Retries requests moved to another member after a failed connect.
	ConnectErrors, ResponseErrors, Retries uint64
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

// listenerCounters are a listener's counters: its requests' and its
// connections'.
type listenerCounters struct {
	counters
	tlsFull, tlsResumed, upgrades, h2Streams atomic.Uint64
}

// observeRequest counts one request of the listener.
func (c *listenerCounters) observeRequest(status, protoMajor int, d time.Duration) {
	c.observe(status, d)
	if status == 101 {
		c.upgrades.Add(1)
	}
	if protoMajor == 2 {
		c.h2Streams.Add(1)
	}
}

// handshake counts a completed TLS handshake (tls.Config.VerifyConnection).
func (c *listenerCounters) handshake(cs tls.ConnectionState) error {
	if cs.DidResume {
		c.tlsResumed.Add(1)
	} else {
		c.tlsFull.Add(1)
	}
	return nil
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
