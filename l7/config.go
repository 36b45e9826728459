package l7

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/netip"
	"time"
)

// Config is the whole desired L7 state of one node. Apply makes the running
// proxy match it; nothing in it is a delta.
type Config struct {
	// Listeners are the http and https listeners of every load balancer.
	Listeners []Listener
	// Pools are the member sets routes refer to, by pool name.
	Pools map[string]Pool
	// Certificates are the parsed Certificate resources, by name.
	Certificates map[string]tls.Certificate
	// TicketKeys are the cluster-wide TLS session-ticket keys, newest first:
	// the first issues tickets, all of them decrypt. Empty means each
	// listener generates and rotates its own keys (no cross-node resumption).
	TicketKeys [][32]byte
	// CookieKey is the cluster key that signs sticky cookies; it must be the
	// same on every node for a client to keep its member across nodes.
	CookieKey []byte
}

// Listener is one http or https port of a load balancer.
type Listener struct {
	// Name identifies the listener in stats and logs; unique in a Config.
	Name string
	// Addr is VIP:port; the VIP need not be configured on any interface.
	Addr netip.AddrPort
	// TLS terminates TLS with Certificates, chosen by SNI.
	TLS          bool
	Certificates []string
	// HTTP2 serves HTTP/2: by ALPN with TLS, by prior knowledge (h2c) without.
	HTTP2 bool
	// HTTP3 also serves HTTP/3 over QUIC on UDP at the same address (TLS
	// listeners only), with the same certificates, routes and pools, and
	// advertises it in an Alt-Svc header on the TCP side's responses.
	HTTP3 bool
	// Routes are tried in order; the first match wins.
	Routes []Route
	// DefaultPool serves requests no route matches; empty means 404.
	DefaultPool string
	// Sticky inserts a signed cookie naming the member; nil disables it.
	Sticky   *Sticky
	Timeouts Timeouts
	Limits   Limits
	// AccessLog logs the listener's requests to Options.AccessLog; nil
	// logs none.
	AccessLog *AccessLog
}

// AccessLog is a listener's access log.
type AccessLog struct {
	// SampleRate is the share of requests logged, 0..1.
	SampleRate float64
}

// Route sends requests that match every set condition to a pool, or
// redirects them.
type Route struct {
	// Name identifies the route in stats; defaults to its index.
	Name string
	// Host is an exact host name or a "*." wildcard matching one or more
	// leading labels; empty matches any host.
	Host       string
	PathExact  string
	PathPrefix string
	// Header matches when the request has this header with this value
	// (any value when Value is empty).
	Header *HeaderMatch
	// Pool receives matching requests; exactly one of Pool and Redirect.
	Pool     string
	Redirect *Redirect
	// RequestHeaders and ResponseHeaders rewrite headers on the way to the
	// member and back to the client (a rule's request_headers and
	// response_headers).
	RequestHeaders  HeaderRewrite
	ResponseHeaders HeaderRewrite
}

// HeaderMatch is a header condition of a route.
type HeaderMatch struct {
	Name  string
	Value string
}

// Redirect answers with a redirect instead of proxying.
type Redirect struct {
	// Scheme, Host and Port replace the request's when set.
	Scheme string
	Host   string
	Port   uint16
	// Code is 301, 302, 303, 307 or 308; 0 means 302.
	Code int
}

// HeaderRewrite edits a header set: Remove first, then Set, then Add.
type HeaderRewrite struct {
	Remove []string
	Set    map[string]string
	Add    map[string]string
}

// Sticky is cookie-based session persistence.
type Sticky struct {
	// CookieName defaults to "weft_sticky".
	CookieName string
	// TTL is the cookie's Max-Age; 0 makes it a session cookie.
	TTL time.Duration
}

// Timeouts bound each phase of a request; zero takes the default.
type Timeouts struct {
	// Header bounds reading a request's headers (slowloris). Default 10s.
	Header time.Duration
	// Idle bounds a client connection waiting for its next request. Default 60s.
	Idle time.Duration
	// Connect bounds dialling a member. Default 5s.
	Connect time.Duration
	// Response bounds waiting for a member's response headers. Default 60s.
	Response time.Duration
}

// Limits bound what a client may send; zero takes the default.
type Limits struct {
	// MaxHeaderBytes bounds the request line and headers. Default 64 KiB;
	// larger requests get 431.
	MaxHeaderBytes int
	// MaxBodyBytes bounds request bodies; 0 means unlimited. Larger
	// requests get 413.
	MaxBodyBytes int64
}

// Pool algorithms.
const (
	RoundRobin   = "round-robin"
	LeastRequest = "least-request"
	HashClientIP = "hash-client-ip"
	HashHeader   = "hash-header"
	HashCookie   = "hash-cookie"
)

// Upstream protocols of a pool.
const (
	// ProtoHTTP1 speaks HTTP/1.1 with keep-alive to members (default).
	ProtoHTTP1 = "http1"
	// ProtoH2C speaks HTTP/2 with prior knowledge to members (gRPC).
	ProtoH2C = "h2c"
	// ProtoH2 speaks HTTP/2 (or HTTP/1.1 by ALPN) over TLS to members.
	ProtoH2 = "h2"
)

// Pool is a set of members and how requests are spread over them.
type Pool struct {
	// Algorithm is one of the constants above; empty means round-robin.
	Algorithm string
	// HashKey names the header or cookie of hash-header and hash-cookie.
	HashKey string
	Members []Member
	// Protocol is ProtoHTTP1 (default), ProtoH2C or ProtoH2.
	Protocol string
	// TLSInsecure skips verification of members' certificates (ProtoH2).
	TLSInsecure bool
	// ProxyProtocol sends a PROXY protocol v2 header on each connection to a
	// member. Such connections carry one client's requests only.
	ProxyProtocol bool
}

// Member is one real server of a pool.
type Member struct {
	Addr netip.AddrPort
	// Weight is relative; 0 takes no new requests.
	Weight uint32
	// Healthy is the agreed health view; unhealthy members get no requests.
	Healthy bool
	// Drain stops new requests and new sticky sessions; sticky clients
	// already on the member keep it.
	Drain bool
}

// Options are the node-local settings of a Proxy, fixed for its lifetime.
type Options struct {
	// AccessLog gets a JSON line per logged request of the listeners with
	// an AccessLog, buffered and written out at least every second; nil
	// logs nothing.
	AccessLog io.Writer
	// Log gets errors and lifecycle events; nil means slog.Default().
	Log *slog.Logger
	// DrainTimeout bounds Close's wait for in-flight requests. Default 10s.
	DrainTimeout time.Duration
	// Outlier tunes passive outlier ejection; zero takes the defaults.
	Outlier Outlier
	// MaxIdleConnsPerMember is the upstream keep-alive pool size per member.
	// Default 256.
	MaxIdleConnsPerMember int
	// QUICServerID is the node's id in the QUIC connection IDs it issues
	// (see quiccid.go), by which a load balancer in front can route a
	// migrated connection back to this node. Unique among the nodes
	// serving the same VIPs.
	QUICServerID uint16
}

// Outlier is passive outlier ejection: a member whose connections keep
// failing is taken out for a while, next to the active health checks.
type Outlier struct {
	// ConsecutiveFailures ejects a member after this many connect failures
	// or 502/503/504 in a row. Default 5.
	ConsecutiveFailures int
	// EjectFor is how long an ejected member gets no requests. Default 10s.
	EjectFor time.Duration
}
