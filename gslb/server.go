package gslb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Defaults of Options.
const (
	// DefaultRateLimit is the UDP responses per second one client prefix
	// gets before RRL drops or slips (resolvers of real users rarely send
	// more; a reflection flood sends far more).
	DefaultRateLimit = 200
	DefaultSlip      = 2
	tcpIdle          = 8 * time.Second
	tcpTimeout       = 2 * time.Second
	maxTCPQueries    = 256
)

// Options are fixed for a Server's life.
type Options struct {
	// Addr is the host:port served over UDP and TCP ("127.0.0.1:0" picks a
	// port, the same for both). The address may be one not yet local (an
	// anycast VIP whose route comes later): the sockets bind it freely.
	Addr string
	// RateLimit is RRL's responses per second per client prefix; 0 takes
	// DefaultRateLimit, a negative value turns RRL off.
	RateLimit int
	// Slip sends every Slip-th limited response truncated instead of
	// dropping it (0: DefaultSlip; negative: drop all).
	Slip   int
	Logger *slog.Logger
	// Now is the clock for RRL; nil means time.Now.
	Now func() time.Time
}

// Server is a node's authoritative DNS server.
type Server struct {
	opts Options
	log  *slog.Logger
	addr netip.AddrPort
	// UDP is served by miekg/dns's server on wildcard addresses (udp),
	// else by the batching loop on pc.
	udp    *dns.Server
	pc     *net.UDPConn
	tcp    *dns.Server
	rrl    *limiter
	table  atomic.Pointer[table]
	picks  atomic.Uint64
	stats  counters
	wg     sync.WaitGroup // listeners and NOTIFYs
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // serialises Apply
}

// counters are the Server's Stats, updated per query.
type counters struct {
	udp, tcp, truncated, limited, slipped, failOpen, transfers, notifies atomic.Uint64
	rcodes                                                               [24]atomic.Uint64
}

// New binds the UDP and TCP sockets and starts serving (no zones yet:
// every query is REFUSED until the first Apply).
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.RateLimit == 0:
		opts.RateLimit = DefaultRateLimit
	case opts.RateLimit < 0:
		opts.RateLimit = 0
	}
	switch {
	case opts.Slip == 0:
		opts.Slip = DefaultSlip
	case opts.Slip < 0:
		opts.Slip = 0
	}
	s := &Server{opts: opts, log: opts.Logger, rrl: newLimiter(opts.RateLimit, opts.Slip, opts.Now)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.table.Store(&table{zones: map[string]*zone{}})
	pc, ln, err := listen(opts.Addr)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s.tcp = &dns.Server{Listener: ln, Handler: s.handler(true), ReadTimeout: tcpTimeout, WriteTimeout: tcpTimeout,
		IdleTimeout: func() time.Duration { return tcpIdle }, MaxTCPQueries: maxTCPQueries}
	servers := []*dns.Server{s.tcp}
	if s.addr.Addr().IsUnspecified() {
		// A wildcard socket must answer from the address each query came
		// to, which miekg/dns's server does with control messages.
		s.udp = &dns.Server{PacketConn: pc, Handler: s.handler(false), UDPSize: dns.MaxMsgSize}
		servers = append(servers, s.udp)
	} else {
		s.pc = pc.(*net.UDPConn)
		s.serveUDP(s.pc)
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			errc <- srv.ActivateAndServe()
		}()
		select {
		case <-started:
		case err := <-errc:
			s.Close()
			return nil, fmt.Errorf("dns: serve %s: %w", opts.Addr, err)
		}
	}
	s.log.Info("dns server started", "addr", s.addr)
	return s, nil
}

// listen binds UDP and TCP on the same address and port, with
// IP_FREEBIND, so a VIP can be bound before it is local.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "udp6" || network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	ctx := context.Background()
	// A port picked for UDP may be taken for TCP: try a few.
	for range 10 {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		ln, err := lc.Listen(ctx, "tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			return nil, nil, fmt.Errorf("dns: listen tcp %s: %w", addr, err)
		}
	}
	return nil, nil, fmt.Errorf("dns: no port of %s free for both UDP and TCP", addr)
}

