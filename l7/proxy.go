// Package l7 is Weft's HTTP load balancer: HTTP/1.1, HTTP/2 (TLS and h2c),
// WebSocket and gRPC reverse proxying with TLS termination, routing,
// balancing and signed sticky sessions. See README.md.
package l7

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// Proxy serves the listeners of a Config. Its methods are safe for
// concurrent use.
type Proxy struct {
	opts    Options
	log     *slog.Logger
	access  *accessLog // nil without Options.AccessLog
	outlier Outlier
	rp      *httputil.ReverseProxy

	// hardCtx is the base of every request context; cancelling it at the
	// end of Close's drain cuts upgraded connections and long streams,
	// which http.Server.Shutdown does not track.
	hardCtx    context.Context
	hardCancel context.CancelFunc

	mu           sync.Mutex // serialises Apply, Close and Stats
	closed       bool
	sockets      map[netip.AddrPort]*socket
	gens         map[*serverGen]struct{} // live and retiring servers
	transports   map[transportKey]*backendConns
	pools        map[string]*pool
	tables       []*table
	loops        []*loop // started by the first Apply
	memberStates map[memberKey]*memberState
	routeStats   map[[2]string]*counters
	lnStats      map[string]*listenerCounters
	signers      map[*rsa.PrivateKey]crypto.Signer // RSA keys' signers (tls.go)
}

type memberKey struct{ pool, addr string }

// backendConns are the upstream connections of one transport key: the
// direct HTTP/1.1 path's pool and the http.Transport of the ReverseProxy
// path.
type backendConns struct {
	std *http.Transport
	h1  *connPool
}

// transportKey selects an upstream transport: one connection pool per pool
// and per set of upstream timeouts.
type transportKey struct {
	pool          string
	protocol      string
	insecure      bool
	proxyProtocol bool
	connect       time.Duration
	response      time.Duration
}

// socket is one bound VIP:port. It outlives config changes that keep its
// address; its table and server generation are swapped under it.
type socket struct {
	p    *Proxy
	addr netip.AddrPort
	ln   net.Listener
	lfd  int // ln's descriptor, which the event loops accept on
	// unlistened is set before the loops stop accepting on lfd, whose
	// number may be reused once ln is closed.
	unlistened atomic.Bool
	// acceptStop ends a TLS socket's accept loop, which closes acceptDone;
	// both nil while the event loops accept. Under Proxy.mu.
	acceptStop, acceptDone chan struct{}
	table                  atomic.Pointer[table]
	gen                    atomic.Pointer[serverGen]
	params                 serverParams
	// h3 serves HTTP/3 on the UDP port of addr; nil when the listener
	// has no HTTP3. Under Proxy.mu.
	h3 *h3Server

	// Connections on the event loops (loop.go) and on the fast HTTP/1.1
	// loop (fast.go), which http.Server does not track.
	loopConns atomic.Int64
	// srvConns are the connections handed to its http.Server
	// generations, until closed (hijacked ones included).
	srvConns atomic.Int64
	fmu      sync.Mutex
	fast     map[*fastConn]struct{}
	stopping atomic.Bool
}

// serverParams are the settings fixed in an http.Server; changing one
// starts a new server generation on the same socket.
type serverParams struct {
	tls, http2 bool
	header     time.Duration
	idle       time.Duration
	maxHeader  int
}

type serverGen struct {
	srv    *http.Server
	cl     *chanListener
	params serverParams
}

// reqState travels in the request context from the handler to the
// reverse proxy's hooks and the round tripper.
type reqState struct {
	t        *table
	rt       *route
	member   *member
	cookieID string
	client   string // RemoteAddr, for the PROXY protocol header
	status   int
	start    time.Time
	// logged is set for a request the access log samples; upstreamTime
	// (start to the member's response head) is then measured, and its
	// body bytes counted: by the event loop in bytes, on the other paths
	// by cw, which the handler writes through.
	logged       bool
	upstreamTime time.Duration
	bytes        int64
	cw           countingWriter
	head         respHead // the direct path's member response
}

