package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// nameServer accepts TCP connections and writes its name on each.
func nameServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, name)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// TestAgent_UserspaceForwarding: a load balancer applied through the API
// reaches the node's dataplane (here the userspace driver), which forwards
// the VIP to the pool; a pool change is applied without a restart, and
// Status reports the index the dataplane runs.
func TestAgent_UserspaceForwarding(t *testing.T) {
	c := newCluster(t, 16)
	n1 := c.newAgent("node1", "a", "--dataplane", "userspace")
	c.initCluster(n1)
	a, b := nameServer(t, "alpha"), nameServer(t, "beta")
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
	if out, err := c.weft(n1, "", "status"); err != nil || !strings.Contains(out, "dataplane: applied") {
		t.Errorf("status does not show the dataplane: %v\n%s", err, out)
	}
}
