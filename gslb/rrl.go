package gslb

import (
	"net/netip"
	"sync"
	"time"
)

// Response rate limiting (RRL), as BIND and Knot do it against reflection:
// UDP responses to one client prefix (/24, /56) are limited to a rate; past
// it most are dropped, and every slip-th is sent truncated and empty, so a
// real resolver whose address was spoofed still gets through over TCP while
// a forged flood gains no amplification. TCP is never limited: it cannot be
// spoofed.
const (
	rrlPrefix4 = 24
	rrlPrefix6 = 56
	// rrlMaxClients bounds the limiter's memory: past it the state is
	// forgotten (everyone starts with a full bucket), which only loosens
	// the limit for a moment.
	rrlMaxClients = 1 << 16
)

type limiter struct {
	rate float64 // responses per second per prefix; the burst is one second's
	slip uint32
	now  func() time.Time

	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped uint32
}

// verdict is what the limiter says of one response.
type verdict int

const (
	send verdict = iota
	drop
	slip // send truncated and empty
)

func newLimiter(rate, slipEvery int, now func() time.Time) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: float64(rate), slip: uint32(slipEvery), now: now, buckets: map[netip.Prefix]*bucket{}}
}

// judge counts one response to a; a nil limiter sends everything.
func (l *limiter) judge(a netip.Addr) verdict {
	if l == nil {
		return send
	}
	a = a.Unmap()
	bits := rrlPrefix4
	if a.Is6() {
		bits = rrlPrefix6
	}
	key := netip.PrefixFrom(a, bits).Masked()
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= rrlMaxClients {
			clear(l.buckets)
		}
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return send
	}
	b.dropped++
	if l.slip > 0 && b.dropped%l.slip == 0 {
		return slip
	}
	return drop
}
