// Package userspace is the dataplane driver for where XDP cannot run (not
// root, no BPF, `--dataplane=userspace`): a TCP and UDP proxy with FullNAT
// semantics that picks backends exactly as the XDP program does (Maglev
// table[FlowHash % M]), so everything above the packet path works and can
// be tested anywhere.
//
// Differences from XDP, by nature of a proxy: DSR services are proxied
// like FullNAT ones (a proxy cannot let the server answer the client); the
// VIP must be delivered to the local stack (on lo, or a local route), and
// sockets bind it with IP_FREEBIND so they can start before it is.
package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/maglev"
)

// Options configure a Forwarder.
type Options struct {
	// TableSize is the Maglev table size, a prime; 0 means maglev.DefaultSize.
	TableSize uint32
	// DialTimeout bounds connecting to a backend; 0 means 5 s.
	DialTimeout time.Duration
	// UDPIdleTimeout ends a UDP flow without traffic; 0 means 60 s.
	UDPIdleTimeout time.Duration
	Logger         *slog.Logger
}

// Forwarder proxies the services of the last applied Config.
type Forwarder struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	services map[serviceKey]*service
	local    atomic.Pointer[[]netip.Addr]
}

var _ dataplane.Driver = (*Forwarder)(nil)

type serviceKey struct {
	vip   netip.Addr
	port  uint16
	proto string
}

func (k serviceKey) String() string {
	return netip.AddrPortFrom(k.vip, k.port).String() + "/" + k.proto
}

// New returns a Forwarder with no services.
func New(opts Options) *Forwarder {
	if opts.TableSize == 0 {
		opts.TableSize = maglev.DefaultSize
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.UDPIdleTimeout == 0 {
		opts.UDPIdleTimeout = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Forwarder{opts: opts, log: opts.Logger, services: map[serviceKey]*service{}}
	f.local.Store(&[]netip.Addr{})
	return f
}

// Apply makes the running services equal cfg: new services start
// listening, removed ones stop (their open connections run on), and the
// table of a changed service is swapped in one step, so connections
// already open keep their backend.
func (f *Forwarder) Apply(ctx context.Context, cfg dataplane.Config) error {
	want := map[serviceKey]*table{}
	for i, s := range cfg.Services {
		k, t, err := f.compile(s)
		if err != nil {
			return fmt.Errorf("userspace dataplane: service %d: %w", i, err)
		}
		if _, dup := want[k]; dup {
			return fmt.Errorf("userspace dataplane: service %s appears twice", k)
		}
		want[k] = t
	}
	local := slices.Clone(cfg.LocalAddrs)
	f.local.Store(&local)

	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for k, s := range f.services {
		if _, ok := want[k]; !ok {
			s.close()
			delete(f.services, k)
		}
	}
	for k, t := range want {
		if s, ok := f.services[k]; ok {
			s.table.Store(t)
			continue
		}
		s, err := f.start(k, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.services[k] = s
	}
	return errors.Join(errs...)
}

// compile checks a service and builds its table.
func (f *Forwarder) compile(s dataplane.Service) (serviceKey, *table, error) {
	k := serviceKey{vip: s.VIP.Unmap(), port: s.Port, proto: s.Proto}
	switch {
	case !k.vip.IsValid():
		return k, nil, errors.New("VIP is not valid")
	case s.Port == 0:
		return k, nil, fmt.Errorf("%s: port 0", k)
	case s.Proto != dataplane.ProtoTCP && s.Proto != dataplane.ProtoUDP:
		return k, nil, fmt.Errorf("%s: protocol %q is not tcp or udp", k, s.Proto)
	case s.Mode != "" && s.Mode != dataplane.ModeFullNAT && s.Mode != dataplane.ModeDSR:
		return k, nil, fmt.Errorf("%s: mode %q is not fullnat or dsr", k, s.Mode)
	case s.Scheduler != "" && s.Scheduler != dataplane.SchedulerMaglev && s.Scheduler != dataplane.SchedulerSourceHash:
		return k, nil, fmt.Errorf("%s: scheduler %q is not maglev or source-hash", k, s.Scheduler)
	}
	t := &table{sourceHash: s.Scheduler == dataplane.SchedulerSourceHash, backends: map[string]dataplane.Backend{}}
	mbs := make([]maglev.Backend, 0, len(s.Backends))
	for _, b := range s.Backends {
		b.Addr = b.Addr.Unmap()
		if !b.Addr.IsValid() || b.Port == 0 {
			return k, nil, fmt.Errorf("%s: backend %s is not a valid address and port", k, b.ID())
		}
		mbs = append(mbs, maglev.Backend{ID: b.ID(), Weight: b.Weight})
		t.backends[b.ID()] = b
	}
	mt, err := maglev.Build(mbs, f.opts.TableSize)
	if err != nil {
		return k, nil, fmt.Errorf("%s: %w", k, err)
	}
	t.maglev = mt
	return k, t, nil
}

// table is a service's immutable backend choice.
type table struct {
	maglev     maglev.Table
	backends   map[string]dataplane.Backend
	sourceHash bool
}

// pick chooses the backend of a new flow, as the XDP program would.
func (t *table) pick(src, dst netip.AddrPort, proto uint8) (dataplane.Backend, bool) {
	h := dataplane.FlowHash(src, dst, proto)
	if t.sourceHash {
		h = dataplane.SourceHash(src.Addr())
	}
	mb, ok := t.maglev.Lookup(uint64(h))
	if !ok {
		return dataplane.Backend{}, false
	}
	return t.backends[mb.ID], true
}

// service is one running listener.
type service struct {
	key   serviceKey
	table atomic.Pointer[table]
	stats *stats
	stop  func()
	wg    sync.WaitGroup
}

func (s *service) close() {
	s.stop()
	s.wg.Wait()
}

func (f *Forwarder) start(k serviceKey, t *table) (*service, error) {
	s := &service{key: k, stats: newStats()}
	s.table.Store(t)
	lc := net.ListenConfig{Control: bindVIP}
	addr := netip.AddrPortFrom(k.vip, k.port).String()
	switch k.proto {
	case dataplane.ProtoTCP:
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", k, err)
		}
		s.stop = func() { ln.Close() }
		s.wg.Add(1)
		go func() { defer s.wg.Done(); f.serveTCP(s, ln) }()
	default:
		pc, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", k, err)
		}
		s.stop = func() { pc.Close() }
		s.wg.Add(1)
		go func() { defer s.wg.Done(); f.serveUDP(s, pc.(*net.UDPConn)) }()
	}
	return s, nil
}

// bindVIP lets a socket bind a VIP that is not (yet) a local address
// (IP_FREEBIND), and lets several processes bind the same VIP:port
// (SO_REUSEPORT): a restarted or upgraded agent starting before the old one
// has gone, or several nodes sharing one host, split flows by hash the way
// ECMP splits them between hosts.
func bindVIP(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
			return
		}
		if network == "tcp6" || network == "udp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// dialer returns a dialer whose source is one of the node's local
// addresses of the backend's family, when the Config names one.
func (f *Forwarder) dialer(b dataplane.Backend) *net.Dialer {
	d := &net.Dialer{Timeout: f.opts.DialTimeout}
	if a, ok := f.localFor(b); ok {
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	return d
}

func (f *Forwarder) localFor(b dataplane.Backend) (netip.Addr, bool) {
	for _, a := range *f.local.Load() {
		if a.Unmap().Is4() == b.Addr.Is4() {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// Close stops every service; open TCP connections are closed by their
// peers or idle limits.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.services {
		s.close()
		delete(f.services, k)
	}
	return nil
}
