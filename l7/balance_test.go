package l7

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
)

func testMembers(weights ...uint32) []*member {
	ms := make([]*member, len(weights))
	for i, w := range weights {
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 80)
		ms[i] = &member{addr: addr, hostport: addr.String(), weight: w, healthy: true, st: &memberState{stats: new(counters)}}
	}
	return ms
}

func TestRoundRobinSmooth(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
		picks   int
		want    []int
		// maxRun bounds consecutive picks of one member: smoothness.
		maxRun int
	}{
		{"equal", []uint32{100, 100, 100}, 300, []int{100, 100, 100}, 1},
		// nginx's smooth WRR also runs 4 across the cycle boundary here.
		{"5:1:1", []uint32{5, 1, 1}, 70, []int{50, 10, 10}, 4},
		{"zero weight", []uint32{100, 0, 50}, 30, []int{20, 0, 10}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := testMembers(tc.weights...)
			rr := newRoundRobin(ms)
			got := make([]int, len(ms))
			run, last := 0, -1
			for range tc.picks {
				m := rr.pick(nil, netip.Addr{}, 0)
				i := int(m.addr.Addr().As4()[3]) - 1
				got[i]++
				if i == last {
					run++
				} else {
					run = 1
				}
				last = i
				if run > tc.maxRun {
					t.Fatalf("member %d picked %d times in a row, want at most %d", i, run, tc.maxRun)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("picks = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRoundRobinLargePool(t *testing.T) {
	weights := make([]uint32, 5000)
	for i := range weights {
		weights[i] = uint32(1 + i%100)
	}
	rr := newRoundRobin(testMembers(weights...))
	if len(rr.schedule) > maxSchedule {
		t.Fatalf("schedule has %d slots, want at most %d", len(rr.schedule), maxSchedule)
	}
	if m := rr.pick(nil, netip.Addr{}, 0); m == nil {
		t.Fatal("no pick from a large pool")
	}
}

func TestRoundRobinSkipsEjected(t *testing.T) {
	ms := testMembers(100, 100)
	ms[0].st.ejectedUntil.Store(1 << 62)
	rr := newRoundRobin(ms)
	for range 10 {
		if m := rr.pick(nil, netip.Addr{}, 1); m != ms[1] {
			t.Fatalf("picked %s, want the non-ejected %s", m.hostport, ms[1].hostport)
		}
	}
}

func TestLeastRequest(t *testing.T) {
	ms := testMembers(100, 100, 100)
	ms[0].st.inflight.Store(10)
	ms[1].st.inflight.Store(10)
	lr := newLeastRequest(ms)
	got := map[*member]int{}
	for range 300 {
		got[lr.pick(nil, netip.Addr{}, 0)]++
	}
	// Power of two choices: the idle member wins every pair it is in
	// (2/3 of pairs), the loaded ones split the rest.
	if got[ms[2]] < 150 {
		t.Errorf("idle member got %d of 300 picks, want about 200", got[ms[2]])
	}
}

func TestHashRing(t *testing.T) {
	ms := testMembers(100, 100, 100, 100)
	hr := newHashRing(ms, clientIPKey)
	counts := map[*member]int{}
	first := map[netip.Addr]*member{}
	for i := range 2000 {
		ip := netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)})
		m := hr.pick(nil, ip, 0)
		first[ip] = m
		counts[m]++
		if again := hr.pick(nil, ip, 0); again != m {
			t.Fatalf("client %s: %s then %s, want the same member", ip, m.hostport, again.hostport)
		}
	}
	for _, m := range ms {
		if c := counts[m]; c < 300 || c > 700 {
			t.Errorf("member %s got %d of 2000 clients, want about 500", m.hostport, c)
		}
	}
	// A member going down moves only its own clients.
	ms[0].healthy = false
	moved := 0
	for ip, m := range first {
		now := hr.pick(nil, ip, 0)
		if m != ms[0] && now != m {
			moved++
		}
		if now == ms[0] {
			t.Fatalf("client %s still sent to the down member", ip)
		}
	}
	if moved != 0 {
		t.Errorf("%d clients of healthy members moved, want 0", moved)
	}
	// Same input, same ring: every node answers alike.
	other := newHashRing(testMembers(100, 100, 100, 100), clientIPKey)
	ip := netip.MustParseAddr("198.51.100.7")
	if a, b := newHashRing(testMembers(100, 100, 100, 100), clientIPKey).pick(nil, ip, 0), other.pick(nil, ip, 0); a.hostport != b.hostport {
		t.Errorf("two rings from the same members disagree: %s vs %s", a.hostport, b.hostport)
	}
}

// TestPolicySpreadThroughProxy checks each algorithm end to end.
func TestPolicySpreadThroughProxy(t *testing.T) {
	bs := []*backend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	members := func(weights ...uint32) []Member {
		var ms []Member
		for i, b := range bs {
			m := b.member()
			m.Weight = weights[i]
			ms = append(ms, m)
		}
		return ms
	}
	tests := []struct {
		name  string
		pool  Pool
		hdr   func(i int) map[string]string
		check func(t *testing.T, got map[string]int)
	}{
		{"round-robin weighted", Pool{Algorithm: RoundRobin, Members: members(100, 50, 50)}, nil,
			func(t *testing.T, got map[string]int) {
				if got["b0"] != 60 || got["b1"] != 30 || got["b2"] != 30 {
					t.Errorf("spread = %v, want b0:60 b1:30 b2:30", got)
				}
			}},
		{"least-request", Pool{Algorithm: LeastRequest, Members: members(100, 100, 100)}, nil,
			func(t *testing.T, got map[string]int) {
				for _, b := range bs {
					if got[b.name] < 15 {
						t.Errorf("spread = %v, want every member used", got)
					}
				}
			}},
		{"hash-client-ip", Pool{Algorithm: HashClientIP, Members: members(100, 100, 100)}, nil,
			func(t *testing.T, got map[string]int) {
				if len(got) != 1 {
					t.Errorf("spread = %v, want one member for one client", got)
				}
			}},
		{"hash-header", Pool{Algorithm: HashHeader, HashKey: "X-User", Members: members(100, 100, 100)},
			func(i int) map[string]string { return map[string]string{"X-User": fmt.Sprint("user", i%40)} },
			func(t *testing.T, got map[string]int) {
				if len(got) != 3 {
					t.Errorf("spread = %v, want 40 users over all three members", got)
				}
			}},
		{"hash-cookie", Pool{Algorithm: HashCookie, HashKey: "session", Members: members(100, 100, 100)},
			func(i int) map[string]string { return map[string]string{"Cookie": "session=constant"} },
			func(t *testing.T, got map[string]int) {
				if len(got) != 1 {
					t.Errorf("spread = %v, want one member for one cookie", got)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t, "127.0.0.3")
			startProxy(t, Config{Pools: map[string]Pool{"p": tc.pool},
				Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}}})
			client := noRedirectClient()
			got := map[string]int{}
			for i := range 120 {
				var hdr map[string]string
				if tc.hdr != nil {
					hdr = tc.hdr(i)
				}
				resp, body := get(t, client, "http://"+addr.String()+"/", hdr)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200", resp.StatusCode)
				}
				got[body]++
			}
			tc.check(t, got)
		})
	}
}

