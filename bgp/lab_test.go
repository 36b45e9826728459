package bgp

// The lab test runs the Speaker against a real router: bird2 in a network
// namespace, joined to the test's namespace by two veth pairs, one per
// speaker. It needs root, iproute2 and bird2 (apt-get install bird2), and
// skips, saying why, without them.
//
//	root namespace                         namespace weftbgp-r (bird)
//	speaker A 198.18.200.2  weftbgp-a0 === weftbgp-a1 198.18.200.1
//	speaker B 198.18.200.6  weftbgp-b0 === weftbgp-b1 198.18.200.5
//	(IPv6 2001:db8:200::/64 and 2001:db8:200:1::/64 on the same links)

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	deploylab "github.com/weftlb/weft/deploy/lab"
)

const (
	labNS     = "weftbgp-r"
	routerASN = 64512
	nodeASN   = 64513
)

// labLink is one veth pair between a speaker and the router.
type labLink struct {
	name             string // bird protocol name
	host, router     string // interface names: host side (root ns), router side
	hostV4, routerV4 netip.Addr
	hostV6, routerV6 netip.Addr
	bits4, bits6     int
}

var (
	linkA = labLink{
		name: "node_a", host: "weftbgp-a0", router: "weftbgp-a1",
		hostV4: netip.MustParseAddr("198.18.200.2"), routerV4: netip.MustParseAddr("198.18.200.1"), bits4: 30,
		hostV6: netip.MustParseAddr("2001:db8:200::2"), routerV6: netip.MustParseAddr("2001:db8:200::1"), bits6: 64,
	}
	linkB = labLink{
		name: "node_b", host: "weftbgp-b0", router: "weftbgp-b1",
		hostV4: netip.MustParseAddr("198.18.200.6"), routerV4: netip.MustParseAddr("198.18.200.5"), bits4: 30,
		hostV6: netip.MustParseAddr("2001:db8:200:1::2"), routerV6: netip.MustParseAddr("2001:db8:200:1::1"), bits6: 64,
	}
	labVIP4 = netip.MustParsePrefix("198.51.100.10/32")
	labVIP6 = netip.MustParsePrefix("2001:db8:51::10/128")
)

type lab struct {
	t    *testing.T
	dir  string
	sock string
}

func labRequirements() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs ip (apt-get install iproute2): %w", err)
	}
	return nil
}

func run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// labDown removes what a lab (this one or a crashed earlier run) left:
// the processes in the router's namespace, the namespace and the veths.
func labDown() {
	if out, err := run("ip", "netns", "pids", labNS); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
	_, _ = run("ip", "netns", "del", labNS)
	for _, l := range []labLink{linkA, linkB} {
		_, _ = run("ip", "link", "del", l.host)
	}
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if err := labRequirements(); err != nil {
		t.Skipf("lab test skipped: %v", err)
	}
	// As root on a fresh machine bird2 is installed, not skipped for.
	if err := deploylab.EnsureTools(context.Background(), "bird"); err != nil {
		t.Fatal(err)
	}
	labDown()
	t.Cleanup(labDown)
	if _, err := run("ip", "netns", "add", labNS); err != nil {
		t.Skipf("lab test skipped: cannot create a network namespace: %v", err)
	}
	steps := [][]string{{"ip", "-n", labNS, "link", "set", "lo", "up"}}
	for _, l := range []labLink{linkA, linkB} {
		steps = append(steps,
			[]string{"ip", "link", "add", l.host, "type", "veth", "peer", "name", l.router, "netns", labNS},
			[]string{"ip", "addr", "add", fmt.Sprintf("%v/%d", l.hostV4, l.bits4), "dev", l.host},
			[]string{"ip", "addr", "add", fmt.Sprintf("%v/%d", l.hostV6, l.bits6), "dev", l.host, "nodad"},
			[]string{"ip", "link", "set", l.host, "up"},
			[]string{"ip", "-n", labNS, "addr", "add", fmt.Sprintf("%v/%d", l.routerV4, l.bits4), "dev", l.router},
			[]string{"ip", "-n", labNS, "addr", "add", fmt.Sprintf("%v/%d", l.routerV6, l.bits6), "dev", l.router, "nodad"},
			[]string{"ip", "-n", labNS, "link", "set", l.router, "up"},
		)
	}
	for _, s := range steps {
		if _, err := run(s...); err != nil {
			t.Fatalf("build lab: %v", err)
		}
	}

	l := &lab{t: t, dir: t.TempDir()}
	l.sock = filepath.Join(l.dir, "bird.ctl")
	conf, err := deploylab.BirdConfig(linkA.routerV4, routerASN, nodeASN,
		[]deploylab.BirdPeer{{Name: linkA.name, Addr: linkA.hostV4}, {Name: linkB.name, Addr: linkB.hostV4}})
	if err != nil {
		t.Fatalf("render bird config: %v", err)
	}
	confPath := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("write bird config: %v", err)
	}
	birdLog, err := os.Create(filepath.Join(l.dir, "bird.log"))
	if err != nil {
		t.Fatalf("create bird log: %v", err)
	}
	// ip netns exec execs bird in place, so the process is bird itself.
	bird := exec.Command("ip", "netns", "exec", labNS, "bird", "-f", "-c", confPath, "-s", l.sock)
	bird.Stdout, bird.Stderr = birdLog, birdLog
	if err := bird.Start(); err != nil {
		t.Fatalf("start bird: %v", err)
	}
	t.Cleanup(func() {
		_ = bird.Process.Kill()
		_ = bird.Wait()
		birdLog.Close()
		if t.Failed() {
			if b, err := os.ReadFile(birdLog.Name()); err == nil {
				t.Logf("bird log:\n%s", b)
			}
		}
	})
	waitFor(t, 10*time.Second, "bird answers on its socket", func() (bool, string) {
		out, err := l.birdc("show", "status")
		return err == nil, out
	})
	return l
}

