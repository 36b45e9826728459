package userspace

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

const (
	dropNoBackend = iota
	dropDial
	numDrops
)

type backendCounters struct {
	newFlows, bytes atomic.Uint64
	active          atomic.Int64
}

type stats struct {
	mu       sync.Mutex
	backends map[string]*backendCounters
	drops    [numDrops]atomic.Uint64
}

func newStats() *stats { return &stats{backends: map[string]*backendCounters{}} }

func (s *stats) backend(id string) *backendCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.backends[id]
	if !ok {
		c = &backendCounters{}
		s.backends[id] = c
	}
	return c
}

func (s *stats) drop(reason int) { s.drops[reason].Add(1) }

// ServiceStats are one service's counters since it started.
type ServiceStats struct {
	VIP   netip.Addr
	Port  uint16
	Proto string
	// Backends are keyed by address:port.
	Backends map[string]BackendStats
	// NoBackend counts flows refused because every weight is 0 or there
	// is no backend; DialFailed flows whose backend did not answer.
	NoBackend, DialFailed uint64
}

// BackendStats count a backend's flows and bytes (both directions, a TCP
// connection's when it ends); Active are its flows open now.
type BackendStats struct {
	NewFlows, Bytes, Active uint64
}

// Stats returns the counters of the running services, sorted by VIP,
// port and protocol.
func (f *Forwarder) Stats() []ServiceStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ServiceStats
	for k, s := range f.services {
		ss := ServiceStats{VIP: k.vip, Port: k.port, Proto: k.proto, Backends: map[string]BackendStats{},
			NoBackend: s.stats.drops[dropNoBackend].Load(), DialFailed: s.stats.drops[dropDial].Load()}
		s.stats.mu.Lock()
		for id, c := range s.stats.backends {
			ss.Backends[id] = BackendStats{NewFlows: c.newFlows.Load(), Bytes: c.bytes.Load(), Active: uint64(max(c.active.Load(), 0))}
		}
		s.stats.mu.Unlock()
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b ServiceStats) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return strings.Compare(a.Proto, b.Proto)
	})
	return out
}
