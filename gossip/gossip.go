// Package gossip runs Weft's membership and dissemination layer on
// hashicorp/memberlist: who is in the cluster and what each node says about
// itself (NodeMeta), failure detection, small broadcast messages by topic and
// push-pull state so a joining or healed node catches up.
package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// KeySize is the size of the cluster's gossip key (AES-256).
const KeySize = 32

// MaxMessageSize bounds an encoded broadcast (topic, payload and a few bytes
// of header). A broadcast must fit one UDP packet beside memberlist's own
// traffic and encryption overhead (UDPBufferSize 1400).
const MaxMessageSize = 1024

// LAN timing. memberlist's DefaultLANConfig targets data-centre LANs of any
// size; a Weft cluster is a handful of nodes on one LAN, so probes run twice
// as often and suspicion is shorter. For a cluster of fewer than 10 nodes:
//
//   - a failed node is probed within about ProbeInterval x (live nodes - 1)
//     at worst (every node probes one peer per interval, round-robin), and
//     the probe fails at the end of that interval;
//   - suspicion lasts SuspicionMult x ProbeInterval = 1.5 s once another node
//     confirms it, at most SuspicionMaxTimeoutMult times that (3 s) otherwise;
//   - the dead message then spreads in a few GossipIntervals.
//
// So a node that stops answering is marked dead everywhere within
// FailureDetectionTime for 3-5 nodes (typically about 2.5 s). Above 10 nodes
// suspicion grows with log10(n). memberlist's awareness can stretch the probe
// interval (up to AwarenessMaxMultiplier) on a node that is itself too slow to
// answer, trading detection speed for fewer false positives.
const (
	probeInterval           = 500 * time.Millisecond
	probeTimeout            = 250 * time.Millisecond
	suspicionMult           = 3
	suspicionMaxTimeoutMult = 2
	gossipInterval          = 100 * time.Millisecond
	pushPullInterval        = 10 * time.Second
	tcpTimeout              = 3 * time.Second
	gossipToTheDeadTime     = 15 * time.Second

	// FailureDetectionTime is the documented bound, for 3-5 nodes, from a node
	// going silent to every other node seeing it dead (see the timing above).
	FailureDetectionTime = 6 * time.Second
)

// deadRetention is how long a dead or departed node stays in Members.
const deadRetention = time.Hour

// seenTTL is how long a message id is remembered to drop duplicates; a
// message stops being relayed well before (retransmit limit x gossip interval).
const seenTTL = time.Minute

// maxQueued bounds the broadcast queue if messages arrive faster than gossip
// drains them; the oldest, most retransmitted ones go first.
const maxQueued = 4096

// Config configures a Gossip.
type Config struct {
	// NodeName is unique in the cluster.
	NodeName string
	// BindAddr is host:port for memberlist's UDP and TCP listeners.
	BindAddr string
	// AdvertiseAddr is host:port other nodes reach this one at; empty means
	// BindAddr.
	AdvertiseAddr string
	// Key is the cluster's gossip key (KeySize bytes). All traffic is
	// encrypted and authenticated with it; a node with another key cannot join.
	Key []byte
	// Meta is the initial node metadata.
	Meta NodeMeta
	// Logger receives memberlist's log lines; nil discards them.
	Logger *slog.Logger
}

// State is a member's state as this node sees it.
type State int

