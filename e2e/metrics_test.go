package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// scrape GETs an agent's /metrics from where the cluster's clients run.
func (c *cluster) scrape(a *agent) (string, error) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: c.dial}}
	resp, err := hc.Get("http://" + a.metricsAddr() + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics of %s: %s: %s", a.name, resp.Status, body)
	}
	return string(body), nil
}

// needPromtool installs promtool (Debian's prometheus) as root, or skips.
func needPromtool(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err == nil {
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("promtool is not installed (Debian package prometheus) and this is not root to install it")
	}
	if err := lab.EnsureTools(context.Background(), "promtool"); err != nil {
		t.Fatal(err)
	}
}

// promtoolCheck fails the test unless `promtool check metrics` passes
// the exposition text: the format, and the naming conventions (base
// units, _total on counters, help on every family).
func promtoolCheck(t testing.TB, name, text string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics on %s: %v\n%s", name, err, out.String())
	}
}

// families are the names of the metric families in exposition text.
func families(text string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(text) {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			out[strings.Fields(f)[0]] = true
		}
	}
	return out
}

// TestMetrics_Node: a node serves /metrics on --metrics-addr, promtool
// finds nothing wrong with it, and the families of a node without a
// dataplane are there, labelled with the node's name.
func TestMetrics_Node(t *testing.T) {
	needPromtool(t)
	c := newCluster(t, 24)
	a := c.newAgent("m1", "a")
	c.initCluster(a)
	var text string
	waitFor(t, 10*time.Second, "the node reports itself Raft leader", func() error {
		var err error
		if text, err = c.scrape(a); err != nil {
			return err
		}
		if !strings.Contains(text, `weft_raft_state{node="m1",state="leader"} 1`) {
			return fmt.Errorf("no leader series in:\n%s", text)
		}
		return nil
	})
	promtoolCheck(t, a.name, text)
	got := families(text)
	for _, f := range []string{"weft_build_info", "weft_raft_term", "weft_raft_apply_duration_seconds", "weft_raft_leader_changes_total",
		"weft_reconcile_applied_index", "weft_reconcile_apply_duration_seconds", "weft_gossip_members", "go_goroutines"} {
		if !got[f] {
			t.Errorf("family %s missing from:\n%s", f, text)
		}
	}
	if strings.Contains(text, "weft_l4_") || strings.Contains(text, "weft_l7_") {
		t.Errorf("a node without a dataplane exports traffic series:\n%s", text)
	}
}
