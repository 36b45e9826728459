package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftlb/weft/l7"
	"github.com/weftlb/weft/pki"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/validate"
)

func key32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

var l7StateIndex atomic.Uint64

// l7State commits resources and, when keys is set, cluster secrets with two
// ticket keys (key32(2) newest) and the cookie key key32(9), as Raft would.
func l7State(t *testing.T, keys bool, rs ...*weftv1.Resource) *raftfsm.State {
	t.Helper()
	for _, r := range rs {
		if err := validate.Resource(r); err != nil {
			t.Fatal(err)
		}
	}
	// Each state starts at an index above the last one's, as the states
	// a subsystem is given do: it keeps what it derived by index.
	p := &fsmProposer{t: t, fsm: raftfsm.NewFSM(0), index: l7StateIndex.Add(100)}
	cmds := []struct {
		t   raftfsm.CommandType
		msg proto.Message
	}{{raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs}}}
	if keys {
		cmds = append(cmds, []struct {
			t   raftfsm.CommandType
			msg proto.Message
		}{
			{raftfsm.InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{ClusterId: "c"}}},
			{raftfsm.RotateTicketKeysType, &statev1.RotateTicketKeysCommand{
				Key: &statev1.TicketKey{Key: key32(1), CreatedUnixNano: 1}, Keep: 3, CookieKey: key32(9)}},
			{raftfsm.RotateTicketKeysType, &statev1.RotateTicketKeysCommand{
				Key: &statev1.TicketKey{Key: key32(2), CreatedUnixNano: 2}, Keep: 3, PreviousCreatedUnixNano: 1}},
		}...)
	}
	for _, c := range cmds {
		if err, ok := p.apply(c.t, c.msg).(error); ok {
			t.Fatalf("apply %v: %v", c.t, err)
		}
	}
	return p.fsm.State()
}

func res(m proto.Message) *weftv1.Resource {
	switch x := m.(type) {
	case *weftv1.Pool:
		return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: x}}
	case *weftv1.LoadBalancer:
		return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: x}}
	case *weftv1.Certificate:
		return &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: x}}
	}
	panic(fmt.Sprintf("no resource for %T", m))
}

