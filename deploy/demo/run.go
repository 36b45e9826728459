package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftlb/weft/dataplane/bpffs"
	"github.com/weftlb/weft/deploy/lab"
)

// demo is one run: the lab, its processes and the cluster's credentials.
type demo struct {
	start  time.Time
	dir    string
	weft   string // absolute path of the weft binary
	l      *lab.Lab
	agents []*agent
	http   *http.Client // from the lab's client namespace
	// env lets the weft CLI reach the cluster (WEFT_ADDR, _TOKEN, _CA_FILE).
	env []string
	// sent and lost count the requests sent through the VIP and those
	// that failed; cut counts the lost ones opened within syncWindow
	// before the kill.
	sent, lost, cut int
}

// syncWindow bounds how long before a node's death a connection through
// it may have opened and still have no copy on another node: its
// handshake plus the time its flow report takes to leave (flow sync is
// asynchronous, as every LB's is). Such a connection is lost with the
// node; the demo counts them apart, and its test allows no other loss.
const syncWindow = 10 * time.Millisecond

func (d *demo) step(format string, args ...any) {
	fmt.Printf("\n\033[1m== [%4.1fs] %s\033[0m\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, weft string) error {
	d := &demo{start: time.Now(), dir: stateDir()}
	d.step("build weft and the lab's HTTP server; remove any earlier demo")
	if weft == "" {
		weft = "bin/weft"
		if err := goBuild(weft, "./cmd/weft"); err != nil {
			return err
		}
	}
	var err error
	if d.weft, err = filepath.Abs(weft); err != nil {
		return err
	}
	if _, err := teardown(); err != nil {
		return fmt.Errorf("remove the earlier demo: %w", err)
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	labserver := filepath.Join(d.dir, "labserver")
	if err := goBuild(labserver, "./deploy/lab/labserver"); err != nil {
		return err
	}
	fmt.Printf("weft: %s\nstate (data dirs, logs): %s\n", d.weft, d.dir)

	d.step("bring the lab up: network namespaces %s-*, installing missing Debian packages", prefix)
	if err := lab.EnsureTools(ctx, "curl"); err != nil {
		return err
	}
	if d.l, err = lab.Up(ctx, topology); err != nil {
		return err
	}
	d.printTopology()
	d.http = newHTTPClient(d.l)
	if err := d.startServers(ctx, labserver); err != nil {
		return err
	}
	if err := d.attachPass(); err != nil {
		return err
	}

	if err := d.formCluster(ctx); err != nil {
		return d.failed(err)
	}
	if err := d.apply(ctx); err != nil {
		return d.failed(err)
	}
	if err := d.spread(ctx); err != nil {
		return d.failed(err)
	}
	if err := d.killLeader(ctx); err != nil {
		return d.failed(err)
	}
	d.summary()
	return nil
}

func (d *demo) printTopology() {
	l := d.l
	fmt.Printf("  client %s --- router %s | %s (bird2, AS %d, ECMP)\n", l.Client.Addr, lab.RouterOuter, lab.RouterInner, lab.RouterASN)
	fmt.Printf("                          |  bridge %s (namespace %s)\n", lab.FabricPrefix, l.Switch.NS)
	var nodes, servers []string
	for i, n := range l.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %s (zone %s)", n.Name, n.Addr, l.Topology.Nodes[i].Zone))
	}
	for _, s := range l.Servers {
		servers = append(servers, fmt.Sprintf("%s %s", s.Name, s.Addr))
	}
	fmt.Printf("  Weft nodes (XDP on eth0, BGP AS %d): %s\n", lab.NodeASN, strings.Join(nodes, ", "))
	fmt.Printf("  HTTP servers on :8080: %s\n", strings.Join(servers, ", "))
}

// startServers runs the lab server in each server's namespace, detached
// so it outlives the demo, and waits until each accepts connections.
func (d *demo) startServers(ctx context.Context, bin string) error {
	for _, s := range d.l.Servers {
		log := filepath.Join(d.dir, s.Name+".log")
		if _, err := d.detached(s, log, log, bin, "-name", s.Name, "-addr", ":8080"); err != nil {
			return err
		}
	}
	for _, s := range d.l.Servers {
		addr := s.Addr.String() + ":8080"
		if err := waitFor(5*time.Second, s.Name+" listening", func() error { return d.dialClient(ctx, addr) }); err != nil {
			return err
		}
	}
	return nil
}

// attachPass gives each node's switch port the XDP program that lets the
// node's XDP_TX frames through (lab.AttachPass) and pins it, so it stays
// after the demo exits. Pins need a bpf filesystem: the demo mounts one
// where none is, and make demo-down unmounts it again.
func (d *demo) attachPass() error {
	mounted, err := bpffs.Mount(pinDir)
	if err != nil {
		return fmt.Errorf("mount the bpf filesystem for the xdp pass programs' pins: %w", err)
	}
	if mounted {
		if err := os.WriteFile(filepath.Join(d.dir, bpffsMark), nil, 0o600); err != nil {
			return err
		}
		fmt.Printf("mounted a bpf filesystem on %s (none was mounted; make demo-down unmounts it)\n", pinDir)
	}
	for _, n := range d.l.Nodes {
		pass, err := d.l.AttachPass(n)
		if err != nil {
			return err
		}
		pinner, ok := pass.(interface{ Pin(string) error })
		if !ok {
			pass.Close()
			return fmt.Errorf("xdp pass link of %s cannot be pinned", n.Name)
		}
		err = pinner.Pin(filepath.Join(pinDir, prefix+"-pass-"+n.Name))
		pass.Close() // the pin keeps the program attached
		if err != nil {
			return fmt.Errorf("pin the xdp pass program of %s: %w", n.Name, err)
		}
	}
	return nil
}

func (d *demo) apply(ctx context.Context) error {
	d.step("weft apply -f %s (a load balancer: VIP %s, tcp :80, pool of the four servers)", manifest, vip)
	body, err := os.ReadFile(manifest)
	if err != nil {
		return err
	}
	for _, s := range d.l.Servers {
		if !strings.Contains(string(body), s.Addr.String()) {
			return fmt.Errorf("%s does not name %s (%s): it no longer matches the lab", manifest, s.Name, s.Addr)
		}
	}
	fmt.Print(indent(stripComments(string(body))))
	applied := time.Now()
	if err := d.cli(ctx, "apply", "-f", manifest); err != nil {
		return err
	}

	d.step("the router learned the VIP from every node over BGP and installed an ECMP route")
	if err := d.waitRoute(10*time.Second, d.l.Nodes...); err != nil {
		return err
	}
	fmt.Printf("route via all three nodes %.1f s after apply returned (each node checks the servers first)\n",
		time.Since(applied).Seconds())
	out, err := d.l.Birdc(ctx, "show", "route", "for", vip)
	if err != nil {
		return err
	}
	fmt.Printf("$ birdc show route for %s   (what BGP brought in)\n%s", vip, indent(out))
	return d.showKernelRoute(ctx)
}

func (d *demo) showKernelRoute(ctx context.Context) error {
	out, err := d.l.Command(ctx, d.l.Router, "ip", "route", "show", vip).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route: %w: %s", err, out)
	}
	fmt.Printf("$ ip route show %s   (in the router: the kernel hashes each connection to one next hop)\n%s", vip, indent(string(out)))
	return nil
}

