// Package flowsync keeps copies of a node's L4 flows on other nodes, so a
// flow survives the loss of the node that forwards it, of a whole zone, and
// backend changes meanwhile (README.md). It follows the committed
// ownership table, streams the flows the dataplane reports to the nodes
// that keep their copies, installs the copies other nodes send, pulls its
// share when it (re)joins, and tells the dataplane where to hand packets
// of flows it does not know.
package flowsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/dataplane"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// Config configures a Syncer.
type Config struct {
	// Self is this node's name, MAC its address on the forwarding segment
	// and Local its FullNAT source addresses.
	Self  string
	MAC   net.HardwareAddr
	Local []netip.Addr
	// Driver is the dataplane whose flows are synced.
	Driver dataplane.FlowDriver
	// Client dials the other nodes' APIs (TLS with this node's certificate).
	Client connect.HTTPClient
	// Authenticate returns the node name of a caller's cluster-signed
	// certificate, or false for any other caller.
	Authenticate func(ctx context.Context) (node string, ok bool)
	// Announce tells the segment (gratuitous ARP) that a local address is
	// at MAC at: this node's, for one it has just taken over or back, or
	// another node's, for one it has let go of; nil sends none.
	Announce func(addr netip.Addr, at net.HardwareAddr) error
	// Heartbeat is how often an idle stream says it is alive (200 ms);
	// DeadAfter how long a peer may be silent before it counts as lost
	// (1 s); JoinWait how long a starting node waits for its peers before
	// it pulls from those it reached (5 s).
	Heartbeat, DeadAfter, JoinWait time.Duration
	Logger                         *slog.Logger
}

// Node is a node of the cluster as flow sync sees it.
type Node struct {
	Name, Zone string
	// API is the host:port of its API, which carries the sync streams.
	API string
	// Flows is set on nodes that run flow sync and Gone on those gossip
	// knows are dead or left (not on those it does not know); MAC is its
	// address on the forwarding segment and Local its FullNAT sources (all
	// from gossip).
	Flows, Gone bool
	MAC         net.HardwareAddr
	Local       []netip.Addr
}

// State is what flow sync follows: the committed ownership table and the
// nodes.
type State struct {
	Ownership *statev1.FlowOwnership
	Nodes     []Node
}

// Syncer is one node's flow sync.
type Syncer struct {
	cfg     Config
	log     *slog.Logger
	buckets int
	ctx     context.Context
	cancel  context.CancelFunc
	started time.Time
	wg      sync.WaitGroup
	kick    chan struct{} // wakes the routing loop (capacity 1)
	c       counters

	mu sync.Mutex
	// cur is the table in use; prev the one before, kept while some live
	// node has not pulled cur's flows yet.
	cur, prev *table
	nodes     map[string]Node
	peers     map[string]*peer
	addrOwner map[netip.Addr]string
	// heirs orders each local address's heirs (table.go), for the
	// nodes of the last Apply.
	heirs map[netip.Addr][]string
	// pulledEpoch is the epoch this node last pulled its flows for, once
	// pulled is set; pulling while a pull runs.
	pulledEpoch     uint64
	pulled, pulling bool
	// held says, per local address, whether this node answered for it in
	// the last routing; takenOver are those of other nodes it saw lost
	// and not yet back with their flows.
	held, takenOver map[netip.Addr]bool
	// pulledCh is closed when a pull completes (Changed).
	pulledCh chan struct{}
}

type counters struct {
	reported, sent, sentBytes, unsent, received, installed, rejected, pulled atomic.Uint64
}

// New returns a Syncer; Start runs it.
func New(cfg Config) *Syncer {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 200 * time.Millisecond
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = time.Second
	}
	if cfg.JoinWait == 0 {
		cfg.JoinWait = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Syncer{cfg: cfg, log: cfg.Logger.With("subsystem", "flowsync"), buckets: cfg.Driver.FlowBuckets(),
		ctx: ctx, cancel: cancel, started: time.Now(), kick: make(chan struct{}, 1),
		nodes: map[string]Node{}, peers: map[string]*peer{}, addrOwner: map[netip.Addr]string{}, held: map[netip.Addr]bool{},
		pulledCh: make(chan struct{})}
}

