package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/deploy/lab"
	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// Flow sync in the lab (issue 11): 200 long-lived FullNAT and 200 DSR
// connections, each asking every 100 ms, and a stream of new connections
// run through the VIP while nodes are lost or restarted. Every held
// connection must survive: its copies are on the owners of its bucket
// (two nodes in two zones), and its FullNAT local address is taken over by
// a node that kept its replies' entries.

// requireAllSurvived fails the test unless every held connection of both
// probers survived.
func requireAllSurvived(t *testing.T, what string, results ...lab.ProbeResult) {
	t.Helper()
	for i, res := range results {
		mode := []string{"DSR", "FullNAT"}[i]
		if res.Survived != res.Conns {
			t.Errorf("%s, %s: %d of %d held connections survived (errors %v, late %d), want all",
				what, mode, res.Survived, res.Conns, res.Errors, res.Late)
		}
	}
}

// waitFlowsReady waits until every running agent has pulled the flows of
// the current ownership table and sees each other running agent's sync
// stream up and ready.
func (r *fabricRig) waitFlowsReady(limit time.Duration) {
	r.t.Helper()
	waitFor(r.t, limit, "flow sync ready on every running node", func() error {
		running := map[string]bool{}
		for _, a := range r.c.agents {
			running[a.name] = a.running()
		}
		for i, a := range r.c.agents {
			if !a.running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := status(ctx, r.api[i])
			cancel()
			if err != nil {
				return err
			}
			fs := st.GetFlowSync()
			if fs.GetEpoch() == 0 || fs.GetReadyEpoch() != fs.GetEpoch() {
				return fmt.Errorf("%s: flow sync epoch %d, ready for %d", a.name, fs.GetEpoch(), fs.GetReadyEpoch())
			}
			for _, p := range fs.GetPeers() {
				if running[p.GetName()] && (p.GetState() != "up" || p.GetReadyEpoch() != fs.GetEpoch()) {
					return fmt.Errorf("%s sees %s %s, ready for %d", a.name, p.GetName(), p.GetState(), p.GetReadyEpoch())
				}
			}
		}
		return nil
	})
}

// TestLab_FlowSync: forged syncs refused, node loss while the pool
// changes, the loss of a whole zone, and a rolling restart.
func TestLab_FlowSync(t *testing.T) {
	r := newFabricRig(t, "weftf", 500*time.Millisecond, 0, 1)
	r.waitFlowsReady(20 * time.Second)

	// First, while no traffic makes flows to sync.
	t.Run("forged", func(t *testing.T) {
		defer r.on(t)()
		forgedSync(t, r)
	})
	t.Run("node-loss-backend-change", func(t *testing.T) {
		defer r.on(t)()
		dsr, fullnat := nodeLossWithBackendChange(t, r)
		requireAllSurvived(t, "node loss while the pool changed", dsr, fullnat)
	})
	// Nodes frozen past their peers' dead-after time are taken over, and
	// take each other over, then come back: the node lost next must not be
	// where servers still send another node's replies.
	t.Run("freeze-then-node-loss", func(t *testing.T) {
		defer r.on(t)()
		r.restore(1)
		r.waitFlowsReady(20 * time.Second)
		for _, a := range r.c.agents[:2] {
			a.cmd.Process.Signal(syscall.SIGSTOP)
		}
		// Until the router has given up on them (the BGP hold time).
		waitVia(t, r.l, holdTime+5*time.Second, r.l.Nodes[2])
		for _, a := range r.c.agents[:2] {
			a.cmd.Process.Signal(syscall.SIGCONT)
		}
		waitVia(t, r.l, 20*time.Second, r.l.Nodes...)
		r.waitFlowsReady(20 * time.Second)
		dsr, fullnat, _ := nodeLoss(t, r, 1, 200, nil)
		requireAllSurvived(t, "loss of a node after another was frozen", dsr, fullnat)
	})
	t.Run("zone-loss", func(t *testing.T) {
		defer r.on(t)()
		r.restore(1)
		r.waitFlowsReady(20 * time.Second)
		dsr, fullnat := zoneLoss(t, r)
		requireAllSurvived(t, "loss of the primary zone", dsr, fullnat)
	})
	t.Run("rolling-restart", func(t *testing.T) {
		defer r.on(t)()
		for i := range r.c.agents {
			r.restore(i)
		}
		r.waitFlowsReady(20 * time.Second)
		dsr, fullnat := rollingRestart(t, r)
		requireAllSurvived(t, "rolling restart", dsr, fullnat)
		for _, res := range []lab.ProbeResult{dsr, fullnat} {
			if res.NewFailures > 0 {
				t.Errorf("rolling restart: %d of %d new connections failed, want none", res.NewFailures, res.NewAttempts)
			}
		}
	})
}

