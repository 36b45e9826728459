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

// gcEvery is how often Apply sweeps orphan records when no member left.
const gcEvery = time.Minute

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

	applyMu sync.Mutex // held through Apply
	mu      sync.Mutex
	self    string
	// pools are the applied pools, base what they were derived with.
	pools    map[string]*poolEntry
	base     applyBase
	rounds   uint64 // Applies begun, under applyMu
	assigned map[MemberKey][]string
	records  verdicts
	view     map[MemberKey]bool
	// versions holds, per pool with members in the view, the view change
	// at which that pool's entries last changed (see PoolVersion).
	versions map[string]uint64
	changed  chan struct{}
	probes   map[MemberKey]*probe
	lastSeq  uint64
	lastGC   time.Time
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

// poolEntry is what Apply derived from one pool: kept, and its probes
// left alone, while the pool, the nodes and Self stay the same.
type poolEntry struct {
	pool  Pool // as configured, its members copied
	spec  CheckSpec
	codes codeRanges
	// members are the pool's, sorted; assigned[i] are members[i]'s
	// checkers.
	members  []MemberKey
	assigned [][]string
	// round is the last Apply that found the pool (Health.rounds).
	round uint64
}

// applyBase is what every pool entry was derived with.
type applyBase struct {
	self  string
	nodes []NodeInfo // sorted by name
	k     int
}

func (b applyBase) equal(o applyBase) bool {
	return b.self == o.self && b.k == o.k && slices.Equal(b.nodes, o.nodes)
}

// newPoolEntry checks p and assigns its members' checkers.
func newPoolEntry(p Pool, base applyBase) (*poolEntry, error) {
	spec, codes, err := p.Check.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("pool %q: check: %w", p.Name, err)
	}
	e := &poolEntry{pool: p, spec: spec, codes: codes, members: make([]MemberKey, len(p.Members))}
	e.pool.Members = slices.Clone(p.Members)
	for i, m := range p.Members {
		if !m.Addr.IsValid() || m.Addr.Port() == 0 {
			return nil, fmt.Errorf("pool %q: member %d: address %v is not valid", p.Name, i, m.Addr)
		}
		e.members[i] = MemberKey{Pool: p.Name, Addr: m.Addr}
	}
	slices.SortFunc(e.members, compareKeys)
	for i := 1; i < len(e.members); i++ {
		if e.members[i] == e.members[i-1] {
			return nil, fmt.Errorf("pool %q: member %v is repeated", p.Name, e.members[i].Addr)
		}
	}
	e.assigned = make([][]string, len(e.members))
	for i, m := range e.members {
		e.assigned[i] = checkers(m, base.nodes, base.k)
	}
	return e, nil
}

// same reports whether p is the pool e was derived from.
func (e *poolEntry) same(p Pool) bool {
	return e.pool.Name == p.Name && e.pool.Check == p.Check && slices.Equal(e.pool.Members, p.Members)
}

// has reports whether m is among e's members.
func (e *poolEntry) has(m MemberKey) bool {
	_, ok := slices.BinarySearchFunc(e.members, m, compareKeys)
	return ok
}

// probe returns a probe of e's i-th member if it is assigned to self.
func (e *poolEntry) probe(i int, self string) *probe {
	if !slices.Contains(e.assigned[i], self) {
		return nil
	}
	key := e.members[i]
	target := key.Addr
	if e.spec.Port != 0 {
		target = netip.AddrPortFrom(key.Addr.Addr(), e.spec.Port)
	}
	return &probe{key: key, spec: e.spec, target: target, check: newCheck(e.spec, e.codes, target)}
}

