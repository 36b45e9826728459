package l7

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// ipv6Freebind is IPV6_FREEBIND from linux/in6.h; the syscall package
// lacks it.
const ipv6Freebind = 78

// listen binds a TCP listener on addr with IP_FREEBIND, so a VIP that the
// XDP layer passes to the local stack need not be configured on any
// interface of the node.
func listen(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
	// No TCP keep-alive on client connections (as nginx): the idle
	// timeout ends dead ones, and each accept would cost four system
	// calls more.
	lc := net.ListenConfig{KeepAlive: -1, Control: freebind(addr)}
	network, addr := family("tcp", addr)
	ln, err := lc.Listen(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// listenUDP binds the UDP socket of an HTTP/3 listener on addr, with
// IP_FREEBIND as listen.
func listenUDP(ctx context.Context, addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: freebind(addr)}
	network, addr := family("udp", addr)
	pc, err := lc.ListenPacket(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s: %w", addr, err)
	}
	return pc.(*net.UDPConn), nil
}

// family returns the network of addr's family ("tcp4", "udp6") and addr
// with a v4-mapped address unmapped.
func family(proto string, addr netip.AddrPort) (string, netip.AddrPort) {
	if addr.Addr().Unmap().Is4() {
		return proto + "4", netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	}
	return proto + "6", addr
}

// freebind is a net.ListenConfig Control that sets IP_FREEBIND (or
// IPV6_FREEBIND) for addr's family.
func freebind(addr netip.AddrPort) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if addr.Addr().Unmap().Is4() {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
			} else {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IPV6, ipv6Freebind, 1)
			}
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set freebind: %w", serr)
		}
		return nil
	}
}

// acceptTLS is a TLS socket's accept loop. Its connections go to the
// http.Server in any case: accepted on an event loop, each would be moved
// into Go's poller (os.NewFile and net.FileConn: a dup, a dozen system
// calls and a goroutine more). It ends when the socket closes or stop is
// closed.
func (s *socket) acceptTLS(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		c, err := s.ln.Accept()
		select {
		case <-stop:
			if c != nil {
				s.handoff(c)
			}
			return
		default:
		}
		switch {
		case errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			// Out of descriptors or memory: wait as the event loops do.
			s.p.log.Warn("l7 accept", "addr", s.addr, "err", err)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		case s.stopping.Load():
			c.Close()
		default:
			s.handoff(c)
		}
	}
}

// stopAccept ends the socket's TLS accept loop, if it runs: the deadline
// wakes its Accept.
func (s *socket) stopAccept() {
	if s.acceptStop == nil {
		return
	}
	close(s.acceptStop)
	tl := s.ln.(*net.TCPListener)
	tl.SetDeadline(time.Unix(1, 0))
	<-s.acceptDone
	tl.SetDeadline(time.Time{})
	s.acceptStop, s.acceptDone = nil, nil
}

// chanListener is the listener one http.Server generation serves: the
// socket's accept loop hands it connections. Closing it (as
// http.Server.Shutdown does) retires the generation without closing the
// socket, so a listener whose server settings change keeps its socket and
// loses no connection waiting in the accept queue.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// offer hands c to the server; false means the generation is retired.
func (l *chanListener) offer(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

var _ net.Listener = (*chanListener)(nil)
