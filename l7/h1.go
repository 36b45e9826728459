package l7

// The direct HTTP/1.1 path: bodyless requests to HTTP/1.1 members, the bulk
// of load-balancer traffic, are written straight onto a pooled member
// connection and the response read back in the handler's goroutine. This
// skips httputil.ReverseProxy's request clone and http.Transport's two
// goroutines and channel hand-offs per connection, which cost more CPU per
// request than the proxying itself. Everything else (bodies, upgrades,
// HTTP/2 members, PROXY protocol, request header rewrites) takes the
// ReverseProxy path.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// h1Conn is one kept-alive connection to a member.
type h1Conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// deadline is the read deadline last set on c; see readDeadline.
	deadline time.Time
	body     clBody // the Body of responses parseHead reads
	// cut makes a wait for the member's response give up at once.
	cut func()
	hdr http.Header // the Header of responses parseHead reads
}

func newH1Conn(c net.Conn) *h1Conn {
	hc := &h1Conn{c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}
	hc.cut = func() { c.SetReadDeadline(time.Unix(1, 0)) }
	return hc
}

// respHead holds the response and field values parseHead reads, in the
// request's state, so that they are not allocations of their own.
type respHead struct {
	resp http.Response
	vals [8]string
}

// headInterners intern the strings of member response heads parseHead
// reads; one is taken per head.
var headInterners = sync.Pool{New: func() any { return new(interner) }}

// parseHead reads a member's response head with a Content-Length body
// from c.br with the event loops' parser (the framing rules are
// http.ReadResponse's, FuzzParseResponse holds them to it), when the head
// is already buffered: most responses, and it skips net/http's generic
// header and transfer machinery. Anything else (no head yet, a head it
// does not take, chunked or unframed bodies, bodyless statuses, HEAD)
// gives nil with nothing read, for http.ReadResponse. The response is
// built in rh.
func (c *h1Conn) parseHead(r *http.Request, rh *respHead) *http.Response {
	if r.Method == http.MethodHead {
		return nil
	}
	buf, _ := c.br.Peek(c.br.Buffered())
	end := bytes.Index(buf, crlf2)
	if end < 0 {
		return nil
	}
	in := headInterners.Get().(*interner)
	defer headInterners.Put(in)
	// Sized for a typical head, so neither grows while it is read. The
	// header map is the connection's: the client's header takes the
	// value slices, not the map, so it serves the next response too,
	// unless a large head grew it.
	if len(c.hdr) > 16 || c.hdr == nil {
		c.hdr = make(http.Header, 8)
	}
	resp, h, vals := &rh.resp, c.hdr, rh.vals[:0]
	if !in.parseResponse(buf[:end+4], resp, h, &vals) || resp.ContentLength < 0 ||
		resp.StatusCode < 200 || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	c.br.Discard(end + 4)
	c.body = clBody{br: c.br, n: resp.ContentLength}
	resp.Body = &c.body
	if resp.ContentLength == 0 {
		resp.Body = http.NoBody
	}
	return resp
}

// clBody reads a Content-Length body: a member that ends it short gives
// io.ErrUnexpectedEOF, as net/http's body does, so it is not taken for a
// whole one.
type clBody struct {
	br *bufio.Reader
	n  int64 // bytes left
}

