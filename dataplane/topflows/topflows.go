// Package topflows finds, per VIP, the clients and the source prefixes that
// open the most new flows, from the dataplane's sampled new flows (one in
// SampleEvery, xdp.Options.SampleEvery). It is what `weft top --lb` shows
// under "top clients": who is opening connections, a flood's sources
// among them.
//
// Each VIP keeps a space-saving summary (Metwally et al., "Efficient
// Computation of Frequent and Top-k Elements in Data Streams", 2005) of
// Capacity keys for clients and another for prefixes: memory is bounded
// whatever the number of sources (a flood with random source addresses),
// every source with more than 1/Capacity of the samples is in it, and a
// count is over by at most the smallest count of the summary (its error).
// Counts are kept for two windows, the current one and the one before,
// so a rate covers between one and two windows of the most recent time.
package topflows

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"
)

const (
	// Capacity is the number of keys each summary keeps.
	Capacity = 100
	// Window is how long a window of counts lasts.
	Window = 10 * time.Second
	// Prefix lengths sources are grouped by: an IPv4 /24 and an IPv6 /48,
	// the longest prefixes routed between networks on the Internet.
	PrefixBits4 = 24
	PrefixBits6 = 48
)

// Source is a client address (a single-address prefix) or a source
// prefix, with its estimated new flows per second and, of them, those
// refused by the listener's new-flow rate.
type Source struct {
	Source   netip.Prefix
	NewFlows float64
	Limited  float64
}

// Tracker counts sampled new flows per VIP. It is safe for concurrent use.
type Tracker struct {
	every float64 // one sample stands for this many flows
	now   func() time.Time

	mu        sync.Mutex
	start     time.Time              // of the current window
	cur, prev map[netip.Addr]*vipTop // prev is nil before the first rotation
	prevStart time.Time
}

type vipTop struct {
	clients, prefixes summary
}

// New returns a tracker of samples each standing for sampleEvery new flows;
// now is the clock (nil: time.Now).
func New(sampleEvery uint32, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{every: float64(max(sampleEvery, 1)), now: now, start: now(), cur: map[netip.Addr]*vipTop{}}
}

// Add counts one sampled new flow from client to vip; limited: it was
// refused by the new-flow rate.
func (t *Tracker) Add(vip, client netip.Addr, limited bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rotate()
	v := t.cur[vip]
	if v == nil {
		v = &vipTop{}
		t.cur[vip] = v
	}
	v.clients.add(netip.PrefixFrom(client, client.BitLen()), limited)
	v.prefixes.add(PrefixOf(client), limited)
}

// PrefixOf is the source prefix client is counted under.
func PrefixOf(client netip.Addr) netip.Prefix {
	bits := PrefixBits4
	if client.Is6() {
		bits = PrefixBits6
	}
	p, _ := client.Prefix(bits)
	return p
}

// rotate starts a new window when the current one is over. A VIP with no
// sample for two windows is forgotten.
func (t *Tracker) rotate() {
	now := t.now()
	if now.Sub(t.start) < Window {
		return
	}
	t.prev, t.prevStart = t.cur, t.start
	if now.Sub(t.start) >= 2*Window {
		t.prev = nil // the window before this one had no sample either
	}
	t.cur, t.start = map[netip.Addr]*vipTop{}, now
}

// Top returns the n clients and the n prefixes of vip with the most new
// flows per second, most first, over the current and the last window.
func (t *Tracker) Top(vip netip.Addr, n int) (clients, prefixes []Source) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rotate()
	since := t.start
	var parts []*vipTop
	if v := t.cur[vip]; v != nil {
		parts = append(parts, v)
	}
	if t.prev != nil {
		since = t.prevStart
		if v := t.prev[vip]; v != nil {
			parts = append(parts, v)
		}
	}
	// At least a second: a window just begun holds too little time for
	// a rate.
	secs := max(t.now().Sub(since).Seconds(), 1)
	top := func(pick func(*vipTop) *summary) []Source {
		sum := map[netip.Prefix]*counter{}
		for _, v := range parts {
			for k, c := range pick(v).counts {
				if s := sum[k]; s != nil {
					s.n += c.n
					s.limited += c.limited
				} else {
					cc := *c
					sum[k] = &cc
				}
			}
		}
		out := make([]Source, 0, len(sum))
		for k, c := range sum {
			out = append(out, Source{Source: k, NewFlows: float64(c.n) * t.every / secs, Limited: float64(c.limited) * t.every / secs})
		}
		sortSources(out)
		return out[:min(n, len(out))]
	}
	return top(func(v *vipTop) *summary { return &v.clients }), top(func(v *vipTop) *summary { return &v.prefixes })
}

// sortSources orders sources by new flows, most first, then by source.
func sortSources(s []Source) {
	slices.SortFunc(s, func(a, b Source) int {
		if c := cmp.Compare(b.NewFlows, a.NewFlows); c != 0 {
			return c
		}
		return a.Source.Addr().Compare(b.Source.Addr())
	})
}

// summary is a space-saving summary of at most Capacity keys.
type summary struct {
	counts map[netip.Prefix]*counter
}

type counter struct {
	n, limited uint64
}

// add counts one sample of k. A key not in a full summary takes the place
// of the one with the smallest count, and that count plus one: it may have
// been seen that often while not counted.
func (s *summary) add(k netip.Prefix, limited bool) {
	var l uint64
	if limited {
		l = 1
	}
	if c := s.counts[k]; c != nil {
		c.n++
		c.limited += l
		return
	}
	if s.counts == nil {
		s.counts = make(map[netip.Prefix]*counter, Capacity)
	}
	if len(s.counts) < Capacity {
		s.counts[k] = &counter{n: 1, limited: l}
		return
	}
	var (
		minKey netip.Prefix
		minC   *counter
	)
	for key, c := range s.counts {
		if minC == nil || c.n < minC.n {
			minKey, minC = key, c
		}
	}
	delete(s.counts, minKey)
	s.counts[k] = &counter{n: minC.n + 1, limited: l}
}
