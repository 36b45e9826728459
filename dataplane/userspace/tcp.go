package userspace

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
)

func (f *Forwarder) serveTCP(s *service, ln net.Listener) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.log.Warn("userspace dataplane: accept", "service", s.key, "error", err)
			continue
		}
		conns.Add(1)
		go func() { defer conns.Done(); f.proxyTCP(s, c.(*net.TCPConn)) }()
	}
}

// proxyTCP forwards one client connection to the backend its 5-tuple
// hashes to, in both directions, passing half-closes through.
func (f *Forwarder) proxyTCP(s *service, c *net.TCPConn) {
	defer c.Close()
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	dst := netip.AddrPortFrom(s.key.vip, s.key.port)
	b, ok := s.table.Load().pick(unmapPort(src), dst, 6)
	if !ok {
		s.stats.drop(dropNoBackend)
		return
	}
	bc, err := f.dialer(b).Dial("tcp", b.ID())
	if err != nil {
		s.stats.drop(dropDial)
		f.log.Debug("userspace dataplane: dial backend", "service", s.key, "backend", b.ID(), "error", err)
		return
	}
	defer bc.Close()
	counters := s.stats.backend(b.ID())
	counters.newFlows.Add(1)
	counters.active.Add(1)
	defer counters.active.Add(-1)
	done := make(chan struct{})
	go func() {
		n, _ := io.Copy(bc, c) // splice(2) between the sockets on Linux
		counters.bytes.Add(uint64(n))
		bc.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	n, _ := io.Copy(c, bc)
	counters.bytes.Add(uint64(n))
	c.CloseWrite()
	<-done
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
