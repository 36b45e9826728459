package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// nameServer accepts TCP connections and writes its name on each.
func nameServer(t *testing.T, name string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveName(ln, name)
	return ln
}

func serveName(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintln(c, name)
		c.Close()
	}
}

// TestAgent_UserspaceForwarding: a load balancer applied through the API
// reaches the node's dataplane (here the userspace driver), which forwards
// the VIP to the pool; a pool change is applied without a restart, and
// Status reports the index the dataplane runs.
func TestAgent_UserspaceForwarding(t *testing.T) {
	c := newCluster(t, 16)
	n1 := c.newAgent("node1", "a", "--dataplane", "userspace")
	c.initCluster(n1)
	a, b := nameServer(t, "alpha").Addr().String(), nameServer(t, "beta").Addr().String()
	member := func(addr string) string {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("{address: %s, port: %s}", host, port)
	}
	manifest := func(members ...string) string {
		return fmt.Sprintf(`kind: Pool
metadata: {name: names}
spec: {members: [%s]}
---
kind: LoadBalancer
metadata: {name: names}
spec:
  vip: 127.0.16.100
  listeners: [{port: 9000, protocol: tcp, pool: names}]
`, strings.Join(members, ", "))
	}
	dial := func() (string, error) {
		conn, err := net.DialTimeout("tcp", "127.0.16.100:9000", time.Second)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		return strings.TrimSpace(line), err
	}
	// applied waits until the node's dataplane runs the last write.
	applied := func() {
		t.Helper()
		cl := c.client(n1)
		res, err := cl.LB.ListPools(context.Background(), connect.NewRequest(&weftv1.ListRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "dataplane applied", func() error {
			st, err := status(context.Background(), cl)
			if err != nil {
				return err
			}
			for _, s := range st.GetSubsystems() {
				if s.GetName() == "dataplane" && s.GetAppliedIndex() >= res.Msg.GetIndex() {
					return nil
				}
			}
			return fmt.Errorf("subsystems %v, want dataplane at %d", st.GetSubsystems(), res.Msg.GetIndex())
		})
	}

	if _, err := c.weft(n1, manifest(member(a), member(b)), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	applied()
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		name, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	if seen["alpha"] == 0 || seen["beta"] == 0 {
		t.Errorf("40 connections reached %v, want both members", seen)
	}

	if _, err := c.weft(n1, manifest(member(b)), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	applied()
	for i := 0; i < 20; i++ {
		if name, err := dial(); err != nil || name != "beta" {
			t.Fatalf("after removing alpha a connection got %q %v, want beta", name, err)
		}
	}
	if out, err := c.weft(n1, "", "status"); err != nil || !regexp.MustCompile(`dataplane:\s+applied`).MatchString(out) {
		t.Errorf("status does not show the dataplane: %v\n%s", err, out)
	}
}

// TestAgent_BackendFailure: a member whose health check fails stops taking
// new flows within interval x fall + 1 s and takes them again after rise
// successful checks.
func TestAgent_BackendFailure(t *testing.T) {
	c := newCluster(t, 17)
	n1 := c.newAgent("node1", "a", "--dataplane", "userspace")
	c.initCluster(n1)
	alphaLn := nameServer(t, "alpha")
	alpha, beta := alphaLn.Addr().String(), nameServer(t, "beta").Addr().String()
	host, port, _ := net.SplitHostPort(alpha)
	bhost, bport, _ := net.SplitHostPort(beta)
	manifest := fmt.Sprintf(`kind: Pool
metadata: {name: names}
spec:
  members: [{address: %s, port: %s}, {address: %s, port: %s}]
  healthCheck: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
---
kind: LoadBalancer
metadata: {name: names}
spec:
  vip: 127.0.17.100
  listeners: [{port: 9000, protocol: tcp, pool: names}]
`, host, port, bhost, bport)
	if _, err := c.weft(n1, manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	dial := func() string {
		conn, err := net.DialTimeout("tcp", "127.0.17.100:9000", time.Second)
		if err != nil {
			return "error: " + err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if line == "" {
			return "no answer"
		}
		return strings.TrimSpace(line)
	}
	// reaches waits until 20 new connections in a row reach exactly want.
	reaches := func(limit time.Duration, want ...string) time.Duration {
		t.Helper()
		start := time.Now()
		waitFor(t, limit, fmt.Sprintf("new flows reach only %v", want), func() error {
			got := map[string]bool{}
			for i := 0; i < 20; i++ {
				got[dial()] = true
			}
			for g := range got {
				if !slices.Contains(want, g) {
					return fmt.Errorf("reached %v", got)
				}
			}
			if len(got) != len(want) {
				return fmt.Errorf("reached %v", got)
			}
			return nil
		})
		return time.Since(start)
	}
	reaches(10*time.Second, "alpha", "beta")
	alphaLn.Close()
	took := reaches(3*time.Second, "beta") // interval 1 s x fall 2 + 1 s
	t.Logf("failed member out of new flows %.0f ms after its server stopped", took.Seconds()*1000)
	ln, err := net.Listen("tcp", alpha)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveName(ln, "alpha")
	took = reaches(5*time.Second, "alpha", "beta")
	t.Logf("member back %.0f ms after its server returned", took.Seconds()*1000)
}