func (l *lab) birdc(args ...string) (string, error) {
	return run(append([]string{"birdc", "-s", l.sock}, args...)...)
}

// birdRoute is one of bird's routes for a prefix.
type birdRoute struct {
	proto  string // the BGP protocol it came from (node_a, node_b)
	best   bool
	via    string
	asPath []string
}

var birdRouteStart = regexp.MustCompile(`unicast \[(\S+) [^\]]*\]( \*)?`)

// routes parses `birdc show route all <prefix>`.
func (l *lab) routes(prefix netip.Prefix) ([]birdRoute, string) {
	out, err := l.birdc("show", "route", "all", prefix.String())
	if err != nil {
		return nil, err.Error()
	}
	var rs []birdRoute
	for _, line := range strings.Split(out, "\n") {
		if m := birdRouteStart.FindStringSubmatch(line); m != nil {
			rs = append(rs, birdRoute{proto: m[1], best: m[2] != ""})
			continue
		}
		if len(rs) == 0 {
			continue
		}
		r := &rs[len(rs)-1]
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "via":
			r.via = f[1]
		case len(f) >= 1 && f[0] == "BGP.as_path:":
			r.asPath = f[1:]
		}
	}
	return rs, out
}

func (l *lab) protocolEstablished(name string) (bool, string) {
	out, err := l.birdc("show", "protocols", name)
	return err == nil && strings.Contains(out, "Established"), out
}

var viaRE = regexp.MustCompile(`via (\S+)`)

// kernelNextHops are the next hops of the router's kernel route for prefix.
func (l *lab) kernelNextHops(prefix netip.Prefix) ([]string, string) {
	args := []string{"ip", "-n", labNS}
	if prefix.Addr().Is6() {
		args = append(args, "-6")
	}
	out, err := run(append(args, "route", "show", prefix.String())...)
	if err != nil {
		return nil, err.Error()
	}
	var hops []string
	for _, m := range viaRE.FindAllStringSubmatch(out, -1) {
		hops = append(hops, m[1])
	}
	slices.Sort(hops)
	return hops, out
}

// waitRoutes waits until bird's routes for prefix satisfy ok.
func (l *lab) waitRoutes(what string, prefix netip.Prefix, ok func([]birdRoute) bool) []birdRoute {
	l.t.Helper()
	var rs []birdRoute
	waitFor(l.t, 15*time.Second, what, func() (bool, string) {
		var out string
		rs, out = l.routes(prefix)
		return ok(rs), out
	})
	return rs
}

