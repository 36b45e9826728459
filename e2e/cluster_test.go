package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/api"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func status(ctx context.Context, c *api.Client) (*weftv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := c.Cluster.Status(ctx, connect.NewRequest(&weftv1.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// threeNodes forms the acceptance cluster: init, then two joins with the
// printed join token, zones a, a, b; it waits until all three are voters.
func threeNodes(t testing.TB, subnet int, extra ...string) *cluster {
	t.Helper()
	c := newCluster(t, subnet)
	n1 := c.newAgent("node1", "a", extra...)
	n2 := c.newAgent("node2", "a", extra...)
	n3 := c.newAgent("node3", "b", extra...)
	c.initCluster(n1)
	c.join(n2, n1)
	c.join(n3, n2) // through a follower: the join is forwarded to the leader
	waitFor(t, 30*time.Second, "three voters", func() error {
		st, err := status(context.Background(), c.client(n1))
		if err != nil {
			return err
		}
		voters := 0
		for _, n := range st.GetNodes() {
			if n.GetStatus().GetSuffrage() == "voter" {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d voters in %v", voters, st.GetNodes())
		}
		return nil
	})
	return c
}

// withoutStatus drops the status of each item of a `get -o json` listing.
func withoutStatus(listing string) (string, error) {
	var doc struct {
		Items []map[string]json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(listing), &doc); err != nil {
		return "", fmt.Errorf("get -o json: %w\n%s", err, listing)
	}
	for _, it := range doc.Items {
		delete(it, "status")
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	return string(b), err
}

func TestCluster_FormApplyAndReadFromEveryNode(t *testing.T) {
	c := threeNodes(t, 11)
	manifest, err := os.ReadFile("../deploy/examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.weft(c.agents[1], string(manifest), "apply", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	if want := "pool/web created\nloadbalancer/web created\n"; out != want {
		t.Errorf("first apply printed %q, want %q", out, want)
	}
	out, err = c.weft(c.agents[2], string(manifest), "apply", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	if want := "pool/web unchanged\nloadbalancer/web unchanged\n"; out != want {
		t.Errorf("second apply printed %q, want %q", out, want)
	}

	// Linearizable reads from every node, then each node's own replica.
	// A pool's status is the answering node's observation: it is left out.
	for _, kind := range []string{"pools", "lb"} {
		var first string
		for _, mode := range [][]string{nil, {"--stale"}} {
			for _, a := range c.agents {
				var got string
				waitFor(t, 5*time.Second, "replica converges", func() error {
					args := append([]string{"get", kind, "-o", "json"}, mode...)
					out, err := c.weft(a, "", args...)
					if err != nil {
						return err
					}
					if out, err = withoutStatus(out); err != nil {
						return err
					}
					if first != "" && out != first {
						return fmt.Errorf("%s %v differs:\n%s\nwant\n%s", a.name, mode, out, first)
					}
					got = out
					return nil
				})
				if first == "" {
					first = got
				}
			}
		}
		var doc struct {
			Items []struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name    string `json:"name"`
					Version string `json:"version"`
				} `json:"metadata"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(first), &doc); err != nil {
			t.Fatalf("get %s -o json: %v\n%s", kind, err, first)
		}
		if len(doc.Items) != 1 || doc.Items[0].Metadata.Name != "web" || doc.Items[0].Metadata.Version == "" {
			t.Errorf("get %s -o json = %s, want one resource named web with a version", kind, first)
		}
	}
	out, err = c.weft(c.agents[0], "", "get", "lb", "web", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"mode": "dsr"`) || strings.Count(out, `"port": 443`) != 1 {
		t.Errorf("get lb web lacks its listeners:\n%s", out)
	}
}

// ackLog records acknowledged writes.
type ackLog struct {
	mu    sync.Mutex
	names map[string]bool
}

func (l *ackLog) add(name string) { l.mu.Lock(); l.names[name] = true; l.mu.Unlock() }

// applyPool upserts a one-member pool named name.
func applyPool(ctx context.Context, cl *api.Client, name string) error {
	res := &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{
		Metadata: &weftv1.Metadata{Name: name},
		Spec:     &weftv1.PoolSpec{Members: []*weftv1.Member{{Address: "192.0.2.1", Port: 8080}}},
	}}}
	_, err := cl.LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: []*weftv1.Resource{res}}))
	return err
}

