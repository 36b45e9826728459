// Package health runs Weft's active health checks and derives the agreed
// health view: which pool members are up, the same on every node.
//
// Each member is probed by a few nodes chosen by rendezvous hashing (see
// checkers); each checker publishes its verdicts through a Publisher (gossip
// in production) and every node applies the same rule (see agree) to the
// latest verdicts, so all nodes build the same Maglev tables.
package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftlb/weft/latency"
)

// Topic is the gossip topic of health results.
const Topic = "health"

// orphanTTL is how long records of a member that is not in the
// configuration are kept: a node whose configuration lags the cluster's
// must not drop results it will need a moment later.
const orphanTTL = 10 * time.Minute

// Publisher spreads this node's verdicts to the other nodes (gossip's
// Broadcast). The other nodes hand what they receive to Receive.
type Publisher interface {
	Broadcast(topic string, payload []byte)
}

// Stats are counters and gauges for metrics.
type Stats struct {
	// Probes is the number of members this node is probing.
	Probes int
	// ChecksTotal and ChecksFailed count this node's checks.
	ChecksTotal, ChecksFailed uint64
	// Transitions counts this node's verdict changes (each one published).
	Transitions uint64
	// ResultsReceived counts other nodes' records taken in; ResultsStale
	// those ignored as older than what was held; DecodeErrors undecodable
	// payloads.
	ResultsReceived, ResultsStale, DecodeErrors uint64
	// MembersUp and MembersDown count the agreed view.
	MembersUp, MembersDown int
	// ViewChanges counts changes of the agreed view.
	ViewChanges uint64
}

// ProbeStatus is one of this node's probes.
type ProbeStatus struct {
	Member MemberKey
	Target netip.AddrPort
	Type   CheckType
	// State is "unknown" until Rise successes or Fall failures, then "up" or
	// "down".
	State     string
	Successes int // consecutive
	Failures  int // consecutive
	LastError string
	// Checks and Failed count the probe's checks since it started;
	// Latency is how long they took.
	Checks, Failed uint64
	Latency        latency.Snapshot
}

type verdict int

const (
	unknown verdict = iota
	up
	down
)

func (v verdict) String() string { return [...]string{"unknown", "up", "down"}[v] }

// probe checks one member periodically. Its counters are guarded by
// Health.mu.
type probe struct {
	key    MemberKey
	spec   CheckSpec
	target netip.AddrPort
	check  checkFunc
	cancel context.CancelFunc

	state     verdict
	successes int
	failures  int
	lastErr   string
	checks    uint64
	failed    uint64
	latency   latency.Histogram
}

// Health is one node's health checker and its copy of the agreed view.
type Health struct {
	pub Publisher
	log *slog.Logger

	mu       sync.Mutex
	self     string
	members  []MemberKey
	assigned map[MemberKey][]string
	records  verdicts
	view     map[MemberKey]bool
	// versions holds, per pool with members in the view, the view change
	// at which that pool's entries last changed (see PoolVersion).
	versions map[string]uint64
	changed  chan struct{}
	probes   map[MemberKey]*probe
	lastSeq  uint64
	closed   bool
	wg       sync.WaitGroup

	checks, failed, transitions            atomic.Uint64
	received, stale, decodeErrors, changes atomic.Uint64
}

// New returns a Health that publishes through pub; it probes nothing until
// Apply. logger may be nil.
func New(pub Publisher, logger *slog.Logger) *Health {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Health{
		pub:      pub,
		log:      logger,
		assigned: make(map[MemberKey][]string),
		records:  make(verdicts),
		view:     make(map[MemberKey]bool),
		versions: make(map[string]uint64),
		changed:  make(chan struct{}),
		probes:   make(map[MemberKey]*probe),
	}
}