func (l *lab) waitKernelNextHops(what string, prefix netip.Prefix, want ...string) {
	l.t.Helper()
	slices.Sort(want)
	waitFor(l.t, 15*time.Second, what, func() (bool, string) {
		hops, out := l.kernelNextHops(prefix)
		return slices.Equal(hops, want), out
	})
}

// only reports whether rs is a single route from proto via via with an AS
// path of pathLen hops.
func only(proto, via string, pathLen int) func([]birdRoute) bool {
	return func(rs []birdRoute) bool {
		return len(rs) == 1 && rs[0].proto == proto && rs[0].via == via && len(rs[0].asPath) == pathLen
	}
}

func none(rs []birdRoute) bool { return len(rs) == 0 }

func labConfig(l labLink, prepend int) Config {
	return Config{
		RouterID: l.hostV4,
		ASN:      nodeASN,
		Peers:    []Peer{{Address: l.routerV4, ASN: routerASN}},
		Announcements: []Announcement{
			{Prefix: labVIP4, Prepend: prepend}, // next hop: the session's address
			{Prefix: labVIP6, NextHop: l.hostV6, Prepend: prepend},
		},
	}
}

// crash stops s's server the way a dying process does: no withdrawal
// first. The router still hears the session close (a Cease here, a TCP
// FIN or RST from the kernel of a killed process).
func crash(t *testing.T, s *Speaker) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.server.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
		t.Fatalf("stop bgp: %v", err)
	}
	s.running = nil
	clear(s.peers)
	clear(s.announced)
}

// blackhole makes the link silently drop everything in both directions,
// as when a node freezes or loses power: static neighbour entries point at
// a MAC address nobody has, and the interfaces stay up.
func blackhole(t *testing.T, l labLink) {
	t.Helper()
	const nobody = "02:00:00:00:de:ad"
	for _, args := range [][]string{
		{"ip", "neigh", "replace", l.routerV4.String(), "lladdr", nobody, "dev", l.host, "nud", "permanent"},
		{"ip", "-n", labNS, "neigh", "replace", l.hostV4.String(), "lladdr", nobody, "dev", l.router, "nud", "permanent"},
	} {
		if _, err := run(args...); err != nil {
			t.Fatalf("blackhole %s: %v", l.name, err)
		}
	}
}

