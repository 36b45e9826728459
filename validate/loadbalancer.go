package validate

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// Listener defaults and limits.
const (
	defaultMode       = "fullnat"
	defaultScheduler  = "maglev"
	defaultCookieName = "weft_sticky"
	defaultRedirect   = 302
	maxTimeout        = time.Hour
)

// zones checks a region, a primary zone and backup zones, the placement a
// load balancer and an address pool both carry.
func (c checker) zones(region, primary string, backups []string) error {
	if err := c.optionalLabel("spec.region", region); err != nil {
		return err
	}
	if err := c.optionalLabel("spec.primaryZone", primary); err != nil {
		return err
	}
	if len(backups) > 0 && primary == "" {
		return c.fail("spec.primaryZone", "must be set when backupZones is set")
	}
	seenZone := map[string]bool{primary: true}
	for i, z := range backups {
		field := fmt.Sprintf("spec.backupZones[%d]", i)
		if err := c.label(field, z); err != nil {
			return err
		}
		if z == primary {
			return c.fail(field, "%q is the primary zone", z)
		}
		if seenZone[z] {
			return c.fail(field, "duplicate zone %q", z)
		}
		seenZone[z] = true
	}
	return nil
}

// LoadBalancer normalises and validates lb in place; see Resource.
func LoadBalancer(lb *weftv1.LoadBalancer) error {
	c, err := metadata(kindLoadBalancer, lb.GetMetadata())
	if err != nil {
		return err
	}
	if lb.Spec == nil {
		lb.Spec = &weftv1.LoadBalancerSpec{}
	}
	s := lb.Spec
	if err := c.optionalLabel("spec.addressPool", s.AddressPool); err != nil {
		return err
	}
	// A VIP left empty is the address pool's to give (raftfsm).
	if s.Vip != "" || s.AddressPool == "" {
		if s.Vip, err = c.address("spec.vip", s.Vip); err != nil {
			return err
		}
	}
	if err := c.zones(s.Region, s.PrimaryZone, s.BackupZones); err != nil {
		return err
	}

	names := map[string]int{}
	ports := map[string]int{}
	fragments := -1 // the listener that forwards fragments
	for i, l := range s.Listeners {
		if err := c.listener(i, l); err != nil {
			return err
		}
		field := fmt.Sprintf("spec.listeners[%d]", i)
		if j, dup := names[l.Name]; dup {
			return c.fail(field+".name", "duplicate listener name %q (also spec.listeners[%d])", l.Name, j)
		}
		names[l.Name] = i
		// http and https run over tcp, so they share its port space; an
		// https listener with http3 takes the udp port too.
		for _, tr := range Transports(l) {
			key := fmt.Sprintf("%d/%s", l.Port, tr)
			if j, dup := ports[key]; dup {
				return c.fail(field+".port", "%s is already used by spec.listeners[%d]", key, j)
			}
			ports[key] = i
		}
		if l.ForwardFragments {
			if fragments >= 0 {
				return c.fail(field+".forwardFragments", "spec.listeners[%d] forwards the VIP's fragments already; a fragment has no port to choose by", fragments)
			}
			fragments = i
		}
	}
	return nil
}

// Transports are what a listener runs over: http and https over tcp, an
// https listener with http3 over udp as well. Two listeners on one VIP
// must not share a port of a transport.
func Transports(l *weftv1.Listener) []string {
	switch {
	case l.GetProtocol() == "udp":
		return []string{"udp"}
	case l.GetHttp3():
		return []string{"tcp", "udp"}
	}
	return []string{"tcp"}
}

