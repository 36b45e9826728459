package node

// The l7 subsystem: the http and https listeners of every load balancer,
// served by the l7 proxy on VIP:port of each traffic-serving node, and the
// local routes that make the kernel deliver those VIPs to it.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/l7"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// l7Config turns the committed state into the L7 proxy's Config: one
// listener per http or https listener (named "<load balancer>/<listener>"),
// the pools they route to with each member's health, the certificates they
// name, and the cluster's ticket and cookie keys. Load balancers come
// sorted by name and listeners in order, so equal states give equal
// Configs.
//
// A listener that cannot be built (a certificate that does not parse) is
// left out and reported in the error; the others are served. It also
// returns the VIPs of the listeners it kept.
func l7Config(st *raftfsm.State, healthy Healthy, certs *certCache) (l7.Config, []netip.Addr, error) {
	cfg := l7.Config{Pools: map[string]l7.Pool{}, Certificates: map[string]tls.Certificate{}}
	if sec := st.Secrets(); sec != nil {
		for _, k := range sec.GetTicketKeys() {
			if len(k.GetKey()) == 32 {
				cfg.TicketKeys = append(cfg.TicketKeys, [32]byte(k.GetKey()))
			}
		}
		cfg.CookieKey = sec.GetCookieKey()
	}
	var (
		vips []netip.Addr
		errs []error
	)
	for _, lb := range st.LoadBalancers() {
		if !hasL7(lb) {
			continue // most, at scale
		}
		vip, err := netip.ParseAddr(lb.GetSpec().GetVip())
		if err != nil {
			continue // validated before it was committed
		}
		served := false
		for _, pl := range lb.GetSpec().GetListeners() {
			if !isL7(pl) {
				continue
			}
			l, err := l7Listener(st, &cfg, certs, lb.GetMetadata().GetName(), vip, pl)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, name := range l7Pools(pl) {
				if _, ok := cfg.Pools[name]; !ok {
					cfg.Pools[name] = l7Pool(name, st.Pool(name), healthy)
				}
			}
			cfg.Listeners = append(cfg.Listeners, l)
			served = true
		}
		if served {
			vips = append(vips, vip)
		}
	}
	return cfg, vips, errors.Join(errs...)
}

func isL7(l *weftv1.Listener) bool { return l.GetProtocol() == "http" || l.GetProtocol() == "https" }

// l7Listener translates one http or https listener and adds the
// certificates it names to cfg.
func l7Listener(st *raftfsm.State, cfg *l7.Config, certs *certCache, lbName string, vip netip.Addr, pl *weftv1.Listener) (l7.Listener, error) {
	name := lbName + "/" + pl.GetName()
	l := l7.Listener{
		Name:        name,
		Addr:        netip.AddrPortFrom(vip, uint16(pl.GetPort())),
		TLS:         pl.GetProtocol() == "https",
		HTTP2:       true,
		HTTP3:       pl.GetProtocol() == "https" && pl.GetHttp3(),
		DefaultPool: pl.GetPool(),
		Timeouts: l7.Timeouts{
			Connect:  pl.GetTimeouts().GetConnect().AsDuration(),
			Idle:     pl.GetTimeouts().GetIdle().AsDuration(),
			Response: pl.GetTimeouts().GetResponse().AsDuration(),
		},
		// validate caps it at the largest int64.
		Limits: l7.Limits{MaxBodyBytes: int64(pl.GetMaxBodyBytes())},
	}
	if al := pl.GetAccessLog(); al.GetEnabled() {
		l.AccessLog = &l7.AccessLog{SampleRate: 1}
		if al.SampleRate != nil { // validate fills it in
			l.AccessLog.SampleRate = al.GetSampleRate()
		}
	}
	for _, pool := range l7Pools(pl) {
		if st.Pool(pool) == nil {
			// The state store refuses dangling references; never serve a
			// listener half-built.
			return l7.Listener{}, fmt.Errorf("listener %s: pool %q is not in the state", name, pool)
		}
	}
	if l.TLS {
		for _, c := range pl.GetCertificates() {
			tc, err := certs.get(st.Certificate(c), c)
			if err != nil {
				return l7.Listener{}, fmt.Errorf("listener %s: %w", name, err)
			}
			cfg.Certificates[c] = tc
			l.Certificates = append(l.Certificates, c)
		}
	}
	// Sticky sessions need the cluster's cookie key, which the leader
	// creates within a second of the cluster's start: until it is there
	// the listener balances without pinning rather than not serving.
	if s := pl.GetStickySession(); s.GetEnabled() && len(cfg.CookieKey) > 0 {
		l.Sticky = &l7.Sticky{CookieName: s.GetCookieName(), TTL: s.GetTtl().AsDuration()}
	}
	for _, r := range pl.GetRules() {
		rt := l7.Route{
			Host:            r.GetHost(),
			PathExact:       r.GetPathExact(),
			PathPrefix:      r.GetPathPrefix(),
			Pool:            r.GetPool(),
			RequestHeaders:  headerRewrite(r.GetRequestHeaders()),
			ResponseHeaders: headerRewrite(r.GetResponseHeaders()),
		}
		if h := r.GetHeader(); h != nil {
			rt.Header = &l7.HeaderMatch{Name: h.GetName(), Value: h.GetValue()}
		}
		if rd := r.GetRedirect(); rd != nil {
			rt.Redirect = &l7.Redirect{Scheme: rd.GetScheme(), Host: rd.GetHost(), Port: uint16(rd.GetPort()), Code: int(rd.GetCode())}
		}
		l.Routes = append(l.Routes, rt)
	}
	return l, nil
}

