// Package bgp is Weft's BGP speaker: an embedded GoBGP v3 server that keeps
// sessions with the node's routers and announces the VIPs the node serves,
// plainly from a VIP's primary zone and with AS-path prepends from backup
// zones. It is level-triggered: Apply is given the whole desired Config and
// makes the server match it.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Options are a Speaker's fixed settings.
type Options struct {
	// Logger receives the speaker's and GoBGP's logs; nil discards them.
	Logger *slog.Logger
}

// Speaker is a node's BGP speaker. Its methods are safe for concurrent use.
type Speaker struct {
	log    *slog.Logger
	server *server.BgpServer

	mu sync.Mutex // serialises changes to the server and guards the fields below
	// running is the global config the server was started with; nil while
	// stopped.
	running *global
	peers   map[netip.Addr]Peer
	// announced are the routes in the server's RIB, as last added.
	announced map[netip.Prefix]Announcement
	// draining is set by WithdrawAll: from then on Apply keeps sessions
	// but announces nothing, so a reconcile racing with shutdown cannot
	// bring routes back.
	draining bool
	closed   bool
}

// New returns a Speaker with its server idle; the first Apply starts it.
func New(opts Options) (*Speaker, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("subsystem", "bgp")
	s := &Speaker{
		log:       logger,
		server:    server.NewBgpServer(server.LoggerOption(newSlogLogger(logger))),
		peers:     map[netip.Addr]Peer{},
		announced: map[netip.Prefix]Announcement{},
	}
	// Serve is GoBGP's event loop. It has no way to return, so one
	// goroutine per Speaker outlives Close; it only waits on channels.
	go s.server.Serve()
	return s, nil
}

// Apply makes the server match cfg: it (re)starts the server when the
// router id, ASN or listening port change, adds, removes and re-creates
// peers, and announces and withdraws routes so that exactly
// cfg.Announcements are announced. Applying the same Config again changes
// nothing. An invalid cfg is rejected before anything changes; errors from
// individual steps are joined and the next Apply retries them.
func (s *Speaker) Apply(ctx context.Context, cfg Config) error {
	cfg, err := normalize(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("apply bgp config: speaker is closed")
	}

	next := globalOf(cfg)
	if needsRestart(s.running, next) {
		if err := s.restart(ctx, next); err != nil {
			return err
		}
	}

	var errs []error
	plan := planPeers(s.peers, cfg.Peers)
	for _, addr := range plan.remove {
		if err := s.server.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete peer %v: %w", addr, err))
			continue
		}
		delete(s.peers, addr)
		s.log.Info("peer removed", "peer", addr)
	}
	for _, p := range plan.add {
		if _, ok := s.peers[p.Address]; ok {
			continue // its removal failed above; retried next Apply
		}
		if err := s.server.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(next.asn, p)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %v: %w", p.Address, err))
			continue
		}
		s.peers[p.Address] = p
		s.log.Info("peer added", "peer", p.Address, "asn", p.ASN, "hold", p.HoldTime, "keepalive", p.KeepaliveInterval)
	}

	want := cfg.Announcements
	if s.draining {
		want = nil
	}
	if err := s.applyPaths(ctx, want); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// restart stops the server if it runs and starts it with g. Stopping
// closes every session (routers drop the node's routes at once), and a
// fresh start has no peers and no routes.
func (s *Speaker) restart(ctx context.Context, g global) error {
	if s.running != nil {
		if err := s.server.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
			return fmt.Errorf("stop bgp server: %w", err)
		}
		s.log.Info("bgp server stopped for restart", "router_id", s.running.routerID, "asn", s.running.asn)
		s.running = nil
	}
	clear(s.peers)
	clear(s.announced)
	if err := s.server.StartBgp(ctx, &api.StartBgpRequest{Global: apiGlobal(g)}); err != nil {
		return fmt.Errorf("start bgp server as %d, router id %v: %w", g.asn, g.routerID, err)
	}
	s.running = &g
	s.log.Info("bgp server started", "router_id", g.routerID, "asn", g.asn, "listen_port", g.listenPort)
	return nil
}

