package gossip

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each test uses its own 127.0.6x.0/24 so that tests never share ports.

var testKey = bytes.Repeat([]byte{7}, KeySize)

func newNode(t *testing.T, name, addr string, key []byte, meta NodeMeta) *Gossip {
	t.Helper()
	g, err := New(Config{NodeName: name, BindAddr: addr, Key: key, Meta: meta})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// cluster starts n nodes on 127.0.<net>.1..n:7946 and joins them to the first.
func cluster(t *testing.T, net, n int) []*Gossip {
	t.Helper()
	var gs []*Gossip
	for i := 1; i <= n; i++ {
		gs = append(gs, newNode(t, fmt.Sprintf("n%d", i), fmt.Sprintf("127.0.%d.%d:7946", net, i), testKey,
			NodeMeta{Region: "r1", Zone: fmt.Sprintf("z%d", i%2)}))
	}
	for _, g := range gs[1:] {
		if _, err := g.Join([]string{fmt.Sprintf("127.0.%d.1:7946", net)}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	waitFor(t, 5*time.Second, "all nodes see every node alive", func() bool {
		for _, g := range gs {
			if countState(g, StateAlive) != n {
				return false
			}
		}
		return true
	})
	return gs
}

func countState(g *Gossip, s State) int {
	n := 0
	for _, m := range g.Members() {
		if m.State == s {
			n++
		}
	}
	return n
}

func member(g *Gossip, name string) (Member, bool) {
	for _, m := range g.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJoinAndMetaPropagation(t *testing.T) {
	gs := cluster(t, 60, 3)

	m, _ := member(gs[0], "n2")
	if got, want := m.Addr.String(), "127.0.60.2:7946"; got != want {
		t.Errorf("n2 address: got %s, want %s", got, want)
	}
	if got, want := m.Meta.Zone, "z0"; got != want {
		t.Errorf("n2 zone: got %q, want %q", got, want)
	}

	changed := gs[0].Changed()
	want := NodeMeta{Region: "r1", Zone: "z0", Draining: true, AppliedIndex: 42,
		Addrs: map[string]string{"api": "127.0.60.2:8443", "raft": "127.0.60.2:7000"}}
	if err := gs[1].UpdateMeta(want); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed was not closed after a meta update")
	}
	for _, g := range gs {
		waitFor(t, 5*time.Second, g.name+" sees n2's new meta", func() bool {
			m, _ := member(g, "n2")
			return m.Meta.Draining && m.Meta.AppliedIndex == 42 && maps.Equal(m.Meta.Addrs, want.Addrs)
		})
	}
}

func TestFailureDetection(t *testing.T) {
	gs := cluster(t, 61, 4)
	start := time.Now()
	gs[3].Close()
	for _, g := range gs[:3] {
		waitFor(t, FailureDetectionTime, g.name+" sees n4 dead", func() bool {
			m, _ := member(g, "n4")
			return m.State == StateDead
		})
	}
	t.Logf("n4 seen dead by all after %v (bound %v)", time.Since(start).Round(time.Millisecond), FailureDetectionTime)
}

func TestLeave(t *testing.T) {
	gs := cluster(t, 65, 3)
	if err := gs[2].Leave(time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, g := range gs[:2] {
		waitFor(t, 3*time.Second, g.name+" sees n3 left", func() bool {
			m, _ := member(g, "n3")
			return m.State == StateLeft
		})
	}
}

// collector records messages per node.
type collector struct {
	mu  sync.Mutex
	got map[string][]string // from -> payloads
}

func (c *collector) handle(from string, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = make(map[string][]string)
	}
	c.got[from] = append(c.got[from], string(p))
}

func (c *collector) count(from string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got[from])
}

func TestBroadcastReachesAll(t *testing.T) {
	gs := cluster(t, 62, 5)
	cs := make([]*collector, len(gs))
	for i, g := range gs {
		cs[i] = &collector{}
		g.Handle("health", cs[i].handle)
		g.Handle("other", func(string, []byte) { t.Error("message delivered to the wrong topic") })
	}
	const n = 30
	for i := range n {
		gs[0].Broadcast("health", []byte(fmt.Sprintf("result %d", i)))
	}
	for i, c := range cs[1:] {
		waitFor(t, 5*time.Second, fmt.Sprintf("n%d has all %d messages", i+2, n), func() bool { return c.count("n1") == n })
	}
	if got := cs[0].count("n1"); got != 0 {
		t.Errorf("origin received its own messages: got %d, want 0", got)
	}
	// Each message is delivered exactly once per node, duplicates dropped.
	for i, c := range cs[1:] {
		c.mu.Lock()
		got := slices.Sorted(slices.Values(c.got["n1"]))
		c.mu.Unlock()
		if len(slices.Compact(got)) != n {
			t.Errorf("n%d: got %d distinct messages, want %d", i+2, len(slices.Compact(got)), n)
		}
	}

	gs[0].Broadcast("health", bytes.Repeat([]byte("x"), MaxMessageSize))
	if got := gs[0].Stats().MessagesDropped; got != 1 {
		t.Errorf("oversized broadcast: dropped %d, want 1", got)
	}
}

// kvState is a topic state: a set of strings, merged by union.
type kvState struct {
	mu   sync.Mutex
	set  map[string]bool
	from map[string]bool
}

func newKV(items ...string) *kvState {
	s := &kvState{set: map[string]bool{}, from: map[string]bool{}}
	for _, it := range items {
		s.set[it] = true
	}
	return s
}

func (s *kvState) local() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []byte(strings.Join(slices.Sorted(maps.Keys(s.set)), ","))
}

func (s *kvState) merge(from string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from[from] = true
	for _, it := range strings.Split(string(b), ",") {
		if it != "" {
			s.set[it] = true
		}
	}
}

func (s *kvState) heardFrom(node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from[node]
}

func (s *kvState) has(items ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		if !s.set[it] {
			return false
		}
	}
	return true
}

