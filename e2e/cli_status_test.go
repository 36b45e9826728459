package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftlb/weft/gossip"
)

// row returns the cells of the table line that starts with name, or nil.
func row(table, name string) []string {
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

// TestCLI_Basics: version, help without secrets, an unchanged apply that
// writes no Raft entry, apply --dry-run (diffs, nothing written, the
// server's checks), apply -f of a directory and of several files, -o name
// and -o wide, and completion of kinds and names through the API.
func TestCLI_Basics(t *testing.T) {
	c := newCluster(t, 42)
	n1 := c.newAgent("node1", "a")
	c.initCluster(n1)
	// A new leader's first writes of its own (the session-ticket keys) would
	// move the Raft indexes this test watches.
	waitFor(t, 20*time.Second, "the first session-ticket keys", func() error {
		if !strings.Contains(n1.log.String(), "rotated the TLS session-ticket keys") {
			return errors.New("not rotated yet")
		}
		return nil
	})
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := c.weft(n1, stdin, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	indexes := func() (uint64, uint64) {
		t.Helper()
		st, err := status(context.Background(), c.client(n1))
		if err != nil {
			t.Fatal(err)
		}
		return st.GetCommitIndex(), st.GetAppliedIndex()
	}

	t.Run("version", func(t *testing.T) {
		for _, args := range [][]string{{"version"}, {"--version"}} {
			if out := run("", args...); !strings.HasPrefix(out, "weft "+testVersion+"\n") || !strings.Contains(out, "go:       go1.") {
				t.Errorf("weft %v printed %q, want weft %s and the Go version", args, out, testVersion)
			}
		}
		if out := run("", "status"); !strings.Contains(out, "version: "+testVersion+"\n") {
			t.Errorf("status does not show the node's version:\n%s", out)
		}
		waitFor(t, 10*time.Second, "node1 alive at "+testVersion+" in weft nodes", func() error {
			out := run("", "nodes")
			if r := row(out, "node1"); !slices.Contains(r, "alive") || !slices.Contains(r, testVersion) {
				return fmt.Errorf("weft nodes:\n%s", out)
			}
			return nil
		})
	})

	t.Run("help shows no token", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"get", "--help"}, {"apply", "-h"}, {"agent", "--help"}} {
			if out := run("", args...); strings.Contains(out, c.adminToken) || strings.Contains(out, c.joinToken) {
				t.Errorf("weft %v prints a token:\n%s", args, out)
			}
		}
	})

	example, err := os.ReadFile("../deploy/examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	run(string(example), "apply", "-f", "-")

	t.Run("unchanged apply writes no entry", func(t *testing.T) {
		commit, applied := indexes()
		if out := run(string(example), "apply", "-f", "-"); out != "pool/web unchanged\nloadbalancer/web unchanged\n" {
			t.Errorf("second apply printed %q", out)
		}
		if c2, a2 := indexes(); c2 != commit || a2 != applied {
			t.Errorf("an unchanged apply moved commit/applied from %d/%d to %d/%d", commit, applied, c2, a2)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		storedPool := run("", "get", "pool", "web", "-o", "yaml")
		commit, applied := indexes()
		changed := strings.Replace(string(example), "{address: 192.0.2.13, port: 8080, zone: b}", "{address: 192.0.2.13, port: 8081, zone: b}", 1)
		out := run(changed, "apply", "--dry-run", "-f", "-")
		for _, want := range []string{"pool/web updated (dry run)\n--- pool/web (stored)\n+++ pool/web (applied)\n@@ ",
			"\n-      port: 8080\n+      port: 8081\n", "loadbalancer/web unchanged (dry run)\n"} {
			if !strings.Contains(out, want) {
				t.Errorf("apply --dry-run printed:\n%s\nwant it to contain %q", out, want)
			}
		}
		if strings.Contains(out, "version:") {
			t.Errorf("the diff shows versions:\n%s", out)
		}
		created := run("kind: Pool\nmetadata: {name: extra}\nspec: {members: [{address: 192.0.2.50, port: 80}]}\n", "apply", "--dry-run", "-f", "-")
		if !strings.HasPrefix(created, "pool/extra created (dry run)\n--- /dev/null\n") || !strings.Contains(created, "\n+  name: extra\n") {
			t.Errorf("dry run of a new pool printed:\n%s", created)
		}
		for _, tc := range []struct{ manifest, wantErr string }{
			{"kind: Pool\nmetadata: {name: bad}\nspec: {members: [{address: 192.0.2.50, port: 0}]}\n", "invalid_argument"},
			{"kind: LoadBalancer\nmetadata: {name: orphan}\nspec: {vip: 198.51.100.77, listeners: [{port: 80, protocol: tcp, pool: nope}]}\n",
				`failed_precondition: load balancer "orphan": listener "tcp-80": pool "nope" does not exist`},
		} {
			if out, err := c.weft(n1, tc.manifest, "apply", "--dry-run", "-f", "-"); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("apply --dry-run of a bad manifest: %q, %v; want an error with %q", out, err, tc.wantErr)
			}
		}
		if after := run("", "get", "pool", "web", "-o", "yaml"); after != storedPool {
			t.Errorf("a dry run changed the pool:\nbefore:\n%s\nafter:\n%s", storedPool, after)
		}
		if _, err := c.weft(n1, "", "get", "pool", "extra"); err == nil {
			t.Error("a dry run created pool extra")
		}
		if c2, a2 := indexes(); c2 != commit || a2 != applied {
			t.Errorf("dry runs moved commit/applied from %d/%d to %d/%d", commit, applied, c2, a2)
		}
	})

	t.Run("apply directories and several files", func(t *testing.T) {
		dir := t.TempDir()
		files := map[string]string{
			"20-lb.yaml":   "kind: LoadBalancer\nmetadata: {name: api}\nspec: {vip: 198.51.100.30, listeners: [{port: 80, protocol: tcp, pool: api}]}\n",
			"10-pool.yml":  "kind: Pool\nmetadata: {name: api}\nspec: {members: [{address: 192.0.2.40, port: 80}]}\n",
			"README.md":    "not a manifest",
			"more/db.json": `{"kind": "Pool", "metadata": {"name": "db"}, "spec": {"members": [{"address": "192.0.2.41", "port": 5432}]}}`,
		}
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out := run("", "apply", "-f", dir); out != "pool/api created\nloadbalancer/api created\n" {
			t.Errorf("apply -f DIR printed %q", out)
		}
		if out := run("", "apply", "-R", "-f", dir, "-f", "../deploy/examples/web.yaml"); out !=
			"pool/api unchanged\nloadbalancer/api unchanged\npool/db created\npool/web unchanged\nloadbalancer/web unchanged\n" {
			t.Errorf("apply -R -f DIR -f FILE printed %q", out)
		}
	})

	t.Run("output formats", func(t *testing.T) {
		if out := run("", "get", "pools", "-o", "name"); out != "pool/api\npool/db\npool/web\n" {
			t.Errorf("get pools -o name printed %q", out)
		}
		if out := run("", "get", "pools", "--limit", "2", "-o", "name"); out != "pool/api\npool/db\n" {
			t.Errorf("get pools --limit 2 -o name printed %q", out)
		}
		if out := run("", "get", "pools", "--selector", "!nope", "-o", "name"); out != "pool/api\npool/db\npool/web\n" {
			t.Errorf("get pools --selector '!nope' -o name printed %q", out)
		}
		if out := run("", "get", "pools", "-l", "nope", "-o", "name"); out != "" {
			t.Errorf("get pools -l nope -o name printed %q", out)
		}
		if out := run("", "nodes", "-o", "name"); out != "node/node1\n" {
			t.Errorf("nodes -o name printed %q", out)
		}
		if out := run("", "get", "lb", "-o", "wide"); !strings.Contains(strings.Split(out, "\n")[0], "POOLS") || row(out, "web") == nil {
			t.Errorf("get lb -o wide:\n%s", out)
		}
		// node1 runs no health checks (no dataplane): its view holds nothing.
		out := run("", "get", "pools")
		if h := strings.Fields(strings.Split(out, "\n")[0]); !slices.Equal(h, []string{"NAME", "MEMBERS", "HEALTH", "CHECK", "ALGORITHM", "VERSION"}) {
			t.Errorf("get pools header %v", h)
		}
		if r := row(out, "web"); !slices.Equal(r[1:4], []string{"3", "unknown", "http"}) {
			t.Errorf("get pools row of web %v, want 3 members, health unknown, check http", r)
		}
	})

	t.Run("completion", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"get", ""}, []string{"loadbalancers", "pools", "certificates", "dnsrecords"}},
			{[]string{"get", "pool", ""}, []string{"api", "db", "web"}},
			{[]string{"describe", "lb", "w"}, []string{"web"}},
			{[]string{"delete", "pools", "d"}, []string{"db"}},
			{[]string{"node", "drain", ""}, []string{"node1"}},
			{[]string{"top", "--lb", "w"}, []string{"web"}},
		} {
			out := run("", append([]string{"__complete"}, tc.args...)...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if got := lines[:len(lines)-1]; !slices.Equal(got, tc.want) {
				t.Errorf("completion of %q: %q, want %q", tc.args, got, tc.want)
			}
		}
	})
}

