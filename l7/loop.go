package l7

// The event loop for plain HTTP/1.1. On this kind of machine a system call
// costs about a microsecond, and a goroutine per connection makes two that
// nginx does not: Go reads until EAGAIN before it parks, so every hop that
// waits (the member's response, the client's next request) costs a read
// that finds nothing. The loop reads only what epoll reported ready, one
// read per hop, and runs each request to its end without a goroutine
// switch.
//
// Each loop owns an epoll set with the plain listeners (shared by every
// loop, EPOLLEXCLUSIVE), its client connections and its member
// connections, all edge-triggered; it parks in Go's own poller on the
// epoll descriptor, so it needs no thread of its own. A loop serves what
// the direct path serves: bodyless HTTP/1.1 requests on routes to HTTP/1.1
// members. Anything else, before a byte of the response is written, is
// handed with its buffered bytes to the goroutine path (serveFast, then
// net/http), which owns the connection from then on.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// edge is how connections are registered: once, for both directions.
	edge = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
	// inEvents and outEvents are the events that make a read or a write
	// worth trying.
	inEvents  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	outEvents = unix.EPOLLOUT | unix.EPOLLHUP | unix.EPOLLERR
	// loopBuf is the size of a connection's read buffers.
	loopBuf = 4096
	// maxResponseHead bounds a member's response head on the loop.
	maxResponseHead = 64 << 10
	// loopSpins is how many empty polls (about 1 µs each, with the P
	// offered to other goroutines between them) a busy loop makes after
	// events before it parks: one whose last park ended within
	// loopSpinGap. Parking and being woken costs about as much CPU here,
	// and the wake-up latency made most of the loop's p99.
	loopSpins = 30
	// loopSpinGap is the longest park after which the loop still spins.
	loopSpinGap = 50 * time.Microsecond
	// loopTick is how often the loop checks deadlines.
	loopTick = 50 * time.Millisecond
)

var crlf2 = []byte("\r\n\r\n")

// handler gets the epoll events of one registered descriptor.
type handler interface{ event(ev uint32) }

// loop is one event loop. Only its goroutine touches its fields below mu;
// other goroutines hand it work with do and call.
type loop struct {
	p        *Proxy
	epfd     int
	file     *os.File // epfd in Go's poller
	wake     int      // eventfd: work is queued
	tick     int      // timerfd: deadlines are due
	ticking  bool
	spins    int  // empty polls since the last events
	spin     bool // the last park was short: poll before parking
	parked   bool // the loop parked and has not polled since
	parkedAt time.Time
	events   []unix.EpollEvent
	fds      []handler // by descriptor
	conns    map[*lconn]struct{}
	idle     map[idleKey][]*upConn
	nidle    int
	bufs     [][]byte
	bw       *bufio.Writer // writes heads into a connection's out
	app      appender
	heads    interner
	resp     http.Response // the response head being relayed
	rh       http.Header
	rvals    []string
	closed   bool
	done     chan struct{}

	mu    sync.Mutex
	queue []func()
}

// idleKey names a loop's idle member connections: those of one
// transport's pool to one member.
type idleKey struct {
	cp   *connPool
	addr string
}

// appender is the io.Writer of loop.bw: it appends to a connection's
// output.
type appender struct{ b *[]byte }

func (a appender) Write(p []byte) (int, error) {
	*a.b = append(*a.b, p...)
	return len(p), nil
}

func newLoop(p *Proxy) (l *loop, err error) {
	l = &loop{p: p, epfd: -1, wake: -1, tick: -1, events: make([]unix.EpollEvent, 128),
		conns: map[*lconn]struct{}{}, idle: map[idleKey][]*upConn{}, done: make(chan struct{}),
		rh: http.Header{}}
	l.bw = bufio.NewWriterSize(&l.app, loopBuf)
	defer func() {
		if err != nil {
			l.closeFDs()
		}
	}()
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err = unix.SetNonblock(l.epfd, true); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if l.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if l.tick, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	if err = l.add(l.wake, unix.EPOLLIN|unix.EPOLLET, wakeHandler{l}); err != nil {
		return nil, err
	}
	if err = l.add(l.tick, unix.EPOLLIN|unix.EPOLLET, tickHandler{l}); err != nil {
		return nil, err
	}
	l.file = os.NewFile(uintptr(l.epfd), "epoll")
	if err = l.file.SetReadDeadline(time.Time{}); err != nil {
		l.file = nil
		return nil, fmt.Errorf("epoll is not pollable: %w", err)
	}
	go l.run()
	return l, nil
}