// applyPaths announces and withdraws routes so that exactly want is
// announced. Callers hold s.mu and the server is running.
func (s *Speaker) applyPaths(ctx context.Context, want []Announcement) error {
	var errs []error
	plan := planPaths(s.announced, want)
	for _, prefix := range plan.withdraw {
		path, err := withdrawPath(prefix)
		if err == nil {
			err = s.server.DeletePath(ctx, &api.DeletePathRequest{Family: path.Family, Path: path})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdraw %v: %w", prefix, err))
			continue
		}
		delete(s.announced, prefix)
		s.log.Info("route withdrawn", "prefix", prefix)
	}
	for _, a := range plan.announce {
		path, err := apiPath(s.running.asn, a)
		if err == nil {
			_, err = s.server.AddPath(ctx, &api.AddPathRequest{Path: path})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %v: %w", a.Prefix, err))
			continue
		}
		s.announced[a.Prefix] = a
		nextHop := "session address"
		if a.NextHop.IsValid() {
			nextHop = a.NextHop.String()
		}
		s.log.Info("route announced", "prefix", a.Prefix, "next_hop", nextHop, "prepend", a.Prepend, "med", a.MED)
	}
	return errors.Join(errs...)
}

// WithdrawAll withdraws every route and keeps the sessions up, so routers
// move the node's traffic elsewhere while it still forwards: call it
// before stopping (drain, SIGTERM), wait for the routers to converge, then
// Close. It returns once GoBGP has queued the withdrawals to every peer.
// From then on Apply still reconciles peers but announces nothing.
func (s *Speaker) WithdrawAll(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	if s.running == nil {
		return nil
	}
	if err := s.applyPaths(ctx, nil); err != nil {
		return fmt.Errorf("withdraw all routes: %w", err)
	}
	return nil
}

// Close withdraws every route, then stops the server, which ends the
// sessions with a Cease notification. It is idempotent.
func (s *Speaker) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.draining = true
	if s.running == nil {
		return nil
	}
	// Bounded so that a wedged server cannot hold up shutdown forever;
	// the stop below withdraws at the routers anyway.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	withdrawErr := s.applyPaths(ctx, nil)
	if err := s.server.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		return errors.Join(withdrawErr, fmt.Errorf("stop bgp server: %w", err))
	}
	s.running = nil
	clear(s.peers)
	s.log.Info("bgp server stopped")
	return withdrawErr
}

// Status is a snapshot of the speaker.
type Status struct {
	// Running is whether the server is started.
	Running  bool
	RouterID netip.Addr
	ASN      uint32
	// Draining is set once WithdrawAll or Close was called.
	Draining bool
	// Peers are sorted by address.
	Peers []PeerStatus
	// Announced are the routes in the RIB, sorted by prefix.
	Announced []Announcement
	// Err is set when the server could not be asked for its peers.
	Err error
}

// PeerStatus is one session's state.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the BGP FSM state: "idle", "connect", "active",
	// "opensent", "openconfirm" or "established".
	State string
	// Since is when the session last became established (zero if it is
	// not); the uptime is time.Since(Since).
	Since time.Time
	// HoldTime is the negotiated hold time while established.
	HoldTime time.Duration
}

// Established reports whether the session is up.
func (p PeerStatus) Established() bool { return p.State == "established" }

// Status reports the sessions and the announced routes.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	st := Status{Draining: s.draining}
	if s.running != nil {
		st.Running = true
		st.RouterID = s.running.routerID
		st.ASN = s.running.asn
	}
	for _, a := range s.announced {
		st.Announced = append(st.Announced, a)
	}
	configured := make(map[netip.Addr]Peer, len(s.peers))
	for addr, p := range s.peers {
		configured[addr] = p
	}
	s.mu.Unlock()
	slices.SortFunc(st.Announced, func(a, b Announcement) int { return comparePrefix(a.Prefix, b.Prefix) })

	seen := make(map[netip.Addr]bool, len(configured))
	if st.Running {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st.Err = s.server.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			ps, ok := peerStatus(p)
			if !ok || seen[ps.Address] {
				return
			}
			seen[ps.Address] = true
			st.Peers = append(st.Peers, ps)
		})
	}
	// Peers the server did not report (stopped, or asked concurrently with
	// a restart) are shown as idle rather than hidden.
	for addr, p := range configured {
		if !seen[addr] {
			st.Peers = append(st.Peers, PeerStatus{Address: addr, ASN: p.ASN, State: "idle"})
		}
	}
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return st
}

func peerStatus(p *api.Peer) (PeerStatus, bool) {
	if p.GetConf() == nil {
		return PeerStatus{}, false
	}
	addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
	if err != nil {
		return PeerStatus{}, false
	}
	ps := PeerStatus{
		Address: addr,
		ASN:     p.GetConf().GetPeerAsn(),
		State:   strings.ToLower(p.GetState().GetSessionState().String()),
	}
	if ps.State == "unknown" {
		ps.State = "idle"
	}
	if ps.Established() {
		if up := p.GetTimers().GetState().GetUptime(); up != nil {
			ps.Since = up.AsTime()
		}
		ps.HoldTime = time.Duration(p.GetTimers().GetState().GetNegotiatedHoldTime()) * time.Second
	}
	return ps, true
}