// Addr is the address served, with the port bound.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Apply makes the server answer for exactly cfg's zones. The switch is
// atomic: a query is answered wholly from the old or the new config. An
// invalid config changes nothing. Zones whose content changed take
// cfg.Serial (or their serial + 1) and NOTIFY their secondaries.
func (s *Server) Apply(ctx context.Context, cfg Config) error {
	cfg, err := cfg.check()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.table.Load()
	t := compile(cfg, prev)
	s.table.Store(t)
	for _, z := range t.zones {
		if old := prev.zone(z.Name); (old == nil || old.serial != z.serial) && len(z.Secondaries) > 0 {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				n := notify(s.ctx, z.soa, z.Secondaries)
				s.stats.notifies.Add(uint64(n))
				if n < len(z.Secondaries) {
					s.log.Warn("dns: secondaries did not answer NOTIFY", "zone", z.Name, "serial", z.serial,
						"answered", n, "secondaries", len(z.Secondaries))
				}
			}()
		}
	}
	return nil
}

// Close stops serving and waits for the listeners and NOTIFYs to end.
func (s *Server) Close() error {
	s.cancel()
	var errs []error
	if s.pc != nil {
		errs = append(errs, s.pc.Close())
	}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv != nil {
			if err := srv.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) && err.Error() != "dns: server not started" {
				errs = append(errs, err)
			}
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) handler(tcp bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, tcp) }
}

// serve answers one query that miekg/dns's server read (TCP, and UDP on
// wildcard addresses) and counts it.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, tcp bool) {
	src := addrOf(w.RemoteAddr())
	t := s.table.Load()
	m, res := s.reply(t, req, src, tcp)
	if res.transfer != nil {
		ch := make(chan *dns.Envelope)
		go func() {
			for _, e := range res.transfer.axfr(t.region) {
				ch <- e
			}
			close(ch)
		}()
		if err := new(dns.Transfer).Out(w, req, ch); err != nil {
			for range ch { // let the producer finish
			}
			s.log.Debug("dns: zone transfer", "zone", res.transfer.Name, "to", src, "error", err)
		}
		w.Close()
		return
	}
	if m == nil {
		return // dropped by rate limiting
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns: write response", "to", src, "error", err)
	}
}

// reply answers req from t and counts it: over UDP it applies rate
// limiting (nil: drop) and truncates to the size the query allows.
func (s *Server) reply(t *table, req *dns.Msg, src netip.Addr, tcp bool) (*dns.Msg, result) {
	if tcp {
		s.stats.tcp.Add(1)
	} else {
		s.stats.udp.Add(1)
	}
	m, res := t.respond(query{req: req, src: src, tcp: tcp, pick: s.pick()})
	if res.transfer != nil {
		s.stats.transfers.Add(1)
		s.stats.rcodes[dns.RcodeSuccess].Add(1)
		return m, res
	}
	if res.failOpen {
		s.stats.failOpen.Add(1)
	}
	if !tcp {
		switch s.rrl.judge(src) {
		case drop:
			s.stats.limited.Add(1)
			return nil, res
		case slip:
			s.stats.slipped.Add(1)
			m.Answer, m.Ns = nil, nil
			m.Extra = slices.DeleteFunc(m.Extra, func(rr dns.RR) bool { return rr.Header().Rrtype != dns.TypeOPT })
			m.Truncated = true
		}
		m.Truncate(udpLimit(req))
		if m.Truncated {
			s.stats.truncated.Add(1)
		}
	}
	if m.Rcode >= 0 && m.Rcode < len(s.stats.rcodes) {
		s.stats.rcodes[m.Rcode].Add(1)
	}
	return m, res
}