type stateKey struct{}

// New returns a Proxy serving nothing until Apply.
func New(opts Options) *Proxy {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.MaxIdleConnsPerMember == 0 {
		opts.MaxIdleConnsPerMember = 256
	}
	p := &Proxy{
		opts:         opts,
		log:          opts.Log,
		outlier:      opts.Outlier,
		sockets:      map[netip.AddrPort]*socket{},
		gens:         map[*serverGen]struct{}{},
		transports:   map[transportKey]*backendConns{},
		memberStates: map[memberKey]*memberState{},
		routeStats:   map[[2]string]*counters{},
		lnStats:      map[string]*listenerCounters{},
	}
	if p.outlier.ConsecutiveFailures == 0 {
		p.outlier.ConsecutiveFailures = 5
	}
	if p.outlier.EjectFor == 0 {
		p.outlier.EjectFor = 10 * time.Second
	}
	if opts.AccessLog != nil {
		p.access = newAccessLog(opts.AccessLog, opts.Log)
	}
	p.hardCtx, p.hardCancel = context.WithCancel(context.Background())
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      roundTripper{p},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		BufferPool:     newBufferPool(),
		ErrorLog:       slog.NewLogLogger(opts.Log.Handler(), slog.LevelDebug),
	}
	return p
}

// errClosed is returned by Apply after Close.
var errClosed = errors.New("l7 proxy is closed")

// Apply makes the proxy serve cfg. It compiles and checks the whole config
// first and changes nothing if that fails; then it binds new listeners,
// publishes each listener's new table with one atomic store, and retires
// listeners that are gone. Unchanged listeners keep their sockets, and
// requests, HTTP/2 streams and WebSockets in flight are not cut.
func (p *Proxy) Apply(ctx context.Context, cfg Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosed
	}
	c := compiler{
		p:            p,
		cfg:          &cfg,
		pools:        map[string]*pool{},
		transports:   map[transportKey]*backendConns{},
		memberStates: map[memberKey]*memberState{},
		routeStats:   map[[2]string]*counters{},
		lnStats:      map[string]*listenerCounters{},
		signers:      map[*rsa.PrivateKey]crypto.Signer{},
	}
	tables, params, err := c.compile()
	if err != nil {
		return err
	}
	if p.loops == nil {
		if err := p.startLoops(); err != nil {
			return err
		}
	}

	// Bind what is new before touching anything, so a failed bind leaves
	// the running config whole.
	sockets := map[netip.AddrPort]*socket{}
	var bound []*socket
	for i, l := range cfg.Listeners {
		if s, ok := p.sockets[l.Addr]; ok {
			sockets[l.Addr] = s
			continue
		}
		ln, err := listen(ctx, l.Addr)
		if err != nil {
			for _, s := range bound {
				s.ln.Close()
			}
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		s := &socket{p: p, addr: l.Addr, ln: ln, fast: map[*fastConn]struct{}{}}
		sockets[l.Addr] = s
		bound = append(bound, s)
		// Nothing accepts on it before it is listening on the loops.
		s.table.Store(tables[i])
		s.params = params[i]
		s.gen.Store(p.startGen(s))
	}
	h3s, err := p.bindH3(ctx, cfg.Listeners, tables, sockets)
	if err == nil {
		if err = p.listen(bound); err != nil {
			for _, h := range h3s {
				h.close()
			}
		}
	}
	if err != nil {
		for _, s := range bound {
			p.retire(s.gen.Load())
			s.ln.Close()
		}
		return err
	}

	for i, l := range cfg.Listeners {
		s := sockets[l.Addr]
		s.table.Store(tables[i])
		if h := h3s[l.Addr]; h != nil {
			s.h3 = h
			h.start(p, l.Addr)
		} else if !l.HTTP3 {
			p.stopH3(s)
		}
		if old := s.gen.Load(); old == nil || s.params != params[i] {
			wasTLS := s.params.tls
			s.params = params[i]
			s.gen.Store(p.startGen(s))
			if old != nil {
				p.retire(old)
			}
			if wasTLS != s.params.tls {
				if err := p.acceptOn(s); err != nil {
					p.log.Error("l7 accept", "addr", s.addr, "err", err)
				}
			}
		}
	}
	for addr, s := range p.sockets {
		if _, ok := sockets[addr]; !ok {
			p.unlisten(s)
			s.ln.Close()
			p.retire(s.gen.Load())
			p.stopH3(s)
			s.stopFast()
		}
	}
	for k, tr := range p.transports {
		if _, ok := c.transports[k]; !ok {
			// Requests still using it finish; its idle connections go now.
			tr.std.CloseIdleConnections()
			tr.h1.closeIdle(true)
			for _, l := range p.loops {
				l.do(func() { l.dropPool(tr.h1) })
			}
		}
	}
	p.sockets = sockets
	p.transports = c.transports
	p.pools = c.pools
	p.tables = tables
	p.memberStates = c.memberStates
	p.routeStats = c.routeStats
	p.lnStats = c.lnStats
	p.signers = c.signers
	return nil
}

