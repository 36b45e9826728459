package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/weftlb/weft/deploy/lab"
	"github.com/weftlb/weft/node"
)

// agent is one `weft agent` process in a node's namespace.
type agent struct {
	host lab.Host
	zone string
	// local is the node's FullNAT source address, which another node
	// takes over if this one is lost (flow sync).
	local   netip.Addr
	dir     string // the demo's state dir
	cmd     *exec.Cmd
	exited  chan struct{}
	started time.Time
}

func (a *agent) dataDir() string  { return filepath.Join(a.dir, a.host.Name) }
func (a *agent) logFile() string  { return filepath.Join(a.dir, a.host.Name+".log") }
func (a *agent) outFile() string  { return filepath.Join(a.dir, a.host.Name+".out") }
func (a *agent) apiAddr() string  { return net.JoinHostPort(a.host.Addr.String(), "7400") }
func (a *agent) raftAddr() string { return net.JoinHostPort(a.host.Addr.String(), "7401") }

// metricsAddr is on the node's lab address, where deploy/prometheus's
// scrape config finds it from the client namespace.
func (a *agent) metricsAddr() string { return net.JoinHostPort(a.host.Addr.String(), "7402") }

func (a *agent) running() bool {
	select {
	case <-a.exited:
		return false
	default:
		return a.cmd != nil
	}
}

// kill stops the agent as a crash would: no BGP withdrawal, no goodbye.
func (a *agent) kill() {
	if a.running() {
		a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.exited
	}
}

var joinRe = regexp.MustCompile(`join token \(.*\): (\S+)`)