func (l *loop) closeFDs() {
	for _, fd := range []int{l.wake, l.tick} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if l.file != nil {
		l.file.Close()
	} else if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
}

func (l *loop) run() {
	defer close(l.done)
	defer l.closeFDs()
	rc, err := l.file.SyscallConn()
	if err != nil {
		l.p.log.Error("l7 loop", "err", err)
		return
	}
	for !l.closed {
		err := rc.Read(func(uintptr) bool {
			n, err := epollWait(l.epfd, l.events)
			switch {
			case err == unix.EINTR:
				return true
			case err != nil:
				l.p.log.Error("l7 loop: epoll_wait", "err", err)
				l.closed = true
				return true
			}
			if l.parked {
				// Woken: spin before the next park only if this one was
				// short, when parking costs more than it saves.
				l.parked = false
				l.spin = time.Since(l.parkedAt) < loopSpinGap
				l.spins = 0
			}
			if n == 0 {
				if l.spin && l.spins < loopSpins {
					l.spins++
					runtime.Gosched()
					return true
				}
				l.parked, l.parkedAt = true, time.Now()
				return false // park until the epoll set has events
			}
			l.spins = 0
			for _, ev := range l.events[:n] {
				if h := l.fds[ev.Fd]; h != nil {
					l.dispatch(h, ev.Events)
				}
			}
			return true
		})
		if err != nil {
			l.p.log.Error("l7 loop", "err", err)
			return
		}
	}
}

// dispatch hands an event to its handler. A panic (a bug) costs the
// connection it happened on, not the node.
func (l *loop) dispatch(h handler, ev uint32) {
	defer func() {
		if e := recover(); e != nil {
			l.p.log.Error("l7 loop: panic", "err", e, "stack", string(debug.Stack()))
			switch h := h.(type) {
			case *lconn:
				h.abort()
			case *upConn:
				if h.c != nil {
					h.c.abort()
				}
			}
		}
	}()
	h.event(ev)
}

func (l *loop) add(fd int, events uint32, h handler) error {
	if fd >= len(l.fds) {
		l.fds = append(l.fds, make([]handler, fd+1-len(l.fds))...)
	}
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(l.epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0); e != 0 {
		return fmt.Errorf("epoll add: %w", e)
	}
	l.fds[fd] = h
	return nil
}

// forget removes fd from the loop; closing fd removes it from epoll.
func (l *loop) forget(fd int) { l.fds[fd] = nil }

// do queues fn to run on the loop's goroutine.
func (l *loop) do(fn func()) {
	l.mu.Lock()
	l.queue = append(l.queue, fn)
	l.mu.Unlock()
	one := [8]byte{1}
	unix.Write(l.wake, one[:])
}

// call runs fn on the loop's goroutine and waits for it.
func (l *loop) call(fn func()) {
	ran := make(chan struct{})
	l.do(func() { fn(); close(ran) })
	select {
	case <-ran:
	case <-l.done:
	}
}

type wakeHandler struct{ l *loop }

func (h wakeHandler) event(uint32) {
	var b [8]byte
	unix.Read(h.l.wake, b[:])
	h.l.mu.Lock()
	q := h.l.queue
	h.l.queue = nil
	h.l.mu.Unlock()
	for _, fn := range q {
		fn()
	}
}

type tickHandler struct{ l *loop }

func (h tickHandler) event(uint32) {
	var b [8]byte
	unix.Read(h.l.tick, b[:])
	h.l.sweep(time.Now())
}

// setTicking starts or stops the deadline ticks.
func (l *loop) setTicking(on bool) {
	if l.ticking == on {
		return
	}
	var spec unix.ItimerSpec
	if on {
		spec.Interval = unix.NsecToTimespec(int64(loopTick))
		spec.Value = spec.Interval
	}
	if err := unix.TimerfdSettime(l.tick, 0, &spec, nil); err != nil {
		l.p.log.Error("l7 loop: timerfd", "err", err)
		return
	}
	l.ticking = on
}