// compiler builds the immutable tables of one Apply, reusing the state
// (member counters, ejections, transports) of what did not change.
type compiler struct {
	p            *Proxy
	cfg          *Config
	pools        map[string]*pool
	transports   map[transportKey]*backendConns
	memberStates map[memberKey]*memberState
	routeStats   map[[2]string]*counters
	lnStats      map[string]*listenerCounters
	signers      map[*rsa.PrivateKey]crypto.Signer
}

func (c *compiler) compile() ([]*table, []serverParams, error) {
	for name, pc := range c.cfg.Pools {
		pl, err := c.pool(name, pc)
		if err != nil {
			return nil, nil, err
		}
		c.pools[name] = pl
	}
	names := map[string]bool{}
	addrs := map[netip.AddrPort]bool{}
	tables := make([]*table, len(c.cfg.Listeners))
	params := make([]serverParams, len(c.cfg.Listeners))
	for i, l := range c.cfg.Listeners {
		if l.Name == "" {
			return nil, nil, fmt.Errorf("listener %d: no name", i)
		}
		if names[l.Name] {
			return nil, nil, fmt.Errorf("listener %q: duplicate name", l.Name)
		}
		names[l.Name] = true
		if !l.Addr.IsValid() || l.Addr.Port() == 0 {
			return nil, nil, fmt.Errorf("listener %q: address %s is not a valid address and port", l.Name, l.Addr)
		}
		if addrs[l.Addr] {
			return nil, nil, fmt.Errorf("listener %q: address %s is used by another listener", l.Name, l.Addr)
		}
		addrs[l.Addr] = true
		if l.HTTP3 && !l.TLS {
			return nil, nil, fmt.Errorf("listener %q: http3 needs tls: QUIC always encrypts", l.Name)
		}
		t, err := c.table(l)
		if err != nil {
			return nil, nil, err
		}
		tables[i] = t
		params[i] = serverParams{tls: l.TLS, http2: l.HTTP2, header: t.timeouts.Header,
			idle: t.timeouts.Idle, maxHeader: t.limits.MaxHeaderBytes}
	}
	return tables, params, nil
}