// writePool upserts a one-member pool through any running agent, retrying
// on other agents until acknowledged.
func writePool(ctx context.Context, c *cluster, name string, start int) error {
	var lastErr error
	for attempt := 0; attempt < 200; attempt++ {
		a := c.agents[(start+attempt)%len(c.agents)]
		if !a.running() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := applyPool(cctx, c.client(a), name)
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("write %s: %w", name, lastErr)
}

func poolNames(ctx context.Context, cl *api.Client, stale bool) (map[string]bool, error) {
	res, err := cl.LB.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{Stale: stale}))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range res.Msg.GetPools() {
		out[p.GetMetadata().GetName()] = true
	}
	return out, nil
}

// checkAcked waits until every running agent's replica holds every
// acknowledged write.
func checkAcked(t *testing.T, c *cluster, acked *ackLog, limit time.Duration) {
	t.Helper()
	for _, a := range c.agents {
		waitFor(t, limit, a.name+" holds every acknowledged write", func() error {
			got, err := poolNames(context.Background(), c.client(a), true)
			if err != nil {
				return err
			}
			missing := 0
			for name := range acked.names {
				if !got[name] {
					missing++
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d of %d acknowledged writes missing", missing, len(acked.names))
			}
			return nil
		})
	}
}

func TestCluster_LeaderKilledDuringWrites(t *testing.T) {
	c := threeNodes(t, 12)
	ctx := context.Background()
	acked := &ackLog{names: map[string]bool{}}
	const clients, perClient = 4, 250
	var wg sync.WaitGroup
	var written sync.WaitGroup
	written.Add(1)
	var once sync.Once
	var count int
	var mu sync.Mutex
	errs := make(chan error, clients)
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				if err := writePool(ctx, c, name, w); err != nil {
					errs <- err
					return
				}
				acked.add(name)
				mu.Lock()
				count++
				if count == 300 {
					once.Do(written.Done)
				}
				mu.Unlock()
			}
		}(w)
	}
	written.Wait()
	old, err := c.leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old.kill()
	killed := time.Now()
	var elected time.Duration
	waitFor(t, 5*time.Second, "new leader", func() error {
		l, err := c.leader(ctx)
		if err != nil {
			return err
		}
		if l == old {
			return fmt.Errorf("%s still named leader", old.name)
		}
		elected = time.Since(killed)
		return nil
	})
	t.Logf("new leader %.0f ms after SIGKILL of %s", elected.Seconds()*1000, old.name)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(acked.names) != clients*perClient {
		t.Fatalf("%d writes acknowledged, want %d", len(acked.names), clients*perClient)
	}
	c.restart(old)
	checkAcked(t, c, acked, 20*time.Second)

	// A full stop and start keeps everything.
	for _, a := range c.agents {
		a.stop(t)
	}
	for _, a := range c.agents {
		c.restart(a)
	}
	waitFor(t, 10*time.Second, "leader after full restart", func() error { _, err := c.leader(ctx); return err })
	checkAcked(t, c, acked, 20*time.Second)
}

func TestCluster_JoinAfterSnapshot(t *testing.T) {
	c := newCluster(t, 13)
	n1 := c.newAgent("node1", "a", "--snapshot-threshold", "64", "--snapshot-interval", "200ms", "--trailing-logs", "16")
	c.initCluster(n1)
	acked := &ackLog{names: map[string]bool{}}
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("p%d", i)
		if err := writePool(context.Background(), c, name, 0); err != nil {
			t.Fatal(err)
		}
		acked.add(name)
	}
	waitFor(t, 10*time.Second, "a snapshot on node1", func() error {
		entries, _ := os.ReadDir(n1.dataDir + "/raft/snapshots")
		if len(entries) == 0 {
			return fmt.Errorf("no snapshot yet")
		}
		return nil
	})
	n2 := c.newAgent("node2", "b")
	c.join(n2, n1)
	checkAcked(t, c, acked, 20*time.Second)
	if !strings.Contains(n2.log.String(), "snapshot") {
		t.Errorf("node2 log does not mention installing a snapshot:\n%s", tail(n2.log.String(), 40))
	}
}