// sweep ends what passed its deadline and closes member connections idle
// for too long.
func (l *loop) sweep(now time.Time) {
	for c := range l.conns {
		if now.After(c.deadline) {
			c.expire()
		}
	}
	for k, list := range l.idle {
		kept := list[:0]
		for _, u := range list {
			if now.Sub(u.idleAt) < idleTimeout {
				kept = append(kept, u)
				continue
			}
			l.nidle--
			u.close()
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(l.idle, k)
		} else {
			l.idle[k] = kept
		}
	}
	if len(l.conns) == 0 && l.nidle == 0 {
		l.setTicking(false)
	}
}

// buf returns an empty read buffer.
func (l *loop) buf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 0, loopBuf)
}

// put recycles a buffer from buf; grown ones are left to the GC.
func (l *loop) put(b []byte) {
	if cap(b) == loopBuf && len(l.bufs) < 1024 {
		l.bufs = append(l.bufs, b[:0])
	}
}

// writer returns the loop's head writer, appending to *b until Flush.
func (l *loop) writer(b *[]byte) *bufio.Writer {
	l.app.b = b
	l.bw.Reset(l.app)
	return l.bw
}

// shutdown closes everything the loop holds and ends it.
func (l *loop) shutdown() {
	for c := range l.conns {
		c.abort()
	}
	for _, list := range l.idle {
		for _, u := range list {
			u.close()
		}
	}
	clear(l.idle)
	l.nidle = 0
	l.closed = true
}

// loopListener is a plain listener's socket in one loop.
type loopListener struct {
	l  *loop
	s  *socket
	fd int
}

// listen adds s's listening socket to the loop.
func (l *loop) listen(s *socket, fd int) error {
	return l.add(fd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, &loopListener{l: l, s: s, fd: fd})
}

// unlisten removes s's listening socket from the loop.
func (l *loop) unlisten(fd int) {
	if fd < len(l.fds) && l.fds[fd] != nil {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		l.forget(fd)
	}
}

// event accepts what is waiting, a bounded batch at a time: the listener
// is level-triggered and reports again.
func (ll *loopListener) event(uint32) {
	for range 16 {
		fd, remote, err := rawAccept(ll.fd)
		switch {
		case err == unix.EAGAIN:
			return
		case err == unix.ECONNABORTED || err == unix.EINTR:
			continue
		case err != nil:
			// Out of descriptors or memory: stop accepting here for a
			// while instead of spinning on a listener that stays ready.
			ll.s.p.log.Warn("l7 accept", "addr", ll.s.addr, "err", err)
			ll.l.unlisten(ll.fd)
			time.AfterFunc(100*time.Millisecond, func() {
				ll.l.do(func() {
					if !ll.s.stopping.Load() && !ll.l.closed {
						if err := ll.l.listen(ll.s, ll.fd); err != nil {
							ll.s.p.log.Error("l7 accept", "addr", ll.s.addr, "err", err)
						}
					}
				})
			})
			return
		}
		ll.l.accepted(ll.s, fd, remote)
	}
}

// accepted starts serving a new client connection.
func (l *loop) accepted(s *socket, fd int, remote string) {
	if s.stopping.Load() {
		rawClose(fd)
		return
	}
	params := s.gen.Load().params
	if params.tls {
		c, err := fdConn(fd)
		if err != nil {
			l.p.log.Warn("l7 accept", "addr", s.addr, "err", err)
			return
		}
		go s.handoff(c)
		return
	}
	noDelay(fd)
	c := &lconn{l: l, s: s, fd: fd, remote: remote, readable: true, writable: true,
		deadline: time.Now().Add(params.idle), hdr: http.Header{}}
	if err := l.add(fd, edge, c); err != nil {
		l.p.log.Warn("l7 accept", "addr", s.addr, "err", err)
		rawClose(fd)
		return
	}
	c.w.h = http.Header{}
	l.conns[c] = struct{}{}
	s.loopConns.Add(1)
	l.setTicking(true)
	// The request usually came with the connection: read it now.
	c.run()
}

