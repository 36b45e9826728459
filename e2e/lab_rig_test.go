package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/deploy/lab"
	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

var labVIP = netip.MustParseAddr("198.51.100.10")

// upLab builds the lab for a test, skipping it where the lab cannot run:
// it installs the tools, and on every server host puts the VIP on lo when
// dsrVIP is set (DSR replies come from it) and starts the lab server with
// serverArgs. Everything is removed when the test ends.
func upLab(tb testing.TB, topo lab.Topology, tools []string, dsrVIP bool, serverArgs ...string) *lab.Lab {
	tb.Helper()
	if err := lab.Requirements(); err != nil {
		tb.Skipf("lab test skipped: %v", err)
	}
	ctx := context.Background()
	if err := lab.EnsureTools(ctx, tools...); err != nil {
		tb.Fatal(err)
	}
	l, err := lab.Up(ctx, topo)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Down() })
	for _, s := range l.Servers {
		if dsrVIP {
			if out, err := exec.Command("ip", "-n", s.NS, "addr", "add", labVIP.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
				tb.Fatalf("VIP on %s: %v %s", s.Name, err, out)
			}
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", s.NS, labServerBin, "-name", s.Name}, serverArgs...)...)
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	return l
}

// labRig is a lab with the client-side checks every lab test uses.
type labRig struct {
	t testing.TB
	l *lab.Lab
}

func (r *labRig) curl(port string) (string, error) {
	out, err := r.l.Command(context.Background(), r.l.Client, "curl", "-sS", "-m", "3", "http://"+labVIP.String()+":"+port+"/").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("curl :%s: %w: %s", port, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

var wrkReqs = regexp.MustCompile(`(\d+) requests in`)

// wrk runs a bounded wrk from the client and returns requests and errors
// (socket errors and non-2xx answers).
func (r *labRig) wrk(port string, seconds int, extra ...string) (requests, errors int) {
	r.t.Helper()
	args := append([]string{"-t1", "-c16", "-d" + strconv.Itoa(seconds) + "s", "--timeout", "2s"}, extra...)
	args = append(args, "http://"+labVIP.String()+":"+port+"/")
	out, err := r.l.Command(context.Background(), r.l.Client, "wrk", args...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("wrk: %v %s", err, out)
	}
	m := wrkReqs.FindStringSubmatch(string(out))
	if m == nil {
		r.t.Fatalf("wrk output has no request count:\n%s", out)
	}
	requests, _ = strconv.Atoi(m[1])
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`),
		regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`),
	} {
		if m := re.FindStringSubmatch(string(out)); m != nil {
			for _, v := range m[1:] {
				n, _ := strconv.Atoi(v)
				errors += n
			}
		}
	}
	r.t.Logf("wrk %v: %d requests, %d errors", args, requests, errors)
	return requests, errors
}

// fabricRig is issue 4's lab for failover and hot-config tests: client ->
// bird2 router (ECMP over BGP) -> three Weft agents forwarding with XDP
// (zones a, a, b) -> three servers. Load balancer "web" serves VIP:80 with
// FullNAT from pool web (the servers' :8080) and VIP:81 with DSR from pool
// dsr (their :81, the VIP on their lo).
type fabricRig struct {
	*labRig
	c *cluster
	// api holds one API client per agent, made once.
	api []*api.Client
	// zones is the load balancer's zone placement in manifest.
	zones string
	// check is the pools' health check ("" for the default).
	check string
	// ports are the XDP links on the nodes' switch ports (lab.AttachPass).
	ports []io.Closer
}

// newFabricRig builds the lab under prefix, forms the cluster, applies
// the load balancer with the given servers in both pools and waits until
// the router has the ECMP route via all three nodes and each port answers.
func newFabricRig(tb testing.TB, prefix string, drainDelay time.Duration, servers ...int) *fabricRig {
	tb.Helper()
	return newFabricRigWith(tb, prefix, drainDelay, nil, servers...)
}

// newFabricRigWith is newFabricRig with more flags for every agent.
func newFabricRigWith(tb testing.TB, prefix string, drainDelay time.Duration, agentArgs []string, servers ...int) *fabricRig {
	tb.Helper()
	l := upLab(tb, lab.Topology{Prefix: prefix, Servers: 3,
		Nodes: []lab.Node{{Name: "node1", Zone: "a"}, {Name: "node2", Zone: "a"}, {Name: "node3", Zone: "b"}}},
		[]string{"curl", "wrk"}, true, "-addr", ":8080,:81")
	c := &cluster{t: tb, dir: tb.TempDir(), lab: l}
	tb.Cleanup(c.stopAll)
	var ports []io.Closer
	for i, h := range l.Nodes {
		pass, err := l.AttachPass(h)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { pass.Close() })
		ports = append(ports, pass)
		c.agents = append(c.agents, &agent{name: h.Name, ip: h.Addr.String(), zone: l.Topology.Nodes[i].Zone, ns: h.NS,
			dataDir: filepath.Join(c.dir, h.Name), extra: []string{"--dataplane", "xdp", "--interface", h.Iface,
				"--bgp-asn", fmt.Sprint(lab.NodeASN), "--bgp-peer", fmt.Sprintf("%s:%d", lab.RouterInner, lab.RouterASN),
				"--drain-delay", drainDelay.String(), "--local-addr", lab.LocalAddr(i).String()}})
		c.agents[i].extra = append(c.agents[i].extra, agentArgs...)
	}
	c.initCluster(c.agents[0])
	c.join(c.agents[1], c.agents[0])
	c.join(c.agents[2], c.agents[0])
	r := &fabricRig{labRig: &labRig{t: tb, l: l}, c: c, zones: "region: lab", ports: ports}
	for _, a := range c.agents {
		r.api = append(r.api, c.client(a))
	}
	r.waitApplied(r.apply(r.manifest(servers, -1, "")), 10*time.Second)
	waitVia(tb, l, 10*time.Second, l.Nodes...)
	r.waitServing("80", "81")
	return r
}