// testCert issues a certificate for names from a throwaway CA.
func testCert(t *testing.T, name string, names ...string) *weftv1.Certificate {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.IssueNode(name, names, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &weftv1.Certificate{Metadata: &weftv1.Metadata{Name: name},
		Spec: &weftv1.CertificateSpec{CertificatePem: string(c), PrivateKeyPem: string(k)}}
}

func TestL7Config(t *testing.T) {
	web := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{
		{Address: "192.0.2.11", Port: 8080},
		{Address: "192.0.2.12", Port: 8080, Weight: weight(50)},
		{Address: "192.0.2.13", Port: 8080, Drain: true},
		{Address: "192.0.2.14", Port: 8080},
	}}}
	api := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "api"}, Spec: &weftv1.PoolSpec{
		Algorithm: "hash-header", HashKey: "X-User", UpstreamProtocol: "h2c", ProxyProtocol: true,
		Members: []*weftv1.Member{{Address: "2001:db8::21", Port: 9000}}}}
	unused := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "unused"}, Spec: &weftv1.PoolSpec{
		Members: []*weftv1.Member{{Address: "192.0.2.31", Port: 80}}}}
	site := testCert(t, "site", "www.example.com")
	lb := &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "front"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "198.51.100.10",
		Listeners: []*weftv1.Listener{
			{Port: 22, Protocol: "tcp", Pool: "unused"}, // L4: not the proxy's
			{Port: 80, Protocol: "http", Pool: "web", MaxBodyBytes: 1 << 20,
				StickySession: &weftv1.StickySession{Enabled: true, Ttl: durationpb.New(time.Hour)},
				Timeouts:      &weftv1.Timeouts{Connect: durationpb.New(time.Second), Idle: durationpb.New(time.Minute), Response: durationpb.New(30 * time.Second)},
				Rules: []*weftv1.Rule{
					{Host: "api.example.com", PathPrefix: "/v1/", Pool: "api",
						RequestHeaders:  &weftv1.HeaderRewrite{Remove: []string{"Cookie"}, Set: map[string]string{"X-Env": "prod"}},
						ResponseHeaders: &weftv1.HeaderRewrite{Add: map[string]string{"X-Served-By": "weft"}}},
					{PathExact: "/old", Header: &weftv1.HeaderMatch{Name: "X-Beta"}, Redirect: &weftv1.Redirect{Scheme: "https", Port: 443, Code: 301}},
				}},
			{Name: "tls", Port: 443, Protocol: "https", Certificates: []string{"site"}, Http3: true,
				Rules:     []*weftv1.Rule{{PathPrefix: "/", Pool: "web"}},
				AccessLog: &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(0.5)}},
		},
	}}
	other := &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "l4-only"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "198.51.100.20", Listeners: []*weftv1.Listener{{Port: 80, Protocol: "tcp", Pool: "web"}}}}
	st := l7State(t, true, res(web), res(api), res(unused), res(site), res(lb), res(other))
	down := func(pool string, m *weftv1.Member) bool { return m.GetAddress() != "192.0.2.14" }

	var certs certCache
	got, vips, err := l7Config(st, down, &certs)
	if err != nil {
		t.Fatalf("l7Config: %v", err)
	}
	tc, ok := got.Certificates["site"]
	if !ok || tc.Leaf == nil || !slices.Contains(tc.Leaf.DNSNames, "www.example.com") {
		t.Fatalf("certificate site: got %+v, want the parsed www.example.com certificate", got.Certificates)
	}
	vip := netip.MustParseAddr("198.51.100.10")
	webPool := l7.Pool{Algorithm: "round-robin", Protocol: "http1", Members: []l7.Member{
		{Addr: netip.MustParseAddrPort("192.0.2.11:8080"), Weight: 100, Healthy: true},
		{Addr: netip.MustParseAddrPort("192.0.2.12:8080"), Weight: 50, Healthy: true},
		{Addr: netip.MustParseAddrPort("192.0.2.13:8080"), Weight: 100, Healthy: true, Drain: true},
		{Addr: netip.MustParseAddrPort("192.0.2.14:8080"), Weight: 100, Healthy: false},
	}}
	want := l7.Config{
		Listeners: []l7.Listener{
			{Name: "front/http-80", Addr: netip.AddrPortFrom(vip, 80), HTTP2: true, DefaultPool: "web",
				Sticky:   &l7.Sticky{CookieName: "weft_sticky", TTL: time.Hour},
				Timeouts: l7.Timeouts{Connect: time.Second, Idle: time.Minute, Response: 30 * time.Second},
				Limits:   l7.Limits{MaxBodyBytes: 1 << 20},
				Routes: []l7.Route{
					{Host: "api.example.com", PathPrefix: "/v1/", Pool: "api",
						RequestHeaders:  l7.HeaderRewrite{Remove: []string{"Cookie"}, Set: map[string]string{"X-Env": "prod"}},
						ResponseHeaders: l7.HeaderRewrite{Add: map[string]string{"X-Served-By": "weft"}}},
					{PathExact: "/old", Header: &l7.HeaderMatch{Name: "X-Beta"}, Redirect: &l7.Redirect{Scheme: "https", Port: 443, Code: 301}},
				}},
			{Name: "front/tls", Addr: netip.AddrPortFrom(vip, 443), TLS: true, Certificates: []string{"site"}, HTTP2: true, HTTP3: true,
				Routes: []l7.Route{{PathPrefix: "/", Pool: "web"}}, AccessLog: &l7.AccessLog{SampleRate: 0.5}},
		},
		Pools: map[string]l7.Pool{
			"web": webPool,
			"api": {Algorithm: "hash-header", HashKey: "X-User", Protocol: "h2c", ProxyProtocol: true,
				Members: []l7.Member{{Addr: netip.MustParseAddrPort("[2001:db8::21]:9000"), Weight: 100, Healthy: true}}},
		},
		Certificates: got.Certificates,
		TicketKeys:   [][32]byte{[32]byte(key32(2)), [32]byte(key32(1))},
		CookieKey:    key32(9),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("l7Config:\ngot  %+v\nwant %+v", got, want)
	}
	if !slices.Equal(vips, []netip.Addr{vip}) {
		t.Errorf("VIPs: got %v, want [%v] (the L4-only load balancer's VIP is not the proxy's)", vips, vip)
	}
	// The same state gives an equal Config, with the same parsed
	// certificate, so the subsystem skips it.
	again, _, _ := l7Config(st, down, &certs)
	if !reflect.DeepEqual(again, got) {
		t.Error("l7Config is not deterministic")
	}
	if again.Certificates["site"].PrivateKey != got.Certificates["site"].PrivateKey {
		t.Error("an unchanged certificate was parsed again")
	}
}