func (d *demo) spread(ctx context.Context) error {
	d.step("traffic: 200 HTTP requests from the client through the VIP, a new TCP connection each")
	// XDP nodes learn the servers' MAC addresses from their health checks.
	if err := waitFor(10*time.Second, "first answer through the VIP", func() error {
		_, err := d.get(ctx)
		return err
	}); err != nil {
		return err
	}
	rec := newRecorder()
	runLoop(ctx, d, rec, loopOptions{workers: 4, requests: 200})
	fmt.Printf("answered by (each node picks the server with the same Maglev table, whichever node ECMP chose):\n")
	fmt.Print(rec.perServer(0, time.Hour))
	ok, _, failed := rec.totals(0, time.Hour)
	if failed > 0 {
		return fmt.Errorf("%d of %d requests failed before any node was killed:\n%s", failed, ok+failed, rec.errorSample())
	}
	d.sent += ok
	return nil
}

// killLeader SIGKILLs the Raft leader while clients keep connecting, shows
// the route shrink and the clients' success, then restarts the node from
// its data dir and shows it rejoin.
func (d *demo) killLeader(ctx context.Context) error {
	victim, err := d.leader(ctx)
	if err != nil {
		return err
	}
	d.step("SIGKILL %s, the Raft leader, while 4 clients keep connecting (%s timeout each)", victim.host.Name, requestTimeout)
	rec := newRecorder()
	loopCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { runLoop(loopCtx, d, rec, loopOptions{workers: 4, pause: 20 * time.Millisecond}); close(done) }()
	watchDone := make(chan struct{})
	go func() { d.watchRoute(loopCtx, rec); close(watchDone) }()

	time.Sleep(2 * time.Second) // a baseline to compare with
	rec.event(fmt.Sprintf("SIGKILL %s (weft agent pid %d)", victim.host.Name, victim.cmd.Process.Pid))
	killed := rec.since()
	victim.kill()
	var rest []lab.Host
	for _, a := range d.agents {
		if a != victim {
			rest = append(rest, a.host)
		}
	}
	err = d.waitRoute(10*time.Second, rest...)
	routeGone := rec.since()
	if err == nil {
		time.Sleep(3 * time.Second) // traffic after the router dropped the node
	}
	stop()
	<-done
	<-watchDone
	if err != nil {
		return err
	}
	fmt.Print(rec.timeline())
	if err := d.showKernelRoute(ctx); err != nil {
		return err
	}
	ok, slow, failed := rec.totals(0, time.Hour)
	cutReqs := rec.failedStarted(killed-syncWindow, killed)
	cut := len(cutReqs)
	d.sent, d.lost, d.cut = d.sent+ok+failed, d.lost+failed, d.cut+cut
	afterOK, _, afterFailed := rec.totals(routeGone+time.Second, time.Hour)
	fmt.Printf("%d requests: %d answered, %d failed\n", ok+failed, ok, failed)
	if slow > 0 {
		fmt.Printf("%d answered after more than %s: a client resends a lost SYN after 1 s (a SYN that reached %s\n"+
			"as it died, before the router dropped it, is lost; the resend takes the new route)\n", slow, slowAfter, victim.host.Name)
	}
	if cut > 0 {
		fmt.Printf("%d failed, opened through %s in the last %s before it died, before flow sync had a copy\n"+
			"of them on another node:\n", cut, victim.host.Name, syncWindow)
		for _, res := range cutReqs {
			fmt.Printf("    started %.1f ms before the kill, failed after %.1f s: %v\n",
				float64(killed-res.at)/float64(time.Millisecond), res.took.Seconds(), res.err)
		}
	}
	if failed > cut {
		fmt.Printf("%d failed otherwise; a sample:\n%s", failed-cut, rec.errorSample())
	}
	fmt.Printf("from 1 s after the router dropped %s: %d answered, %d failed; answered by:\n", victim.host.Name, afterOK, afterFailed)
	fmt.Print(rec.perServer(routeGone, time.Hour))
	fmt.Printf("The kernel closed %s's BGP session as the process died, so the router dropped it at once;\n"+
		"a machine that dies silently is dropped when the BGP hold time (3 s) runs out.\n", victim.host.Name)
	if err := waitFor(10*time.Second, "a new Raft leader", func() error {
		_, err := d.leader(ctx)
		return err
	}); err != nil {
		return err
	}
	fmt.Println("the two other voters elected a new Raft leader, so the cluster still takes config:")
	if err := d.cli(ctx, "nodes"); err != nil {
		return err
	}

	d.step("restart %s from its data dir: it rejoins and announces the VIP again", victim.host.Name)
	restarted := time.Now()
	if err := d.startAgent(ctx, victim); err != nil {
		return err
	}
	if err := d.waitRoute(20*time.Second, d.l.Nodes...); err != nil {
		return err
	}
	fmt.Printf("route via all three nodes again %.1f s after the restart\n", time.Since(restarted).Seconds())
	return d.showKernelRoute(ctx)
}