func TestApplyKeepsSocketsAndRetriesOnConnectFailure(t *testing.T) {
	live := startBackend(t, "live", nil)
	dead := freeAddr(t, "127.0.0.1") // nothing listens here
	addr := freeAddr(t, "127.0.0.4")
	cfg := Config{
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: dead, Weight: 100, Healthy: true}, live.member()}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}},
	}
	p := startProxy(t, cfg)
	before := p.sockets[addr]
	client := noRedirectClient()
	for range 10 {
		resp, body := get(t, client, "http://"+addr.String()+"/", nil)
		if resp.StatusCode != 200 || body != "live" {
			t.Fatalf("got %d %q, want 200 from live after retrying the dead member", resp.StatusCode, body)
		}
	}
	st := p.Stats()
	var ejected bool
	for _, m := range st.Members {
		if m.Addr == dead.String() {
			ejected = m.Ejected
		}
	}
	if !ejected {
		t.Errorf("dead member not ejected after repeated connect failures")
	}
	// A POST is not retried: it may not be replayed.
	cfg.Listeners[0].Routes = []Route{{Name: "r", PathPrefix: "/", Pool: "p"}}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if p.sockets[addr] != before {
		t.Errorf("Apply with the same address replaced the socket")
	}
	// A new timeout keeps the socket too (a new server generation on it).
	cfg.Listeners[0].Timeouts.Idle = 5 * 1e9
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if p.sockets[addr] != before {
		t.Errorf("Apply with a new idle timeout replaced the socket")
	}
	resp, _ := get(t, client, "http://"+addr.String()+"/", nil)
	if resp.StatusCode != 200 {
		t.Errorf("status after Apply = %d, want 200", resp.StatusCode)
	}
}

func TestFreebind(t *testing.T) {
	// 192.0.2.1 (TEST-NET-1) is on no interface; IP_FREEBIND binds it anyway.
	addr := netip.MustParseAddrPort("192.0.2.1:18080")
	p := New(Options{})
	defer p.Close()
	if err := p.Apply(context.Background(), Config{Listeners: []Listener{{Name: "vip", Addr: addr}}}); err != nil {
		t.Fatalf("Apply on a VIP not configured locally: %v", err)
	}
}