// TestCLI_NodeLivenessAndPoolHealth: weft nodes shows each node's liveness
// from gossip and a SIGKILLed node as dead within gossip's failure
// detection time (with margin for a loaded machine); weft get pool counts
// members up and down in the agreed health view, the check type in its own
// column.
func TestCLI_NodeLivenessAndPoolHealth(t *testing.T) {
	c := threeNodes(t, 41, "--dataplane", "userspace")
	n1 := c.agents[0]
	run := func(args ...string) string {
		t.Helper()
		out, err := c.weft(n1, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	up1, up2 := nameServer(t, "one"), nameServer(t, "two")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // a member nothing listens on
	member := func(a net.Addr) string {
		host, port, _ := net.SplitHostPort(a.String())
		return fmt.Sprintf("{address: %s, port: %s}", host, port)
	}
	manifest := fmt.Sprintf(`kind: Pool
metadata: {name: checked}
spec:
  members: [%s, %s, %s]
  healthCheck: {type: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 1}
---
kind: LoadBalancer
metadata: {name: checked}
spec:
  vip: 127.0.41.100
  listeners: [{port: 9000, protocol: tcp, pool: checked}]
`, member(up1.Addr()), member(up2.Addr()), member(closed.Addr()))
	if _, err := c.weft(n1, manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}

	waitFor(t, 30*time.Second, "get pool checked shows 2 up, 1 down", func() error {
		out := run("get", "pool", "checked")
		if got := strings.Join(row(out, "checked"), " "); !strings.HasPrefix(got, "checked 3 2 up, 1 down tcp ") {
			return fmt.Errorf("get pool checked:\n%s", out)
		}
		return nil
	})
	waitFor(t, 20*time.Second, "every node alive in weft nodes", func() error {
		out := run("nodes")
		for _, a := range c.agents {
			if r := row(out, a.name); !slices.Contains(r, "alive") || !slices.Contains(r, testVersion) {
				return fmt.Errorf("weft nodes:\n%s", out)
			}
		}
		return nil
	})

	killed := c.agents[2]
	if leader, err := c.leader(context.Background()); err == nil && leader == killed {
		killed = c.agents[1]
	}
	killed.kill()
	start := time.Now()
	// Raft alone still lists it as a voter: the liveness column tells.
	waitFor(t, 3*gossip.FailureDetectionTime, killed.name+" dead in weft nodes", func() error {
		out := run("nodes")
		if r := row(out, killed.name); !slices.Contains(r, "dead") || !slices.Contains(r, "voter") {
			return fmt.Errorf("weft nodes:\n%s", out)
		}
		return nil
	})
	t.Logf("%s shown dead %s after SIGKILL", killed.name, time.Since(start).Round(100*time.Millisecond))
	if out := run("status"); !slices.Contains(row(out[strings.Index(out, "\nnodes:"):], killed.name), "dead") {
		t.Errorf("weft status does not show %s dead:\n%s", killed.name, out)
	}
}