// fdConn turns a descriptor into a net.Conn in Go's poller.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	return net.FileConn(f)
}

// stopSocket closes s's idle connections; busy ones close after their
// response (finish checks stopping).
func (l *loop) stopSocket(s *socket) {
	for c := range l.conns {
		if c.s == s && c.state == stIdle {
			c.close()
		}
	}
}

// closeSocket closes all of s's connections.
func (l *loop) closeSocket(s *socket) {
	for c := range l.conns {
		if c.s == s {
			c.abort()
		}
	}
}

// dropPool closes the idle member connections of a transport that is gone.
func (l *loop) dropPool(cp *connPool) {
	for k, list := range l.idle {
		if k.cp != cp {
			continue
		}
		for _, u := range list {
			u.close()
		}
		l.nidle -= len(list)
		delete(l.idle, k)
	}
}

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
	out      []byte // response bytes not yet written, from sent
	sent     int
	readable bool
	writable bool
	state    connState
	deadline time.Time

	req       *http.Request // reqv while a request is in flight
	reqv      http.Request
	url       url.URL
	hdr       http.Header
	vals      []string
	head      int       // bytes of in holding req's head, until its response starts
	rs        *reqState // rsv while a request is in flight
	rsv       reqState
	start     time.Time
	tried     [maxAttempts]*member
	attempt   int
	fresh     bool // the next member connection must be a new one
	up        *upConn
	w         fastWriter // the response head and its framing
	frame     framing
	remaining int64
	chunks    chunkScanner
	reuse     bool // the member connection may serve another request
}

func (c *lconn) event(ev uint32) {
	if ev&inEvents != 0 {
		c.readable = true
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
	n, err := rawWrite(c.fd, c.out[c.sent:])
	switch {
	case err == unix.EAGAIN:
		c.writable = false
		return true
	case err != nil:
		c.abort()
		return false
	}
	c.sent += n
	if c.sent < len(c.out) {
		c.writable = false
		return true
	}
	c.out = c.out[:0]
	c.sent = 0
	return true
}

// request reads and starts the next request; false means waiting.
func (c *lconn) request() bool {
	end := bytes.Index(c.in, crlf2)
	if end < 0 {
		return c.read()
	}
	head := c.in[:end+4]
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
	c.rsv = reqState{t: t, rt: rt, client: c.remote}
	rs := &c.rsv
	c.start = time.Now()
	if !rs.choose(r, c.start.UnixNano()) {
		c.handoff() // 503
		return false
	}
	rs.member.st.inflight.Add(1)
	c.req, c.rs, c.head, c.attempt, c.fresh = r, rs, end+4, 0, false
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
	case err != nil || n == 0:
		c.close()
		return false
	}
	if n < cap(c.in)-len(c.in) {
		c.readable = false // a short read drained the socket
	}
	c.in = c.in[:len(c.in)+n]
	if c.state == stIdle {
		c.state = stHead
		c.deadline = time.Now().Add(c.s.gen.Load().params.header)
	}
	return true
}