func (b *clBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	switch {
	case b.n == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *clBody) Close() error { return nil }

// readDeadline keeps the member connection's read deadline at least half
// the response timeout away. The timeout is thus the longest wait for the
// member's next bytes (nginx's proxy_read_timeout), and the deadline is
// moved about once per half timeout instead of twice per request: setting
// one costs a runtime timer update.
func (c *h1Conn) readDeadline(now time.Time, timeout time.Duration) {
	if c.deadline.Sub(now) < timeout/2 {
		c.deadline = now.Add(timeout)
		c.c.SetReadDeadline(c.deadline)
	}
}

// connPool holds idle member connections of one transport key, by member.
type connPool struct {
	dialer  net.Dialer
	maxIdle int
	mu      sync.Mutex
	idle    map[string][]*h1Conn
	closed  bool
	waits   waitWatch
}

// waitPoll is how often a waitWatch looks at its clients: the longest a
// member connection is held for a client that left.
const waitPoll = 50 * time.Millisecond

// waitWatch cuts the direct path's waits for member responses whose
// client left (its request's context is done). It polls the contexts
// every waitPoll from a goroutine that runs while a wait is registered:
// context.AfterFunc would stop the wait at once, but costs five
// allocations per request on an HTTP/2 stream's context (its done
// channel and children map, the AfterFunc context and its stop func);
// polling Err costs none.
type waitWatch struct {
	mu      sync.Mutex
	waits   map[*h1Conn]context.Context
	running bool // the poller goroutine
}

func (w *waitWatch) add(c *h1Conn, ctx context.Context) {
	w.mu.Lock()
	if w.waits == nil {
		w.waits = map[*h1Conn]context.Context{}
	}
	w.waits[c] = ctx
	if !w.running {
		w.running = true
		go w.poll()
	}
	w.mu.Unlock()
}

// remove ends c's wait; once it returns, c's wait is not cut.
func (w *waitWatch) remove(c *h1Conn) {
	w.mu.Lock()
	delete(w.waits, c)
	w.mu.Unlock()
}

func (w *waitWatch) poll() {
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	for range t.C {
		w.mu.Lock()
		if len(w.waits) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		for c, ctx := range w.waits {
			if ctx.Err() != nil {
				c.cut()
				delete(w.waits, c)
			}
		}
		w.mu.Unlock()
	}
}

// countIdle adds the pool's idle connections per member to n.
func (cp *connPool) countIdle(pool string, n map[memberKey]int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for addr, cs := range cp.idle {
		n[memberKey{pool, addr}] += len(cs)
	}
}

// idleTimeout is below common member keep-alive timeouts (nginx 75s,
// Apache 5s aside) so the member rarely closes a connection we reuse.
const idleTimeout = 30 * time.Second

func newConnPool(k transportKey, maxIdle int) *connPool {
	return &connPool{dialer: net.Dialer{Timeout: k.connect, KeepAlive: 30 * time.Second},
		maxIdle: maxIdle, idle: map[string][]*h1Conn{}}
}

// get returns an idle connection to addr, or nil.
func (cp *connPool) get(addr string, now time.Time) *h1Conn {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for {
		l := cp.idle[addr]
		if len(l) == 0 {
			return nil
		}
		c := l[len(l)-1]
		l[len(l)-1] = nil
		cp.idle[addr] = l[:len(l)-1]
		if now.Sub(c.idleAt) < idleTimeout {
			return c
		}
		c.c.Close()
	}
}

func (cp *connPool) put(addr string, c *h1Conn) {
	c.idleAt = time.Now()
	cp.mu.Lock()
	if cp.closed || len(cp.idle[addr]) >= cp.maxIdle {
		cp.mu.Unlock()
		c.c.Close()
		return
	}
	cp.idle[addr] = append(cp.idle[addr], c)
	cp.mu.Unlock()
}

func (cp *connPool) dial(ctx context.Context, addr string) (*h1Conn, error) {
	c, err := cp.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return newH1Conn(c), nil
}

func (cp *connPool) isClosed() bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.closed
}

// closeIdle closes the idle connections; with final, later puts close too.
func (cp *connPool) closeIdle(final bool) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.closed = cp.closed || final
	for addr, l := range cp.idle {
		for _, c := range l {
			c.c.Close()
		}
		delete(cp.idle, addr)
	}
}

// direct reports whether a request can take the direct path. A request
// without a body has ContentLength 0 on every protocol; an HTTP/2
// request's Body is never http.NoBody (its stream may end on its HEADERS
// frame), but ContentLength is -1 unless the body is empty or its length
// declared.
func direct(r *http.Request, rt *route) bool {
	up := rt.up
	return (up.key.protocol == "" || up.key.protocol == ProtoHTTP1) && !up.key.proxyProtocol &&
		r.ContentLength == 0 && (r.Body == nil || r.Body == http.NoBody || r.ProtoMajor == 2) &&
		len(r.Header["Upgrade"]) == 0 && len(r.Header["Expect"]) == 0 && rt.reqHdr.empty() &&
		r.Method != http.MethodConnect
}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 and
// those ReverseProxy also drops; X-Forwarded-* are replaced by ours.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "Forwarded": true,
}

var errStale = errors.New("kept-alive member connection closed before responding")

// serveDirect proxies a bodyless request on the direct path.
func (p *Proxy) serveDirect(w http.ResponseWriter, r *http.Request, rs *reqState) {
	cp := rs.rt.up.conns
	var tried [maxAttempts]*member
	attempt := 0
	for {
		m := rs.member
		resp, c, err := p.exchange(r, rs, cp, m)
		if err == nil {
			rs.responded()
			m.outlier(resp.StatusCode < 502 || resp.StatusCode > 504, p.outlier)
			p.relay(w, r, rs, resp, c, cp, m)
			return
		}
		if r.Context().Err() != nil {
			rs.status = 0
			return
		}
		m.failed(err, p.outlier)
		var de *dialError
		if errors.As(err, &de) && rs.failover(r, &tried, attempt) {
			attempt++
			continue
		}
		p.errorHandler(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, rs)), err)
		return
	}
}