// nodeLossWithBackendChange kills node2 in the same second as server3
// joins both pools and server1 is drained from them: held connections to
// server1 must keep it, and those on the lost node must keep their
// backends although every node's Maglev table changed.
func nodeLossWithBackendChange(tb testing.TB, r *fabricRig) (dsr, fullnat lab.ProbeResult) {
	tb.Helper()
	r.waitApplied(r.apply(r.manifest([]int{0, 1}, -1, "")), 10*time.Second)
	observe := holdTime + 3*time.Second
	pd, pf := markedProbers(tb, r, 200, observe)
	r.c.agents[1].kill()
	r.apply(r.manifest([]int{0, 1, 2}, 0, ""))
	waitVia(tb, r.l, holdTime+5*time.Second, r.l.Nodes[0], r.l.Nodes[2])
	return pd.result(tb), pf.result(tb)
}

// zoneLoss puts the load balancer in zone a with zone b as backup, so the
// router sends everything to node1 and node2 (zone a), then kills both:
// node3, the backup zone's, must keep the established connections.
func zoneLoss(tb testing.TB, r *fabricRig) (dsr, fullnat lab.ProbeResult) {
	tb.Helper()
	r.zones = "primaryZone: a, backupZones: [b]"
	r.waitApplied(r.apply(r.manifest([]int{0, 1}, -1, "")), 10*time.Second)
	waitVia(tb, r.l, 10*time.Second, r.l.Nodes[0], r.l.Nodes[1])
	observe := holdTime + 3*time.Second
	pd, pf := markedProbers(tb, r, 200, observe)
	r.c.agents[0].kill()
	r.c.agents[1].kill()
	took := waitVia(tb, r.l, holdTime+5*time.Second, r.l.Nodes[2])
	tb.Logf("router's route via node3 alone %.0f ms after the zone was lost", took.Seconds()*1000)
	dsr, fullnat = pd.result(tb), pf.result(tb)
	for _, i := range []int{0, 1} {
		r.c.restart(r.c.agents[i])
	}
	// Their APIs answer once their replicas have caught up.
	r.waitFlowsReady(30 * time.Second)
	r.zones = "region: lab"
	r.waitApplied(r.apply(r.manifest([]int{0, 1}, -1, "")), 20*time.Second)
	return dsr, fullnat
}

// rollingRestart stops each node in turn (SIGTERM: it withdraws its
// routes, drains, hands its addresses over) and starts it again, waiting
// until it is back in the router's route with its flows before the next.
func rollingRestart(tb testing.TB, r *fabricRig) (dsr, fullnat lab.ProbeResult) {
	tb.Helper()
	// At most; ended once the third node is back.
	observe := 50 * time.Second
	pd, pf := markedProbers(tb, r, 200, observe)
	start := time.Now()
	for _, a := range r.c.agents {
		a.stop(tb)
		r.c.restart(a)
		r.waitFlowsReady(20 * time.Second)
		waitVia(tb, r.l, 20*time.Second, r.l.Nodes...)
		tb.Logf("%s restarted, %.1f s into the rolling restart", a.name, time.Since(start).Seconds())
	}
	if time.Since(start) > observe-time.Second {
		tb.Fatalf("the rolling restart took %s, longer than the probers watch", time.Since(start))
	}
	// Answered through the last node's return, for a second more.
	time.Sleep(max(0, holdTime+2*time.Second-time.Since(start)))
	time.Sleep(time.Second)
	pd.end(tb)
	pf.end(tb)
	return pd.result(tb), pf.result(tb)
}

