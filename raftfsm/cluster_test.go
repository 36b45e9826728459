package raftfsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

// testCA is a throwaway cluster CA issuing node certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weft test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// tlsConfig issues a node certificate and returns the configuration a node
// would build: its certificate plus the CA as both RootCAs and ClientCAs.
func (ca *testCA) tlsConfig(t testing.TB, name string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
	}
}

// testLogger discards raft's logs unless WEFT_TEST_LOG=1.
func testLogger() *slog.Logger {
	if os.Getenv("WEFT_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testCluster runs raft nodes in this process over loopback TLS.
type testCluster struct {
	t  testing.TB
	ca *testCA

	mu    sync.Mutex
	nodes map[string]*testNode
}

type testNode struct {
	id   string
	dir  string
	addr string // the address it advertises, kept across restarts
	r    *Raft  // nil while stopped
}

func newTestCluster(t testing.TB) *testCluster {
	c := &testCluster{t: t, ca: newTestCA(t), nodes: make(map[string]*testNode)}
	t.Cleanup(func() {
		for _, id := range c.ids() {
			c.stop(id)
		}
	})
	return c
}

func (c *testCluster) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.nodes {
		ids = append(ids, id)
	}
	return ids
}

// fetchStats is the StatsFetcher of every test node: it reads the peer's
// applied index directly, and fails for a stopped peer.
func (c *testCluster) fetchStats(_ context.Context, id, _ string) (uint64, error) {
	r := c.raft(id)
	if r == nil {
		return 0, fmt.Errorf("node %s is down", id)
	}
	_, _, _, applied := r.Stats()
	return applied, nil
}

func (c *testCluster) raft(id string) *Raft {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.nodes[id]; n != nil {
		return n.r
	}
	return nil
}

// start starts (or restarts, from its data directory and address) node id.
func (c *testCluster) start(id string, bootstrap bool, mod func(*Config)) *Raft {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[id]
	if n == nil {
		n = &testNode{id: id, dir: c.t.TempDir(), addr: "127.0.0.1:0"}
		c.nodes[id] = n
	}
	c.mu.Unlock()
	cfg := Config{
		ID:                id,
		DataDir:           n.dir,
		BindAddr:          n.addr,
		TLS:               c.ca.tlsConfig(c.t, id),
		Bootstrap:         bootstrap,
		FetchStats:        c.fetchStats,
		PlacementInterval: 100 * time.Millisecond,
		Logger:            testLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := Open(cfg)
	if err != nil {
		c.t.Fatalf("Open(%s): %v", id, err)
	}
	c.mu.Lock()
	n.r = r
	n.addr = string(r.transport.LocalAddr())
	c.mu.Unlock()
	return r
}

func (c *testCluster) addr(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id].addr
}

func (c *testCluster) stop(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	r := n.r
	n.r = nil
	c.mu.Unlock()
	if r != nil {
		if err := r.Close(); err != nil {
			c.t.Errorf("Close(%s): %v", id, err)
		}
	}
}

// leader waits until exactly one running node is leader and returns its ID.
func (c *testCluster) leader(timeout time.Duration) string {
	c.t.Helper()
	var leader string
	waitFor(c.t, timeout, "a leader", func() bool {
		leader = ""
		for _, id := range c.ids() {
			if r := c.raft(id); r != nil && r.IsLeader() {
				if leader != "" {
					return false
				}
				leader = id
			}
		}
		return leader != ""
	})
	return leader
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func voters(t testing.TB, r *Raft) int {
	servers, err := r.Servers()
	if err != nil {
		t.Fatalf("Servers: %v", err)
	}
	n := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newTestCluster(t)

	n1 := c.start("n1", true, nil)
	if got := c.leader(10 * time.Second); got != "n1" {
		t.Fatalf("leader = %s, want n1", got)
	}
	for i, zone := range []string{"a", "b", "c"} {
		if _, _, err := n1.Apply(ctx, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node(fmt.Sprintf("n%d", i+1), zone)}); err != nil {
			t.Fatalf("Apply(UpsertNode): %v", err)
		}
	}

	// Join two nodes as nonvoters; placement promotes them.
	for _, id := range []string{"n2", "n3"} {
		c.start(id, false, nil)
		if err := n1.AddNonvoter(ctx, id, c.addr(id)); err != nil {
			t.Fatalf("AddNonvoter(%s): %v", id, err)
		}
	}
	waitFor(t, 15*time.Second, "three voters", func() bool { return voters(t, n1) == 3 })

	// A write on the leader reaches every FSM.
	resp, index, err := n1.Apply(ctx, ApplyResourcesType, upsert(pool("web", 0, "10.0.0.1"), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"))))
	if err != nil {
		t.Fatalf("Apply(ApplyResources): %v", err)
	}
	if res := resp.(*ApplyResult); res.Index != index || len(res.Results) != 2 {
		t.Errorf("ApplyResult = %+v, want 2 results at index %d", res, index)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		f := c.raft(id).FSM()
		waitFor(t, 5*time.Second, id+" to apply the write", func() bool { return f.AppliedIndex() >= index })
		if f.State().LoadBalancer("lb1") == nil {
			t.Errorf("%s: load balancer lb1 missing after index %d", id, index)
		}
	}

	// A rejected command comes back as a *StateError.
	_, _, err = n1.Apply(ctx, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindPool, Name: "web"})
	var se *StateError
	if !errors.As(err, &se) || se.Kind != FailedPrecondition {
		t.Errorf("Apply(delete used pool) error = %v, want a FailedPrecondition StateError", err)
	}

	// Followers refuse leader-only operations.
	n2 := c.raft("n2")
	if _, _, err := n2.Apply(ctx, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("x", "a")}); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Apply on a follower: error = %v, want ErrNotLeader", err)
	}
	if err := n2.ConsistentRead(ctx); !errors.Is(err, ErrNotLeader) {
		t.Errorf("ConsistentRead on a follower: error = %v, want ErrNotLeader", err)
	}
	if err := n1.ConsistentRead(ctx); err != nil {
		t.Errorf("ConsistentRead on the leader: %v", err)
	}
	if id, addr := n2.Leader(); id != "n1" || addr != c.addr("n1") {
		t.Errorf("Leader() on n2 = %s %s, want n1 %s", id, addr, c.addr("n1"))
	}
	if state, _, _, _ := n2.Stats(); state != "follower" {
		t.Errorf("n2 state = %q, want follower", state)
	}
	// Five writes so far on n1, each timed; every node has seen n1 lead.
	if m := n1.Metrics(); m.ApplyLatency.Count() != 5 || m.State != "leader" || m.AppliedIndex < index || m.LastLogIndex < index {
		t.Errorf("n1 metrics = %+v, want 5 timed applies, leader, applied and last index >= %d", m, index)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		if m := c.raft(id).Metrics(); m.LeaderChanges != 1 {
			t.Errorf("%s has seen %d leader changes, want 1 (n1)", id, m.LeaderChanges)
		}
	}

	// Kill the leader: a new one is elected within 5 s.
	c.stop("n1")
	start := time.Now()
	newLeader := c.leader(5 * time.Second)
	t.Logf("new leader %s elected %v after the old one stopped", newLeader, time.Since(start))
	nl := c.raft(newLeader)
	if err := nl.ConsistentRead(ctx); err != nil {
		t.Errorf("ConsistentRead on the new leader: %v", err)
	}
	if nl.FSM().State().LoadBalancer("lb1") == nil {
		t.Errorf("new leader lost load balancer lb1")
	}
	_, index, err = nl.Apply(ctx, ApplyResourcesType, upsert(pool("api", 0, "10.0.0.2")))
	if err != nil {
		t.Fatalf("Apply on the new leader: %v", err)
	}

	// Restart the old leader from its data directory: it catches up.
	n1 = c.start("n1", true, nil) // Bootstrap is ignored: state exists
	waitFor(t, 10*time.Second, "n1 to catch up", func() bool { return n1.FSM().AppliedIndex() >= index })
	if got, want := dump(n1.FSM().State()), dump(nl.FSM().State()); got != want {
		t.Errorf("restarted n1 state differs:\n got:\n%s\nwant:\n%s", got, want)
	}
	if n1.IsLeader() {
		t.Errorf("restarted n1 is leader, want follower of %s", newLeader)
	}

	// Hand leadership back to n1.
	if err := nl.TransferLeadership(ctx, "n1"); err != nil {
		t.Fatalf("TransferLeadership(n1): %v", err)
	}
	waitFor(t, 5*time.Second, "n1 to lead", n1.IsLeader)
}

