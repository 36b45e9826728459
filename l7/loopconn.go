package l7

// A client connection on an event loop and the request cycle it runs:
// read a head, pick a member, send, relay the response, answer errors,
// hand off what the loop does not serve.

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// connState is where a client connection is in its request cycle.
type connState uint8

const (
	stIdle  connState = iota // waiting for a request
	stHead                   // reading a request head
	stProxy                  // a request is with its member
	stClose                  // closing once the output is written
)

// framing is how a member's response body ends.
type framing uint8

const (
	frameNone    framing = iota // no body (HEAD, 204, 304)
	frameLength                 // Content-Length
	frameChunked                // chunked, relayed as it is
	frameClose                  // at the member's EOF, relayed chunked
)

// lconn is a client connection on a loop, with the request in flight.
type lconn struct {
	l        *loop
	s        *socket
	fd       int
	remote   string
	in       []byte // unread request bytes
	output          // the response bytes not yet written
	readable bool
	hup      bool // the client closed its side: read until a read returns 0
	state    connState
	served   bool // a request was answered
	deadline time.Time

	req       *http.Request // reqv while a request is in flight
	reqv      http.Request
	url       url.URL
	hdr       http.Header
	vals      []string
	head      int       // bytes of in holding req's head, until its response starts
	rs        *reqState // rsv while a request is in flight
	rsv       reqState
	tried     [maxAttempts]*member
	attempt   int
	fresh     bool // the next member connection must be a new one
	up        *upConn
	w         fastWriter // the response head and its framing
	frame     framing
	remaining int64
	chunks    chunkScanner
	reuse     bool      // the member connection may serve another request
	pipe      *bodyPipe // the body is spliced through it (splice.go)
}

func (c *lconn) event(ev uint32) {
	if ev&inEvents != 0 {
		c.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		// Edge-triggered, the FIN may come in one event with the last
		// bytes: a short read does not mean the socket has nothing left.
		c.hup = true
	}
	if ev&outEvents != 0 {
		c.writable = true
	}
	c.run()
}

// run makes all the progress the connection's readiness allows.
func (c *lconn) run() {
	for {
		if c.sent < len(c.out) && (!c.writable || !c.flush() || c.sent < len(c.out)) {
			return
		}
		var more bool
		switch c.state {
		case stClose:
			c.close()
			return
		case stProxy:
			more = c.proxy()
		default:
			more = c.request()
		}
		if !more {
			return
		}
	}
}

// flush writes pending output; false means the connection is gone.
func (c *lconn) flush() bool {
	if _, err := c.write(c.fd); err != nil {
		c.abort()
		return false
	}
	return true
}

// request reads and starts the next request; false means waiting.
func (c *lconn) request() bool {
	n, bad := checkRequest(c.in, false)
	switch {
	case bad != nil:
		c.reject(bad)
		return true
	case n == 0:
		return c.read()
	}
	head := c.in[:n]
	if !loopHead(head) {
		c.handoff()
		return false
	}
	r := &c.reqv
	if !c.l.heads.parseRequest(head, r, &c.url, c.hdr, &c.vals) {
		c.handoff()
		return false
	}
	r.RemoteAddr = c.remote
	t := c.s.table.Load()
	rt := t.match(r)
	if rt.redirect != nil || rt.up == nil || !direct(r, rt) {
		c.handoff()
		return false
	}
	c.rsv = reqState{t: t, rt: rt, client: c.remote, start: time.Now()}
	rs := &c.rsv
	rs.logged = t.accessLog != nil && t.accessLog.sample()
	if !rs.choose(r, rs.start.UnixNano()) {
		c.handoff() // 503
		return false
	}
	rs.member.st.inflight.Add(1)
	c.req, c.rs, c.head, c.attempt, c.fresh = r, rs, n, 0, false
	c.state = stProxy
	c.w.reset(r)
	return c.send()
}

// read reads client bytes; false means waiting.
func (c *lconn) read() bool {
	if c.state == stIdle && len(c.in) == 0 && c.s.stopping.Load() {
		c.close()
		return false
	}
	if !c.readable {
		return false
	}
	if c.in == nil {
		c.in = c.l.buf()
	}
	if len(c.in) == cap(c.in) {
		// A head larger than the loop reads: net/http has the limits.
		c.handoff()
		return false
	}
	n, err := rawRead(c.fd, c.in[len(c.in):cap(c.in)])
	switch {
	case err == unix.EAGAIN:
		c.readable = false
		return false
	case n == 0 && err == nil:
		// The client closed its side: net/http answers a part of a
		// head with 400 (an unexpected EOF) and then closes too.
		if bad := endVerdict(c.in, true); bad != nil {
			c.reject(bad)
			return true
		}
		c.close()
		return false
	case err != nil:
		c.close()
		return false
	}
	if n < cap(c.in)-len(c.in) && !c.hup {
		c.readable = false // a short read drained the socket
	}
	c.in = c.in[:len(c.in)+n]
	if c.state == stIdle {
		c.state = stHead
		c.deadline = time.Now().Add(c.s.gen.Load().params.header)
	}
	return true
}