func TestLabBird(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a4, b4 := linkA.hostV4.String(), linkB.hostV4.String()
	a6, b6 := linkA.hostV6.String(), linkB.hostV6.String()

	a := newSpeaker(t)
	cfgA := labConfig(linkA, 0)
	if err := a.Apply(ctx, cfgA); err != nil {
		t.Fatalf("A: Apply() error = %v", err)
	}
	waitEstablished(t, a)

	// A plain route arrives with A's address as next hop and an AS path of
	// one hop; IPv6 rides the same IPv4 session (MP-BGP).
	l.waitRoutes("A's plain IPv4 route", labVIP4, only(linkA.name, a4, 1))
	l.waitRoutes("A's plain IPv6 route", labVIP6, only(linkA.name, a6, 1))

	// Prepends lengthen the AS path in place.
	cfgA = labConfig(linkA, 2)
	if err := a.Apply(ctx, cfgA); err != nil {
		t.Fatalf("A: Apply(prepend 2) error = %v", err)
	}
	l.waitRoutes("A's route with 2 prepends", labVIP4, only(linkA.name, a4, 3))
	l.waitRoutes("A's IPv6 route with 2 prepends", labVIP6, only(linkA.name, a6, 3))

	// Removing the announcement withdraws it, and only it.
	cfgA.Announcements = cfgA.Announcements[1:]
	if err := a.Apply(ctx, cfgA); err != nil {
		t.Fatalf("A: Apply(without IPv4) error = %v", err)
	}
	l.waitRoutes("A's IPv4 route withdrawn", labVIP4, none)
	if rs, out := l.routes(labVIP6); !only(linkA.name, a6, 3)(rs) {
		t.Errorf("after withdrawing IPv4 the IPv6 route is %+v, want it kept:\n%s", rs, out)
	}

	// A second node in a backup zone: the router prefers the plain route.
	cfgA = labConfig(linkA, 0)
	if err := a.Apply(ctx, cfgA); err != nil {
		t.Fatalf("A: Apply(plain) error = %v", err)
	}
	b := newSpeaker(t)
	if err := b.Apply(ctx, labConfig(linkB, 2)); err != nil {
		t.Fatalf("B: Apply(prepend 2) error = %v", err)
	}
	waitEstablished(t, b)
	rs := l.waitRoutes("A plain and B prepended", labVIP4, func(rs []birdRoute) bool { return len(rs) == 2 })
	for _, r := range rs {
		if r.best != (r.proto == linkA.name) {
			t.Errorf("route from %s (AS path %v) best = %v, want only A's plain route best", r.proto, r.asPath, r.best)
		}
	}
	l.waitKernelNextHops("kernel route via A only", labVIP4, a4)
	l.waitKernelNextHops("IPv6 kernel route via A only", labVIP6, a6)

	// Both plain: ECMP over both nodes.
	if err := b.Apply(ctx, labConfig(linkB, 0)); err != nil {
		t.Fatalf("B: Apply(plain) error = %v", err)
	}
	l.waitKernelNextHops("ECMP kernel route via A and B", labVIP4, a4, b4)
	l.waitKernelNextHops("IPv6 ECMP kernel route via A and B", labVIP6, a6, b6)
	if _, out := l.kernelNextHops(labVIP4); testing.Verbose() {
		_, bird := l.routes(labVIP4)
		t.Logf("ECMP at the router:\n%s\n%s", bird, out)
	}

	// A node whose process dies without withdrawing: its session ends,
	// and the router drops its routes at once.
	start := time.Now()
	crash(t, b)
	l.waitKernelNextHops("B's route gone after its crash", labVIP4, a4)
	t.Logf("crash without withdrawal: router dropped the node's route after %v", time.Since(start).Round(time.Millisecond))

	// Drain: WithdrawAll removes the routes and keeps the session.
	b2 := newSpeaker(t)
	if err := b2.Apply(ctx, labConfig(linkB, 0)); err != nil {
		t.Fatalf("B again: Apply() error = %v", err)
	}
	l.waitKernelNextHops("ECMP again with B restarted", labVIP4, a4, b4)
	if err := b2.WithdrawAll(ctx); err != nil {
		t.Fatalf("B: WithdrawAll() error = %v", err)
	}
	l.waitKernelNextHops("B withdrawn, A stays", labVIP4, a4)
	l.waitKernelNextHops("B withdrawn, A stays (IPv6)", labVIP6, a6)
	if st := b2.Status(); len(st.Peers) != 1 || !st.Peers[0].Established() {
		t.Errorf("B's sessions after WithdrawAll = %+v, want one established", st.Peers)
	}
	if up, out := l.protocolEstablished(linkB.name); !up {
		t.Errorf("bird's session to B after WithdrawAll is not established:\n%s", out)
	}

	// A node that goes silent (power loss, freeze): only the hold timer
	// notices. Bird must drop its routes within hold time + 1 s.
	hold := DefaultHoldTime
	start = time.Now()
	blackhole(t, linkA)
	l.waitRoutes("A's route gone after it went silent", labVIP4, none)
	took := time.Since(start)
	t.Logf("silent node: router dropped its route after %v (hold time %v)", took.Round(time.Millisecond), hold)
	if took > hold+time.Second {
		t.Errorf("silent node's route dropped after %v, want within hold time + 1s = %v", took, hold+time.Second)
	}

	// When the link works again the session and the route come back on
	// their own: GoBGP idles 5 s after a failed session, then redials.
	start = time.Now()
	for _, args := range [][]string{
		{"ip", "neigh", "del", linkA.routerV4.String(), "dev", linkA.host},
		{"ip", "-n", labNS, "neigh", "del", linkA.hostV4.String(), "dev", linkA.router},
	} {
		if _, err := run(args...); err != nil {
			t.Fatalf("restore link A: %v", err)
		}
	}
	l.waitRoutes("A's route back after the link returned", labVIP4, only(linkA.name, a4, 1))
	t.Logf("link back: router has the node's route again after %v", time.Since(start).Round(time.Millisecond))
}