func (d *demo) formCluster(ctx context.Context) error {
	d.step("form the cluster: node1 runs 'weft agent --init', node2 and node3 join with the token it printed")
	for i, n := range d.l.Nodes {
		d.agents = append(d.agents, &agent{host: n, zone: topology.Nodes[i].Zone, local: lab.LocalAddr(i), dir: d.dir})
	}
	first := d.agents[0]
	if err := d.startAgent(ctx, first, "--init"); err != nil {
		return err
	}
	var join string
	if err := waitFor(20*time.Second, "node1 prints the join token", func() error {
		out, err := os.ReadFile(first.outFile())
		if err != nil {
			return err
		}
		m := joinRe.FindSubmatch(out)
		if m == nil {
			return errors.New("not printed yet")
		}
		join = string(m[1])
		return nil
	}); err != nil {
		return err
	}
	out, err := os.ReadFile(first.outFile())
	if err != nil {
		return err
	}
	fmt.Printf("node1 printed (secrets hidden here; the admin token is in %s):\n", filepath.Join(first.dataDir(), node.AdminTokenFile))
	fmt.Print(indent(regexp.MustCompile(`(token \(.*\): )\S+`).ReplaceAllString(string(out), "$1<hidden>")))
	admin, err := os.ReadFile(filepath.Join(first.dataDir(), node.AdminTokenFile))
	if err != nil {
		return fmt.Errorf("read the admin token: %w", err)
	}
	d.env = []string{"WEFT_ADDR=" + first.apiAddr(), "WEFT_TOKEN=" + strings.TrimSpace(string(admin)),
		"WEFT_CA_FILE=" + node.CAFile(first.dataDir())}
	env := "export " + strings.Join(d.env, " ") + "\n"
	if err := os.WriteFile(filepath.Join(d.dir, "env"), []byte(env), 0o600); err != nil {
		return err
	}
	for _, a := range d.agents[1:] {
		if err := d.startAgent(ctx, a, "--join", first.apiAddr(), "--token", join); err != nil {
			return err
		}
	}
	fmt.Printf("cluster formed %.1f s after node1 started; the joiners start as Raft non-voters\n", time.Since(first.started).Seconds())
	if err := waitFor(30*time.Second, "all nodes Raft voters", func() error {
		nodes, err := d.nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Status.Suffrage != "voter" {
				return fmt.Errorf("%s is a %s", n.Metadata.Name, n.Status.Suffrage)
			}
		}
		if len(nodes) != len(d.agents) {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Printf("voter placement promoted both %.1f s after node1 started (3 voters: any one node may fail)\n",
		time.Since(first.started).Seconds())
	return d.cli(ctx, "nodes")
}

// clusterNode is what the demo reads of `weft nodes -o json`.
type clusterNode struct {
	Metadata struct{ Name string }
	Status   struct {
		Suffrage string
		Leader   bool
	}
}

func (d *demo) nodes(ctx context.Context) ([]clusterNode, error) {
	out, err := d.cliOutput(ctx, "nodes", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct{ Nodes []clusterNode }
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("weft nodes -o json: %w", err)
	}
	return list.Nodes, nil
}

// leader returns the agent that leads Raft, as a running agent sees it.
func (d *demo) leader(ctx context.Context) (*agent, error) {
	nodes, err := d.nodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		for _, a := range d.agents {
			if n.Status.Leader && a.host.Name == n.Metadata.Name && a.running() {
				return a, nil
			}
		}
	}
	return nil, errors.New("no leader")
}

// startAgent runs `weft agent` in the node's namespace with the flags every
// demo node has plus extra, and waits until its API accepts connections.
func (d *demo) startAgent(ctx context.Context, a *agent, extra ...string) error {
	args := append([]string{"agent", "--data-dir", a.dataDir(), "--name", a.host.Name, "--region", "lab", "--zone", a.zone,
		"--api-addr", a.apiAddr(), "--raft-addr", a.raftAddr(), "--metrics-addr", a.metricsAddr(),
		"--dataplane", "xdp", "--interface", a.host.Iface,
		"--bgp-asn", fmt.Sprint(lab.NodeASN), "--bgp-peer", fmt.Sprintf("%s:%d", lab.RouterInner, lab.RouterASN),
		"--local-addr", a.local.String(),
	}, extra...)
	fmt.Printf("$ ip netns exec %s weft %s\n", a.host.NS, strings.Join(redact(args), " "))
	cmd, err := d.detached(a.host, a.outFile(), a.logFile(), d.weft, args...)
	if err != nil {
		return err
	}
	a.cmd, a.exited, a.started = cmd, make(chan struct{}), time.Now()
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(a.exited)
	return waitFor(30*time.Second, a.host.Name+" API up", func() error {
		if !a.running() {
			return stop(fmt.Errorf("%s exited; its log:\n%s", a.host.Name, readTail(a.logFile(), 15)))
		}
		return d.dialClient(ctx, a.apiAddr())
	})
}

// redact hides the value of --token in a printed command line.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == "--token" && i+1 < len(out) {
			out[i+1] = "<join token>"
		}
	}
	return out
}

// detached starts bin in a host's namespace in a session of its own, so it
// outlives the demo (make demo-down stops it with the namespace), with
// stdout and stderr appended to the named files.
func (d *demo) detached(h lab.Host, stdout, stderr, bin string, args ...string) (*exec.Cmd, error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close() // the child holds its own descriptors
		}
	}()
	for _, name := range []string{stdout, stderr} {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = files[0], files[1]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(bin), h.NS, err)
	}
	return cmd, nil
}

// cli runs the weft CLI in the client's namespace against the cluster and
// prints what it says.
func (d *demo) cli(ctx context.Context, args ...string) error {
	fmt.Printf("$ weft %s\n", strings.Join(args, " "))
	out, err := d.cliOutput(ctx, args...)
	fmt.Print(indent(string(out)))
	return err
}

// cliOutput runs the weft CLI against a running node and returns its
// output, errors included.
func (d *demo) cliOutput(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := d.l.Command(ctx, d.l.Client, d.weft, args...)
	cmd.Env = append(os.Environ(), d.env...)
	for _, a := range d.agents {
		if a.running() {
			cmd.Env = append(cmd.Env, "WEFT_ADDR="+a.apiAddr()) // the last value wins
			break
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("weft %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// dialClient checks that addr accepts TCP connections from the client.
func (d *demo) dialClient(ctx context.Context, addr string) error {
	return d.l.Do(d.l.Client, func() error {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func readTail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}