// pick is a number that differs from query to query, spread over 64 bits
// (splitmix64 of a counter): weighted draws and rotations take it modulo.
func (s *Server) pick() uint64 {
	z := s.picks.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// Explanation says how a query was answered.
type Explanation struct {
	Reason   string
	FailOpen bool
	// Scope is the ECS scope set in the answer.
	Scope int
}

// Query answers req as if it came from src over UDP with no size limit
// and no rate limit, and explains the answer: `weft dns query`.
func (s *Server) Query(req *dns.Msg, src netip.Addr) (*dns.Msg, Explanation) {
	m, res := s.table.Load().respond(query{req: req, src: src, tcp: true, pick: s.pick()})
	if res.transfer != nil {
		m.Rcode = dns.RcodeRefused // transfers only over DNS itself
	}
	ex := Explanation{FailOpen: res.failOpen, Scope: res.scope}
	if res.why != nil {
		ex.Reason = res.why()
	}
	return m, ex
}

// Stats are the server's counters since it started.
type Stats struct {
	UDPQueries, TCPQueries uint64
	// Responses counts responses sent by rcode name.
	Responses map[string]uint64
	// Truncated counts UDP responses sent with TC set; RateLimited those
	// RRL dropped, Slipped those it sent truncated and empty.
	Truncated, RateLimited, Slipped uint64
	// FailOpen counts answers given with every target unhealthy.
	FailOpen uint64
	// Transfers counts AXFR and IXFR streams; NotifiesSent NOTIFYs answered.
	Transfers, NotifiesSent uint64
}

// Stats reads the counters.
func (s *Server) Stats() Stats {
	st := Stats{UDPQueries: s.stats.udp.Load(), TCPQueries: s.stats.tcp.Load(), Responses: map[string]uint64{},
		Truncated: s.stats.truncated.Load(), RateLimited: s.stats.limited.Load(), Slipped: s.stats.slipped.Load(),
		FailOpen: s.stats.failOpen.Load(), Transfers: s.stats.transfers.Load(), NotifiesSent: s.stats.notifies.Load()}
	for rc := range s.stats.rcodes {
		if n := s.stats.rcodes[rc].Load(); n > 0 {
			st.Responses[dns.RcodeToString[rc]] = n
		}
	}
	return st
}

// ZoneStatus is one zone served.
type ZoneStatus struct {
	Name    string
	Serial  uint32
	Records int
}

// Zones lists the zones served, sorted by name.
func (s *Server) Zones() []ZoneStatus {
	t := s.table.Load()
	var out []ZoneStatus
	for _, name := range slices.Sorted(maps.Keys(t.zones)) {
		z := t.zones[name]
		out = append(out, ZoneStatus{Name: name, Serial: z.serial, Records: len(z.Records)})
	}
	return out
}

// RecordStatus is what one record answers now.
type RecordStatus struct {
	Zone    string
	Answers []Answer
	// FailOpen is set when some answer is given with no target healthy.
	FailOpen bool
}

// Answer is the addresses one kind of client gets.
type Answer struct {
	// Region is the clients' region (geo records); empty otherwise, and
	// for clients of no region.
	Region   string
	Addrs    []netip.Addr
	Reason   string
	FailOpen bool
}

// Records reports each served record by its Source: what it answers now,
// and why (for a geo record, per region of its zone and for clients of no
// region). Weighted records list every address a query may draw.
func (s *Server) Records() map[string]RecordStatus {
	t := s.table.Load()
	out := map[string]RecordStatus{}
	for _, z := range t.zones {
		for i := range z.Records {
			r := &z.Records[i]
			st := RecordStatus{Zone: z.Name}
			if r.Policy == "" {
				st.Answers = []Answer{{Reason: "static " + dns.TypeToString[r.Type] + " " + fmt.Sprint(r.Values)}}
				if r.Type == dns.TypeA || r.Type == dns.TypeAAAA {
					for _, v := range r.Values {
						st.Answers[0].Addrs = append(st.Answers[0].Addrs, netip.MustParseAddr(v))
					}
				}
				out[r.Source] = st
				continue
			}
			clients := []Answer{{}}
			if r.Policy == Geo {
				clients = nil
				for _, reg := range z.Regions {
					clients = append(clients, Answer{Region: reg.Name})
				}
				clients = append(clients, Answer{})
			}
			for _, a := range clients {
				a = explainRecord(r, z, t.region, a.Region)
				st.FailOpen = st.FailOpen || a.FailOpen
				st.Answers = append(st.Answers, a)
			}
			out[r.Source] = st
		}
	}
	return out
}

// explainRecord is the answer of r, over both address families, for a
// client of region (geo only).
func explainRecord(r *Record, z *zone, self, region string) Answer {
	a := Answer{Region: region}
	var reasons []string
	for _, family := range []uint16{dns.TypeA, dns.TypeAAAA} {
		ts := ofFamily(r.Targets, family)
		if len(ts) == 0 {
			continue
		}
		c := choose(r, ts, z.Regions, self, asker{region: region, regionKnown: true})
		if r.Policy == Weighted && !c.failOpen {
			c.addrs = nil // every healthy target may be drawn
			for _, t := range ts {
				if t.Healthy {
					c.addrs = append(c.addrs, t.Addr)
				}
			}
		}
		a.Addrs = append(a.Addrs, c.addrs...)
		a.FailOpen = a.FailOpen || c.failOpen
		reasons = append(reasons, c.why())
	}
	a.Reason = fmt.Sprint(reasons)
	if len(reasons) == 1 {
		a.Reason = reasons[0]
	}
	return a
}