func TestCluster_InstallSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a two-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newTestCluster(t)
	lowThreshold := func(cfg *Config) {
		cfg.SnapshotThreshold = 16
		cfg.SnapshotInterval = 50 * time.Millisecond
		cfg.TrailingLogs = 4
	}
	n1 := c.start("n1", true, lowThreshold)
	c.leader(10 * time.Second)
	for i := range 100 {
		p := pool(fmt.Sprintf("p%03d", i), 0, fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if _, _, err := n1.Apply(ctx, ApplyResourcesType, upsert(p)); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	if _, _, err := n1.Apply(ctx, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindPool, Name: "p007"}); err != nil {
		t.Fatalf("Apply(delete): %v", err)
	}
	// Raft records the snapshot before it compacts the log: wait for both.
	waitFor(t, 10*time.Second, "an automatic snapshot and the log compacted", func() bool {
		first, err := n1.logs.FirstIndex()
		return n1.raft.Stats()["last_snapshot_index"] != "0" && err == nil && first > 1
	})
	if m := n1.Metrics(); m.SnapshotIndex == 0 || m.SnapshotBytes <= 0 {
		t.Errorf("metrics after a snapshot: index %d, %d bytes; want both above 0", m.SnapshotIndex, m.SnapshotBytes)
	}

	// A late node can only be brought up to date by the snapshot.
	n2 := c.start("n2", false, lowThreshold)
	if err := n1.AddNonvoter(ctx, "n2", c.addr("n2")); err != nil {
		t.Fatalf("AddNonvoter: %v", err)
	}
	want := n1.FSM().AppliedIndex()
	waitFor(t, 10*time.Second, "n2 to catch up", func() bool { return n2.FSM().AppliedIndex() >= want })
	if got, want := dump(n2.FSM().State()), dump(n1.FSM().State()); got != want {
		t.Errorf("n2 state differs from the leader's:\n got:\n%s\nwant:\n%s", got, want)
	}
	if _, reset, _ := n2.FSM().Events(0); !reset {
		t.Errorf("n2 Events(0): reset = false, want true (it was restored from a snapshot)")
	}
}