// Apply makes this node's probes match cfg: it probes the members assigned
// to cfg.Self, keeping running probes whose check did not change (with
// their rise/fall counters), and recomputes the view. An invalid cfg changes
// nothing.
func (h *Health) Apply(ctx context.Context, cfg Config) error {
	specs, codes, err := cfg.validate()
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	nodes := slices.Clone(cfg.Nodes)
	slices.SortFunc(nodes, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	var members []MemberKey
	assigned := make(map[MemberKey][]string)
	want := make(map[MemberKey]*probe)
	for _, p := range cfg.Pools {
		spec := specs[p.Name]
		for _, m := range p.Members {
			key := MemberKey{Pool: p.Name, Addr: m.Addr}
			members = append(members, key)
			assigned[key] = checkers(key, nodes, cfg.CheckersPerMember)
			if !slices.Contains(assigned[key], cfg.Self) {
				continue
			}
			target := m.Addr
			if spec.Port != 0 {
				target = netip.AddrPortFrom(m.Addr.Addr(), spec.Port)
			}
			want[key] = &probe{key: key, spec: spec, target: target, check: newCheck(spec, codes[p.Name], target)}
		}
	}
	slices.SortFunc(members, compareKeys)

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("health: apply after close")
	}
	h.self = cfg.Self
	h.members, h.assigned = members, assigned
	for key, p := range h.probes {
		if w, ok := want[key]; !ok || w.spec != p.spec || w.target != p.target {
			p.cancel()
			delete(h.probes, key)
		}
	}
	for key, p := range want {
		if _, ok := h.probes[key]; ok {
			continue
		}
		// Probes outlive the Apply call: they stop on a later Apply or Close.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		p.cancel = cancel
		h.probes[key] = p
		h.wg.Add(1)
		go h.run(pctx, p)
	}
	h.gcLocked()
	h.recomputeLocked()
	return nil
}

func compareKeys(a, b MemberKey) int {
	return cmp.Or(strings.Compare(a.Pool, b.Pool), a.Addr.Compare(b.Addr))
}

// gcLocked drops old records of members no longer configured.
func (h *Health) gcLocked() {
	cutoff := uint64(time.Now().Add(-orphanTTL).UnixNano())
	for m, byChecker := range h.records {
		// Every configured member has its checkers in assigned.
		if _, configured := h.assigned[m]; configured {
			continue
		}
		newest := uint64(0)
		for _, r := range byChecker {
			newest = max(newest, r.seq)
		}
		if newest < cutoff {
			delete(h.records, m)
		}
	}
}

