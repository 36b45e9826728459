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
	"github.com/weftlb/weft/tokens"
	"github.com/weftlb/weft/validate"
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
	// WaitApplied returns once the node's subsystems have applied index,
	// with an error when one failed to or ctx ended first (Status's
	// wait_applied_index); nil: Status refuses to wait.
	WaitApplied func(ctx context.Context, index uint64) error
	// MaxRequestBytes is the largest request message accepted, on every
	// protocol; 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int
	// LocalPorts are the addresses this node listens on (API, Raft,
	// gossip) as configured, wildcards included; listeners may not take
	// them. Every node's advertised addresses come from the node table.
	LocalPorts []validate.NodePort
	// Observed returns this node's gossip membership and health view, which
	// reads of nodes and pools show beside the committed state; nil: none.
	Observed func() Observed
	// DNSQuery asks this node's DNS server what it would answer (QueryDNS);
	// nil when the node runs none.
	DNSQuery func(*weftv1.QueryDNSRequest) (*weftv1.QueryDNSResponse, error)
	// LocalStats returns this node's counters of the load balancers named
	// (all when none), for the StatsService; nil on nodes that serve no
	// traffic.
	LocalStats func(names []string) ([]*weftv1.LoadBalancerStats, error)
}

// DefaultMaxRequestBytes is gRPC's default limit on a received message.
// Weft's largest requests (an Apply of many resources with certificate
// chains) are far below it.
const DefaultMaxRequestBytes = 4 << 20

// bodySlack is how much a request body may exceed MaxRequestBytes before it
// is cut off unread: the envelope of a gRPC or Connect streaming message and
// what compression can add. Within it, connect-go measures the message
// itself.
const bodySlack = 64 << 10

// Server is the API of one node.
type Server struct {
	cfg   Config
	fsm   *raftfsm.FSM
	log   *slog.Logger
	now   func() time.Time
	peers sync.Map // api address -> *peer
	http  *http.Server

	muxOnce sync.Once
	mux     *http.ServeMux
	auth    *authenticator
	limit   func(path string, h http.Handler) (string, http.Handler)
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
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return &Server{cfg: cfg, fsm: cfg.Replica.FSM(), log: cfg.Logger, now: cfg.Now}
}

// Handler serves the three services, gRPC health and reflection, and what was
// mounted. Requests pass authentication (from headers, before the body is
// read; health and reflection are public), then the body limit, then
// connect-go, whose codecs reject unknown fields.
func (s *Server) Handler() http.Handler {
	s.muxOnce.Do(func() {
		opts := connect.WithHandlerOptions(s.HandlerOptions()...)
		errw := connect.NewErrorWriter(opts)
		s.auth = &authenticator{fsm: s.fsm, now: s.now, errors: errw}
		s.limit = func(path string, h http.Handler) (string, http.Handler) {
			return path, limitBody(h, int64(s.cfg.MaxRequestBytes), errw)
		}
		s.mux = http.NewServeMux()
		s.mux.Handle(s.auth.wrap(s.limit(weftv1connect.NewLoadBalancerServiceHandler(&lbService{s}, opts))))
		s.mux.Handle(s.auth.wrap(s.limit(weftv1connect.NewClusterServiceHandler(&clusterService{s}, opts))))
		s.mux.Handle(s.auth.wrap(s.limit(weftv1connect.NewStatsServiceHandler(&statsService{s}, opts))))
		services := []string{weftv1connect.LoadBalancerServiceName, weftv1connect.ClusterServiceName, weftv1connect.StatsServiceName}
		s.mux.Handle(s.limit(grpchealth.NewHandler(grpchealth.NewStaticChecker(services...), opts)))
		reflector := grpcreflect.NewStaticReflector(services...)
		s.mux.Handle(s.limit(grpcreflect.NewHandlerV1(reflector, opts)))
		s.mux.Handle(s.limit(grpcreflect.NewHandlerV1Alpha(reflector, opts)))
	})
	return s.mux
}

// HandlerOptions are what every service on the API is built with: codecs
// that refuse unknown fields and the request size limit.
func (s *Server) HandlerOptions() []connect.HandlerOption {
	return append(strictCodecs(), connect.WithReadMaxBytes(s.cfg.MaxRequestBytes))
}

// Mount serves another subsystem's service, built with HandlerOptions, at
// path on the API, behind the same authentication; it may be called once
// the API is serving. Its bodies are not capped as a whole, as the API's
// are: its callers stream (flow sync), and HandlerOptions limits each
// message.
func (s *Server) Mount(path string, h http.Handler) {
	s.Handler()
	s.mux.Handle(s.auth.wrap(path, h))
}

// MountFiles serves h at path on the API to GET and HEAD requests without
// authentication: files that hold no data, such as the web console's, which
// a browser loads before it has a token.
func (s *Server) MountFiles(path string, h http.Handler) {
	s.Handler()
	s.mux.Handle(http.MethodGet+" "+path, h)
}

// MountForViewers serves h at path on the API to POST requests of any
// authenticated caller (role viewer and up), with the API's body limit: for
// helpers that read nothing from the state, such as the console's YAML
// conversions.
func (s *Server) MountForViewers(path string, h http.Handler) {
	s.Handler()
	viewer := func(string) tokens.Role { return tokens.RoleViewer }
	pattern, limited := s.limit(http.MethodPost+" "+path, h)
	s.mux.Handle(s.auth.wrapRole(pattern, viewer, limited))
}

// limitBody refuses a request whose declared length is over the limit
// before reading any of it, and cuts off a body that grows past it, so that
// connect-go, which reads a too large message to its end to report its size,
// stops within bodySlack of the limit. The cap is on the whole body: the
// only procedure whose caller streams messages is reflection, and its
// requests are small.
func limitBody(h http.Handler, limit int64, errw *connect.ErrorWriter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit+bodySlack {
			refuse(w, r, errw, connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("request body of %d bytes is larger than the limit of %d bytes", r.ContentLength, limit)))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit+bodySlack)
		h.ServeHTTP(w, r)
	})
}

// refuse answers r with err in the caller's protocol without reading its
// body. Over HTTP/1 the connection closes after the answer, or net/http
// would first read up to 256 KiB of the body nobody wants; HTTP/2 resets the
// stream instead.
func refuse(w http.ResponseWriter, r *http.Request, errw *connect.ErrorWriter, err error) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	// A failed write means the caller is gone; there is no one to tell.
	_ = errw.Write(w, r, err)
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