func (c checker) listener(i int, l *weftv1.Listener) error {
	field := fmt.Sprintf("spec.listeners[%d]", i)
	if l == nil {
		return c.fail(field, "must not be null")
	}
	if err := c.port(field+".port", l.Port); err != nil {
		return err
	}
	if err := c.oneOf(field+".protocol", l.Protocol, "tcp", "udp", "http", "https"); err != nil {
		return err
	}
	if l.Name == "" {
		l.Name = fmt.Sprintf("%s-%d", l.Protocol, l.Port)
	}
	if err := c.label(field+".name", l.Name); err != nil {
		return err
	}
	l4 := l.Protocol == "tcp" || l.Protocol == "udp"
	if l4 {
		if err := c.l4Listener(field, l); err != nil {
			return err
		}
	} else if err := c.l7Listener(field, l); err != nil {
		return err
	}
	if t := l.Timeouts; t != nil {
		if err := c.duration(field+".timeouts.connect", t.Connect, 0, maxTimeout); err != nil {
			return err
		}
		if err := c.duration(field+".timeouts.idle", t.Idle, 0, maxTimeout); err != nil {
			return err
		}
		if err := c.duration(field+".timeouts.response", t.Response, 0, maxTimeout); err != nil {
			return err
		}
	}
	return nil
}

func (c checker) l4Listener(field string, l *weftv1.Listener) error {
	if l.Mode == "" {
		l.Mode = defaultMode
	}
	if l.Scheduler == "" {
		l.Scheduler = defaultScheduler
	}
	if err := c.oneOf(field+".mode", l.Mode, "fullnat", "dsr", "tunnel"); err != nil {
		return err
	}
	if err := c.oneOf(field+".scheduler", l.Scheduler, "maglev", "source-hash"); err != nil {
		return err
	}
	switch {
	case l.ForwardFragments && l.Protocol != "udp":
		return c.fail(field+".forwardFragments", "only udp listeners forward fragments")
	case l.ForwardFragments && l.Mode != "dsr":
		return c.fail(field+".forwardFragments", "needs mode dsr: a fragment but the first has no ports, so %s could not translate it", l.Mode)
	}
	if l.Pool == "" {
		return c.fail(field+".pool", "must be set for %s listeners", l.Protocol)
	}
	if err := c.label(field+".pool", l.Pool); err != nil {
		return err
	}
	switch {
	case len(l.Rules) > 0:
		return c.fail(field+".rules", "only http and https listeners have rules")
	case len(l.Certificates) > 0:
		return c.fail(field+".certificates", "only https listeners have certificates")
	case l.StickySession != nil:
		return c.fail(field+".stickySession", "only http and https listeners have sticky sessions; use scheduler source-hash")
	case l.MaxBodyBytes != 0:
		return c.fail(field+".maxBodyBytes", "only http and https listeners have a body limit")
	case l.AccessLog != nil:
		return c.fail(field+".accessLog", "only http and https listeners have an access log")
	case l.Http3:
		return c.fail(field+".http3", "only https listeners serve HTTP/3")
	}
	return nil
}

func (c checker) l7Listener(field string, l *weftv1.Listener) error {
	switch {
	case l.Mode != "":
		return c.fail(field+".mode", "only tcp and udp listeners have a mode")
	case l.Scheduler != "":
		return c.fail(field+".scheduler", "only tcp and udp listeners have a scheduler")
	case l.NewFlowRate != 0:
		return c.fail(field+".newFlowRate", "only tcp and udp listeners have a new-flow rate")
	case l.ForwardFragments:
		return c.fail(field+".forwardFragments", "only udp listeners forward fragments")
	case l.Pool == "" && len(l.Rules) == 0:
		return c.fail(field+".pool", "must be set when the listener has no rules")
	}
	if err := c.optionalLabel(field+".pool", l.Pool); err != nil {
		return err
	}
	for j, r := range l.Rules {
		last := j == len(l.Rules)-1
		if err := c.rule(fmt.Sprintf("%s.rules[%d]", field, j), r, last); err != nil {
			return err
		}
	}
	switch {
	case l.Protocol == "http" && len(l.Certificates) > 0:
		return c.fail(field+".certificates", "only https listeners have certificates")
	case l.Protocol == "https" && len(l.Certificates) == 0:
		return c.fail(field+".certificates", "https listeners need at least one certificate")
	case l.Protocol == "http" && l.Http3:
		return c.fail(field+".http3", "only https listeners serve HTTP/3: QUIC always encrypts")
	}
	seen := map[string]bool{}
	for j, name := range l.Certificates {
		f := fmt.Sprintf("%s.certificates[%d]", field, j)
		if err := c.label(f, name); err != nil {
			return err
		}
		if seen[name] {
			return c.fail(f, "duplicate certificate %q", name)
		}
		seen[name] = true
	}
	if l.MaxBodyBytes > math.MaxInt64 {
		return c.fail(field+".maxBodyBytes", "%d is too large (at most %d)", l.MaxBodyBytes, int64(math.MaxInt64))
	}
	if al := l.AccessLog; al != nil {
		if al.SampleRate == nil {
			al.SampleRate = proto.Float64(1)
		}
		// NaN fails both comparisons' negation.
		if r := *al.SampleRate; !(r >= 0 && r <= 1) {
			return c.fail(field+".accessLog.sampleRate", "%v is not between 0 and 1", r)
		}
	}
	if st := l.StickySession; st != nil {
		if st.CookieName == "" {
			st.CookieName = defaultCookieName
		}
		if !isToken(st.CookieName) {
			return c.fail(field+".stickySession.cookieName", "%q is not a valid cookie name", st.CookieName)
		}
		// A cookie lifetime over a year outlives any deployment it pins to.
		if err := c.duration(field+".stickySession.ttl", st.Ttl, 0, 365*24*time.Hour); err != nil {
			return err
		}
	}
	return nil
}

