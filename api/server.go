// Package api serves Weft's ConnectRPC services (Connect, gRPC, gRPC-Web and
// JSON on one TLS port): authentication and roles, leader forwarding, and
// the handlers that validate requests and propose them to Raft.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
)

// Replica is what the API needs from this node's Raft replica.
type Replica interface {
	Apply(ctx context.Context, t raftfsm.CommandType, msg proto.Message) (any, uint64, error)
	ConsistentRead(ctx context.Context) error
	IsLeader() bool
	Leader() (id, addr string)
	FSM() *raftfsm.FSM
	AddNonvoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	Servers() ([]raft.Server, error)
	Stats() (state string, term, commitIndex, appliedIndex uint64)
}

var _ Replica = (*raftfsm.Raft)(nil)

// Config is what a Server needs.
type Config struct {
	// NodeName is this node's name (its Raft server ID).
	NodeName string
	Replica  Replica
	// PeerTLS dials other nodes' APIs for leader forwarding: the cluster
	// CA and this node's certificate as client certificate.
	PeerTLS *tls.Config
	Logger  *slog.Logger
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// LeaderWait bounds how long a request waits for an election before
	// failing with Unavailable; 0 means 5 s.
	LeaderWait time.Duration
	// Local fills in what only the node itself knows for Status (its
	// subsystems, health view and gossip membership); nil: nothing.
	Local func(*weftv1.StatusResponse)
	// Observed returns this node's gossip membership and health view, which
	// reads of nodes and pools show beside the committed state; nil: none.
	Observed func() Observed
}

// Server is the API of one node.
type Server struct {
	cfg   Config
	fsm   *raftfsm.FSM
	log   *slog.Logger
	now   func() time.Time
	peers sync.Map // api address -> *peer
	http  *http.Server
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LeaderWait == 0 {
		cfg.LeaderWait = 5 * time.Second
	}
	return &Server{cfg: cfg, fsm: cfg.Replica.FSM(), log: cfg.Logger, now: cfg.Now}
}

// Handler serves both services, gRPC health and reflection.
func (s *Server) Handler() http.Handler {
	auth := connect.WithInterceptors(&authInterceptor{fsm: s.fsm, now: s.now})
	mux := http.NewServeMux()
	mux.Handle(weftv1connect.NewLoadBalancerServiceHandler(&lbService{s}, auth))
	mux.Handle(weftv1connect.NewClusterServiceHandler(&clusterService{s}, auth))
	services := []string{weftv1connect.LoadBalancerServiceName, weftv1connect.ClusterServiceName}
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(services...)))
	reflector := grpcreflect.NewStaticReflector(services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	return withTLSState(mux)
}

// Serve serves the API on ln with TLS (HTTP/2 by ALPN, HTTP/1.1 for curl)
// until Shutdown.
func (s *Server) Serve(ln net.Listener, tlsConfig *tls.Config) error {
	s.http = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	err := s.http.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting calls and waits for running ones until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.http == nil {
		return nil
	}
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("api shutdown: %w", err)
	}
	return nil
}