// Start reads the dataplane's reports and keeps its routing current until
// Close.
func (s *Syncer) Start() {
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.cfg.Driver.ReadFlows(s.ctx, s.report); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("flow reports stopped", "error", err)
		}
	}()
	go func() { defer s.wg.Done(); s.routeLoop() }()
	s.wake()
}

// Close stops the streams, the pulls and the report reader. Flows still
// queued are sent first, for up to a heartbeat.
func (s *Syncer) Close() error {
	s.mu.Lock()
	peers := slices.Collect(maps.Values(s.peers))
	s.mu.Unlock()
	deadline := time.Now().Add(s.cfg.Heartbeat)
	for _, p := range peers {
		p.drain(deadline)
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Apply follows the committed table and the node list: it opens streams
// to new nodes, closes those of departed ones, pulls this node's flows when
// the table changes, and recomputes the routing. It is idempotent.
func (s *Syncer) Apply(_ context.Context, st State) error {
	cur, err := decodeTable(st.Ownership, s.buckets)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur != nil && (s.cur == nil || cur.epoch != s.cur.epoch) {
		if s.cur != nil {
			s.prev = s.cur
		}
		s.cur = cur
		s.log.Info("flow ownership table", "epoch", cur.epoch, "nodes", len(cur.nodes))
	}
	nodes := make(map[string]Node, len(st.Nodes))
	owners := map[netip.Addr]string{}
	for _, n := range st.Nodes {
		if n.Name == s.cfg.Self {
			n.Flows, n.MAC, n.Local = true, s.cfg.MAC, s.cfg.Local
		}
		nodes[n.Name] = n
		for _, a := range n.Local {
			owners[a.Unmap()] = n.Name
		}
		if n.Name == s.cfg.Self || !n.Flows || n.API == "" {
			continue
		}
		if p := s.peers[n.Name]; p != nil && p.api != n.API {
			p.stop()
			delete(s.peers, n.Name)
		}
		if s.peers[n.Name] == nil {
			p := newPeer(s, n.Name, n.API)
			s.peers[n.Name] = p
			s.wg.Add(1)
			go func() { defer s.wg.Done(); p.run() }()
		}
	}
	for name, p := range s.peers {
		if n, ok := nodes[name]; !ok || !n.Flows {
			p.stop()
			delete(s.peers, name)
		}
	}
	s.nodes, s.addrOwner = nodes, owners
	s.heirs = map[netip.Addr][]string{}
	ms := s.membersLocked()
	for a, owner := range owners {
		s.heirs[a] = heirs(a, Member{Name: owner, Zone: nodes[owner].Zone}, ms)
	}
	s.maybePullLocked()
	s.wake()
	return nil
}

// FirstOwner returns a function naming the node that owns a flow's bucket
// first in the table in force now ("" before there is one). Every flow of
// the cluster is copied there, so open flows summed over the nodes count
// each flow once when each node counts those it owns first.
func (s *Syncer) FirstOwner() func(dataplane.Flow) string {
	s.mu.Lock()
	t := s.cur
	s.mu.Unlock()
	return func(f dataplane.Flow) string {
		if t == nil {
			return ""
		}
		return t.owner(dataplane.Bucket(f.Hash(), s.buckets), 0)
	}
}

// readyLocked reports whether this node holds the flows of its share of
// the current table: it pulled them since it started and since the table
// last changed (or it has no table yet and pulled once).
func (s *Syncer) readyLocked() bool {
	return s.pulled && (s.cur == nil || s.pulledEpoch >= s.cur.epoch)
}

func (s *Syncer) epochLocked() uint64 {
	if s.cur == nil {
		return 0
	}
	return s.cur.epoch
}

// Started reports whether this node pulled its flows at least once since
// it started: BGP waits for it before announcing.
func (s *Syncer) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pulled
}

// Changed returns a channel closed when this node next completes a pull
// (Ready or Started may have changed).
func (s *Syncer) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pulledCh
}

func (s *Syncer) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// members are the nodes that run flow sync, for heir orders.
func (s *Syncer) membersLocked() []Member {
	var ms []Member
	for _, n := range s.nodes {
		if n.Flows || n.Name == s.cfg.Self {
			ms = append(ms, Member{Name: n.Name, Zone: n.Zone})
		}
	}
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return ms
}