// loopHead reports whether the loop serves a valid request head:
// HTTP/1.1 and eligible for the fast path (no body, upgrade or
// expectation).
func loopHead(head []byte) bool {
	line, _, _ := bytes.Cut(head, crlf2[:2])
	return bytes.HasSuffix(line, []byte(" HTTP/1.1")) && eligibleHead(head)
}

// reject answers a head net/http would reject as net/http does, then
// closes the connection.
func (c *lconn) reject(bad *headError) {
	c.l.p.log.Debug("l7 bad request", "client", c.remote, "status", bad.status)
	if !c.invalidPreface(bad) {
		c.out = append(c.out, bad.resp...)
	}
	c.state = stClose
	c.deadline = time.Now().Add(c.s.gen.Load().params.idle)
}

// invalidPreface reports whether bad answers a connection's first line
// on an h2c listener that is neither HTTP (its last word does not start
// with "HTTP/") nor the HTTP/2 preface: an invalid preface, which
// RFC 9113 3.4 answers by closing the connection without a word, as the
// client speaks neither protocol.
func (c *lconn) invalidPreface(bad *headError) bool {
	if c.served || bad != errMalformedVersion || !c.s.gen.Load().params.http2 {
		return false
	}
	line, _, ok := nextLine(c.in, false)
	word := line[bytes.LastIndexByte(line, ' ')+1:]
	return ok && (len(word) < 5 || !asciiFold(word[:5], "HTTP/"))
}

// send puts the request on a member connection.
func (c *lconn) send() bool {
	rs := c.rs
	u, err := c.l.upstream(rs.rt.up.conns, rs.member, c.fresh)
	if err != nil {
		return c.connectFailed(err)
	}
	u.c = c
	c.up = u
	bw := c.l.writer(&u.out)
	writeRequestHead(bw, c.req)
	bw.Flush()
	if u.connecting {
		c.deadline = time.Now().Add(rs.rt.up.key.connect)
		return true
	}
	c.deadline = time.Now().Add(rs.t.timeouts.Response)
	return c.writeUp()
}

// writeUp writes the request to the member.
func (c *lconn) writeUp() bool {
	u := c.up
	if !u.writable {
		return false
	}
	done, err := u.write(u.fd)
	if err != nil {
		return c.memberEOF(err)
	}
	if !done {
		return false
	}
	c.deadline = time.Now().Add(c.rs.t.timeouts.Response)
	return true
}

// proxy moves the exchange with the member along; false means waiting.
func (c *lconn) proxy() bool {
	u := c.up
	if u.connecting {
		if !u.writable {
			return false
		}
		if err := soError(u.fd); err != nil {
			return c.connectFailed(err)
		}
		u.connecting = false
	}
	if len(u.out) > 0 {
		return c.writeUp()
	}
	if c.pipe != nil {
		return c.spliceBody()
	}
	if !u.readable {
		return false
	}
	if u.in == nil {
		u.in = c.l.buf()
	}
	if c.w.headWritten && len(u.in) == 0 && cap(u.in) < bodyBuf && c.longBody() {
		c.l.put(u.in)
		u.in = c.l.bodyBuffer()
	}
	if len(u.in) == cap(u.in) {
		if cap(u.in) >= maxResponseHead {
			return c.fail(http.StatusBadGateway, errors.New("response head too large"))
		}
		u.in = append(make([]byte, 0, 2*cap(u.in)), u.in...)
	}
	n, err := rawRead(u.fd, u.in[len(u.in):cap(u.in)])
	if none, more := c.noBytes(n, err); none {
		return more
	}
	if n < cap(u.in)-len(u.in) {
		u.readable = false
	}
	u.got = true
	u.in = u.in[:len(u.in)+n]
	c.deadline = time.Now().Add(c.rs.t.timeouts.Response)
	if !c.w.headWritten {
		return c.responseHead()
	}
	return c.body()
}

// noBytes handles a member read (or splice) that brought no bytes: none
// is false when it brought some, else more is what proxy returns.
func (c *lconn) noBytes(n int, err error) (none, more bool) {
	switch {
	case err == unix.EAGAIN:
		c.up.readable = false
		return true, false
	case err != nil:
		return true, c.memberEOF(err)
	case n == 0:
		return true, c.memberEOF(io.EOF)
	}
	return false, false
}