// run checks p's member every interval until its context ends.
func (h *Health) run(ctx context.Context, p *probe) {
	defer h.wg.Done()
	t := time.NewTicker(p.spec.Interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, p.spec.Timeout)
		start := time.Now()
		err := p.check(cctx)
		p.latency.Observe(time.Since(start))
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.observe(p, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observe counts one check's outcome and, when the verdict changes, records
// and publishes it.
func (h *Health) observe(p *probe, err error) {
	h.checks.Add(1)
	h.mu.Lock()
	if h.probes[p.key] != p {
		h.mu.Unlock()
		return // stopped meanwhile
	}
	next := p.state
	p.checks++
	if err == nil {
		p.failures, p.lastErr = 0, ""
		if p.successes++; p.successes >= p.spec.Rise {
			next = up
		}
	} else {
		h.failed.Add(1)
		p.failed++
		p.successes, p.lastErr = 0, err.Error()
		if p.failures++; p.failures >= p.spec.Fall {
			next = down
		}
	}
	if next == p.state {
		h.mu.Unlock()
		return
	}
	p.state = next
	h.transitions.Add(1)
	h.lastSeq = max(h.lastSeq+1, uint64(time.Now().UnixNano()))
	rec := record{checker: h.self, member: p.key, up: next == up, seq: h.lastSeq}
	h.mergeLocked(rec)
	h.recomputeLocked()
	h.mu.Unlock()

	h.log.Info("health: verdict", "member", p.key.String(), "target", p.target.String(), "verdict", next.String(), "err", p.lastErr)
	// Published outside the lock: a Publisher may deliver synchronously.
	if h.pub != nil {
		h.pub.Broadcast(Topic, encodeRecords([]record{rec}))
	}
}

// mergeLocked keeps r if it is newer than what is held for its checker and
// member.
func (h *Health) mergeLocked(r record) bool {
	byChecker := h.records[r.member]
	if cur, ok := byChecker[r.checker]; ok && cur.seq >= r.seq {
		return false
	}
	if byChecker == nil {
		byChecker = make(map[string]record)
		h.records[r.member] = byChecker
	}
	byChecker[r.checker] = r
	if r.checker == h.self {
		// Our own verdicts from before a restart: stay above them.
		h.lastSeq = max(h.lastSeq, r.seq)
	}
	return true
}

func (h *Health) recomputeLocked() {
	view := agree(h.members, h.assigned, h.records)
	if maps.Equal(view, h.view) {
		return
	}
	n := h.changes.Add(1)
	for k, up := range view {
		if was, ok := h.view[k]; !ok || was != up {
			h.versions[k.Pool] = n
		}
	}
	for k := range h.view {
		if _, ok := view[k]; !ok {
			h.versions[k.Pool] = n
			if !h.hasPoolLocked(k.Pool) {
				delete(h.versions, k.Pool)
			}
		}
	}
	h.view = view
	close(h.changed)
	h.changed = make(chan struct{})
}

// Receive takes in verdicts another node published (gossip's handler for
// Topic).
func (h *Health) Receive(from string, payload []byte) {
	h.merge(from, payload)
}

// State returns every verdict this node holds, for gossip's push-pull.
func (h *Health) State() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rs []record
	for _, byChecker := range h.records {
		for _, r := range byChecker {
			rs = append(rs, r)
		}
	}
	return encodeRecords(rs)
}

// MergeState takes in another node's State.
func (h *Health) MergeState(from string, state []byte) {
	h.merge(from, state)
}

func (h *Health) merge(from string, payload []byte) {
	rs, err := decodeRecords(payload)
	if err != nil {
		h.decodeErrors.Add(1)
		h.log.Warn("health: undecodable results", "from", from, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	for _, r := range rs {
		if h.mergeLocked(r) {
			h.received.Add(1)
			changed = true
		} else {
			h.stale.Add(1)
		}
	}
	if changed {
		h.recomputeLocked()
	}
}

// View returns the agreed view: every configured member, true if up.
func (h *Health) View() map[MemberKey]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.view)
}

// Up reports one member's state in the agreed view, and whether the view
// holds it; unlike View it copies nothing, so a caller asking for every
// member costs what the members do.
func (h *Health) Up(member MemberKey) (up, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	up, ok = h.view[member]
	return up, ok
}

// PoolVersion changes whenever the view's entries of pool change, and is
// 0 while the view holds none: what Up answers for the pool's members is
// the same as long as PoolVersion is, so a caller may keep what it derived
// from them.
func (h *Health) PoolVersion(pool string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.versions[pool]
}

// hasPoolLocked reports whether a configured member (one the view holds)
// is of pool.
func (h *Health) hasPoolLocked(pool string) bool {
	i, _ := slices.BinarySearchFunc(h.members, pool, func(m MemberKey, pool string) int { return strings.Compare(m.Pool, pool) })
	return i < len(h.members) && h.members[i].Pool == pool
}

// Changed returns a channel closed at the next change of the view; call it
// again for the one after.
func (h *Health) Changed() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// Checkers returns the nodes assigned to probe member.
func (h *Health) Checkers(member MemberKey) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.assigned[member])
}

// Probes returns this node's probes, sorted by member.
func (h *Health) Probes() []ProbeStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ProbeStatus, 0, len(h.probes))
	for _, p := range h.probes {
		out = append(out, ProbeStatus{Member: p.key, Target: p.target, Type: p.spec.Type, State: p.state.String(),
			Successes: p.successes, Failures: p.failures, LastError: p.lastErr,
			Checks: p.checks, Failed: p.failed, Latency: p.latency.Snapshot()})
	}
	slices.SortFunc(out, func(a, b ProbeStatus) int { return compareKeys(a.Member, b.Member) })
	return out
}

// Stats returns the counters.
func (h *Health) Stats() Stats {
	h.mu.Lock()
	s := Stats{Probes: len(h.probes)}
	for _, ok := range h.view {
		if ok {
			s.MembersUp++
		} else {
			s.MembersDown++
		}
	}
	h.mu.Unlock()
	s.ChecksTotal, s.ChecksFailed = h.checks.Load(), h.failed.Load()
	s.Transitions = h.transitions.Load()
	s.ResultsReceived, s.ResultsStale, s.DecodeErrors = h.received.Load(), h.stale.Load(), h.decodeErrors.Load()
	s.ViewChanges = h.changes.Load()
	return s
}

// Close stops every probe and waits for them. The view stays readable.
func (h *Health) Close() error {
	h.mu.Lock()
	h.closed = true
	for key, p := range h.probes {
		p.cancel()
		delete(h.probes, key)
	}
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}
