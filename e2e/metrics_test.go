package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// TestMetrics_DashboardQueries: every query of deploy/prometheus's Grafana
// dashboard is valid PromQL (promtool checks them as recording rules, with
// Grafana's variables given values).
func TestMetrics_DashboardQueries(t *testing.T) {
	needPromtool(t)
	raw, err := os.ReadFile("../deploy/prometheus/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h", "$node", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n- name: dashboard\n  rules:\n")
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			q, _ := json.Marshal(vars.Replace(tg.Expr))
			fmt.Fprintf(&rules, "  - record: dashboard:query%d\n    expr: %s\n", n, q)
			n++
		}
	}
	file := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's %d queries: %v\n%s", n, err, out)
	}
}