// memberlist also has a suspect state, but it emits no event for it (and
// its node records may not be read without its lock), so a suspected node
// reads as alive until it is declared dead, at most the suspicion timeout later.
const (
	StateAlive State = iota
	StateDead
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Member is one node of the cluster.
type Member struct {
	Name  string
	Addr  netip.AddrPort
	State State
	Meta  NodeMeta
	// Since is when this node last saw the member change state.
	Since time.Time
}

// Stats are counters for metrics.
type Stats struct {
	// MessagesSent counts broadcasts queued by this node (not relays).
	MessagesSent uint64
	// MessagesReceived counts messages delivered to a handler, once each.
	MessagesReceived uint64
	// MessagesDuplicate counts copies of already-seen messages.
	MessagesDuplicate uint64
	// MessagesDropped counts broadcasts too large to send and received
	// messages or states that could not be decoded.
	MessagesDropped uint64
	// Queued is the number of messages waiting for retransmission.
	Queued int
	// HealthScore is memberlist's awareness score: 0 is healthy, higher means
	// this node is slow to answer probes.
	HealthScore int
}

type msgKey struct {
	origin string
	id     uint64
}

type stateHandler struct {
	local func() []byte
	merge func(from string, state []byte)
}

// Gossip is a running member of the cluster.
type Gossip struct {
	name  string
	log   *slog.Logger
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue

	metaMu  sync.Mutex
	metaVal NodeMeta
	meta    []byte // metaVal encoded, always <= MetaMaxSize

	mu       sync.Mutex
	members  map[string]*Member
	changed  chan struct{}
	handlers map[string]func(from string, payload []byte)
	states   map[string]stateHandler
	seen     map[msgKey]time.Time
	inserts  int
	closed   bool

	nextID                         atomic.Uint64
	sent, received, dupes, dropped atomic.Uint64
}

// New starts memberlist on cfg.BindAddr. The node is alone until Join.
func New(cfg Config) (*Gossip, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("gossip: node name is empty")
	}
	if len(cfg.Key) != KeySize {
		return nil, fmt.Errorf("gossip: key is %d bytes, want %d", len(cfg.Key), KeySize)
	}
	meta, err := cfg.Meta.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gossip{
		name:     cfg.NodeName,
		log:      logger,
		metaVal:  cfg.Meta,
		meta:     meta,
		members:  make(map[string]*Member),
		changed:  make(chan struct{}),
		handlers: make(map[string]func(string, []byte)),
		states:   make(map[string]stateHandler),
		seen:     make(map[msgKey]time.Time),
	}
	// Ids start at the clock so a restarted node's messages are not taken
	// for the ones it sent before.
	g.nextID.Store(uint64(time.Now().UnixNano()))

	mc, err := lanConfig(cfg, logger)
	if err != nil {
		return nil, err
	}
	d := &delegate{g: g}
	mc.Delegate = d
	mc.Events = d
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := g.memberlist(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: mc.RetransmitMult,
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	g.mu.Lock()
	g.ml = ml
	g.mu.Unlock()
	return g, nil
}

func (g *Gossip) memberlist() *memberlist.Memberlist {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ml
}

// lanConfig is memberlist's LAN config with Weft's timing (see the constants).
func lanConfig(cfg Config, logger *slog.Logger) (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if cfg.AdvertiseAddr != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("gossip: advertise address: %w", err)
		}
	}
	keyring, err := memberlist.NewKeyring(nil, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring: %w", err)
	}
	mc.Keyring = keyring
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true

	mc.ProbeInterval = probeInterval
	mc.ProbeTimeout = probeTimeout
	mc.SuspicionMult = suspicionMult
	mc.SuspicionMaxTimeoutMult = suspicionMaxTimeoutMult
	mc.GossipInterval = gossipInterval
	mc.PushPullInterval = pushPullInterval
	mc.TCPTimeout = tcpTimeout
	mc.GossipToTheDeadTime = gossipToTheDeadTime
	mc.Logger = log.New(&logWriter{log: logger}, "", 0)
	return mc, nil
}

func splitHostPort(s string) (string, int, error) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	return host, int(port), nil
}

// Join contacts the given host:port addresses and returns how many answered;
// it fails only if none did.
func (g *Gossip) Join(addrs []string) (int, error) {
	n, err := g.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("gossip: join %s: %w", strings.Join(addrs, ","), err)
	}
	return n, nil
}

// Leave tells the cluster this node is leaving and waits up to timeout for
// the message to go out. Gossip keeps running until Close.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return errors.New("gossip: leave after close")
	}
	g.metaMu.Lock()
	g.metaVal.leaving = true
	b, err := g.metaVal.MarshalBinary()
	if err == nil {
		g.meta = b
	}
	g.metaMu.Unlock()
	if err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	// Best effort: without the flag the others record a failure, not a
	// departure, which only changes what Members reports.
	if err := g.ml.UpdateNode(timeout); err != nil {
		g.log.Warn("gossip: leave: announce leaving", "err", err)
	}
	if err := g.ml.Leave(timeout); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Close stops memberlist without leaving: the others will detect a failure.
// Call Leave first for a planned departure.
func (g *Gossip) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()
	if err := g.ml.Shutdown(); err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// UpdateMeta replaces this node's metadata and pushes it to the cluster,