func TestTLSStreamLayer(t *testing.T) {
	cluster, stranger := newTestCA(t), newTestCA(t)
	tests := []struct {
		name     string
		serverCA *testCA // issues the server's certificate
		clientCA *testCA // issues the client's certificate
		wantErr  bool
	}{
		{"both members of the cluster", cluster, cluster, false},
		{"client of another CA", cluster, stranger, true},
		{"server of another CA", stranger, cluster, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each side trusts only the cluster CA.
			serverTLS := tc.serverCA.tlsConfig(t, "server")
			serverTLS.RootCAs, serverTLS.ClientCAs = cluster.pool, cluster.pool
			clientTLS := tc.clientCA.tlsConfig(t, "client")
			clientTLS.RootCAs, clientTLS.ClientCAs = cluster.pool, cluster.pool

			server, err := newTLSStreamLayer("127.0.0.1:0", "", serverTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			go echo(server)
			client, err := newTLSStreamLayer("127.0.0.1:0", "", clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()

			conn, err := client.Dial(raft.ServerAddress(server.Addr().String()), 5*time.Second)
			if err == nil {
				defer conn.Close()
				err = roundTrip(conn)
			}
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("round trip error = %v, want error: %v", err, tc.wantErr)
			}
			if err == nil {
				if v := conn.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS13 {
					t.Errorf("negotiated TLS version %x, want TLS 1.3 (%x)", v, tls.VersionTLS13)
				}
			}
		})
	}
}

// echo serves every accepted connection by writing back what it reads.
func echo(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			_, _ = io.Copy(conn, conn)
		}()
	}
}

func roundTrip(conn net.Conn) error {
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(conn, buf)
	return err
}