// manifest is the rig's configuration: both pools hold the given servers
// (indexes into the lab's servers), drained is a server drained in both
// (-1: none), and more are extra listener entries ("{port: 82, ...}").
func (r *fabricRig) manifest(servers []int, drained int, more string) string {
	var web, dsr []string
	for _, i := range servers {
		drain := ""
		if i == drained {
			drain = ", drain: true"
		}
		addr := r.l.Servers[i].Addr
		web = append(web, fmt.Sprintf("{address: %s, port: 8080%s}", addr, drain))
		dsr = append(dsr, fmt.Sprintf("{address: %s, port: 81%s}", addr, drain))
	}
	listeners := "{port: 80, protocol: tcp, pool: web}, {port: 81, protocol: tcp, mode: dsr, pool: dsr}"
	if more != "" {
		listeners += ", " + more
	}
	check := ""
	if r.check != "" {
		check = ", healthCheck: " + r.check
	}
	return fmt.Sprintf(`kind: Pool
metadata: {name: web}
spec: {members: [%s]%s}
---
kind: Pool
metadata: {name: dsr}
spec: {members: [%s]%s}
---
kind: LoadBalancer
metadata: {name: web}
spec: {vip: %s, %s, listeners: [%s]}
`, strings.Join(web, ", "), check, strings.Join(dsr, ", "), check, labVIP, r.zones, listeners)
}

// apply applies YAML through the first running agent's API, as `weft
// apply` does, and returns the Raft index of the change.
func (r *fabricRig) apply(yaml string) uint64 {
	r.t.Helper()
	rs, err := manifest.Decode(strings.NewReader(yaml))
	if err != nil {
		r.t.Fatal(err)
	}
	return r.applyResources(rs, 10*time.Second)
}

// applyResources applies resources in one request through the first
// running agent's API, within limit, and returns the change's Raft index.
func (r *fabricRig) applyResources(rs []*weftv1.Resource, limit time.Duration) uint64 {
	r.t.Helper()
	for i, a := range r.c.agents {
		if !a.running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		res, err := r.api[i].LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: rs}))
		cancel()
		if err != nil {
			r.t.Fatalf("apply through %s: %v", a.name, err)
		}
		return res.Msg.GetIndex()
	}
	r.t.Fatal("apply: no agent running")
	return 0
}

// waitApplied waits until every running agent has applied index and
// returns how long the slowest took. Each agent is asked once, with a
// Status that waits for the index (wait_applied_index); one that fails
// (a subsystem's apply failed and is being retried, or the agent is
// restarting) is asked again after 20 ms.
func (r *fabricRig) waitApplied(index uint64, limit time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	errs := make(chan error, len(r.c.agents))
	for i, a := range r.c.agents {
		if !a.running() {
			errs <- nil
			continue
		}
		go func() {
			for {
				_, err := r.api[i].Cluster.Status(ctx, connect.NewRequest(&weftv1.StatusRequest{WaitAppliedIndex: index}))
				if err == nil {
					errs <- nil
					return
				}
				select {
				case <-ctx.Done():
					errs <- fmt.Errorf("%s has not applied index %d within %s (last error: %v)", a.name, index, limit, err)
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	for range r.c.agents {
		if err := <-errs; err != nil {
			r.t.Fatal(err)
		}
	}
	return time.Since(start)
}

// get asks VIP:port once over a new connection from the client and
// returns the answering server's name.
func (r *fabricRig) get(port string, limit time.Duration) (string, error) {
	return serverName(r.c, net.JoinHostPort(labVIP.String(), port), limit)
}

// serverName asks addr once over a new connection from where the cluster's
// clients run and returns the body: a lab server's name.
func serverName(c *cluster, addr string, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	conn, err := c.dial(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return strings.TrimSpace(string(body)), err
}

// waitServing waits until 30 new connections in a row are answered on
// each port: every node has learnt the servers' MACs (from its health
// checks) and takes flows.
func (r *fabricRig) waitServing(ports ...string) {
	r.t.Helper()
	for _, port := range ports {
		waitFor(r.t, 15*time.Second, "VIP:"+port+" answers 30 new connections in a row", func() error {
			for range 30 {
				if body, err := r.get(port, time.Second); err != nil || !strings.HasPrefix(body, "server") {
					return fmt.Errorf("answer %q: %v", body, err)
				}
			}
			return nil
		})
	}
}

// waitVia waits until the router's route to the VIP goes via exactly the
// given nodes and returns how long that took (waitRoute for benchmarks).
func waitVia(tb testing.TB, l *lab.Lab, limit time.Duration, nodes ...lab.Host) time.Duration {
	tb.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.Addr.String())
	}
	slices.Sort(want)
	start := time.Now()
	waitFor(tb, limit, fmt.Sprintf("route to the VIP via %v", want), func() error {
		got, err := routeVia(l)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("route via %v", got)
		}
		return nil
	})
	return time.Since(start)
}
