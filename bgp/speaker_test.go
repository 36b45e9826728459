package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// These tests run GoBGP in-process over loopback and need no root: a
// Speaker announces to a second Speaker acting as the router.

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return nil
}

func newSpeaker(t *testing.T) *Speaker {
	t.Helper()
	s, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() error = %v", err)
		}
	})
	return s
}

// rib lists the routes in s's global RIB (its own and those received),
// keyed by prefix.
func rib(t *testing.T, s *Speaker) map[string]route {
	t.Helper()
	out := map[string]route{}
	for _, f := range []*api.Family{familyIPv4, familyIPv6} {
		err := s.server.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f}, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				if p.GetBest() {
					r := decodePath(t, p)
					out[r.prefix] = r
				}
			}
		})
		if err != nil {
			t.Fatalf("ListPath(%v) error = %v", f, err)
		}
	}
	return out
}

// waitFor polls cond until it holds or timeout passes; cond says what it
// saw so that a failure explains itself.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last saw %s", what, timeout, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

var loopback = netip.MustParseAddr("127.0.0.1")

func TestApplyReconcilesRIB(t *testing.T) {
	s := newSpeaker(t)
	ctx := context.Background()
	v4, v6 := netip.MustParsePrefix("198.51.100.10/32"), netip.MustParsePrefix("2001:db8:51::10/128")
	cfg := Config{
		RouterID: netip.MustParseAddr("198.18.1.11"),
		ASN:      64513,
		Announcements: []Announcement{
			{Prefix: v4, NextHop: netip.MustParseAddr("198.18.1.11")},
			{Prefix: v6, NextHop: netip.MustParseAddr("2001:db8:1::11"), Prepend: 2},
		},
	}
	steps := []struct {
		name   string
		mutate func(*Config)
		want   map[string]route
	}{
		{
			name:   "initial",
			mutate: func(*Config) {},
			want: map[string]route{
				"198.51.100.10/32":    {prefix: "198.51.100.10/32", nextHop: "198.18.1.11"},
				"2001:db8:51::10/128": {prefix: "2001:db8:51::10/128", nextHop: "2001:db8:1::11", asPath: []uint32{64513, 64513}},
			},
		},
		{
			name:   "prepend and med changed",
			mutate: func(c *Config) { c.Announcements[0].Prepend = 1; c.Announcements[0].MED = 10 },
			want: map[string]route{
				"198.51.100.10/32":    {prefix: "198.51.100.10/32", nextHop: "198.18.1.11", asPath: []uint32{64513}, med: 10},
				"2001:db8:51::10/128": {prefix: "2001:db8:51::10/128", nextHop: "2001:db8:1::11", asPath: []uint32{64513, 64513}},
			},
		},
		{
			name:   "ipv4 removed",
			mutate: func(c *Config) { c.Announcements = c.Announcements[1:] },
			want: map[string]route{
				"2001:db8:51::10/128": {prefix: "2001:db8:51::10/128", nextHop: "2001:db8:1::11", asPath: []uint32{64513, 64513}},
			},
		},
		{
			name:   "asn change restarts with the same routes",
			mutate: func(c *Config) { c.ASN = 64514 },
			want: map[string]route{
				"2001:db8:51::10/128": {prefix: "2001:db8:51::10/128", nextHop: "2001:db8:1::11", asPath: []uint32{64514, 64514}},
			},
		},
	}
	for _, step := range steps {
		step.mutate(&cfg)
		// Twice: the second Apply must find nothing to do.
		for i := range 2 {
			if err := s.Apply(ctx, cfg); err != nil {
				t.Fatalf("%s: Apply() #%d error = %v", step.name, i+1, err)
			}
			if got := rib(t, s); !reflect.DeepEqual(got, step.want) {
				t.Errorf("%s: after Apply #%d RIB = %+v, want %+v", step.name, i+1, got, step.want)
			}
		}
		if st := s.Status(); st.ASN != cfg.ASN || len(st.Announced) != len(cfg.Announcements) {
			t.Errorf("%s: Status() = ASN %d with %d routes, want ASN %d with %d", step.name, st.ASN, len(st.Announced), cfg.ASN, len(cfg.Announcements))
		}
	}

	bad := cfg
	bad.Announcements = append(bad.Announcements, Announcement{Prefix: netip.MustParsePrefix("198.51.100.0/24")})
	if err := s.Apply(ctx, bad); err == nil {
		t.Errorf("Apply(a /24) error = nil, want an error")
	}
	if got := len(rib(t, s)); got != 1 {
		t.Errorf("after a rejected Apply the RIB holds %d routes, want the 1 it had", got)
	}

	if err := s.WithdrawAll(ctx); err != nil {
		t.Fatalf("WithdrawAll() error = %v", err)
	}
	if err := s.Apply(ctx, cfg); err != nil {
		t.Fatalf("Apply() after WithdrawAll error = %v", err)
	}
	if got := rib(t, s); len(got) != 0 {
		t.Errorf("after WithdrawAll and Apply the RIB = %+v, want it empty (draining)", got)
	}
	if st := s.Status(); !st.Draining {
		t.Errorf("Status().Draining = false after WithdrawAll, want true")
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if err := s.Apply(ctx, cfg); err == nil {
		t.Errorf("Apply() after Close error = nil, want an error")
	}
}

// TestSessionOverLoopback has one Speaker announce to another that stands
// in for a router, and checks what the router receives.
func TestSessionOverLoopback(t *testing.T) {
	ctx := context.Background()
	routerPort := freePort(t)
	router := newSpeaker(t)
	err := router.Apply(ctx, Config{
		RouterID: netip.MustParseAddr("198.18.0.1"), ASN: 64512, ListenPort: routerPort,
		Peers: []Peer{{Address: loopback, ASN: 64513}},
	})
	if err != nil {
		t.Fatalf("router Apply() error = %v", err)
	}

	node := newSpeaker(t)
	v4 := netip.MustParsePrefix("198.51.100.10/32")
	cfg := Config{
		RouterID:      netip.MustParseAddr("198.18.1.11"),
		ASN:           64513,
		Peers:         []Peer{{Address: loopback, ASN: 64512, Port: uint16(routerPort)}},
		Announcements: []Announcement{{Prefix: v4, Prepend: 2, Communities: []uint32{64513<<16 | 100}}},
	}
	if err := node.Apply(ctx, cfg); err != nil {
		t.Fatalf("node Apply() error = %v", err)
	}
	waitEstablished(t, node)

	// The zero next hop becomes the session's address; GoBGP adds the
	// ASN once more on the way out.
	want := route{prefix: v4.String(), nextHop: "127.0.0.1", asPath: []uint32{64513, 64513, 64513}, communities: []uint32{64513<<16 | 100}}
	waitRoute(t, router, v4, &want)

	cfg.Announcements[0].Prepend = 0
	cfg.Announcements[0].Communities = nil
	if err := node.Apply(ctx, cfg); err != nil {
		t.Fatalf("node Apply(plain) error = %v", err)
	}
	waitRoute(t, router, v4, &route{prefix: v4.String(), nextHop: "127.0.0.1", asPath: []uint32{64513}})

	since := node.Status().Peers[0].Since
	if since.IsZero() {
		t.Errorf("established session has no start time: %+v", node.Status().Peers[0])
	}
	if err := node.Apply(ctx, cfg); err != nil {
		t.Fatalf("node Apply(same) error = %v", err)
	}
	if st := node.Status(); !st.Peers[0].Established() || !st.Peers[0].Since.Equal(since) {
		t.Errorf("after applying the same config the session is %+v, want still established since %v", st.Peers[0], since)
	}

	// A changed peer setting re-creates the session, and the route comes
	// back on the new one.
	cfg.Peers[0].KeepaliveInterval = 2 * time.Second
	if err := node.Apply(ctx, cfg); err != nil {
		t.Fatalf("node Apply(keepalive 2s) error = %v", err)
	}
	waitFor(t, 15*time.Second, "session re-created", func() (bool, string) {
		st := node.Status()
		return len(st.Peers) == 1 && st.Peers[0].Established() && st.Peers[0].Since.After(since), fmt.Sprintf("%+v", st.Peers)
	})
	waitRoute(t, router, v4, &route{prefix: v4.String(), nextHop: "127.0.0.1", asPath: []uint32{64513}})

	if err := node.WithdrawAll(ctx); err != nil {
		t.Fatalf("WithdrawAll() error = %v", err)
	}
	waitRoute(t, router, v4, nil)
	if st := node.Status(); !st.Peers[0].Established() {
		t.Errorf("after WithdrawAll the session is %+v, want established", st.Peers[0])
	}
}

func waitEstablished(t *testing.T, s *Speaker) {
	t.Helper()
	waitFor(t, 15*time.Second, "sessions established", func() (bool, string) {
		st := s.Status()
		for _, p := range st.Peers {
			if !p.Established() {
				return false, fmt.Sprintf("%+v", st.Peers)
			}
		}
		return len(st.Peers) > 0, fmt.Sprintf("%+v", st.Peers)
	})
}

// waitRoute waits until s's best route for prefix is want, or until it
// has none when want is nil.
func waitRoute(t *testing.T, s *Speaker, prefix netip.Prefix, want *route) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("route %v = %+v", prefix, want), func() (bool, string) {
		got, ok := rib(t, s)[prefix.String()]
		if want == nil {
			return !ok, fmt.Sprintf("%+v", got)
		}
		return ok && reflect.DeepEqual(got, *want), fmt.Sprintf("%+v (present %v)", got, ok)
	})
}