// waiting up to a second for the update to go out.
func (g *Gossip) UpdateMeta(meta NodeMeta) error {
	g.metaMu.Lock()
	meta.leaving = g.metaVal.leaving
	b, err := meta.MarshalBinary()
	if err == nil {
		g.metaVal, g.meta = meta, b
	}
	g.metaMu.Unlock()
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	// Not under metaMu: UpdateNode calls back into NodeMeta.
	if err := g.ml.UpdateNode(time.Second); err != nil {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	return nil
}

// Members returns every node this one knows of, alive, dead or departed
// (dead and departed ones for an hour), sorted by name.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.members))
	for _, m := range g.members {
		c := *m
		c.Meta.Addrs = maps.Clone(m.Meta.Addrs)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changed returns a channel that is closed at the next membership or meta
// change; call it again for the one after. Consumers re-read Members.
func (g *Gossip) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// notifyLocked wakes Changed waiters; g.mu is held.
func (g *Gossip) notifyLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// Handle registers f for messages of topic (one handler per topic; a later
// call replaces it). f runs on memberlist's receive goroutine: it must be
// quick and must not keep payload.
func (g *Gossip) Handle(topic string, f func(from string, payload []byte)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handlers[topic] = f
}

// RegisterState adds topic's state to push-pull: local returns this node's
// state for the topic, merge receives another node's. Push-pull runs when a
// node joins and every 10 s between random pairs, so a node that missed
// broadcasts (it joined late, or was cut off) catches up.
func (g *Gossip) RegisterState(topic string, local func() []byte, merge func(from string, state []byte)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.states[topic] = stateHandler{local: local, merge: merge}
}

// Broadcast sends payload to every node's handler for topic (not this
// node's). Delivery is best effort: each receiver relays the message once, so
// it reaches every live node with high probability within a few hundred
// milliseconds; state registered with RegisterState repairs what is lost.
// Messages over MaxMessageSize are dropped and counted.
func (g *Gossip) Broadcast(topic string, payload []byte) {
	msg := message{origin: g.name, id: g.nextID.Add(1), topic: topic, payload: payload}.encode()
	if len(msg) > MaxMessageSize {
		g.dropped.Add(1)
		g.log.Warn("gossip: broadcast too large, dropped", "topic", topic, "bytes", len(msg), "max", MaxMessageSize)
		return
	}
	g.sent.Add(1)
	g.queueMessage(msg)
}

func (g *Gossip) queueMessage(msg []byte) {
	g.queue.QueueBroadcast(broadcast(msg))
	g.queue.Prune(maxQueued)
}

// Stats returns the counters.
func (g *Gossip) Stats() Stats {
	return Stats{
		MessagesSent:      g.sent.Load(),
		MessagesReceived:  g.received.Load(),
		MessagesDuplicate: g.dupes.Load(),
		MessagesDropped:   g.dropped.Load(),
		Queued:            g.queue.NumQueued(),
		HealthScore:       g.ml.GetHealthScore(),
	}
}

// firstSight records a message id; it reports false for one seen before.
func (g *Gossip) firstSight(k msgKey) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if _, ok := g.seen[k]; ok {
		return false
	}
	g.seen[k] = now
	if g.inserts++; g.inserts%256 == 0 {
		for k, t := range g.seen {
			if now.Sub(t) > seenTTL {
				delete(g.seen, k)
			}
		}
	}
	return true
}

// broadcast is a queued message; messages never replace one another. As a
// memberlist.UniqueBroadcast it is queued without a scan of the queue for
// messages it would replace.
type broadcast []byte

var _ memberlist.UniqueBroadcast = broadcast(nil)

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}
func (b broadcast) UniqueBroadcast()                      {}

var logLevels = []struct {
	prefix string
	level  slog.Level
}{
	{"[DEBUG] ", slog.LevelDebug}, {"[INFO] ", slog.LevelInfo}, {"[WARN] ", slog.LevelWarn},
	{"[ERR] ", slog.LevelError}, {"[ERROR] ", slog.LevelError},
}

// logWriter turns memberlist's "[LEVEL] memberlist: text" lines into slog.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level := slog.LevelInfo
	for _, p := range logLevels {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			line, level = rest, p.level
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.log.Log(context.Background(), level, line, "component", "memberlist")
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)