// live reports whether node name can take flows now: this node, or a peer
// whose stream is up. ready additionally needs it to have pulled the flows
// of epoch.
func (s *Syncer) liveLocked(name string) bool {
	if name == s.cfg.Self {
		return true
	}
	p := s.peers[name]
	return p != nil && p.isUp()
}

func (s *Syncer) readyForLocked(name string, epoch uint64) bool {
	if name == s.cfg.Self {
		return s.readyLocked()
	}
	p := s.peers[name]
	if p == nil {
		return false
	}
	up, ready, readyEpoch := p.state()
	return up && ready && readyEpoch >= epoch
}

// heirLocked is the first live heir of local address a (live also counts
// extra, the node a pull is for), or "".
func (s *Syncer) heirLocked(a netip.Addr, extra string) string {
	for _, h := range s.heirs[a] {
		if h == extra || s.liveLocked(h) {
			return h
		}
	}
	return ""
}

// target is a node that keeps a copy of a flow, and what for.
type target struct {
	name string
	into dataplane.Install
}

// targetsLocked appends to ts the nodes that keep a copy of flow f: the
// owners of its bucket (current table, and the previous one while it is
// kept) for its client packets; for FullNAT, the node its local address
// belongs to and that address's first live heir for its replies. extra
// counts as live (the node a pull is for).
func (s *Syncer) targetsLocked(ts []target, f dataplane.Flow, extra string) []target {
	add := func(name string, into dataplane.Install) {
		for i := range ts {
			if ts[i].name == name {
				ts[i].into |= into
				return
			}
		}
		ts = append(ts, target{name, into})
	}
	b := dataplane.Bucket(f.Hash(), s.buckets)
	for _, t := range []*table{s.cur, s.prev} {
		if t == nil {
			continue
		}
		for i := range t.replicas {
			add(t.owner(b, i), dataplane.InstallForward)
		}
	}
	if f.FullNAT() {
		if owner, ok := s.addrOwner[f.Local.Addr()]; ok {
			add(owner, dataplane.InstallReply)
			if h := s.heirLocked(f.Local.Addr(), extra); h != "" {
				add(h, dataplane.InstallReply)
			}
		}
	}
	return ts
}

// report sends flows the dataplane reported to the nodes that keep them.
func (s *Syncer) report(flows []dataplane.Flow) {
	s.c.reported.Add(uint64(len(flows)))
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []target
	for _, f := range flows {
		ts = s.targetsLocked(ts[:0], f, "")
		for _, t := range ts {
			if t.name == s.cfg.Self {
				continue
			}
			if p := s.peers[t.name]; p != nil && p.enqueue(toWire(f, t.into)) {
				continue
			}
			s.c.unsent.Add(1)
		}
	}
}

// install writes flows a peer sent.
func (s *Syncer) install(from string, ws []*weftv1.SyncedFlow) error {
	s.c.received.Add(uint64(len(ws)))
	flows := make([]dataplane.Flow, 0, len(ws))
	into := make([]dataplane.Install, 0, len(ws))
	for _, w := range ws {
		f, in, err := fromWire(w)
		if err != nil {
			s.c.rejected.Add(1)
			continue
		}
		flows, into = append(flows, f), append(into, in)
	}
	if len(flows) == 0 {
		return nil
	}
	if err := s.cfg.Driver.InstallFlows(flows, into); err != nil {
		return fmt.Errorf("install %d flows from %s: %w", len(flows), from, err)
	}
	s.c.installed.Add(uint64(len(flows)))
	return nil
}

// maybePullLocked starts a pull when this node's flows are not those of
// the current table. Without a table there is nothing to pull until one is
// committed; a node that has none JoinWait after its start counts as
// pulled (it is alone, or the cluster keeps no table).
func (s *Syncer) maybePullLocked() {
	if s.pulling || s.readyLocked() || (s.cur == nil && time.Since(s.started) < s.cfg.JoinWait) {
		return
	}
	s.pulling = true
	epoch := s.epochLocked()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.pull(epoch)
	}()
}