func (c *compiler) pool(name string, pc Pool) (*pool, error) {
	pl := &pool{name: name, byID: map[string]*member{}}
	seen := map[netip.AddrPort]bool{}
	for i, mc := range pc.Members {
		if !mc.Addr.IsValid() || mc.Addr.Port() == 0 {
			return nil, fmt.Errorf("pool %q: member %d: address %s is not a valid address and port", name, i, mc.Addr)
		}
		if seen[mc.Addr] {
			return nil, fmt.Errorf("pool %q: member %s is listed twice", name, mc.Addr)
		}
		seen[mc.Addr] = true
		m := &member{addr: mc.Addr, hostport: mc.Addr.String(), weight: mc.Weight, healthy: mc.Healthy, drain: mc.Drain}
		k := memberKey{name, m.hostport}
		m.st = c.p.memberStates[k]
		if m.st == nil {
			m.st = &memberState{stats: new(counters)}
		}
		c.memberStates[k] = m.st
		if len(c.cfg.CookieKey) > 0 {
			m.stickyID = stickyID(c.cfg.CookieKey, name, m)
			pl.byID[m.stickyID] = m
		}
		pl.members = append(pl.members, m)
	}
	switch pc.Algorithm {
	case "", RoundRobin:
		pl.bal = newRoundRobin(pl.members)
	case LeastRequest:
		pl.bal = newLeastRequest(pl.members)
	case HashClientIP:
		pl.bal = newHashRing(pl.members, clientIPKey)
	case HashHeader, HashCookie:
		if pc.HashKey == "" {
			return nil, fmt.Errorf("pool %q: algorithm %s needs a hash key", name, pc.Algorithm)
		}
		key := headerKey(http.CanonicalHeaderKey(pc.HashKey))
		if pc.Algorithm == HashCookie {
			key = cookieKey(pc.HashKey)
		}
		pl.bal = newHashRing(pl.members, key)
	default:
		return nil, fmt.Errorf("pool %q: unknown algorithm %q", name, pc.Algorithm)
	}
	switch pc.Protocol {
	case "", ProtoHTTP1, ProtoH2C, ProtoH2:
	default:
		return nil, fmt.Errorf("pool %q: unknown protocol %q", name, pc.Protocol)
	}
	return pl, nil
}

func (c *compiler) table(l Listener) (*table, error) {
	t := &table{name: l.Name, scheme: "http"}
	t.timeouts, t.limits = withDefaults(l.Timeouts, l.Limits)
	if l.TLS {
		t.scheme = "https"
		tc, err := serverTLS(l, c.cfg, c.signer)
		if err != nil {
			return nil, err
		}
		t.tls = tc
		if l.HTTP3 {
			t.tls3 = tc.Clone()
			t.tls3.MinVersion = tls.VersionTLS13
			t.tls3.NextProtos = []string{http3.NextProtoH3}
			t.altSvc = []string{fmt.Sprintf(`h3=":%d"; ma=%d`, l.Addr.Port(), altSvcMaxAge)}
		}
	}
	if l.Sticky != nil {
		if len(c.cfg.CookieKey) == 0 {
			return nil, fmt.Errorf("listener %q: sticky sessions need a cookie key", l.Name)
		}
		s := *l.Sticky
		if s.CookieName == "" {
			s.CookieName = DefaultCookieName
		}
		t.sticky = &s
	}
	if l.AccessLog != nil && c.p.access != nil {
		t.accessLog = newSampler(l.AccessLog.SampleRate)
	}
	t.stats = c.p.lnStats[l.Name]
	if t.stats == nil {
		t.stats = new(listenerCounters)
	}
	c.lnStats[l.Name] = t.stats
	if t.tls != nil {
		t.tls.VerifyConnection = t.stats.handshake
	}
	routeNames := map[string]bool{}
	for i, r := range l.Routes {
		rt, err := compileRoute(i, r)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", l.Name, err)
		}
		if routeNames[rt.name] {
			return nil, fmt.Errorf("listener %q: route %q: duplicate name", l.Name, rt.name)
		}
		routeNames[rt.name] = true
		if r.Pool != "" {
			if rt.up, err = c.upstream(l, t, r.Pool); err != nil {
				return nil, fmt.Errorf("listener %q: route %q: %w", l.Name, rt.name, err)
			}
		}
		rt.stats = c.routeCounters(l.Name, rt.name)
		t.routes = append(t.routes, rt)
	}
	t.fallback = &route{name: "none"}
	if l.DefaultPool != "" {
		up, err := c.upstream(l, t, l.DefaultPool)
		if err != nil {
			return nil, fmt.Errorf("listener %q: default pool: %w", l.Name, err)
		}
		t.fallback = &route{name: "default", up: up}
	}
	t.fallback.stats = c.routeCounters(l.Name, t.fallback.name)
	return t, nil
}