func (d *demo) summary() {
	d.step("done in %.0f s", time.Since(d.start).Seconds())
	fmt.Printf(`What Weft just did:
  - Three 'weft agent' processes formed one cluster: node1 created it (certificate authority, Raft log,
    admin token); node2 and node3 joined with a join token that pins that CA, so they knew whom they joined.
  - 'weft apply' stored a load balancer in Raft. Every node turned it into XDP forwarding state (a Maglev
    table over the four servers, health-checked) and announced the VIP %s/32 to the router over BGP.
  - The router (bird2) made one route with a next hop per node (ECMP): each connection hashes to a node,
    and every node sends it to the same server, so no node is special.
  - The Raft leader was SIGKILLed mid-traffic: its BGP session closed, the router dropped it, the two
    other nodes kept serving and elected a new leader. Connections under way through it carried on: every
    flow has copies on the two nodes that own its hash bucket (flow sync), and the node that inherited its
    FullNAT source address answered for it. Restarted from its data dir, it pulled its flows back and
    rejoined on its own.

Left running (make demo-down removes it). Poke at it, as root, from the repository root:
%s`, vip, d.pokeHelp())
	// The last line, for scripts and the demo's test to check.
	fmt.Printf("\ndemo result: %d requests through the VIP, %d failed, %d of them opened in the last %s before the kill\n",
		d.sent, d.lost, d.cut, syncWindow)
}

