package l7

// Member connections on an event loop: dialled without blocking, kept
// idle per transport pool and member, dropped when the member closes them.

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// upConn is a member connection on a loop.
type upConn struct {
	l          *loop
	fd         int
	key        idleKey
	c          *lconn // the client whose request it carries; nil when idle
	connecting bool
	readable   bool
	reused     bool // it carried a request before this one
	got        bool // a byte of this response came
	in         []byte
	output     // the request bytes not yet written
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
		// An emptied list stays, so that putIdle reuses its array: a
		// kept-alive member connection costs no allocation per request.
		l.idle[k] = list[:len(list)-1]
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
	switch err := unix.Connect(fd, sa); err {
	case nil:
		u.writable = true
	case unix.EINPROGRESS:
		u.connecting = true // epoll reports the end of it, even if it came first
	default:
		rawClose(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	if err := l.add(fd, edge, u); err != nil {
		rawClose(fd)
		return nil, err
	}
	return u, nil
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
}

// dropIdle closes an idle member connection.
func (l *loop) dropIdle(u *upConn) {
	list := l.idle[u.key]
	for i, x := range list {
		if x == u {
			l.setIdle(u.key, append(list[:i], list[i+1:]...))
			list[len(list)-1] = nil
			break
		}
	}
	u.close()
}

// setIdle stores a key's idle list; an empty one leaves the map. Only
// upstream leaves empty lists (for their arrays), and sweep removes them
// before it asks whether the loop is idle.
func (l *loop) setIdle(k idleKey, list []*upConn) {
	if len(list) == 0 {
		delete(l.idle, k)
		return
	}
	l.idle[k] = list
}