// l7Pools are the pools a listener routes to: its default pool and, for
// http and https, its rules' pools.
func l7Pools(l *weftv1.Listener) []string {
	var pools []string
	if p := l.GetPool(); p != "" {
		pools = append(pools, p)
	}
	for _, r := range l.GetRules() {
		if p := r.GetPool(); p != "" {
			pools = append(pools, p)
		}
	}
	return pools
}

// l7Pool translates a pool; members that may not take new requests keep
// their place (and their sticky clients, when draining) with Healthy or
// Drain saying why.
func l7Pool(name string, p *weftv1.Pool, healthy Healthy) l7.Pool {
	s := p.GetSpec()
	out := l7.Pool{Algorithm: s.GetAlgorithm(), HashKey: s.GetHashKey(), Protocol: s.GetUpstreamProtocol(),
		TLSInsecure: s.GetUpstreamTlsInsecure(), ProxyProtocol: s.GetProxyProtocol()}
	for _, m := range s.GetMembers() {
		addr, err := memberAddr(m)
		if err != nil {
			continue // validated before it was committed
		}
		out.Members = append(out.Members, l7.Member{Addr: addr, Weight: uint32(m.GetWeight()),
			Healthy: healthy(name, m), Drain: m.GetDrain()})
	}
	return out
}

func headerRewrite(h *weftv1.HeaderRewrite) l7.HeaderRewrite {
	if h == nil {
		return l7.HeaderRewrite{}
	}
	return l7.HeaderRewrite{Remove: h.GetRemove(), Set: h.GetSet(), Add: h.GetAdd()}
}

// certCache keeps parsed certificates by name, so a reconcile (every health
// change, every 2 s on XDP nodes) does not parse every key again, and an
// unchanged certificate is the same value, which lets the subsystem see
// that nothing changed.
type certCache struct {
	byName map[string]cachedCert
}

type cachedCert struct {
	certPEM, keyPEM string
	cert            tls.Certificate
	err             error
}

func (c *certCache) get(r *weftv1.Certificate, name string) (tls.Certificate, error) {
	if r == nil {
		return tls.Certificate{}, fmt.Errorf("certificate %q is not in the state", name)
	}
	certPEM, keyPEM := r.GetSpec().GetCertificatePem(), r.GetSpec().GetPrivateKeyPem()
	if e, ok := c.byName[name]; ok && e.certPEM == certPEM && e.keyPEM == keyPEM {
		return e.cert, e.err
	}
	cert, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		err = fmt.Errorf("certificate %q: %w", name, err)
	}
	if c.byName == nil {
		c.byName = map[string]cachedCert{}
	}
	c.byName[name] = cachedCert{certPEM: certPEM, keyPEM: keyPEM, cert: cert, err: err}
	return cert, err
}

// forget drops certificates the last Config did not use.
func (c *certCache) forget(used map[string]tls.Certificate) {
	for name := range c.byName {
		if _, ok := used[name]; !ok {
			delete(c.byName, name)
		}
	}
}