// responseHead starts the response once the member's head is in.
func (c *lconn) responseHead() bool {
	u, rs := c.up, c.rs
	end := bytes.Index(u.in, crlf2)
	if end < 0 {
		return true // read more
	}
	resp := &c.l.resp
	if !c.l.heads.parseResponse(u.in[:end+4], resp, c.l.rh, &c.l.rvals) || resp.StatusCode == http.StatusSwitchingProtocols {
		err := errors.New("malformed response head")
		rs.member.failed(err, c.l.p.outlier)
		return c.fail(http.StatusBadGateway, err)
	}
	u.in = u.in[:copy(u.in, u.in[end+4:])]
	if interim(resp.StatusCode) {
		return c.responseHead() // not relayed on this path
	}
	rs.member.outlier(resp.StatusCode < 502 || resp.StatusCode > 504, c.l.p.outlier)
	rs.responded()
	rs.status = resp.StatusCode
	h := c.w.Header()
	rs.responseHeader(h, resp)
	c.frame, c.remaining = frameOf(c.req, resp)
	c.chunks = chunkScanner{}
	c.reuse = !resp.Close && c.frame != frameClose
	c.w.WriteHeader(resp.StatusCode)
	c.answered(false)
	if c.frame == frameNone {
		if len(u.in) > 0 {
			c.reuse = false
		}
		return c.finish()
	}
	return c.body()
}

// longBody reports whether the rest of the response body may not fit the
// member connection's read buffer.
func (c *lconn) longBody() bool {
	return c.frame != frameLength || c.remaining > int64(cap(c.up.in))
}

// frameOf tells how a member's response body ends.
func frameOf(r *http.Request, resp *http.Response) (framing, int64) {
	switch {
	case r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified:
		return frameNone, 0
	case len(resp.TransferEncoding) > 0:
		return frameChunked, 0
	case resp.ContentLength >= 0:
		return frameLength, resp.ContentLength
	}
	return frameClose, 0
}

// answered writes the response head (empty: with Content-Length 0): from
// here on the request is no longer handed off, so its head leaves the
// input.
func (c *lconn) answered(empty bool) {
	bw := c.l.writer(&c.out)
	c.w.bw = bw
	c.w.writeHead(empty)
	bw.Flush()
	c.w.bw = nil
	c.in = c.in[:copy(c.in, c.in[c.head:])]
	c.head = 0
}

// body relays the member's body bytes read so far.
func (c *lconn) body() bool {
	u := c.up
	b := u.in
	done := false
	switch c.frame {
	case frameLength:
		take := min(int64(len(b)), c.remaining)
		c.emit(b[:take])
		c.remaining -= take
		c.reuse = c.reuse && take == int64(len(b))
		done = c.remaining == 0
	case frameChunked:
		n, end, err := c.chunks.scan(b)
		if err != nil {
			c.l.p.log.Debug("l7 member response", "member", c.rs.member.hostport, "err", err)
			c.abort()
			return false
		}
		c.emit(b[:n])
		c.reuse = c.reuse && n == len(b)
		done = end
	case frameClose:
		c.emit(b)
	}
	u.in = u.in[:0]
	if done {
		return c.finish()
	}
	c.startSplice()
	return true
}

// emit adds body bytes to the output, as a chunk when the client's
// framing is chunked and the member's is not.
func (c *lconn) emit(b []byte) {
	if len(b) == 0 {
		return
	}
	c.rs.bytes += int64(len(b))
	if c.w.chunked && c.frame != frameChunked {
		c.out = strconv.AppendInt(c.out, int64(len(b)), 16)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, b...)
		c.out = append(c.out, "\r\n"...)
		return
	}
	c.out = append(c.out, b...)
}

// memberEOF handles the member connection ending or failing.
func (c *lconn) memberEOF(err error) bool {
	u := c.up
	switch {
	case !c.w.headWritten && u.reused && !u.got:
		// A kept-alive connection the member had closed: the request
		// had no body, so send it once more on a new connection.
		c.dropUp()
		c.fresh = true
		return c.send()
	case !c.w.headWritten:
		c.rs.member.failed(err, c.l.p.outlier)
		return c.fail(http.StatusBadGateway, err)
	case c.frame == frameClose && err == io.EOF:
		return c.finish()
	}
	// Cut mid-body: the client must not take a short body for a whole one.
	c.l.p.log.Debug("l7 member response", "member", c.rs.member.hostport, "err", err)
	c.abort()
	return false
}