// loopHead reports whether the loop serves a request head: HTTP/1.1 and
// eligible for the fast path (no body, upgrade or expectation).
func loopHead(head []byte) bool {
	line, _, _ := bytes.Cut(head, crlf2[:2])
	return bytes.HasSuffix(line, []byte(" HTTP/1.1")) && eligibleHead(head[:len(head)-2])
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
	n, err := rawWrite(u.fd, u.out[u.sent:])
	switch {
	case err == unix.EAGAIN:
		u.writable = false
		return false
	case err != nil:
		return c.memberEOF(err)
	}
	u.sent += n
	if u.sent < len(u.out) {
		u.writable = false
		return false
	}
	u.out = u.out[:0]
	u.sent = 0
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
	if !u.readable {
		return false
	}
	if u.in == nil {
		u.in = c.l.buf()
	}
	if len(u.in) == cap(u.in) {
		if cap(u.in) >= maxResponseHead {
			return c.fail(http.StatusBadGateway, errors.New("response head too large"))
		}
		u.in = append(make([]byte, 0, 2*cap(u.in)), u.in...)
	}
	n, err := rawRead(u.fd, u.in[len(u.in):cap(u.in)])
	switch {
	case err == unix.EAGAIN:
		u.readable = false
		return false
	case err != nil:
		return c.memberEOF(err)
	case n == 0:
		return c.memberEOF(io.EOF)
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

// responseHead starts the response once the member's head is in.
func (c *lconn) responseHead() bool {
	u, rs := c.up, c.rs
	end := bytes.Index(u.in, crlf2)
	if end < 0 {
		return true // read more
	}
	resp := &c.l.resp
	if !c.l.heads.parseResponse(u.in[:end+4], resp, c.l.rh, &c.l.rvals) || resp.StatusCode == http.StatusSwitchingProtocols {
		rs.member.outlier(false, c.l.p.outlier)
		return c.fail(http.StatusBadGateway, errors.New("malformed response head"))
	}
	u.in = u.in[:copy(u.in, u.in[end+4:])]
	if interim(resp.StatusCode) {
		return c.responseHead() // not relayed on this path
	}
	rs.member.outlier(resp.StatusCode < 502 || resp.StatusCode > 504, c.l.p.outlier)
	rs.status = resp.StatusCode
	h := c.w.Header()
	rs.responseHeader(h, resp)
	c.frame, c.remaining = frameOf(c.req, resp)
	c.reuse = !resp.Close && c.frame != frameClose
	// The framing is the member's: a header rewrite must not change it.
	switch c.frame {
	case frameChunked, frameClose:
		delete(h, "Content-Length")
	case frameLength:
		h["Content-Length"] = resp.Header["Content-Length"]
	}
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
	return true
}

// emit adds body bytes to the output, as a chunk when the client's
// framing is chunked and the member's is not.
func (c *lconn) emit(b []byte) {
	if len(b) == 0 {
		return
	}
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
		c.rs.member.outlier(false, c.l.p.outlier)
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
	c.rs.member.outlier(false, c.l.p.outlier)
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
	return c.fail(status, &dialError{err})
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
	c.l.p.record(c.rs, c.req, c.start)
	c.rs.member.st.inflight.Add(-1)
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
	c.req, c.rs = nil, nil
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
	case c.state != stProxy:
		c.close()
	case c.up != nil && c.up.connecting:
		c.connectFailed(os.ErrDeadlineExceeded)
		c.run()
	case !c.w.headWritten:
		c.rs.member.outlier(false, c.l.p.outlier)
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
		c.l.p.record(c.rs, c.req, c.start)
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

// upConn is a member connection on a loop.
type upConn struct {
	l          *loop
	fd         int
	key        idleKey
	c          *lconn // the client whose request it carries; nil when idle
	connecting bool
	readable   bool
	writable   bool
	reused     bool // it carried a request before this one
	got        bool // a byte of this response came
	in         []byte
	out        []byte // request bytes not yet written, from sent
	sent       int
	idleAt     time.Time
}

func (u *upConn) event(ev uint32) {
	if ev&inEvents != 0 {
		u.readable = true
	}
	if ev&outEvents != 0 {
		u.writable = true
	}
	switch {
	case u.c != nil:
		u.c.run()
	case u.readable:
		// Idle, and the member closed it or sent what nobody asked for.
		u.l.dropIdle(u)
	}
}

func (u *upConn) close() {
	if u.fd < 0 {
		return
	}
	u.l.forget(u.fd)
	rawClose(u.fd)
	u.fd = -1
	u.l.put(u.in)
	u.in, u.out = nil, nil
}

// upstream returns an idle connection to m, or a new one (connecting).
func (l *loop) upstream(cp *connPool, m *member, fresh bool) (*upConn, error) {
	k := idleKey{cp, m.hostport}
	if list := l.idle[k]; len(list) > 0 && !fresh {
		u := list[len(list)-1]
		list[len(list)-1] = nil
		l.idle[k] = list[:len(list)-1]
		l.nidle--
		return u, nil
	}
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(m.addr.Port()), Addr: m.addr.Addr().As16()})
	if a := m.addr.Addr().Unmap(); a.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(m.addr.Port()), Addr: a.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	noDelay(fd)
	u := &upConn{l: l, fd: fd, key: k}
	if err := l.add(fd, edge, u); err != nil {
		unix.Close(fd)
		return nil, err
	}
	switch err := unix.Connect(fd, sa); err {
	case nil:
		u.writable = true
	case unix.EINPROGRESS:
		u.connecting = true
	default:
		u.close()
		return nil, os.NewSyscallError("connect", err)
	}
	return u, nil
}

// The loop's descriptors are non-blocking, so its reads, writes and waits
// never block, and it makes them raw: without telling the scheduler. A
// system call the scheduler knows of that lasts over one sysmon tick
// (20 µs, which a loopback write can take here) has its P handed to
// another thread; on one core that was thousands of context switches a
// second and most of the loop's latency tail.

func rawRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawAccept accepts a connection, non-blocking, and formats its address
// as net does (IPv4-mapped addresses as IPv4).
func rawAccept(lfd int) (int, string, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(rsa))
	fd, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, "", e
	}
	var ap netip.AddrPort
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), netPort(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), netPort(sa.Port))
	}
	return int(fd), ap.String(), nil
}