// l7Subsystem runs the L7 proxy on a traffic-serving node.
type l7Subsystem struct {
	proxy   *l7.Proxy
	healthy Healthy
	// versions tell when healthy's answers may have changed.
	versions healthVersions
	certs    certCache
	vips     *localVIPs
	// last is the Config applied, derived from at (or a later state that
	// gives the same, unchanged), with the view at from; nil after a
	// failed Apply.
	last *l7.Config
	at   *raftfsm.State
	from derivation
	// served, cfgErr and poolVersions are what the derivation of last gave
	// and saw: its VIPs, its listeners' errors, the health version of each
	// pool whose members it asked about.
	served       []netip.Addr
	cfgErr       error
	poolVersions map[string]uint64
	// extraVIPs are made local beside the listeners' VIPs: addresses other
	// services of the node serve (the anycast DNS address).
	extraVIPs []netip.Addr
}

func newL7Subsystem(healthy Healthy, versions healthVersions, nl routeTable, accessLog io.Writer, quicServerID uint16, log *slog.Logger) *l7Subsystem {
	return &l7Subsystem{proxy: l7.New(l7.Options{Log: log, AccessLog: accessLog, QUICServerID: quicServerID}),
		healthy: healthy, versions: versions, vips: &localVIPs{nl: nl}}
}

// apply serves the state's http and https listeners, then makes their VIPs
// local. A listener left out of the Config is reported after the others
// were applied.
func (s *l7Subsystem) apply(ctx context.Context, st *raftfsm.State) error {
	from := s.versions.at(st)
	if s.last == nil || !s.unchanged(st, from) {
		cfg := s.derive(st)
		if s.last == nil || !reflect.DeepEqual(*s.last, cfg) {
			if err := s.proxy.Apply(ctx, cfg); err != nil {
				s.last = nil
				return errors.Join(err, s.cfgErr)
			}
			s.last = &cfg
			s.certs.forget(cfg.Certificates)
		}
	}
	s.at, s.from = st, from
	return errors.Join(s.cfgErr, s.vips.set(slices.Concat(s.served, s.extraVIPs)))
}

// derive is l7Config of st, keeping what it gave and saw.
func (s *l7Subsystem) derive(st *raftfsm.State) l7.Config {
	versions := make(map[string]uint64)
	healthy := func(pool string, m *weftv1.Member) bool {
		// The version is read before the pool's first answer, so a change
		// during the derivation makes the next round derive again.
		if _, ok := versions[pool]; !ok && s.versions.pool != nil {
			versions[pool] = s.versions.pool(pool)
		}
		return s.healthy(pool, m)
	}
	cfg, vips, cfgErr := l7Config(st, healthy, &s.certs)
	s.served, s.cfgErr, s.poolVersions = vips, cfgErr, versions
	return cfg
}

// unchanged reports whether st and the view at from give the Config last
// derived (from s.at), without deriving it: no change since touched what
// l7Config reads of an http or https listener. At 10,000 load balancers,
// of which few are L7, most rounds are such (a tcp pool's change, rounds
// woken by gossip).
func (s *l7Subsystem) unchanged(st *raftfsm.State, from derivation) bool {
	if s.at == nil || !from.ok || !s.from.ok {
		return false
	}
	if from == s.from {
		return true
	}
	if st.Secrets() != s.at.Secrets() { // ticket and cookie keys
		return false
	}
	events, complete := st.Changes(s.at.Index())
	if !complete {
		return false
	}
	for _, ev := range events {
		switch raftfsm.KindOf(ev.Resource) {
		case raftfsm.KindLoadBalancer:
			// A put's row, or the row before the change.
			lb := ev.Resource.GetLoadBalancer()
			if hasL7(lb) || hasL7(s.at.LoadBalancer(lb.GetMetadata().GetName())) {
				return false
			}
		case raftfsm.KindPool:
			// A listener that failed may name any pool.
			if _, ok := s.last.Pools[ev.Resource.GetPool().GetMetadata().GetName()]; ok || s.cfgErr != nil {
				return false
			}
		case raftfsm.KindCertificate:
			return false
		}
	}
	if from.view != s.from.view {
		for pool, v := range s.poolVersions {
			if s.versions.pool(pool) != v {
				return false
			}
		}
	}
	return true
}

