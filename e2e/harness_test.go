package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/deploy/lab"
	"github.com/weftlb/weft/node"
)

// weftBin is the binary under test, labServerBin the lab's real server
// and proberBin its failover prober, built once by TestMain.
var weftBin, labServerBin, proberBin string

// testVersion is the version TestMain builds weftBin with.
const testVersion = "v0.0.0-e2e"

func TestMain(m *testing.M) {
	if path := os.Getenv(forwarderEnv); path != "" {
		runForwarder(path)
		return
	}
	dir, err := os.MkdirTemp("", "weft-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	weftBin, labServerBin, proberBin = filepath.Join(dir, "weft"), filepath.Join(dir, "labserver"), filepath.Join(dir, "prober")
	for bin, pkg := range map[string]string{weftBin: "../cmd/weft", labServerBin: "../deploy/lab/labserver",
		proberBin: "../deploy/lab/prober"} {
		// As the Makefile's build does, with a version of its own.
		build := exec.Command("go", "build", "-ldflags", "-X github.com/weftlb/weft/version.version="+testVersion, "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is one `weft agent` process.
type agent struct {
	name, ip, zone string
	ns             string // network namespace to run in; "" for this one
	dataDir        string
	extra          []string // extra agent flags, kept across restarts
	// wrap, when set, runs the agent under this command (taskset -c 1).
	wrap   []string
	cmd    *exec.Cmd
	out    *syncBuffer // stdout: printed secrets
	log    *syncBuffer // stderr: the structured log
	exited chan struct{}
}

func (a *agent) apiAddr() string  { return net.JoinHostPort(a.ip, "7400") }
func (a *agent) raftAddr() string { return net.JoinHostPort(a.ip, "7401") }

// metricsAddr is on the agent's own address: the default, 127.0.0.1, is
// shared by every agent on loopback, and the lab's client scrapes from
// another namespace.
func (a *agent) metricsAddr() string { return net.JoinHostPort(a.ip, "7402") }

// cluster is a set of agents on loopback addresses 127.0.<net>.<n>; each
// test uses its own <net>, so tests never share ports.
type cluster struct {
	t          testing.TB
	net        int
	dir        string
	agents     []*agent
	adminToken string
	joinToken  string
	caFile     string
	// lab, when set, holds the agents (in its node namespaces); clients
	// reach them from its client namespace.
	lab *lab.Lab
}

// dial opens a connection from where clients of the cluster run.
func (c *cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.lab == nil {
		return (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
	}
	var conn net.Conn
	err := c.lab.Do(c.lab.Client, func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func newCluster(t testing.TB, subnet int) *cluster {
	t.Helper()
	c := &cluster{t: t, net: subnet, dir: t.TempDir()}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) newAgent(name, zone string, extra ...string) *agent {
	a := &agent{
		name: name, zone: zone, ip: fmt.Sprintf("127.0.%d.%d", c.net, len(c.agents)+1),
		dataDir: filepath.Join(c.dir, name), extra: extra,
	}
	c.agents = append(c.agents, a)
	return a
}

// start runs the agent with its identity flags plus args.
func (c *cluster) start(a *agent, args ...string) {
	c.t.Helper()
	full := append([]string{"agent", "--data-dir", a.dataDir, "--name", a.name, "--region", "lab", "--zone", a.zone,
		"--api-addr", a.apiAddr(), "--raft-addr", a.raftAddr(), "--metrics-addr", a.metricsAddr(), "--log-format", "json"}, a.extra...)
	full = append(full, args...)
	a.cmd = exec.Command(weftBin, full...)
	if len(a.wrap) > 0 {
		a.cmd = exec.Command(a.wrap[0], append(append(a.wrap[1:len(a.wrap):len(a.wrap)], weftBin), full...)...)
	}
	if a.ns != "" {
		a.cmd = exec.Command("ip", append([]string{"netns", "exec", a.ns, weftBin}, full...)...)
	}
	a.out, a.log = &syncBuffer{}, &syncBuffer{}
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.log
	if err := a.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", a.name, err)
	}
	a.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(a.cmd, a.exited)
	c.waitAPI(a)
}

var (
	adminRe = regexp.MustCompile(`admin token \(.*\): (\S+)`)
	joinRe  = regexp.MustCompile(`join token \(.*\): (\S+)`)
)

// initCluster starts the first agent with --init and reads its secrets.
func (c *cluster) initCluster(a *agent, args ...string) {
	c.t.Helper()
	c.start(a, append([]string{"--init", "--join-token-uses", "5"}, args...)...)
	waitFor(c.t, 20*time.Second, "init secrets printed", func() error {
		out := a.out.String()
		am, jm := adminRe.FindStringSubmatch(out), joinRe.FindStringSubmatch(out)
		if am == nil || jm == nil {
			return fmt.Errorf("stdout so far: %q", out)
		}
		c.adminToken, c.joinToken = am[1], jm[1]
		return nil
	})
	c.caFile = node.CAFile(a.dataDir)
}

func (c *cluster) join(a *agent, via *agent) {
	c.t.Helper()
	c.start(a, "--join", via.apiAddr(), "--token", c.joinToken)
}

// restart starts an agent again from its data dir.
func (c *cluster) restart(a *agent) { c.t.Helper(); c.start(a) }

func (a *agent) running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

func (a *agent) kill() {
	if a.running() {
		a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.exited
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agent) stop(t testing.TB) {
	t.Helper()
	if !a.running() {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		a.kill()
		t.Errorf("%s did not stop within 15s of SIGTERM", a.name)
	}
}

func (c *cluster) stopAll() {
	for _, a := range c.agents {
		a.kill()
		if c.t.Failed() {
			c.t.Logf("--- log of %s ---\n%s", a.name, tail(a.log.String(), 60))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitAPI waits until the agent's API accepts TLS connections.
func (c *cluster) waitAPI(a *agent) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, a.name+" api up", func() error {
		if !a.running() {
			c.t.Fatalf("%s exited: %s", a.name, tail(a.log.String(), 30))
		}
		conn, err := c.dial(context.Background(), "tcp", a.apiAddr())
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// client returns an API client for an agent with the admin token.
func (c *cluster) client(a *agent) *api.Client {
	c.t.Helper()
	return c.clientWith(a, c.adminToken)
}

func (c *cluster) clientWith(a *agent, token string) *api.Client {
	c.t.Helper()
	cl, err := api.NewClient(api.ClientConfig{Addr: a.apiAddr(), Token: token, CAFile: c.caFile, Dial: c.dial})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// weft runs the CLI against an agent with the admin token.
func (c *cluster) weft(a *agent, stdin string, args ...string) (string, error) {
	cmd := exec.Command(weftBin, args...)
	if c.lab != nil {
		cmd = exec.Command("ip", append([]string{"netns", "exec", c.lab.Client.NS, weftBin}, args...)...)
	}
	cmd.Env = append(os.Environ(), "WEFT_ADDR="+a.apiAddr(), "WEFT_TOKEN="+c.adminToken, "WEFT_CA_FILE="+c.caFile)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("weft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// waitFor polls cond until it returns nil or the time runs out.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var errNoLeader = errors.New("no leader")

// leader returns the agent that is leader according to a running agent.
func (c *cluster) leader(ctx context.Context) (*agent, error) {
	for _, a := range c.agents {
		if !a.running() {
			continue
		}
		st, err := status(ctx, c.client(a))
		if err != nil || st.GetLeaderName() == "" {
			continue
		}
		for _, b := range c.agents {
			if b.name == st.GetLeaderName() && b.running() {
				return b, nil
			}
		}
	}
	return nil, errNoLeader
}