func (c checker) rule(field string, r *weftv1.Rule, last bool) error {
	if r == nil {
		return c.fail(field, "must not be null")
	}
	hasCond := r.Host != "" || r.PathPrefix != "" || r.PathExact != "" || r.Header != nil
	if !hasCond && !last {
		return c.fail(field, "has no match condition (host, pathPrefix, pathExact or header); only the last rule may match every request")
	}
	if r.Host != "" {
		r.Host = strings.ToLower(r.Host)
		h := r.Host
		if rest, ok := strings.CutPrefix(h, "*."); ok {
			h = rest
		}
		if p := hostProblem(h); p != "" {
			return c.fail(field+".host", "%s (want an exact host or \"*.\" followed by one)", p)
		}
	}
	switch {
	case r.PathPrefix != "" && r.PathExact != "":
		return c.fail(field+".pathExact", "cannot be set together with pathPrefix")
	case r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/"):
		return c.fail(field+".pathPrefix", "%q must start with \"/\"", r.PathPrefix)
	case r.PathExact != "" && !strings.HasPrefix(r.PathExact, "/"):
		return c.fail(field+".pathExact", "%q must start with \"/\"", r.PathExact)
	}
	if h := r.Header; h != nil {
		if h.Name == "" {
			return c.fail(field+".header.name", "must be set")
		}
		if !isToken(h.Name) {
			return c.fail(field+".header.name", "%q is not a valid header name", h.Name)
		}
		if strings.ContainsFunc(h.Value, isCTL) {
			return c.fail(field+".header.value", "%q has control characters", h.Value)
		}
	}
	switch {
	case r.Pool == "" && r.Redirect == nil:
		return c.fail(field, "must set exactly one of pool and redirect; it sets neither")
	case r.Pool != "" && r.Redirect != nil:
		return c.fail(field, "must set exactly one of pool and redirect; it sets both")
	case r.Pool != "":
		if err := c.label(field+".pool", r.Pool); err != nil {
			return err
		}
		if err := c.headerRewrite(field+".requestHeaders", r.RequestHeaders); err != nil {
			return err
		}
		return c.headerRewrite(field+".responseHeaders", r.ResponseHeaders)
	}
	// A redirect is answered by the proxy itself: no request goes to a
	// member and no member's response comes back to rewrite.
	if r.RequestHeaders != nil {
		return c.fail(field+".requestHeaders", "only rules with a pool rewrite headers; this rule redirects")
	}
	if r.ResponseHeaders != nil {
		return c.fail(field+".responseHeaders", "only rules with a pool rewrite headers; this rule redirects")
	}
	return c.redirect(field+".redirect", r.Redirect)
}

// reservedHeaders may not be rewritten: the hop-by-hop headers (RFC 9110
// section 7.6.1, and the ones net/http's reverse proxy also treats so) and
// the framing header belong to each connection and are set by the proxy,
// and the request's Host is the route the proxy forwards with (net/http
// sends the request's host, not a Host header). Keys are lower case.
var reservedHeaders = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true, "proxy-authenticate": true, "proxy-authorization": true,
	"content-length": true, "host": true,
}