// netPort reads a sockaddr port, which is in network byte order.
func netPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func rawClose(fd int) { syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0) }

func noDelay(fd int) {
	one := int32(1)
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}

// epollWait polls without waiting.
func epollWait(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func soError(fd int) error {
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if n != 0 {
		return os.NewSyscallError("connect", unix.Errno(n))
	}
	return nil
}

// putIdle keeps a member connection for the next request to its member.
func (l *loop) putIdle(u *upConn) {
	if len(l.idle[u.key]) >= l.p.opts.MaxIdleConnsPerMember || u.key.cp.isClosed() {
		u.close()
		return
	}
	u.readable = false // its last read was short: drained
	u.reused, u.got = true, false
	u.idleAt = time.Now()
	l.put(u.in)
	u.in = nil
	l.idle[u.key] = append(l.idle[u.key], u)
	l.nidle++
}

// dropIdle closes an idle member connection.
func (l *loop) dropIdle(u *upConn) {
	list := l.idle[u.key]
	for i, x := range list {
		if x == u {
			l.idle[u.key] = append(list[:i], list[i+1:]...)
			list[len(list)-1] = nil
			l.nidle--
			break
		}
	}
	u.close()
}

// chunkScanner finds the end of a chunked body (RFC 9112 section 7.1) in
// the bytes relayed through it.
type chunkScanner struct {
	state  uint8
	size   int64 // chunk data left, or the size being read
	digits bool  // the size line had a digit
	ext    bool  // in the size line's extensions
	line   int   // length of the trailer line so far
}

const (
	chunkSize = iota
	chunkData
	chunkDataCR
	chunkDataLF
	chunkTrailer
)

var errChunk = errors.New("malformed chunked body")

// scan consumes b up to the end of the body; end reports that it ended
// after n bytes.
func (s *chunkScanner) scan(b []byte) (n int, end bool, err error) {
	for i := 0; i < len(b); {
		switch s.state {
		case chunkSize:
			ch := b[i]
			i++
			switch {
			case ch == '\n':
				if !s.digits {
					return i, false, errChunk
				}
				s.digits, s.ext, s.line = false, false, 0
				s.state = chunkData
				if s.size == 0 {
					s.state = chunkTrailer
				}
			case s.ext || ch == '\r' || ch == ' ' || ch == '\t':
			case ch == ';':
				s.ext = true
			default:
				v := unhex(ch)
				if v < 0 || s.size >= 1<<59 {
					return i, false, errChunk
				}
				s.size = s.size<<4 | int64(v)
				s.digits = true
			}
		case chunkData:
			k := min(int64(len(b)-i), s.size)
			i += int(k)
			s.size -= k
			if s.size == 0 {
				s.state = chunkDataCR
			}
		case chunkDataCR:
			if b[i] != '\r' {
				return i, false, errChunk
			}
			i++
			s.state = chunkDataLF
		case chunkDataLF:
			if b[i] != '\n' {
				return i, false, errChunk
			}
			i++
			s.state = chunkSize
		case chunkTrailer:
			ch := b[i]
			i++
			switch {
			case ch == '\n' && s.line == 0:
				return i, true, nil
			case ch == '\n':
				s.line = 0
			case ch != '\r':
				s.line++
			}
		}
	}
	return len(b), false, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
