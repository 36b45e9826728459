package node

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/weftlb/weft/gossip"
	"github.com/weftlb/weft/health"
	"github.com/weftlb/weft/raftfsm"
)

// gossipSubsystemName is the gossip subsystem's name in Status.
const gossipSubsystemName = "gossip"

// rejoinEvery is how often a node tries again to reach a member of the
// committed state that gossip does not see alive.
const rejoinEvery = 10 * time.Second

// leaveTimeout bounds a stopping node's goodbye to the others.
const leaveTimeout = 2 * time.Second

// metaEvery spaces this node's metadata updates: each is a gossip
// broadcast, and the applied index changes with every commit.
const metaEvery = 500 * time.Millisecond

// gossipSubsystem runs the node's membership gossip (DESIGN.md principle 2:
// observed state travels here, never through Raft). It starts once the
// cluster secrets, with the gossip key, have reached this node, joins every
// node of the committed state that it does not see alive, and keeps this
// node's metadata (zone, addresses, drain, whether it checks health, the
// Raft index its other subsystems have applied) current.
//
// The committed node list is the seed list: a joiner needs no gossip
// address of its own to be given, and a restarted or partitioned node
// finds the others again from the state it already holds.
type gossipSubsystem struct {
	cfg    gossip.Config
	health *health.Health // nil on nodes that do not check health
	// applied returns the index the node's other subsystems have applied,
	// given the index of the state being applied.
	applied func(current uint64) uint64
	log     *slog.Logger
	started chan struct{} // closed when g is set
	stop    chan struct{} // closed by close: ends the meta publisher

	mu       sync.Mutex
	g        *gossip.Gossip
	tried    map[string]time.Time // gossip address -> last join attempt
	joining  bool
	wantMeta gossip.NodeMeta
	kick     chan struct{} // wakes the meta publisher (capacity 1)
}

func newGossipSubsystem(cfg gossip.Config, applied func(uint64) uint64, log *slog.Logger) *gossipSubsystem {
	return &gossipSubsystem{cfg: cfg, applied: applied, log: log, started: make(chan struct{}), stop: make(chan struct{}),
		tried: make(map[string]time.Time), kick: make(chan struct{}, 1)}
}

// apply runs after the other subsystems (it is the reconciler's last), so
// the applied index it publishes is this round's.
func (s *gossipSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	g, err := s.start(st)
	if g == nil || err != nil {
		return err
	}
	meta := s.cfg.Meta
	meta.Draining = st.Node(s.cfg.NodeName).GetSpec().GetDrain()
	meta.AppliedIndex = s.applied(st.Index())
	s.mu.Lock()
	s.wantMeta = meta
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	s.joinMissing(g, st)
	return nil
}

// publishMeta sends this node's metadata when it changes, at most once per
// metaEvery, off the reconciler: an update waits for its broadcast.
func (s *gossipSubsystem) publishMeta(g *gossip.Gossip) {
	published := s.cfg.Meta
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		s.mu.Lock()
		meta := s.wantMeta
		s.mu.Unlock()
		if !reflect.DeepEqual(meta, published) {
			// A timeout only means no peer confirmed the broadcast within
			// a second: the metadata is set and push-pull carries it too.
			if err := g.UpdateMeta(meta); err != nil {
				s.log.Debug("gossip: publish node metadata", "error", err)
			}
			published = meta
		}
		select {
		case <-s.stop:
			return
		case <-time.After(metaEvery):
		}
	}
}

// start creates the gossip member when the key is known; it returns nil
// until then.
func (s *gossipSubsystem) start(st *raftfsm.State) (*gossip.Gossip, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.g != nil {
		return s.g, nil
	}
	key := st.Secrets().GetGossipKey()
	if key == nil {
		return nil, nil // the secrets have not reached this node yet
	}
	cfg := s.cfg
	cfg.Key = key
	g, err := gossip.New(cfg)
	if err != nil {
		return nil, err
	}
	if s.health != nil {
		g.Handle(health.Topic, s.health.Receive)
		g.RegisterState(health.Topic, s.health.State, s.health.MergeState)
	}
	s.g = g
	close(s.started)
	go s.publishMeta(g)
	s.log.Info("gossip started", "addr", cfg.BindAddr, "advertise", cfg.AdvertiseAddr)
	return g, nil
}

// joinMissing contacts, in the background, the committed nodes gossip does
// not see alive, each at most once per rejoinEvery.
func (s *gossipSubsystem) joinMissing(g *gossip.Gossip, st *raftfsm.State) {
	alive := make(map[string]bool)
	for _, m := range g.Members() {
		alive[m.Name] = m.State == gossip.StateAlive
	}
	now := time.Now()
	var addrs []string
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.joining {
		return
	}
	for _, n := range st.Nodes() {
		addr := n.GetSpec().GetGossipAddress()
		if n.GetMetadata().GetName() == s.cfg.NodeName || addr == "" || alive[n.GetMetadata().GetName()] {
			continue
		}
		if now.Sub(s.tried[addr]) < rejoinEvery {
			continue
		}
		s.tried[addr] = now
		addrs = append(addrs, addr)
	}
	if len(addrs) == 0 {
		return
	}
	s.joining = true
	go func() {
		n, err := g.Join(addrs)
		s.mu.Lock()
		s.joining = false
		s.mu.Unlock()
		if err != nil {
			s.log.Debug("gossip join", "addrs", addrs, "answered", n, "error", err)
		}
	}()
}

// gossiper returns the running member, or nil before the key arrived.
func (s *gossipSubsystem) gossiper() *gossip.Gossip {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.g
}

// changed wakes the reconciler when gossip starts and at every membership
// or metadata change.
func (s *gossipSubsystem) changed() <-chan struct{} {
	if g := s.gossiper(); g != nil {
		return g.Changed()
	}
	return s.started
}

// Broadcast makes the subsystem health's Publisher: verdicts made before
// gossip started have no one to go to (this node is alone), and push-pull
// hands them over at the first join.
func (s *gossipSubsystem) Broadcast(topic string, payload []byte) {
	if g := s.gossiper(); g != nil {
		g.Broadcast(topic, payload)
	}
}

// checkers are the live nodes that run health checks, self included: the
// candidates health assigns members to.
func (s *gossipSubsystem) checkers() []health.NodeInfo {
	self := health.NodeInfo{Name: s.cfg.NodeName, Zone: s.cfg.Meta.Zone}
	g := s.gossiper()
	if g == nil {
		return []health.NodeInfo{self}
	}
	out := []health.NodeInfo{self}
	for _, m := range g.Members() {
		if m.Name != self.Name && m.State == gossip.StateAlive && m.Meta.Checker {
			out = append(out, health.NodeInfo{Name: m.Name, Zone: m.Meta.Zone})
		}
	}
	return out
}

// close leaves the cluster (so the others reassign this node's checks at
// once rather than after failure detection) and stops gossip.
func (s *gossipSubsystem) close() error {
	close(s.stop)
	g := s.gossiper()
	if g == nil {
		return nil
	}
	if err := g.Leave(leaveTimeout); err != nil {
		s.log.Warn("gossip leave", "error", err)
	}
	return g.Close()
}