// headerRewrite checks a rule's header rewrite: field names are tokens, not
// reserved and not repeated (names are case-insensitive), values have no
// control characters.
func (c checker) headerRewrite(field string, h *weftv1.HeaderRewrite) error {
	if h == nil {
		return nil
	}
	name := func(f, n string) error {
		switch {
		case !isToken(n):
			return c.fail(f, "%q is not a valid header name", n)
		case reservedHeaders[strings.ToLower(n)]:
			return c.fail(f, "%s cannot be rewritten: the proxy sets it for each connection (hop-by-hop, framing or Host)", n)
		}
		return nil
	}
	seen := map[string]bool{}
	for i, n := range h.Remove {
		f := fmt.Sprintf("%s.remove[%d]", field, i)
		if err := name(f, n); err != nil {
			return err
		}
		if seen[strings.ToLower(n)] {
			return c.fail(f, "duplicate header %q", n)
		}
		seen[strings.ToLower(n)] = true
	}
	for _, part := range []struct {
		name string
		m    map[string]string
	}{{"set", h.Set}, {"add", h.Add}} {
		seen := map[string]string{}
		// Sorted, so the same input always reports the same problem.
		for _, n := range slices.Sorted(maps.Keys(part.m)) {
			f := fmt.Sprintf("%s.%s[%q]", field, part.name, n)
			if err := name(f, n); err != nil {
				return err
			}
			if prev, ok := seen[strings.ToLower(n)]; ok {
				return c.fail(f, "duplicate header: %q differs from %q only in case", n, prev)
			}
			seen[strings.ToLower(n)] = n
			if v := part.m[n]; strings.ContainsFunc(v, isCTL) {
				return c.fail(f, "value %q has control characters", v)
			}
		}
	}
	return nil
}

func (c checker) redirect(field string, r *weftv1.Redirect) error {
	if r.Code == 0 {
		r.Code = defaultRedirect
	}
	switch r.Code {
	case 301, 302, 303, 307, 308:
	default:
		return c.fail(field+".code", "%d is not valid (301, 302, 303, 307 or 308)", r.Code)
	}
	if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
		return c.fail(field+".scheme", "%q is not valid (http, https or empty to keep the request's)", r.Scheme)
	}
	if r.Host != "" {
		r.Host = strings.ToLower(r.Host)
		if _, err := netip.ParseAddr(r.Host); err != nil {
			if p := hostProblem(r.Host); p != "" {
				return c.fail(field+".host", "%s (want a host name or an IP address)", p)
			}
		}
	}
	return c.optionalPort(field+".port", r.Port)
}

// isCTL reports whether r is a control character other than tab, which may
// not appear in a header field value (RFC 9110 section 5.5).
func isCTL(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

// FragmentListeners checks that no other load balancer of others with lb's
// VIP forwards its fragments if a listener of lb does: a fragment has no
// port to choose a listener by. The other load balancers are the state's,
// which this package does not see; lb must have passed LoadBalancer.
func FragmentListeners(lb *weftv1.LoadBalancer, others []*weftv1.LoadBalancer) error {
	c := checker{kind: kindLoadBalancer, name: lb.GetMetadata().GetName()}
	i := slices.IndexFunc(lb.GetSpec().GetListeners(), (*weftv1.Listener).GetForwardFragments)
	if i < 0 {
		return nil
	}
	vip, _ := netip.ParseAddr(lb.GetSpec().GetVip())
	for _, o := range others {
		if o.GetMetadata().GetName() == c.name || !slices.ContainsFunc(o.GetSpec().GetListeners(), (*weftv1.Listener).GetForwardFragments) {
			continue
		}
		if ov, err := netip.ParseAddr(o.GetSpec().GetVip()); err == nil && ov.Unmap() == vip.Unmap() {
			return c.fail(fmt.Sprintf("spec.listeners[%d].forwardFragments", i),
				"load balancer %q forwards the fragments of VIP %s already; a fragment has no port to choose by", o.GetMetadata().GetName(), vip)
		}
	}
	return nil
}