// connectFailed moves a request whose member connection failed to another
// member, or answers 502 (504 on a timeout).
func (c *lconn) connectFailed(err error) bool {
	de := &dialError{err}
	c.rs.member.failed(de, c.l.p.outlier)
	c.dropUp()
	if c.rs.failover(c.req, &c.tried, c.attempt) {
		c.attempt++
		c.fresh = false
		return c.send()
	}
	status := http.StatusBadGateway
	if errors.Is(err, os.ErrDeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	return c.fail(status, de)
}

// fail answers the request with an error status and no body.
func (c *lconn) fail(status int, err error) bool {
	c.l.p.log.Debug("l7 upstream error", "listener", c.rs.t.name, "member", c.rs.member.hostport, "err", err)
	c.dropUp()
	c.rs.status = status
	c.w.WriteHeader(status)
	c.frame = frameNone
	c.answered(true)
	return c.finish()
}

// finish ends the request: stats, the member connection back to the
// pool, the connection ready for the next request or closing.
func (c *lconn) finish() bool {
	if c.w.chunked && c.frame != frameChunked && c.frame != frameNone {
		c.out = append(c.out, "0\r\n\r\n"...)
	}
	c.l.p.record(c.rs, c.req)
	c.rs.member.st.inflight.Add(-1)
	c.dropPipe()
	if u := c.up; u != nil {
		c.up = nil
		u.c = nil
		if c.reuse {
			c.l.putIdle(u)
		} else {
			u.close()
		}
	}
	closing := c.w.closeAfter || c.req.Close || c.s.stopping.Load()
	c.req, c.rs, c.served = nil, nil, true
	params := c.s.gen.Load().params
	switch {
	case closing:
		c.state = stClose
		c.deadline = time.Now().Add(params.idle)
	case len(c.in) > 0:
		c.state = stHead
		c.deadline = time.Now().Add(params.header)
	default:
		c.state = stIdle
		c.deadline = time.Now().Add(params.idle)
		c.l.put(c.in)
		c.in = nil
	}
	return true
}

// expire acts on a passed deadline.
func (c *lconn) expire() {
	switch {
	case c.state == stHead:
		// The header timeout: net/http reads what came as the whole head,
		// answers if that is malformed, and closes.
		if bad := endVerdict(c.in, false); bad != nil {
			c.reject(bad)
			c.run()
			return
		}
		c.close()
	case c.state != stProxy:
		c.close()
	case c.up != nil && c.up.connecting:
		c.connectFailed(os.ErrDeadlineExceeded)
		c.run()
	case !c.w.headWritten:
		c.rs.member.failed(os.ErrDeadlineExceeded, c.l.p.outlier)
		c.fail(http.StatusGatewayTimeout, os.ErrDeadlineExceeded)
		c.run()
	default:
		c.abort()
	}
}

// dropUp closes the member connection of the request.
func (c *lconn) dropUp() {
	if c.up != nil {
		c.up.c = nil
		c.up.close()
		c.up = nil
	}
}

// abort drops the connection mid-request, recording the request as cut.
func (c *lconn) abort() {
	if c.rs != nil {
		c.rs.status = 0
		c.l.p.record(c.rs, c.req)
		c.rs.member.st.inflight.Add(-1)
		c.req, c.rs = nil, nil
	}
	c.dropUp()
	c.close()
}

// release takes the connection out of the loop.
func (c *lconn) release() {
	c.l.forget(c.fd)
	delete(c.l.conns, c)
	c.s.loopConns.Add(-1)
	c.l.put(c.in)
	c.in, c.out = nil, nil
	c.dropPipe()
}

func (c *lconn) close() {
	if c.rs != nil {
		c.abort()
		return
	}
	if c.fd < 0 {
		return // closed or handed off
	}
	c.release()
	rawClose(c.fd)
	c.fd = -1
}

// handoff gives the connection, unread bytes and the current request's
// head included, to the goroutine path.
func (c *lconn) handoff() {
	if c.rs != nil {
		c.rs.member.st.inflight.Add(-1)
		c.req, c.rs = nil, nil
	}
	c.dropUp()
	buffered := bytes.Clone(c.in)
	unix.EpollCtl(c.l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	c.release()
	nc, err := fdConn(c.fd)
	c.fd = -1
	if err != nil {
		c.l.p.log.Warn("l7 handoff", "err", err)
		return
	}
	if len(buffered) > 0 {
		nc = &prefixConn{Conn: nc, r: io.MultiReader(bytes.NewReader(buffered), nc)}
	}
	go c.s.serveFast(nc)
}