// Apply makes this node's probes match cfg: it probes the members assigned
// to cfg.Self, keeping running probes whose check did not change (with
// their rise/fall counters), and recomputes the view. Its cost follows the
// pools that changed: a pool equal to the one applied before, with the same
// nodes, is not looked at again. An invalid cfg changes nothing. Apply
// neither writes in cfg.Pools nor keeps it (it keeps the pools' Members,
// which the caller must not change).
func (h *Health) Apply(ctx context.Context, cfg Config) error {
	base := applyBase{self: cfg.Self, nodes: slices.Clone(cfg.Nodes), k: cmp.Or(cfg.CheckersPerMember, DefaultCheckersPerMember)}
	if base.k < 0 {
		return fmt.Errorf("health: checkers per member: %d is not valid", cfg.CheckersPerMember)
	}
	slices.SortFunc(base.nodes, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	for i, n := range base.nodes {
		if n.Name == "" || (i > 0 && n.Name == base.nodes[i-1].Name) {
			return fmt.Errorf("health: node name %q is empty or repeated", n.Name)
		}
	}

	// Applies run one at a time, so the entries read here are still the
	// applied ones when they are replaced below.
	h.applyMu.Lock()
	defer h.applyMu.Unlock()
	h.mu.Lock()
	prev, same := h.pools, h.base.equal(base)
	h.mu.Unlock()
	// Pools kept from prev are marked with this Apply's round, which also
	// finds a name given twice without a set of every name.
	h.rounds++
	round := h.rounds
	fresh := map[string]bool{} // names of the pools derived again
	var changed []*poolEntry
	kept, replaced := 0, 0
	for _, p := range cfg.Pools {
		e := prev[p.Name]
		if p.Name == "" || fresh[p.Name] || (e != nil && e.round == round) {
			return fmt.Errorf("health: pool name %q is empty or repeated", p.Name)
		}
		if same && e != nil && e.same(p) {
			e.round = round
			kept++
			continue
		}
		n, err := newPoolEntry(p, base)
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		fresh[p.Name] = true
		changed = append(changed, n)
		if e != nil {
			replaced++
		}
	}
	var removed []string
	if kept+replaced != len(prev) {
		for name, e := range prev {
			if e.round != round && !fresh[name] {
				removed = append(removed, name)
			}
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("health: apply after close")
	}
	if h.pools == nil {
		h.pools = make(map[string]*poolEntry, len(cfg.Pools))
	}
	h.self, h.base = cfg.Self, base
	// Members of replaced and removed pools leave, with their probes,
	// unless the new entry has them; the new entries' members come in.
	var gone, dirty []MemberKey
	leave := func(old, e *poolEntry) {
		for _, m := range old.members {
			if e == nil || !e.has(m) {
				delete(h.assigned, m)
				gone = append(gone, m)
				if p, ok := h.probes[m]; ok {
					p.cancel()
					delete(h.probes, m)
				}
			}
		}
	}
	for _, name := range removed {
		leave(h.pools[name], nil)
		delete(h.pools, name)
	}
	for _, e := range changed {
		if old := h.pools[e.pool.Name]; old != nil {
			leave(old, e)
		}
		e.round = round
		h.pools[e.pool.Name] = e
	}
	for _, e := range changed {
		for i, m := range e.members {
			h.assigned[m] = e.assigned[i]
			dirty = append(dirty, m)
			w := e.probe(i, h.self)
			p, running := h.probes[m]
			if running && (w == nil || w.spec != p.spec || w.target != p.target) {
				p.cancel()
				delete(h.probes, m)
				running = false
			}
			if w == nil || running {
				continue
			}
			// Probes outlive the Apply call: they stop on a later Apply or Close.
			pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			w.cancel = cancel
			h.probes[m] = w
			h.wg.Add(1)
			go h.run(pctx, w)
		}
	}
	if len(gone) > 0 || time.Since(h.lastGC) > gcEvery {
		h.gcLocked()
	}
	h.updateViewLocked(dirty, gone)
	return nil
}

func compareKeys(a, b MemberKey) int {
	return cmp.Or(strings.Compare(a.Pool, b.Pool), a.Addr.Compare(b.Addr))
}

// gcLocked drops old records of members no longer configured.
func (h *Health) gcLocked() {
	h.lastGC = time.Now()
	cutoff := uint64(h.lastGC.Add(-orphanTTL).UnixNano())
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
	h.updateViewLocked([]MemberKey{p.key}, nil)
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

// updateViewLocked computes the view's entries of members again, and
// drops those of gone (members no longer configured). A change moves the
// versions of the pools it touched.
func (h *Health) updateViewLocked(members, gone []MemberKey) {
	type entry struct {
		key MemberKey
		up  bool
	}
	var set []entry
	for _, m := range members {
		assigned, configured := h.assigned[m]
		if !configured {
			continue
		}
		up := agreeOne(assigned, h.records[m])
		if was, ok := h.view[m]; !ok || was != up {
			set = append(set, entry{m, up})
		}
	}
	var drop []MemberKey
	for _, m := range gone {
		if _, ok := h.view[m]; ok {
			drop = append(drop, m)
		}
	}
	if len(set) == 0 && len(drop) == 0 {
		return
	}
	n := h.changes.Add(1)
	for _, e := range set {
		h.view[e.key] = e.up
		h.versions[e.key.Pool] = n
	}
	for _, m := range drop {
		delete(h.view, m)
		h.versions[m.Pool] = n
		if e := h.pools[m.Pool]; e == nil || len(e.members) == 0 {
			delete(h.versions, m.Pool)
		}
	}
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
	var changed []MemberKey
	for _, r := range rs {
		if h.mergeLocked(r) {
			h.received.Add(1)
			changed = append(changed, r.member)
		} else {
			h.stale.Add(1)
		}
	}
	h.updateViewLocked(changed, nil)
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

// Version changes whenever any pool's PoolVersion does: a caller that
// derived something from the whole view may keep it while Version stays.
func (h *Health) Version() uint64 {
	return h.changes.Load()
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