// pull fetches from every peer the flows this node keeps copies of under
// the table of epoch. It first waits, up to JoinWait, for the streams of
// every node of the table that gossip does not know to be gone; those it
// cannot reach by then are skipped (lost nodes: their copies are
// elsewhere).
func (s *Syncer) pull(epoch uint64) {
	start := time.Now()
	s.waitForPeers(start.Add(s.cfg.JoinWait))
	s.mu.Lock()
	var from []*peer
	for _, p := range s.peers {
		if p.isUp() {
			from = append(from, p)
		}
	}
	s.mu.Unlock()
	var n int
	for _, p := range from {
		got, err := p.pull(s.ctx)
		n += got
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("pull flows", "peer", p.name, "error", err)
		}
	}
	s.mu.Lock()
	s.pulling = false
	if s.ctx.Err() == nil {
		s.pulled, s.pulledEpoch = true, epoch
		close(s.pulledCh)
		s.pulledCh = make(chan struct{})
		s.log.Info("pulled flows", "epoch", epoch, "flows", n, "peers", len(from), "took", time.Since(start).Round(time.Millisecond))
	}
	s.maybePullLocked() // the table may have changed meanwhile
	s.mu.Unlock()
	s.announceAll() // reachable now as this node's own: take its addresses back
	s.wake()
}

// waitForPeers waits until the stream to every other node of the current
// table is up, but for nodes gossip knows to be gone, or until deadline.
func (s *Syncer) waitForPeers(deadline time.Time) {
	for time.Now().Before(deadline) && s.ctx.Err() == nil {
		s.mu.Lock()
		var names []string
		if s.cur != nil {
			names = s.cur.nodes
		}
		all := true
		for _, name := range names {
			p := s.peers[name]
			all = all && (name == s.cfg.Self || s.nodes[name].Gone || (p != nil && p.isUp()))
		}
		s.mu.Unlock()
		if all {
			return
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pullFor returns the flows node q keeps copies of, from this node's tables.
func (s *Syncer) pullFor(q string, send func([]*weftv1.SyncedFlow) error) error {
	var batch []*weftv1.SyncedFlow
	var sendErr error
	var ts []target
	err := s.cfg.Driver.Flows(func(f dataplane.Flow) bool {
		s.mu.Lock()
		ts = s.targetsLocked(ts[:0], f, q)
		s.mu.Unlock()
		var into dataplane.Install
		for _, t := range ts {
			if t.name == q {
				into = t.into
			}
		}
		if into == 0 {
			return true
		}
		batch = append(batch, toWire(f, into))
		if len(batch) == sendBatch {
			sendErr = send(batch)
			batch = nil
		}
		return sendErr == nil
	})
	if err == nil {
		err = sendErr
	}
	if err == nil && len(batch) > 0 {
		err = send(batch)
	}
	return err
}

// sendBatch is the most flows in one message.
const sendBatch = 1024

// Status describes this node's flow sync: the table, its share of it, the
// held local addresses, the peers and the counters. The dataplane's own
// counters (reports lost, packets handed over) are the caller's to add.
func (s *Syncer) Status() *weftv1.FlowSyncStatus {
	s.mu.Lock()
	st := &weftv1.FlowSyncStatus{Epoch: s.epochLocked(), Buckets: uint32(s.buckets)}
	if s.pulled {
		st.ReadyEpoch = s.pulledEpoch
	}
	for b := 0; s.cur != nil && b < s.buckets; b++ {
		switch i := slices.Index(s.cur.ownersOf(b), s.cfg.Self); {
		case i == 0:
			st.Primary++
		case i > 0:
			st.Backup++
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(s.held), netip.Addr.Compare) {
		if s.held[a] {
			st.Held = append(st.Held, a.String())
		}
	}
	peers := slices.SortedFunc(maps.Values(s.peers), func(a, b *peer) int { return cmp.Compare(a.name, b.name) })
	s.mu.Unlock()
	for _, p := range peers {
		st.Peers = append(st.Peers, p.status())
	}
	st.Reported, st.Sent, st.SentBytes, st.Unsent = s.c.reported.Load(), s.c.sent.Load(), s.c.sentBytes.Load(), s.c.unsent.Load()
	st.Received, st.Installed, st.Rejected, st.Pulled = s.c.received.Load(), s.c.installed.Load(), s.c.rejected.Load(), s.c.pulled.Load()
	return st
}