// recordingConn keeps every byte written to it: the TLS records a client
// sent, for replaying.
type recordingConn struct {
	net.Conn
	mu   sync.Mutex
	sent []byte
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// syncOnce opens a Sync stream to a with tlsConfig (and token, if set),
// sends one flow as node2 and waits for the first answer.
func (r *fabricRig) syncOnce(a *agent, tlsConfig *tls.Config, token string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true, DialContext: dial}}
	defer hc.CloseIdleConnections()
	c := weftv1connect.NewFlowSyncServiceClient(hc, "https://"+a.apiAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream := c.Sync(ctx)
	if token != "" {
		stream.RequestHeader().Set("Authorization", "Bearer "+token)
	}
	flow := &weftv1.SyncedFlow{Client: netip.MustParseAddr("198.18.0.2").AsSlice(), ClientPort: 9, Vip: labVIP.AsSlice(), VipPort: 80,
		Proto: 6, Backend: r.l.Servers[0].Addr.AsSlice(), BackendPort: 8080, Established: true, Forward: true}
	if err := stream.Send(&weftv1.SyncRequest{Node: "node2", Flows: []*weftv1.SyncedFlow{flow}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err := stream.Receive()
	stream.CloseRequest()
	stream.CloseResponse()
	return err
}

// flowsReceived is how many synced flows agent i has received.
func (r *fabricRig) flowsReceived(i int) uint64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := status(ctx, r.api[i])
	if err != nil {
		r.t.Fatal(err)
	}
	return st.GetFlowSync().GetReceived()
}

// forgedSync sends node1 flows it must refuse: from a certificate of
// another CA that names node2, with the admin API token instead of a node
// certificate, and a replay of the TLS bytes of a real sync from node2.
// Only the real one is received.
func forgedSync(t *testing.T, r *fabricRig) {
	ca, err := os.ReadFile(r.c.caFile)
	if err != nil {
		t.Fatal(err)
	}
	node2Cert, err1 := os.ReadFile(filepath.Join(r.c.agents[1].dataDir, "tls", "node.crt"))
	node2Key, err2 := os.ReadFile(filepath.Join(r.c.agents[1].dataDir, "tls", "node.key"))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("another cluster")
	if err != nil {
		t.Fatal(err)
	}
	forgedCert, forgedKey, err := other.IssueNode("node2", []string{r.l.Nodes[1].Addr.String()}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, err1 := pki.ClientTLS(ca, nil, nil)
	real, err2 := pki.ClientTLS(ca, node2Cert, node2Key)
	forgedPair, err3 := tls.X509KeyPair(forgedCert, forgedKey)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	// Presented whatever the server asks for, as an attacker would.
	forged.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forgedPair, nil }
	tokenOnly, err := pki.ClientTLS(ca, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := r.c.agents[0]
	before := r.flowsReceived(0)

	if err := r.syncOnce(target, forged, "", r.c.dial); err == nil {
		t.Errorf("sync with a certificate of another CA: accepted")
	} else {
		t.Logf("another CA's certificate: %v", err)
	}
	if err := r.syncOnce(target, tokenOnly, r.c.adminToken, r.c.dial); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("sync with the admin token: %v, want PermissionDenied", err)
	}
	var rec *recordingConn
	recordDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := r.c.dial(ctx, network, addr)
		if err == nil {
			rec = &recordingConn{Conn: c}
			return rec, nil
		}
		return nil, err
	}
	if err := r.syncOnce(target, real, "", recordDial); err != nil {
		t.Fatalf("sync as node2: %v", err)
	}
	waitFor(t, 5*time.Second, "node1 to receive node2's flow", func() error {
		if got := r.flowsReceived(0); got != before+1 {
			return fmt.Errorf("received %d flows, want %d", got-before, 1)
		}
		return nil
	})
	// The same bytes again, on a new connection: TLS refuses them.
	rec.mu.Lock()
	replay := slices.Clone(rec.sent)
	rec.mu.Unlock()
	conn, err := r.c.dial(context.Background(), "tcp", target.apiAddr())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write(replay)
	answer, _ := io.ReadAll(conn)
	conn.Close()
	t.Logf("replayed %d bytes of node2's sync; node1 answered %d bytes and closed", len(replay), len(answer))
	time.Sleep(500 * time.Millisecond)
	if got := r.flowsReceived(0); got != before+1 {
		t.Errorf("node1 received %d flows from the forged, token and replayed syncs and the real one, want 1", got-before)
	}
}