func (d *demo) pokeHelp() string {
	in := "ip netns exec " + d.l.Client.NS + " "
	lines := [][2]string{
		{in + "curl -s http://" + vip + "/", "a server answers with its name"},
		{". " + filepath.Join(d.dir, "env"), "sets WEFT_ADDR, WEFT_TOKEN (admin), WEFT_CA_FILE"},
		{in + "bin/weft nodes", "also: status, get lb, describe lb web"},
		{in + "bin/weft node drain node2", "then: ip -n " + d.l.Router.NS + " route show " + vip},
		{"birdc -s " + d.l.BirdSocket() + " show protocols", "the router's BGP sessions"},
		{"less " + filepath.Join(d.dir, "node1.log"), "each node's log"},
		{"make demo-down", "removes it all"},
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "  %-56s # %s\n", l[0], l[1])
	}
	return b.String()
}

// failed reports a failure with the tail of each node's log, leaving the
// lab up for a look.
func (d *demo) failed(err error) error {
	for _, a := range d.agents {
		if b, rerr := os.ReadFile(a.logFile()); rerr == nil {
			fmt.Fprintf(os.Stderr, "--- last lines of %s ---\n%s", a.logFile(), tail(string(b), 15))
		}
	}
	return fmt.Errorf("%w\n(the lab is left up for a look; make demo-down removes it)", err)
}

// waitFor polls cond until it returns nil, an error made by stop, or the
// time runs out.
func waitFor(limit time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if p := (permanent{}); errors.As(err, &p) {
			return fmt.Errorf("%s: %w", what, p.error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %w", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// permanent is an error waitFor does not wait out.
type permanent struct{ error }

func stop(err error) error { return permanent{err} }

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + line + "\n")
	}
	return b.String()
}

func stripComments(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
