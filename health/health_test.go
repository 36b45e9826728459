package health

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// These tests listen on 127.0.69.0/24 (ephemeral ports).

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bus is an in-memory Publisher connecting Health instances, standing in for
// gossip: a broadcast reaches every other instance.
type bus struct {
	mu    sync.Mutex
	nodes map[string]*Health
}

type busPublisher struct {
	b    *bus
	from string
}

func (p busPublisher) Broadcast(topic string, payload []byte) {
	if topic != Topic {
		panic("unexpected topic " + topic)
	}
	p.b.mu.Lock()
	peers := maps.Clone(p.b.nodes)
	p.b.mu.Unlock()
	for name, h := range peers {
		if name != p.from {
			h.Receive(p.from, bytes.Clone(payload))
		}
	}
}

func (b *bus) add(name string) *Health {
	h := New(busPublisher{b: b, from: name}, nil)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nodes == nil {
		b.nodes = map[string]*Health{}
	}
	b.nodes[name] = h
	return h
}

// httpMember is a backend whose handler answers with a settable status and
// which can be stopped and restarted on the same address.
type httpMember struct {
	addr netip.AddrPort
	mu   sync.Mutex
	code int
	srv  *httptest.Server
}

func newHTTPMember(t *testing.T, ip string) *httpMember {
	t.Helper()
	m := &httpMember{code: 200}
	m.start(t, ip+":0")
	m.addr = m.srv.Listener.Addr().(*net.TCPAddr).AddrPort()
	t.Cleanup(m.stop)
	return m
}

func (m *httpMember) start(t *testing.T, addr string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		code := m.code
		m.mu.Unlock()
		w.WriteHeader(code)
	}))
	srv.Listener = listen(t, addr)
	srv.Start()
	m.mu.Lock()
	m.srv = srv
	m.mu.Unlock()
}

func (m *httpMember) stop() {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	srv.Close()
}

func (m *httpMember) setCode(c int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.code = c
}

var fast = CheckSpec{Type: HTTP, Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 3}

func onePool(spec CheckSpec, ms ...netip.AddrPort) []Pool {
	p := Pool{Name: "web", Check: spec}
	for _, a := range ms {
		p.Members = append(p.Members, Member{Addr: a})
	}
	return []Pool{p}
}

func probeOf(h *Health, key MemberKey) ProbeStatus {
	for _, p := range h.Probes() {
		if p.Member == key {
			return p
		}
	}
	return ProbeStatus{}
}

func TestRiseFall(t *testing.T) {
	m := newHTTPMember(t, "127.0.69.1")
	h := New(nil, nil)
	defer h.Close()
	key := MemberKey{Pool: "web", Addr: m.addr}
	cfg := Config{Self: "a", Nodes: []NodeInfo{{Name: "a"}}, Pools: onePool(fast, m.addr)}
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if !h.View()[key] {
		t.Fatal("new member: got down, want up (fail open)")
	}
	if up, ok := h.Up(key); !up || !ok {
		t.Fatalf("Up(new member) = %v, %v; want true, true", up, ok)
	}
	if _, ok := h.Up(MemberKey{Pool: "other", Addr: m.addr}); ok {
		t.Fatal("Up of a member of no pool: held, want not")
	}
	waitFor(t, time.Second, "the probe says up", func() bool { return probeOf(h, key).State == "up" })

	changed := h.Changed()
	m.setCode(503)
	waitFor(t, 2*time.Second, "the member is down", func() bool { return !h.View()[key] })
	if up, ok := h.Up(key); up || !ok {
		t.Errorf("Up(down member) = %v, %v; want false, true", up, ok)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not closed when the view changed")
	}
	if p := probeOf(h, key); p.Failures < fast.Fall || p.LastError == "" {
		t.Errorf("down probe: got %d failures, last error %q; want at least %d and an error", p.Failures, p.LastError, fast.Fall)
	}

	m.setCode(200)
	waitFor(t, 2*time.Second, "the member is up again", func() bool { return h.View()[key] })
	if p := probeOf(h, key); p.Successes < fast.Rise {
		t.Errorf("up probe: got %d successes, want at least %d", p.Successes, fast.Rise)
	}
	s := h.Stats()
	if s.Transitions != 3 || s.Probes != 1 || s.MembersUp != 1 || s.ChecksFailed < 3 {
		t.Errorf("stats: got %+v, want 3 transitions (up, down, up), 1 probe, 1 member up, >= 3 failed checks", s)
	}
	// Every check this one probe made is its own, and timed.
	p := probeOf(h, key)
	if s := h.Stats(); p.Checks != s.ChecksTotal || p.Failed != s.ChecksFailed || p.Latency.Count() < p.Checks || p.Latency.Sum <= 0 {
		t.Errorf("probe: %d checks, %d failed, %d timed (%v); want the node's %d and %d, each timed",
			p.Checks, p.Failed, p.Latency.Count(), p.Latency.Sum, s.ChecksTotal, s.ChecksFailed)
	}
}