func (c *compiler) routeCounters(listener, route string) *counters {
	k := [2]string{listener, route}
	s := c.p.routeStats[k]
	if s == nil {
		s = new(counters)
	}
	c.routeStats[k] = s
	return s
}

func (c *compiler) upstream(l Listener, t *table, name string) (*upstream, error) {
	pl, ok := c.pools[name]
	if !ok {
		return nil, fmt.Errorf("pool %q is not in the config", name)
	}
	pc := c.cfg.Pools[name]
	k := transportKey{pool: name, protocol: pc.Protocol, insecure: pc.TLSInsecure,
		proxyProtocol: pc.ProxyProtocol, connect: t.timeouts.Connect, response: t.timeouts.Response}
	tr := c.transports[k]
	if tr == nil {
		tr = c.p.transports[k]
	}
	if tr == nil {
		tr = &backendConns{std: c.p.newTransport(k), h1: newConnPool(k, c.p.opts.MaxIdleConnsPerMember)}
	}
	c.transports[k] = tr
	return &upstream{pool: pl, transport: tr.std, conns: tr.h1, key: k}, nil
}

// startGen starts a new http.Server on the socket with its current params.
func (p *Proxy) startGen(s *socket) *serverGen {
	cl := newChanListener(s.ln.Addr())
	var ln net.Listener = cl
	if s.params.tls {
		ln = tls.NewListener(cl, &tls.Config{
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return s.table.Load().tls, nil
			},
		})
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	if s.params.http2 {
		if s.params.tls {
			protos.SetHTTP2(true)
		} else {
			protos.SetUnencryptedHTTP2(true)
		}
	}
	g := &serverGen{cl: cl, params: s.params, srv: &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.params.header,
		IdleTimeout:       s.params.idle,
		MaxHeaderBytes:    s.params.maxHeader,
		Protocols:         protos,
		BaseContext:       func(net.Listener) context.Context { return p.hardCtx },
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}}
	if s.params.http2 {
		if err := configureHTTP2(g.srv); err != nil {
			p.log.Error("l7 http2", "addr", s.addr, "err", err)
		}
	}
	p.gens[g] = struct{}{}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("l7 server stopped", "addr", s.addr, "err", err)
		}
	}()
	return g
}

// retire stops a server generation from taking connections and lets its
// connections finish without a deadline: a change that keeps a route must
// not cut its streams. Close bounds what is still running then.
func (p *Proxy) retire(g *serverGen) {
	go func() {
		if err := g.srv.Shutdown(context.Background()); err != nil {
			p.log.Debug("l7 retire server", "err", err)
		}
		p.mu.Lock()
		delete(p.gens, g)
		p.mu.Unlock()
	}()
}

// countedConn is a connection handed to an http.Server, counted in its
// socket's srvConns until it is closed: a WebSocket's or other upgraded
// connection too, which http.Server stops tracking.
type countedConn struct {
	net.Conn
	s    *socket
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.s.srvConns.Add(-1) })
	return c.Conn.Close()
}

// handoff gives a connection to the current http.Server generation.
func (s *socket) handoff(nc net.Conn) {
	s.srvConns.Add(1)
	c := &countedConn{Conn: nc, s: s}
	for {
		g := s.gen.Load()
		if g.cl.offer(c) {
			return
		}
		if s.gen.Load() == g {
			// Retired and not replaced: the socket is closing.
			c.Close()
			return
		}
	}
}

// ServeHTTP serves one request against the socket's current table.
func (s *socket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.table.Load()
	if t.altSvc != nil {
		// Shared and never written through: header edits set new slices,
		// and an Add appends to a full one, which copies it.
		w.Header()["Alt-Svc"] = t.altSvc
	}
	s.p.serve(t, w, r)
}