// exchange sends the request head on a pooled (or new) connection and reads
// the response head. A pooled connection the member closed meanwhile is
// retried once on a new connection: the request had no body, so it was not
// half-sent.
func (p *Proxy) exchange(r *http.Request, rs *reqState, cp *connPool, m *member) (*http.Response, *h1Conn, error) {
	now := time.Now()
	c := cp.get(m.hostport, now)
	for {
		reused := c != nil
		if !reused {
			var err error
			if c, err = cp.dial(r.Context(), m.hostport); err != nil {
				return nil, nil, err
			}
		}
		resp, err := p.roundTripDirect(r, rs, cp, c)
		if err == nil {
			return resp, c, nil
		}
		c.c.Close()
		if !reused || !errors.Is(err, errStale) {
			return nil, nil, err
		}
		c = nil
	}
}

func (p *Proxy) roundTripDirect(r *http.Request, rs *reqState, cp *connPool, c *h1Conn) (*http.Response, error) {
	writeRequestHead(c.bw, r)
	if err := c.bw.Flush(); err != nil {
		return nil, errStale
	}
	c.readDeadline(time.Now(), rs.t.timeouts.Response)
	// A client that leaves cuts the wait for the member.
	cp.waits.add(c, r.Context())
	defer cp.waits.remove(c)
	for {
		if _, err := c.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return nil, errStale
			}
			return nil, err
		}
		resp := c.parseHead(r, &rs.head)
		if resp == nil {
			var err error
			if resp, err = http.ReadResponse(c.br, r); err != nil {
				return nil, err
			}
		}
		if interim(resp.StatusCode) {
			continue // interim responses (103) are not relayed on this path
		}
		return resp, nil
	}
}

// interim reports a 1xx status other than 101.
func interim(code int) bool {
	return code >= 100 && code < 200 && code != http.StatusSwitchingProtocols
}

// writeRequestHead writes the head of a bodyless request to a member:
// the client's headers without hop-by-hop ones, and ours X-Forwarded-*.
func writeRequestHead(bw *bufio.Writer, r *http.Request) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	var conn []string
	if v := r.Header["Connection"]; len(v) > 0 {
		conn = v
	}
	for k, vs := range r.Header {
		if hopHeaders[k] || named(conn, k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
		bw.WriteString(strings.Join(prior, ", "))
		bw.WriteString(", ")
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	bw.WriteString(host)
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(r.Host)
	if r.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read" && strings.Contains(oe.Err.Error(), "reset")
}

// named reports whether header k is listed in Connection values.
func named(conn []string, k string) bool {
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), k) { // names are case-insensitive
				return true
			}
		}
	}
	return false
}

// responseHeader fills h, the client's response header, from a member's
// response: its headers without hop-by-hop ones, the route's rewrites and
// the sticky cookie pinning the client to rs.member.
func (rs *reqState) responseHeader(h http.Header, resp *http.Response) {
	conn := resp.Header["Connection"]
	for k, vs := range resp.Header {
		if k == "Connection" || k == "Keep-Alive" || k == "Transfer-Encoding" || k == "Trailer" ||
			k == "Upgrade" || k == "Proxy-Connection" || named(conn, k) {
			continue
		}
		h[k] = vs
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	if !rs.rt.respHdr.empty() {
		rs.rt.respHdr.apply(h)
	}
	if s := rs.t.sticky; s != nil && rs.cookieID != rs.member.stickyID {
		h.Add("Set-Cookie", setCookie(s, rs.member.stickyID, rs.t.tls != nil))
	}
}

// relay writes the member's response to the client and returns the
// connection to the pool when the response ended cleanly.
func (p *Proxy) relay(w http.ResponseWriter, r *http.Request, rs *reqState, resp *http.Response, c *h1Conn, cp *connPool, m *member) {
	h := w.Header()
	rs.responseHeader(h, resp)
	rs.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	bp := p.rp.BufferPool.(*bufferPool)
	bufp := bp.take()
	defer bp.give(bufp)
	buf := *bufp
	var rc *http.ResponseController
	if resp.ContentLength < 0 {
		rc = http.NewResponseController(w)
	}
	timeout := rs.t.timeouts.Response
	for {
		c.readDeadline(time.Now(), timeout)
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				c.c.Close()
				panic(http.ErrAbortHandler)
			}
			if rc != nil {
				// Streams of unknown length (SSE, long polls) go out as
				// they come, as ReverseProxy does.
				rc.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// The member failed mid-response: abort the client's
			// connection or stream so it cannot take a short body for a
			// whole one.
			c.c.Close()
			rs.status = 0
			panic(http.ErrAbortHandler)
		}
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
	if resp.Close || r.Context().Err() != nil {
		c.c.Close()
		return
	}
	cp.put(m.hostport, c)
}