// Until the leader has made the cluster's cookie key, sticky listeners are
// served without pinning, and without ticket keys each listener makes its
// own.
func TestL7ConfigWithoutKeys(t *testing.T) {
	web := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.PoolSpec{
		Members: []*weftv1.Member{{Address: "192.0.2.11", Port: 8080}}}}
	lb := &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "front"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "198.51.100.10", Listeners: []*weftv1.Listener{{Port: 80, Protocol: "http", Pool: "web",
			StickySession: &weftv1.StickySession{Enabled: true}}}}}
	got, _, err := l7Config(l7State(t, false, res(web), res(lb)), allHealthy, &certCache{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Listeners) != 1 || got.Listeners[0].Sticky != nil || got.TicketKeys != nil || got.CookieKey != nil {
		t.Errorf("without keys: got %+v, want one listener without sticky sessions and no keys", got)
	}
}

func TestCertCache(t *testing.T) {
	var c certCache
	good := testCert(t, "good", "a.example.com")
	bad := proto.Clone(good).(*weftv1.Certificate)
	bad.Spec.PrivateKeyPem = testCert(t, "other", "b.example.com").Spec.PrivateKeyPem
	if _, err := c.get(good, "good"); err != nil {
		t.Fatalf("good certificate: %v", err)
	}
	if _, err := c.get(bad, "bad"); err == nil || !strings.Contains(err.Error(), `certificate "bad"`) {
		t.Errorf("certificate with another key: got %v, want an error naming it", err)
	}
	if _, err := c.get(nil, "gone"); err == nil {
		t.Error("missing certificate: got nil error")
	}
	c.forget(map[string]tls.Certificate{"good": {}})
	if _, ok := c.byName["bad"]; ok || len(c.byName) != 1 {
		t.Errorf("after forget: cache holds %v, want only good", slices.Collect(maps.Keys(c.byName)))
	}
}