func (p *Proxy) serve(t *table, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt := t.match(r)
	rs := &reqState{t: t, rt: rt, client: r.RemoteAddr, start: start}
	if t.accessLog != nil && t.accessLog.sample() {
		rs.logged = true
		rs.cw.ResponseWriter = w
		w = &rs.cw
	}
	defer func() {
		if e := recover(); e != nil {
			// The member reset mid-response: net/http aborts the client
			// connection on ErrAbortHandler; record it first.
			rs.status = 0
			p.record(rs, r)
			panic(e)
		}
		p.record(rs, r)
	}()
	switch {
	case rt.redirect != nil:
		rs.status = rt.redirect.Code
		w.Header().Set("Location", rt.redirect.location(r, t.scheme))
		w.WriteHeader(rs.status)
		return
	case rt.up == nil:
		rs.status = http.StatusNotFound
		http.Error(w, "no route", rs.status)
		return
	}
	if max := t.limits.MaxBodyBytes; max > 0 {
		if r.ContentLength > max {
			rs.status = http.StatusRequestEntityTooLarge
			http.Error(w, "request body too large", rs.status)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
	}
	if !rs.choose(r, start.UnixNano()) {
		rs.status = http.StatusServiceUnavailable
		http.Error(w, "no healthy member", rs.status)
		return
	}
	rs.member.st.inflight.Add(1)
	defer func() { rs.member.st.inflight.Add(-1) }()
	if direct(r, rt) {
		p.serveDirect(w, r, rs)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, rs)))
}

// choose sets rs.member: the member a valid sticky cookie names if it
// still takes its clients, else the pool's balancer's pick. False means no
// member can take the request.
func (rs *reqState) choose(r *http.Request, now int64) bool {
	pl := rs.rt.up.pool
	if s := rs.t.sticky; s != nil {
		if ck, err := r.Cookie(s.CookieName); err == nil {
			rs.cookieID = ck.Value
			if m := pl.byID[ck.Value]; m != nil && m.takesSticky(now) {
				rs.member = m
				return true
			}
		}
	}
	var client netip.Addr
	if _, ok := pl.bal.(*hashRing); ok {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			client = ap.Addr().Unmap()
		}
	}
	rs.member = pl.bal.pick(r, client, now)
	return rs.member != nil
}

// record counts a finished request and logs it if it is sampled.
func (p *Proxy) record(rs *reqState, r *http.Request) {
	end := time.Now()
	d := end.Sub(rs.start)
	rs.t.stats.observeRequest(rs.status, r.ProtoMajor, d)
	rs.rt.stats.observe(rs.status, d)
	if rs.member != nil {
		rs.member.st.stats.observe(rs.status, d)
	}
	if rs.logged {
		p.logRequest(rs, r, end, d)
	}
}