func hasL7(lb *weftv1.LoadBalancer) bool {
	return slices.ContainsFunc(lb.GetSpec().GetListeners(), isL7)
}

// close stops the proxy (draining its requests) and removes the VIPs'
// local routes.
func (s *l7Subsystem) close() error {
	return errors.Join(s.proxy.Close(), s.vips.set(nil))
}

// vipRouteProto is the routing protocol number (iproute2's "proto") of the
// local routes the agent adds: it finds its own by it, including those a
// killed agent left behind, and never touches anybody else's.
const vipRouteProto netlink.RouteProtocol = 87

// localVIPs keeps a `local` route in table local on lo for each VIP the L7
// listeners serve: the XDP program passes their packets to the stack, and
// the stack delivers only to local addresses, even to a socket bound with
// IP_FREEBIND. A route rather than an address: it is the whole of what is
// needed (an address on lo would also be a source address the node might
// pick), and a VIP someone already made local (the operator, or an
// address on lo) is left alone. It speaks netlink: the reconciler calls it
// every round.
type localVIPs struct {
	nl routeTable
}

// routeTable is the part of netlink localVIPs uses: *netlink.Handle, or a
// fake in tests that run without root.
type routeTable interface {
	LinkByName(name string) (netlink.Link, error)
	RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error)
	RouteAdd(r *netlink.Route) error
	RouteDel(r *netlink.Route) error
}

// set makes exactly the given VIPs local through the agent's routes.
func (v *localVIPs) set(vips []netip.Addr) error {
	lo, err := v.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("local VIP routes: %w", err)
	}
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var want []netip.Addr
		for _, a := range vips {
			if a.Is4() == (family == netlink.FAMILY_V4) {
				want = append(want, a)
			}
		}
		routes, err := v.nl.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
		if err != nil {
			if len(want) > 0 || family == netlink.FAMILY_V4 {
				errs = append(errs, fmt.Errorf("list local routes: %w", err))
			}
			continue // a node without IPv6 has no IPv6 routes of ours
		}
		ours, others := splitLocalRoutes(routes)
		add, del := planLocalRoutes(want, ours, others)
		for _, a := range add {
			if err := v.nl.RouteAdd(vipRoute(lo, a)); err != nil {
				errs = append(errs, fmt.Errorf("add local route for %s: %w", a, err))
			}
		}
		for _, a := range del {
			if err := v.nl.RouteDel(vipRoute(lo, a)); err != nil {
				errs = append(errs, fmt.Errorf("delete local route for %s: %w", a, err))
			}
		}
	}
	return errors.Join(errs...)
}

// vipRoute is the agent's route making a VIP local.
func vipRoute(lo netlink.Link, a netip.Addr) *netlink.Route {
	return &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(a, a.BitLen())),
		Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Protocol: vipRouteProto}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// splitLocalRoutes sorts the kernel's local routes into the host routes
// that are the agent's and the prefixes local otherwise (an address's own
// route, 127.0.0.0/8).
func splitLocalRoutes(routes []netlink.Route) (ours map[netip.Addr]bool, others []netip.Prefix) {
	ours = map[netip.Addr]bool{}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		bits, _ := r.Dst.Mask.Size()
		if !ok {
			continue
		}
		p := netip.PrefixFrom(a.Unmap(), bits)
		if r.Protocol == vipRouteProto && p.IsSingleIP() {
			ours[p.Addr()] = true
		} else {
			others = append(others, p)
		}
	}
	return ours, others
}

// planLocalRoutes returns the routes to add (wanted, not ours, not already
// local otherwise, like a loopback VIP) and to delete (ours, no longer
// wanted).
func planLocalRoutes(want []netip.Addr, ours map[netip.Addr]bool, others []netip.Prefix) (add, del []netip.Addr) {
	wanted := map[netip.Addr]bool{}
	for _, a := range want {
		if wanted[a] {
			continue
		}
		wanted[a] = true
		local := slices.ContainsFunc(others, func(p netip.Prefix) bool { return p.Contains(a) })
		if !ours[a] && !local {
			add = append(add, a)
		}
	}
	for a := range ours {
		if !wanted[a] {
			del = append(del, a)
		}
	}
	slices.SortFunc(del, netip.Addr.Compare)
	return add, del
}