func TestPlanLocalRoutes(t *testing.T) {
	a := netip.MustParseAddr
	set := func(as ...string) map[netip.Addr]bool {
		m := map[netip.Addr]bool{}
		for _, s := range as {
			m[a(s)] = true
		}
		return m
	}
	prefixes := func(ps ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	tests := []struct {
		name     string
		want     []netip.Addr
		ours     map[netip.Addr]bool
		others   []netip.Prefix
		add, del []netip.Addr
	}{
		{"nothing", nil, set(), nil, nil, nil},
		{"add new", []netip.Addr{a("198.51.100.10"), a("198.51.100.10")}, set(), prefixes("127.0.0.1/32"), []netip.Addr{a("198.51.100.10")}, nil},
		{"keep ours", []netip.Addr{a("198.51.100.10")}, set("198.51.100.10"), nil, nil, nil},
		{"already local otherwise", []netip.Addr{a("198.51.100.10")}, set(), prefixes("198.51.100.10/32"), nil, nil},
		{"loopback vip", []netip.Addr{a("127.0.0.2")}, set(), prefixes("127.0.0.0/8", "127.0.0.1/32"), nil, nil},
		{"drop stale ours only", nil, set("198.51.100.12", "198.51.100.11"), prefixes("198.51.100.13/32"), nil, []netip.Addr{a("198.51.100.11"), a("198.51.100.12")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			add, del := planLocalRoutes(tc.want, tc.ours, tc.others)
			if !slices.Equal(add, tc.add) || !slices.Equal(del, tc.del) {
				t.Errorf("got add %v del %v, want add %v del %v", add, del, tc.add, tc.del)
			}
		})
	}
}

func TestSplitLocalRoutes(t *testing.T) {
	route := func(dst string, proto netlink.RouteProtocol) netlink.Route {
		p := netip.MustParsePrefix(dst)
		return netlink.Route{Dst: prefixNet(p), Protocol: proto}
	}
	ours, others := splitLocalRoutes([]netlink.Route{
		route("127.0.0.0/8", 2), route("127.0.0.1/32", 2), route("198.51.100.10/32", vipRouteProto),
		route("2001:db8::10/128", vipRouteProto), {Protocol: vipRouteProto}, // no destination: skipped
	})
	wantOurs := map[netip.Addr]bool{netip.MustParseAddr("198.51.100.10"): true, netip.MustParseAddr("2001:db8::10"): true}
	wantOthers := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	if !reflect.DeepEqual(ours, wantOurs) || !slices.Equal(others, wantOthers) {
		t.Errorf("got ours %v others %v, want ours %v others %v", ours, others, wantOurs, wantOthers)
	}
}

// TestLocalVIPs runs the local routes against the kernel, in a network
// namespace of its own.
func TestLocalVIPs(t *testing.T) {
	ns, nl := testNetns(t, "weftlnode")
	must := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	must("link", "set", "lo", "up")
	// Someone else's VIP on lo, and a route a killed agent left behind.
	must("addr", "add", "198.51.100.11/32", "dev", "lo")
	must("route", "add", "local", "198.51.100.19/32", "dev", "lo", "table", "local", "proto", "87")
	local := func() (ours, others []string) {
		t.Helper()
		routes, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
		if err != nil {
			t.Fatal(err)
		}
		o, x := splitLocalRoutes(routes)
		for a := range o {
			ours = append(ours, a.String())
		}
		for _, p := range x {
			if strings.HasPrefix(p.String(), "198.51.100.") {
				others = append(others, p.Addr().String())
			}
		}
		slices.Sort(ours)
		return ours, others
	}
	v := &localVIPs{nl: nl}
	vips := []netip.Addr{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.11")}
	for i := 0; i < 2; i++ { // idempotent
		if err := v.set(vips); err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		ours, others := local()
		if !slices.Equal(ours, []string{"198.51.100.10"}) || !slices.Equal(others, []string{"198.51.100.11"}) {
			t.Fatalf("set %d: ours %v others %v, want ours [198.51.100.10] (the leftover removed) and others [198.51.100.11]", i, ours, others)
		}
	}
	// The kernel delivers packets to the VIP locally.
	out, err := exec.Command("ip", "-n", ns, "route", "get", "198.51.100.10").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "local 198.51.100.10") {
		t.Errorf("route get 198.51.100.10: %q %v, want a local route", out, err)
	}
	if err := v.set(nil); err != nil {
		t.Fatal(err)
	}
	if ours, others := local(); len(ours) != 0 || !slices.Equal(others, []string{"198.51.100.11"}) {
		t.Errorf("after set(nil): ours %v others %v, want none of ours and others [198.51.100.11]", ours, others)
	}
}

// fakeRoutes is a route table in memory, so the subsystem runs without
// root: it holds the agent's routes only.
type fakeRoutes struct{ routes map[netip.Addr]bool }

func (f *fakeRoutes) LinkByName(name string) (netlink.Link, error) {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: 1}}, nil
}

func (f *fakeRoutes) RouteListFiltered(family int, _ *netlink.Route, _ uint64) ([]netlink.Route, error) {
	var out []netlink.Route
	for a := range f.routes {
		if a.Is4() == (family == netlink.FAMILY_V4) {
			out = append(out, *vipRoute(&netlink.Device{}, a))
		}
	}
	return out, nil
}