// responded notes, for the access log, when the member's response head
// came.
func (rs *reqState) responded() {
	if rs.logged {
		rs.upstreamTime = time.Since(rs.start)
	}
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	rs := pr.In.Context().Value(stateKey{}).(*reqState)
	pr.Out.URL.Scheme = "http"
	if rs.rt.up.key.protocol == ProtoH2 {
		pr.Out.URL.Scheme = "https"
	}
	pr.Out.URL.Host = rs.member.hostport
	// Rewrite starts from a request without X-Forwarded-*; keep the chain
	// of proxies in front of us and append the client.
	if prior, ok := pr.In.Header["X-Forwarded-For"]; ok {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	if !rs.rt.reqHdr.empty() {
		rs.rt.reqHdr.apply(pr.Out.Header)
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	rs := resp.Request.Context().Value(stateKey{}).(*reqState)
	rs.responded()
	rs.status = resp.StatusCode
	if !rs.rt.respHdr.empty() {
		rs.rt.respHdr.apply(resp.Header)
	}
	if s := rs.t.sticky; s != nil && rs.cookieID != rs.member.stickyID {
		resp.Header.Add("Set-Cookie", setCookie(s, rs.member.stickyID, rs.t.tls != nil))
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	rs := r.Context().Value(stateKey{}).(*reqState)
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads a status.
		rs.status = 0
		return
	case errors.As(err, &mbe):
		rs.status = http.StatusRequestEntityTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		rs.status = http.StatusGatewayTimeout
	default:
		rs.status = http.StatusBadGateway
	}
	p.log.Debug("l7 upstream error", "listener", rs.t.name, "member", rs.member.hostport, "err", err)
	w.WriteHeader(rs.status)
}

// roundTripper sends a request to the member the handler picked and, when
// connecting to it fails, retries an idempotent request without a body on
// other members.
type roundTripper struct{ p *Proxy }

// maxAttempts bounds the members one request is sent to.
const maxAttempts = 3

func (rtr roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rtr.p
	rs := req.Context().Value(stateKey{}).(*reqState)
	tr := rs.rt.up.transport
	var tried [maxAttempts]*member
	for attempt := 0; ; attempt++ {
		m := rs.member
		req.URL.Host = m.hostport
		resp, err := tr.RoundTrip(req)
		if err == nil {
			m.outlier(resp.StatusCode < 502 || resp.StatusCode > 504, p.outlier)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		m.failed(err, p.outlier)
		var de *dialError
		if !errors.As(err, &de) || !rs.failover(req, &tried, attempt) {
			return nil, err
		}
	}
}

// failover moves a request whose connection to rs.member failed (its
// attempt-th) to a member not yet tried, moving the in-flight count with
// it. False means the request may not be sent again (not replayable, out
// of attempts) or no member is left.
func (rs *reqState) failover(r *http.Request, tried *[maxAttempts]*member, attempt int) bool {
	if attempt+1 >= maxAttempts || !replayable(r) {
		return false
	}
	tried[attempt] = rs.member
	next := rs.rt.up.pool.pickOther(tried[:attempt+1], time.Now().UnixNano())
	if next == nil {
		return false
	}
	rs.member.st.retries.Add(1)
	rs.member.st.inflight.Add(-1)
	next.st.inflight.Add(1)
	rs.member = next
	return true
}

// replayable reports whether a request may be sent again after a connect
// failure: idempotent and without a body to replay.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// pickOther picks an eligible member not yet tried, from a random start.
func (pl *pool) pickOther(tried []*member, now int64) *member {
	n := len(pl.members)
	if n == 0 {
		return nil
	}
	start := int(now % int64(n))
next:
	for k := range n {
		m := pl.members[(start+k)%n]
		if !m.takesNew(now) {
			continue
		}
		for _, t := range tried {
			if t == m {
				continue next
			}
		}
		return m
	}
	return nil
}

// dialError marks a failure to connect to a member: such a request never
// reached it and may be retried elsewhere.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect to member: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Timeout keeps a connect timeout a timeout (504) through the wrapping.
func (e *dialError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

func (e *dialError) Temporary() bool { return false }

func (p *Proxy) newTransport(k transportKey) *http.Transport {
	d := &net.Dialer{Timeout: k.connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		MaxIdleConnsPerHost:   p.opts.MaxIdleConnsPerMember,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: k.response,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		DisableKeepAlives:     k.proxyProtocol,
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: k.insecure}, //nolint:gosec // per-pool opt-in for self-signed members
		ForceAttemptHTTP2:     k.protocol == ProtoH2,
	}
	if k.protocol == ProtoH2C {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		if k.proxyProtocol {
			if err := writeProxyHeader(ctx, c); err != nil {
				c.Close()
				return nil, &dialError{err}
			}
		}
		return c, nil
	}
	return tr
}

// writeProxyHeader announces the client of the request being dialled for.
// PROXY-protocol transports do not keep connections alive, so every
// connection carries one client's request.
func writeProxyHeader(ctx context.Context, c net.Conn) error {
	rs, _ := ctx.Value(stateKey{}).(*reqState)
	local, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	if rs == nil || local == nil {
		return errors.New("proxy protocol: no client address")
	}
	src, err := netip.ParseAddrPort(rs.client)
	if err != nil {
		return fmt.Errorf("proxy protocol: client address: %w", err)
	}
	dst, err := netip.ParseAddrPort(local.String())
	if err != nil {
		return fmt.Errorf("proxy protocol: local address: %w", err)
	}
	if _, err := c.Write(proxyHeaderV2(src, dst)); err != nil {
		return fmt.Errorf("proxy protocol: write header: %w", err)
	}
	return nil
}

// Close stops accepting, lets requests in flight finish for up to
// Options.DrainTimeout, then closes what is left.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var h3s []*h3Server
	for _, s := range p.sockets {
		p.unlisten(s)
		s.ln.Close()
		if s.h3 != nil {
			h3s = append(h3s, s.h3)
			s.h3 = nil
		}
	}
	gens := make([]*serverGen, 0, len(p.gens))
	for g := range p.gens {
		gens = append(gens, g)
	}
	sockets := p.sockets
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, g := range gens {
		wg.Go(func() { g.srv.Shutdown(ctx) })
	}
	for _, h := range h3s {
		wg.Go(func() { h.shutdown(ctx) })
	}
	wg.Wait()
	for _, s := range sockets {
		s.stopFast()
	}
	for _, s := range sockets {
		s.waitFast(ctx)
	}
	p.hardCancel()
	for _, g := range gens {
		g.srv.Close()
	}
	for _, s := range sockets {
		s.closeFast()
	}
	if p.access != nil {
		p.access.close()
	}
	p.mu.Lock()
	for _, tr := range p.transports {
		tr.std.CloseIdleConnections()
		tr.h1.closeIdle(true)
	}
	p.stopLoops()
	p.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the counters of the current config.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s Stats
	now := time.Now().UnixNano()
	conns := make(map[*table]int64, len(p.sockets))
	for _, sk := range p.sockets {
		sk.fmu.Lock()
		conns[sk.table.Load()] = sk.loopConns.Load() + int64(len(sk.fast)) + sk.srvConns.Load()
		sk.fmu.Unlock()
	}
	for _, t := range p.tables {
		s.Listeners = append(s.Listeners, ListenerStats{Listener: t.name, Connections: conns[t],
			TLSHandshakes: t.stats.tlsFull.Load() + t.stats.tlsResumed.Load(), TLSResumed: t.stats.tlsResumed.Load(),
			WebSocketUpgrades: t.stats.upgrades.Load(), HTTP2Streams: t.stats.h2Streams.Load(),
			Counters: t.stats.snapshot()})
		for _, rt := range append(t.routes[:len(t.routes):len(t.routes)], t.fallback) {
			s.Routes = append(s.Routes, RouteStats{Listener: t.name, Route: rt.name, Counters: rt.stats.snapshot()})
		}
	}
	idle := map[memberKey]int{}
	pools := make(map[*connPool]string, len(p.transports))
	for k, tr := range p.transports {
		tr.h1.countIdle(k.pool, idle)
		pools[tr.h1] = k.pool
	}
	for _, l := range p.loops {
		l.call(func() {
			for k, list := range l.idle {
				if pool, ok := pools[k.cp]; ok {
					idle[memberKey{pool, k.addr}] += len(list)
				}
			}
		})
	}
	for name, pl := range p.pools {
		for _, m := range pl.members {
			s.Members = append(s.Members, MemberStats{
				Pool: name, Addr: m.hostport,
				InFlight:      m.st.inflight.Load(),
				Ejected:       m.st.ejectedUntil.Load() > now,
				IdleConns:     idle[memberKey{name, m.hostport}],
				ConnectErrors: m.st.connectErrors.Load(), ResponseErrors: m.st.responseErrors.Load(),
				Retries:  m.st.retries.Load(),
				Counters: m.st.stats.snapshot(),
			})
		}
	}
	slices.SortFunc(s.Members, func(a, b MemberStats) int {
		return cmp.Or(strings.Compare(a.Pool, b.Pool), strings.Compare(a.Addr, b.Addr))
	})
	return s
}

// bufferPool recycles the reverse proxy's body copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *b.take() }
func (b *bufferPool) Put(x []byte) { b.give(&x) }

// take and give are Get and Put without the allocation Put's interface
// costs (the slice header escapes): for the direct path.
func (b *bufferPool) take() *[]byte  { return b.p.Get().(*[]byte) }
func (b *bufferPool) give(x *[]byte) { b.p.Put(x) }

var _ httputil.BufferPool = (*bufferPool)(nil)