func TestPushPullLateJoiner(t *testing.T) {
	gs := cluster(t, 63, 2)
	s1, s2 := newKV("a", "b"), newKV("c")
	gs[0].RegisterState("health", s1.local, s1.merge)
	gs[1].RegisterState("health", s2.local, s2.merge)

	late := newNode(t, "late", "127.0.63.9:7946", testKey, NodeMeta{})
	s3 := newKV()
	late.RegisterState("health", s3.local, s3.merge)
	late.RegisterState("unused", func() []byte { return nil }, func(string, []byte) {})
	if _, err := late.Join([]string{"127.0.63.2:7946"}); err != nil {
		t.Fatalf("join: %v", err)
	}
	// The join's push-pull with n2 runs before Join returns; n1's state
	// arrives by n2 only at the next periodic push-pull, so it is n2's that
	// must be there now.
	if !s3.has("c") {
		t.Errorf("late joiner state after join: got %q, want it to hold n2's \"c\"", s3.local())
	}
	waitFor(t, 2*time.Second, "n2 merged the joiner's state", func() bool { return s2.heardFrom("late") })
	waitFor(t, 3*pushPullInterval, "the late joiner has everyone's state", func() bool { return s3.has("a", "b", "c") })
}

func TestWrongKeyCannotJoin(t *testing.T) {
	gs := cluster(t, 64, 2)
	other := bytes.Repeat([]byte{9}, KeySize)
	intruder := newNode(t, "intruder", "127.0.64.9:7946", other, NodeMeta{})
	if n, err := intruder.Join([]string{"127.0.64.1:7946"}); err == nil {
		t.Fatalf("join with the wrong key: got %d contacted and no error, want an error", n)
	}
	if got := countState(intruder, StateAlive); got != 1 {
		t.Errorf("intruder's members: got %d alive, want 1 (itself)", got)
	}
	for _, g := range gs {
		if _, ok := member(g, "intruder"); ok {
			t.Errorf("%s lists the intruder", g.name)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	big := NodeMeta{Addrs: map[string]string{"a": strings.Repeat("x", 600)}}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no name", Config{BindAddr: "127.0.66.1:7946", Key: testKey}, "node name is empty"},
		{"short key", Config{NodeName: "a", BindAddr: "127.0.66.1:7946", Key: []byte("short")}, "key is 5 bytes"},
		{"bad bind", Config{NodeName: "a", BindAddr: "127.0.66.1", Key: testKey}, "bind address"},
		{"meta too large", Config{NodeName: "a", BindAddr: "127.0.66.1:7946", Key: testKey, Meta: big}, "limit of 512"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tc.cfg)
			if err == nil {
				g.Close()
				t.Fatalf("New: got no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}
