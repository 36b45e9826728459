package l7

// Compilation of a Config into immutable routing tables. A table is built
// whole by Apply and published with one atomic pointer store; requests load
// it once, so a request runs start to end against one consistent table.

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// table is the compiled, immutable state of one listener.
type table struct {
	name     string
	scheme   string
	routes   []*route
	fallback *route // the default pool, or a 404 route
	sticky   *Sticky
	limits   Limits
	timeouts Timeouts
	stats    *listenerCounters
	tls      *tls.Config // nil without TLS
	// tls3 is tls for QUIC (ALPN h3, TLS 1.3) and altSvc the Alt-Svc
	// header value advertising it; both nil without HTTP3.
	tls3   *tls.Config
	altSvc []string
	// accessLog samples the requests to log; nil when none are.
	accessLog *sampler
}

// route is one compiled Route.
type route struct {
	name       string
	host       string // exact, lower case
	hostSuffix string // ".example.com" for "*.example.com"
	pathExact  string
	pathPrefix string
	header     *HeaderMatch // Name canonical
	up         *upstream    // nil for redirects and the 404 route
	redirect   *Redirect
	reqHdr     HeaderRewrite
	respHdr    HeaderRewrite
	stats      *counters
}

// pool is one compiled Pool, shared by the listeners that use it.
type pool struct {
	name    string
	members []*member
	byID    map[string]*member // by sticky id
	bal     balancer
}

// upstream is a pool as reached from one listener: the listener's
// timeouts select the transport.
type upstream struct {
	pool      *pool
	transport *http.Transport
	conns     *connPool
	key       transportKey
}

func (rt *route) matches(r *http.Request, host string) bool {
	if rt.host != "" && host != rt.host {
		return false
	}
	if rt.hostSuffix != "" && (len(host) <= len(rt.hostSuffix) || !strings.HasSuffix(host, rt.hostSuffix)) {
		return false
	}
	if rt.pathExact != "" && r.URL.Path != rt.pathExact {
		return false
	}
	if rt.pathPrefix != "" && !strings.HasPrefix(r.URL.Path, rt.pathPrefix) {
		return false
	}
	if rt.header != nil {
		vs, ok := r.Header[rt.header.Name]
		if !ok {
			return false
		}
		if rt.header.Value != "" {
			found := false
			for _, v := range vs {
				if v == rt.header.Value {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// match returns the route for a request: the first matching route, else
// the fallback.
func (t *table) match(r *http.Request) *route {
	host := requestHost(r.Host)
	for _, rt := range t.routes {
		if rt.matches(r, host) {
			return rt
		}
	}
	return t.fallback
}

// requestHost is the lower-case host of a Host header, without port or
// trailing dot.
func requestHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

func compileRoute(i int, r Route) (*route, error) {
	rt := &route{
		name:       r.Name,
		pathExact:  r.PathExact,
		pathPrefix: r.PathPrefix,
		redirect:   r.Redirect,
		reqHdr:     canonicalRewrite(r.RequestHeaders),
		respHdr:    canonicalRewrite(r.ResponseHeaders),
	}
	if rt.name == "" {
		rt.name = strconv.Itoa(i)
	}
	h := strings.ToLower(strings.TrimSuffix(r.Host, "."))
	switch {
	case strings.HasPrefix(h, "*."):
		rt.hostSuffix = h[1:]
	case strings.Contains(h, "*"):
		return nil, fmt.Errorf("route %q: host %q: only a leading \"*.\" wildcard is supported", rt.name, r.Host)
	default:
		rt.host = h
	}
	if r.Header != nil {
		if r.Header.Name == "" {
			return nil, fmt.Errorf("route %q: header match without a name", rt.name)
		}
		rt.header = &HeaderMatch{Name: http.CanonicalHeaderKey(r.Header.Name), Value: r.Header.Value}
	}
	if (r.Pool == "") == (r.Redirect == nil) {
		return nil, fmt.Errorf("route %q: exactly one of pool and redirect must be set", rt.name)
	}
	if rd := r.Redirect; rd != nil {
		switch rd.Code {
		case 0:
			c := *rd
			c.Code = http.StatusFound
			rt.redirect = &c
		case 301, 302, 303, 307, 308:
		default:
			return nil, fmt.Errorf("route %q: redirect code %d is not 301, 302, 303, 307 or 308", rt.name, rd.Code)
		}
	}
	return rt, nil
}

func canonicalRewrite(h HeaderRewrite) HeaderRewrite {
	var c HeaderRewrite
	for _, k := range h.Remove {
		c.Remove = append(c.Remove, http.CanonicalHeaderKey(k))
	}
	if len(h.Set) > 0 {
		c.Set = make(map[string]string, len(h.Set))
		for k, v := range h.Set {
			c.Set[http.CanonicalHeaderKey(k)] = v
		}
	}
	if len(h.Add) > 0 {
		c.Add = make(map[string]string, len(h.Add))
		for k, v := range h.Add {
			c.Add[http.CanonicalHeaderKey(k)] = v
		}
	}
	return c
}

func (h *HeaderRewrite) apply(hdr http.Header) {
	for _, k := range h.Remove {
		delete(hdr, k)
	}
	for k, v := range h.Set {
		hdr[k] = []string{v}
	}
	for k, v := range h.Add {
		hdr[k] = append(hdr[k], v)
	}
}

func (h *HeaderRewrite) empty() bool {
	return len(h.Remove) == 0 && len(h.Set) == 0 && len(h.Add) == 0
}

// redirectURL is where a redirect route sends a request.
func (rd *Redirect) location(r *http.Request, scheme string) string {
	host, port := r.Host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host, port = host[:i], host[i+1:]
	}
	if rd.Scheme != "" && rd.Scheme != scheme {
		// A new scheme has its own default port unless one is given.
		scheme, port = rd.Scheme, ""
	}
	if rd.Host != "" {
		host = rd.Host
	}
	if rd.Port != 0 {
		port = strconv.Itoa(int(rd.Port))
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(r.URL.RequestURI())
	return b.String()
}

// withDefaults fills the zero timeouts and limits.
func withDefaults(t Timeouts, l Limits) (Timeouts, Limits) {
	if t.Header == 0 {
		t.Header = 10 * time.Second
	}
	if t.Idle == 0 {
		t.Idle = 60 * time.Second
	}
	if t.Connect == 0 {
		t.Connect = 5 * time.Second
	}
	if t.Response == 0 {
		t.Response = 60 * time.Second
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	return t, l
}