func (f *fakeRoutes) RouteAdd(r *netlink.Route) error {
	a, _ := netip.AddrFromSlice(r.Dst.IP)
	f.routes[a.Unmap()] = true
	return nil
}

func (f *fakeRoutes) RouteDel(r *netlink.Route) error {
	a, _ := netip.AddrFromSlice(r.Dst.IP)
	delete(f.routes, a.Unmap())
	return nil
}

// TestL7Subsystem serves an http listener on a loopback VIP through the
// subsystem: a request reaches the member, a drained member takes no new
// requests, and removing the load balancer closes the listener and its
// VIP's route.
func TestL7Subsystem(t *testing.T) {
	backend := func(name string) (*httptest.Server, *weftv1.Member) {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		ap := netip.MustParseAddrPort(s.Listener.Addr().String())
		return s, &weftv1.Member{Address: ap.Addr().String(), Port: uint32(ap.Port())}
	}
	_, m1 := backend("one")
	_, m2 := backend("two")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	ln.Close()
	pool := func(drain bool) *weftv1.Resource {
		p := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.PoolSpec{
			Members: []*weftv1.Member{proto.Clone(m1).(*weftv1.Member), proto.Clone(m2).(*weftv1.Member)}}}
		p.Spec.Members[1].Drain = drain
		return res(p)
	}
	lb := res(&weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "front"}, Spec: &weftv1.LoadBalancerSpec{
		Vip: "127.0.0.1", Listeners: []*weftv1.Listener{{Port: uint32(port), Protocol: "http", Pool: "web"}}}})

	routes := &fakeRoutes{routes: map[netip.Addr]bool{}}
	s := newL7Subsystem(allHealthy, healthVersions{}, routes, nil, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	answers := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for i := 0; i < n; i++ {
			resp, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got[string(b)]++
		}
		return got
	}

	if err := s.apply(ctx, l7State(t, true, pool(false), lb)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := answers(4); got["one"] != 2 || got["two"] != 2 {
		t.Errorf("round robin over two members: got %v, want 2 each", got)
	}
	if !routes.routes[netip.MustParseAddr("127.0.0.1")] {
		t.Errorf("routes %v, want the VIP's", routes.routes)
	}
	if err := s.apply(ctx, l7State(t, true, pool(true), lb)); err != nil {
		t.Fatalf("apply with a drained member: %v", err)
	}
	if got := answers(4); got["one"] != 4 {
		t.Errorf("with member two drained: got %v, want all on one", got)
	}
	if err := s.apply(ctx, l7State(t, true, pool(true))); err != nil {
		t.Fatalf("apply without the load balancer: %v", err)
	}
	if _, err := net.DialTimeout("tcp", url[len("http://"):len(url)-1], time.Second); err == nil {
		t.Error("the listener still accepts after its load balancer is gone")
	}
	if len(routes.routes) != 0 {
		t.Errorf("routes %v, want none", routes.routes)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// Random changes to http and tcp load balancers, their pools, the health
// view and the ticket keys: whenever the subsystem finds a round
// unchanged (and derives nothing), l7Config of the whole state gives the
// Config it holds.
func TestL7SubsystemUnchangedMatchesFresh(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	f := raftfsm.NewFSM(0)
	run := committer(t, f)
	commit := func(rs ...*weftv1.Resource) {
		run(raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Resources: rs})
	}
	run(raftfsm.InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{ClusterId: "c"}})
	keys := int64(1)
	run(raftfsm.RotateTicketKeysType, &statev1.RotateTicketKeysCommand{
		Key: &statev1.TicketKey{Key: key32(1), CreatedUnixNano: 1}, Keep: 3, CookieKey: key32(9)})
	const size = 12
	members := map[int]int{}
	lbs := map[int]*weftv1.Resource{}
	// An http load balancer has a rule to the next pool.
	lbOf := func(i int, http bool, port uint32) *weftv1.Resource {
		r := benchLB(i)
		l := r.GetLoadBalancer().Spec.Listeners[0]
		l.Port = port
		if http {
			l.Protocol = "http"
			l.Rules = []*weftv1.Rule{{PathPrefix: "/a", Pool: fmt.Sprintf("pool%d", (i+1)%size)}}
		}
		return r
	}
	isHTTP := func(r *weftv1.Resource) bool {
		return r.GetLoadBalancer().GetSpec().GetListeners()[0].GetProtocol() == "http"
	}
	portOf := func(r *weftv1.Resource) uint32 { return r.GetLoadBalancer().GetSpec().GetListeners()[0].GetPort() }
	for i := range size {
		members[i] = 2
		commit(benchPool(i, 2))
	}
	for i := range size {
		lbs[i] = lbOf(i, i%2 == 0, 80)
		commit(lbs[i])
	}
	down := map[string]bool{}
	versions := map[string]uint64{}
	view := uint64(0)
	healthy := func(pool string, m *weftv1.Member) bool { return !down[pool+"/"+m.GetAddress()] }
	s := &l7Subsystem{healthy: healthy, versions: healthVersions{
		pool: func(p string) uint64 { return versions[p] }, view: func() uint64 { return view }}}
	changes := []func(){
		func() { // members of a pool
			p := pick(rng, members)
			members[p] = 1 + rng.IntN(4)
			commit(benchPool(p, members[p]))
		},
		func() { // a listener's port
			i := pick(rng, lbs)
			lbs[i] = lbOf(i, isHTTP(lbs[i]), uint32(80+rng.IntN(3)))
			commit(lbs[i])
		},
		func() { // a load balancer turns tcp or http
			i := pick(rng, lbs)
			lbs[i] = lbOf(i, !isHTTP(lbs[i]), portOf(lbs[i]))
			commit(lbs[i])
		},
		func() { // a load balancer removed, or added again
			if i := rng.IntN(size); lbs[i] != nil {
				delete(lbs, i)
				run(raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{Kind: raftfsm.KindLoadBalancer, Name: fmt.Sprintf("lb%d", i)})
			} else {
				lbs[i] = lbOf(i, rng.IntN(2) == 0, 80)
				commit(lbs[i])
			}
		},
		func() { // a member goes down or up in the view
			p := pick(rng, members)
			m := benchPool(p, members[p]).GetPool().GetSpec().GetMembers()[rng.IntN(members[p])].GetAddress()
			down[fmt.Sprintf("pool%d/%s", p, m)] = !down[fmt.Sprintf("pool%d/%s", p, m)]
			versions[fmt.Sprintf("pool%d", p)]++
			view++
		},
		func() { // the view's version moves, no answer changes
			versions[fmt.Sprintf("pool%d", pick(rng, members))]++
			view++
		},
		func() { // a new ticket key
			keys++
			run(raftfsm.RotateTicketKeysType, &statev1.RotateTicketKeysCommand{
				Key: &statev1.TicketKey{Key: key32(byte(keys)), CreatedUnixNano: keys}, Keep: 3, PreviousCreatedUnixNano: keys - 1})
		},
		func() {}, // nothing: a round woken by gossip
	}
	unchanged := 0
	const rounds = 600
	for round := range rounds {
		for range 1 + rng.IntN(2) {
			changes[rng.IntN(len(changes))]()
		}
		st := f.State()
		from := s.versions.at(st)
		fresh, _, _ := l7Config(st, healthy, &certCache{})
		if s.last != nil && s.unchanged(st, from) {
			unchanged++
			if !reflect.DeepEqual(*s.last, fresh) {
				t.Fatalf("round %d: unchanged, but l7Config gives\n%+v\nnot\n%+v", round, fresh, *s.last)
			}
		} else {
			cfg := s.derive(st)
			s.last = &cfg
		}
		s.at, s.from = st, from
	}
	// The tcp load balancers' changes, the view's moves alone and the
	// rounds with nothing new are unchanged.
	if unchanged < rounds/5 {
		t.Errorf("%d of %d rounds unchanged", unchanged, rounds)
	}
	t.Logf("%d of %d rounds unchanged", unchanged, rounds)
}
