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
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
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
	// bodyBuf is the size of a member connection's read buffer while it
	// relays a body longer than what came with the head: 16 times fewer
	// reads, writes and polls per byte than loopBuf.
	bodyBuf = 64 << 10
	// maxBodyBufs bounds the body buffers a loop keeps for reuse.
	maxBodyBufs = 64
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

// startLoops starts one event loop per P.
func (p *Proxy) startLoops() error {
	for range runtime.GOMAXPROCS(0) {
		l, err := newLoop(p)
		if err != nil {
			p.stopLoops()
			return fmt.Errorf("l7 event loop: %w", err)
		}
		p.loops = append(p.loops, l)
	}
	return nil
}

func (p *Proxy) stopLoops() {
	for _, l := range p.loops {
		l.call(l.shutdown)
		<-l.done
	}
	p.loops = nil
}

// listen starts accepting on new sockets.
func (p *Proxy) listen(ss []*socket) error {
	for _, s := range ss {
		rc, err := s.ln.(syscall.Conn).SyscallConn()
		if err == nil {
			err = rc.Control(func(fd uintptr) { s.lfd = int(fd) })
		}
		if err == nil {
			err = p.acceptOn(s)
		}
		if err != nil {
			for _, s := range ss {
				p.unlisten(s)
			}
			return fmt.Errorf("listener %s: %w", s.addr, err)
		}
	}
	return nil
}

// acceptOn makes the socket's accept loop the one its server settings
// want: the event loops for plain text, which they serve, or Go's own
// accept for TLS (acceptTLS). Apply calls it again when they change.
func (p *Proxy) acceptOn(s *socket) error {
	var err error
	if s.params.tls {
		for _, l := range p.loops {
			l.call(func() { l.unlisten(s.lfd) })
		}
		if s.acceptStop == nil {
			s.acceptStop, s.acceptDone = make(chan struct{}), make(chan struct{})
			go s.acceptTLS(s.acceptStop, s.acceptDone)
		}
		return nil
	}
	s.stopAccept()
	for _, l := range p.loops {
		if err == nil {
			l.call(func() { err = l.listen(s, s.lfd) })
		}
	}
	return err
}

// unlisten stops the event loops accepting on s; it must precede closing
// s.ln, whose descriptor number may be reused at once. A TLS socket's
// accept loop ends when s.ln closes.
func (p *Proxy) unlisten(s *socket) {
	s.unlistened.Store(true) // before any loop call: see loopListener.event
	for _, l := range p.loops {
		l.call(func() { l.unlisten(s.lfd) })
	}
}

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
	bufs     [][]byte
	bodyBufs [][]byte
	pipes    []*bodyPipe   // empty, for splice.go
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
			u.close()
		}
		clear(list[len(kept):])
		l.setIdle(k, kept)
	}
	// setIdle above left no empty list: the map is empty exactly when no
	// member connection is idle.
	if len(l.conns) == 0 && len(l.idle) == 0 {
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

// bodyBuffer returns an empty body buffer.
func (l *loop) bodyBuffer() []byte {
	if n := len(l.bodyBufs); n > 0 {
		b := l.bodyBufs[n-1]
		l.bodyBufs = l.bodyBufs[:n-1]
		return b
	}
	return make([]byte, 0, bodyBuf)
}

// put recycles a buffer from buf or bodyBuffer; grown ones are left to
// the GC.
func (l *loop) put(b []byte) {
	switch {
	case cap(b) == loopBuf && len(l.bufs) < 1024:
		l.bufs = append(l.bufs, b[:0])
	case cap(b) == bodyBuf && len(l.bodyBufs) < maxBodyBufs:
		l.bodyBufs = append(l.bodyBufs, b[:0])
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
	for _, p := range l.pipes {
		p.close()
	}
	l.pipes = nil
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
					if !ll.s.unlistened.Load() && !ll.l.closed {
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
	c := &lconn{l: l, s: s, fd: fd, remote: remote, readable: true, output: output{writable: true},
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
		delete(l.idle, k)
	}
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

// output is bytes waiting for a non-blocking socket, client or member.
type output struct {
	out      []byte // not yet written, from sent
	sent     int
	writable bool // epoll said so and no write has since stopped short
}

// write writes what the socket takes. done means all of out is written
// (out is then empty again); an error means the connection is gone, and
// EAGAIN is not one.
func (o *output) write(fd int) (done bool, err error) {
	n, err := rawWrite(fd, o.out[o.sent:])
	switch {
	case err == unix.EAGAIN:
		o.writable = false
		return false, nil
	case err != nil:
		return false, err
	}
	o.sent += n
	if o.sent < len(o.out) {
		o.writable = false
		return false, nil
	}
	o.out, o.sent = o.out[:0], 0
	return true, nil
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
