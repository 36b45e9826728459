package userspace

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/weftlb/weft/dataplane"
)

// udpFlow is one client's flow: a connected socket to its backend.
type udpFlow struct {
	backend  *net.UDPConn
	counters *backendCounters
}

func (f *Forwarder) serveUDP(s *service, pc *net.UDPConn) {
	var (
		mu    sync.Mutex
		flows = map[netip.AddrPort]*udpFlow{}
		wg    sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for _, fl := range flows {
			fl.backend.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	dst := netip.AddrPortFrom(s.key.vip, s.key.port)
	buf := make([]byte, 64<<10)
	for {
		n, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		src = unmapPort(src)
		mu.Lock()
		fl, ok := flows[src]
		if !ok {
			b, found := s.table.Load().pick(src, dst, 17)
			if !found {
				mu.Unlock()
				s.stats.drop(dropNoBackend)
				continue
			}
			bc, err := net.DialUDP("udp", f.udpLocal(b), net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.Addr, b.Port)))
			if err != nil {
				mu.Unlock()
				s.stats.drop(dropDial)
				continue
			}
			counters := s.stats.backend(b.ID())
			counters.newFlows.Add(1)
			counters.active.Add(1)
			fl = &udpFlow{backend: bc, counters: counters}
			flows[src] = fl
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.udpReplies(pc, bc, src, counters)
				counters.active.Add(-1)
				mu.Lock()
				delete(flows, src)
				mu.Unlock()
			}()
		}
		mu.Unlock()
		fl.backend.SetReadDeadline(time.Now().Add(f.opts.UDPIdleTimeout))
		if _, err := fl.backend.Write(buf[:n]); err == nil {
			fl.counters.bytes.Add(uint64(n))
		}
	}
}

// udpReplies relays a backend's answers to its client from the VIP until
// the flow is idle for UDPIdleTimeout.
func (f *Forwarder) udpReplies(pc, bc *net.UDPConn, client netip.AddrPort, c *backendCounters) {
	defer bc.Close()
	buf := make([]byte, 64<<10)
	for {
		bc.SetReadDeadline(time.Now().Add(f.opts.UDPIdleTimeout))
		n, err := bc.Read(buf)
		if err != nil {
			return
		}
		if _, err := pc.WriteToUDPAddrPort(buf[:n], client); err == nil {
			c.bytes.Add(uint64(n))
		}
	}
}

// udpLocal is the FullNAT source for a backend: a local address of its
// family when the Config names one.
func (f *Forwarder) udpLocal(b dataplane.Backend) *net.UDPAddr {
	if a, ok := f.localFor(b); ok {
		return &net.UDPAddr{IP: a.AsSlice()}
	}
	return nil
}