// A member whose server stops goes down within interval x fall + 1 s, and
// comes back once rise checks pass after it restarts.
func TestStoppedServerGoesDownAndReturns(t *testing.T) {
	m := newHTTPMember(t, "127.0.69.2")
	h := New(nil, nil)
	defer h.Close()
	key := MemberKey{Pool: "web", Addr: m.addr}
	spec := CheckSpec{Type: HTTP, Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 3}
	if err := h.Apply(context.Background(), Config{Self: "a", Nodes: []NodeInfo{{Name: "a"}}, Pools: onePool(spec, m.addr)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the probe says up", func() bool { return probeOf(h, key).State == "up" })

	m.stop()
	stopped := time.Now()
	bound := spec.Interval*time.Duration(spec.Fall) + time.Second
	waitFor(t, bound, "the stopped member is down", func() bool { return !h.View()[key] })
	t.Logf("down after %v (bound %v)", time.Since(stopped).Round(time.Millisecond), bound)

	m.start(t, m.addr.String())
	restarted := time.Now()
	waitFor(t, spec.Interval*time.Duration(spec.Rise)+time.Second, "the restarted member is up", func() bool { return h.View()[key] })
	t.Logf("up after %v", time.Since(restarted).Round(time.Millisecond))
}

func TestApplyKeepsUnchangedProbes(t *testing.T) {
	m1 := newHTTPMember(t, "127.0.69.3")
	m2 := newHTTPMember(t, "127.0.69.3")
	h := New(nil, nil)
	defer h.Close()
	k1 := MemberKey{Pool: "web", Addr: m1.addr}
	cfg := Config{Self: "a", Nodes: []NodeInfo{{Name: "a"}}, Pools: onePool(fast, m1.addr)}
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "three successes", func() bool { return probeOf(h, k1).Successes >= 3 })

	// Adding a member leaves the first probe (and its counters) alone.
	cfg.Pools = onePool(fast, m1.addr, m2.addr)
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := probeOf(h, k1).Successes; got < 3 {
		t.Errorf("unchanged probe after Apply: got %d successes, want its count kept (>= 3)", got)
	}
	if got := len(h.Probes()); got != 2 {
		t.Errorf("probes: got %d, want 2", got)
	}

	// An invalid config changes nothing.
	bad := cfg
	bad.Pools = onePool(CheckSpec{Type: "icmp"}, m1.addr)
	if err := h.Apply(context.Background(), bad); err == nil {
		t.Error("invalid config: got no error")
	}
	if got := len(h.Probes()); got != 2 {
		t.Errorf("probes after a rejected Apply: got %d, want 2", got)
	}

	// A changed check restarts the probe.
	slower := fast
	slower.Rise = 5
	cfg.Pools = onePool(slower, m1.addr, m2.addr)
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if p := probeOf(h, k1); p.State != "unknown" && p.Successes >= 3 {
		t.Errorf("changed probe: got state %s, %d successes; want a fresh probe", p.State, p.Successes)
	}

	// A node that is no longer assigned stops probing.
	cfg.Nodes = []NodeInfo{{Name: "b"}}
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := len(h.Probes()); got != 0 {
		t.Errorf("probes when not a checker: got %d, want 0", got)
	}
}

// Three nodes joined by the in-memory bus probe disjoint shares of the
// members and converge on the same view.
func TestViewAgreement(t *testing.T) {
	var ms []*httpMember
	for range 6 {
		ms = append(ms, newHTTPMember(t, "127.0.69.4"))
	}
	ms[1].setCode(503)
	ms[4].setCode(500)
	var addrs []netip.AddrPort
	for _, m := range ms {
		addrs = append(addrs, m.addr)
	}
	nodes := []NodeInfo{{Name: "a", Zone: "z1"}, {Name: "b", Zone: "z1"}, {Name: "c", Zone: "z2"}}
	b := &bus{}
	var hs []*Health
	for _, n := range nodes {
		h := b.add(n.Name)
		defer h.Close()
		hs = append(hs, h)
	}
	for i, h := range hs {
		cfg := Config{Self: nodes[i].Name, Nodes: nodes, Pools: onePool(fast, addrs...)}
		if err := h.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	want := map[MemberKey]bool{}
	for i, a := range addrs {
		want[MemberKey{Pool: "web", Addr: a}] = i != 1 && i != 4
	}
	for i, h := range hs {
		waitFor(t, 3*time.Second, fmt.Sprintf("node %d has the expected view", i), func() bool { return maps.Equal(h.View(), want) })
	}
	total := 0
	for _, h := range hs {
		total += len(h.Probes())
	}
	if total != 2*len(addrs) {
		t.Errorf("probes over all nodes: got %d, want %d (2 per member)", total, 2*len(addrs))
	}
	if n := len(hs[2].Probes()); n != len(addrs) {
		t.Errorf("the only node of zone z2 probes %d members, want all %d", n, len(addrs))
	}

	// A member recovering is seen by everyone.
	ms[1].setCode(200)
	want[MemberKey{Pool: "web", Addr: addrs[1]}] = true
	for i, h := range hs {
		waitFor(t, 3*time.Second, fmt.Sprintf("node %d sees member 1 back", i), func() bool { return maps.Equal(h.View(), want) })
	}

	// A late node gets everything from one push-pull and agrees at once,
	// before it has run a single check.
	late := New(nil, nil)
	defer late.Close()
	if err := late.Apply(context.Background(), Config{Self: "d", Nodes: nodes, Pools: onePool(fast, addrs...)}); err != nil {
		t.Fatal(err)
	}
	late.MergeState("a", hs[0].State())
	if got := late.View(); !maps.Equal(got, want) {
		t.Errorf("late node's view after push-pull: got %v, want %v", got, want)
	}
}

// When every checker of a member is gone (a node cut off sees only itself),
// the last verdicts hold until the node's own probes have an opinion.
func TestLastAgreedViewWhenCheckersGone(t *testing.T) {
	m := newHTTPMember(t, "127.0.69.5")
	m.setCode(503)
	key := MemberKey{Pool: "web", Addr: m.addr}
	slow := fast
	slow.Interval, slow.Timeout, slow.Fall, slow.Rise = time.Hour, time.Second, 1, 1

	h := New(nil, nil)
	defer h.Close()
	nodes := []NodeInfo{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	checker := checkers(key, nodes, 1)[0]
	self := "a"
	if checker == self {
		self = "b"
	}
	cfg := Config{Self: self, Nodes: nodes, Pools: onePool(slow, m.addr), CheckersPerMember: 1}
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	h.Receive(checker, encodeRecords([]record{{checker: checker, member: key, up: false, seq: 10}}))
	if h.View()[key] {
		t.Fatal("after the checker's down verdict: got up, want down")
	}
	// Only this node is left; its probe runs once (interval 1 h) and, with
	// the server answering 503, keeps the member down. Before that first
	// check, the remote checker's last verdict holds.
	cfg.Nodes = []NodeInfo{{Name: self}}
	if err := h.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if h.View()[key] {
		t.Error("checkers gone: got up, want the last verdict (down)")
	}
	waitFor(t, 2*time.Second, "the node's own probe has a verdict", func() bool { return probeOf(h, key).State == "down" })
	if h.View()[key] {
		t.Error("after the node's own down verdict: got up, want down")
	}
}

// PoolVersion changes exactly when the view's entries of that pool do,
// and is 0 for a pool the view holds no member of.
func TestPoolVersion(t *testing.T) {
	h := New(nil, nil)
	defer h.Close()
	m1, m2, m3 := netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("192.0.2.2:80"), netip.MustParseAddrPort("192.0.2.3:80")
	// Another node checks every member: this one runs no probe.
	cfg := func(web ...netip.AddrPort) Config {
		pools := onePool(fast, web...)
		pools = append(pools, Pool{Name: "api", Check: fast, Members: []Member{{Addr: m2}}})
		return Config{Self: "a", Nodes: []NodeInfo{{Name: "b"}}, Pools: pools}
	}
	apply := func(c Config) {
		t.Helper()
		if err := h.Apply(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	apply(cfg(m1))
	web, api := h.PoolVersion("web"), h.PoolVersion("api")
	if web == 0 || api == 0 {
		t.Fatalf("after the first Apply: versions web %d, api %d; want both set", web, api)
	}
	steps := []struct {
		name       string
		do         func()
		webChanged bool
	}{
		{"the same config", func() { apply(cfg(m1)) }, false},
		{"a member of web down", func() {
			h.Receive("b", encodeRecords([]record{{checker: "b", member: MemberKey{Pool: "web", Addr: m1}, up: false, seq: 10}}))
		}, true},
		{"the same verdict again", func() {
			h.Receive("b", encodeRecords([]record{{checker: "b", member: MemberKey{Pool: "web", Addr: m1}, up: false, seq: 11}}))
		}, false},
		{"a member added to web", func() { apply(cfg(m1, m3)) }, true},
		{"a member removed from web", func() { apply(cfg(m3)) }, true},
	}
	for _, s := range steps {
		s.do()
		if got := h.PoolVersion("web"); (got != web) != s.webChanged || got == 0 {
			t.Errorf("%s: web version %d -> %d, want changed %v (and not 0)", s.name, web, got, s.webChanged)
		}
		if got := h.PoolVersion("api"); got != api {
			t.Errorf("%s: api version %d -> %d, want unchanged", s.name, api, got)
		}
		web = h.PoolVersion("web")
	}
	apply(Config{Self: "a", Nodes: []NodeInfo{{Name: "b"}}, Pools: onePool(fast, m3)})
	if got := h.PoolVersion("api"); got != 0 {
		t.Errorf("api removed: version %d, want 0", got)
	}
}

// TestApplyIncrementalMatchesFresh: after each of 300 Applies of one to
// three random changes (members, checks, pools, nodes, verdicts), a Health that applied them one
// after another holds the view, checkers and probes of a new Health given
// the last config and the same verdicts at once.
func TestApplyIncrementalMatchesFresh(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	slow := CheckSpec{Interval: time.Hour, Timeout: time.Second} // one check each, against closed ports
	addr := func() netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 69, byte(100 + rnd.IntN(8))}), uint16(1+rnd.IntN(4)))
	}
	allNodes := []NodeInfo{{Name: "a", Zone: "z1"}, {Name: "b", Zone: "z2"}, {Name: "c", Zone: "z1"}}
	cfg := Config{Self: "a", Nodes: allNodes[:1]}
	h := New(nil, nil)
	defer h.Close()
	seq, added := uint64(0), 0
	mutate := func() {
		switch rnd.IntN(6) {
		case 0: // a pool added
			added++
			cfg.Pools = append(slices.Clone(cfg.Pools), Pool{Name: fmt.Sprintf("p%d", added), Check: slow})
		case 1: // a pool removed
			if len(cfg.Pools) > 0 {
				cfg.Pools = slices.Delete(slices.Clone(cfg.Pools), 0, 1)
			}
		case 2, 3: // a member added or removed, or the check changed
			if len(cfg.Pools) == 0 {
				return
			}
			cfg.Pools = slices.Clone(cfg.Pools)
			p := &cfg.Pools[rnd.IntN(len(cfg.Pools))]
			ms := slices.Clone(p.Members)
			switch a := addr(); {
			case rnd.IntN(5) == 0:
				p.Check.Port = uint16(rnd.IntN(3))
			case slices.Contains(ms, Member{a}):
				ms = slices.DeleteFunc(ms, func(m Member) bool { return m.Addr == a })
			default:
				ms = append(ms, Member{a})
			}
			p.Members = ms
		case 4: // the live nodes changed
			cfg.Nodes = allNodes[:1+rnd.IntN(3)]
		case 5: // a verdict from another node
			var keys []MemberKey
			for _, p := range cfg.Pools {
				for _, m := range p.Members {
					keys = append(keys, MemberKey{p.Name, m.Addr})
				}
			}
			if len(keys) == 0 {
				return
			}
			seq++
			h.Receive("b", encodeRecords([]record{{checker: []string{"b", "c"}[rnd.IntN(2)], member: keys[rnd.IntN(len(keys))], up: rnd.IntN(2) == 0, seq: seq}}))
			return
		}
	}
	for step := range 300 {
		// One to three changes, then an Apply.
		for range 1 + rnd.IntN(3) {
			mutate()
		}
		if err := h.Apply(context.Background(), cfg); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		fresh := New(nil, nil)
		fresh.MergeState("b", h.State())
		if err := fresh.Apply(context.Background(), cfg); err != nil {
			t.Fatalf("step %d: fresh: %v", step, err)
		}
		if got, want := h.View(), fresh.View(); !maps.Equal(got, want) {
			t.Fatalf("step %d: view %v, want %v", step, got, want)
		}
		for k := range fresh.View() {
			if got, want := h.Checkers(k), fresh.Checkers(k); !slices.Equal(got, want) {
				t.Fatalf("step %d: checkers of %v: %v, want %v", step, k, got, want)
			}
		}
		probes := func(h *Health) []string {
			var out []string
			for _, p := range h.Probes() {
				out = append(out, p.Member.String()+" "+p.Target.String()+" "+string(p.Type))
			}
			return out
		}
		if got, want := probes(h), probes(fresh); !slices.Equal(got, want) {
			t.Fatalf("step %d: probes %v, want %v", step, got, want)
		}
		fresh.Close()
	}
}
