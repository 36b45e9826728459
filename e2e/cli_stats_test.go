package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// topSamples runs `weft top -o json` for n refreshes against a and decodes
// the documents it printed.
func topSamples(t *testing.T, c *cluster, a *agent, n int, args ...string) []*weftv1.StatsSample {
	t.Helper()
	out, err := c.weft(a, "", append([]string{"top", "-o", "json", "--interval", "1s", "--iterations", strconv.Itoa(n)}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var samples []*weftv1.StatsSample
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("weft top -o json printed something not JSON: %v\n%s", err, out)
		}
		s := &weftv1.StatsSample{}
		if err := protojson.Unmarshal(raw, s); err != nil {
			t.Fatalf("weft top -o json: %v\n%s", err, raw)
		}
		samples = append(samples, s)
	}
	if len(samples) != n {
		t.Fatalf("weft top --iterations %d printed %d documents:\n%s", n, len(samples), out)
	}
	return samples
}

// checkJSONLog fails the test for each line of an agent's log (run with
// --log-format json) that is not a JSON record with a level and a message.
func checkJSONLog(t *testing.T, a *agent) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(a.log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil || m["level"] == nil {
			t.Errorf("%s logged a line that is not a JSON record with level and msg: %q", a.name, l)
		}
	}
}

// listenerRates finds a listener's rates in a sample.
func listenerRates(s *weftv1.StatsSample, lb, listener string) *weftv1.ListenerRates {
	for _, l := range s.GetLoadBalancers() {
		for _, ln := range l.GetListeners() {
			if l.GetName() == lb && ln.GetName() == listener {
				return ln
			}
		}
	}
	return nil
}

// TestCLI_Rates: a node forwarding an http and a tcp listener (userspace
// dataplane) and a node that forwards nothing. Asked through the second,
// `weft top` and `weft describe lb` show non-zero rates while traffic flows
// (the second node sums the first's counters) and zero once it stopped;
// with the first node killed, the second names it as not counted. The
// access log has one JSON line per request sent, matching it, and every
// line the agent logged is JSON; after the file is renamed and SIGHUP sent,
// lines go to a new file.
func TestCLI_Rates(t *testing.T) {
	c := newCluster(t, 27)
	accessLog := filepath.Join(t.TempDir(), "access.log")
	n1 := c.newAgent("node1", "a", "--dataplane", "userspace", "--access-log", accessLog)
	n2 := c.newAgent("node2", "b")
	c.initCluster(n1)
	c.join(n2, n1)

	ln, err := net.Listen("tcp", "127.0.27.200:0")
	if err != nil {
		t.Fatal(err)
	}
	member := ln.Addr().(*net.TCPAddr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the member\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	manifest := fmt.Sprintf(`kind: Pool
metadata: {name: web}
spec:
  members: [{address: %s, port: %d}]
  healthCheck: {type: http, interval: 1s, timeout: 500ms}
---
kind: LoadBalancer
metadata: {name: web}
spec:
  vip: 127.0.27.100
  listeners:
    - {port: 8080, protocol: http, pool: web, accessLog: {enabled: true}}
    - {port: 9000, protocol: tcp, pool: web}
`, member.IP, member.Port)
	// --wait returns once both nodes run the change.
	if out, err := c.weft(n1, manifest, "apply", "--wait", "-f", "-"); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "\napplied on 2 nodes in ") {
		t.Fatalf("apply --wait printed %q", out)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitFor(t, 15*time.Second, "both listeners forwarding, the member up", func() error {
		for _, u := range []string{"http://127.0.27.100:8080/warm", "http://127.0.27.100:9000/warm"} {
			resp, err := hc.Get(u)
			if err != nil {
				return err
			}
			resp.Body.Close()
		}
		if out, err := c.weft(n2, "", "describe", "lb", "web", "--interval", "0"); err != nil {
			return err
		} else if !strings.Contains(out, "vip: 127.0.27.100") {
			return fmt.Errorf("describe on node2:\n%s", out)
		}
		s := topSamples(t, c, n2, 1)[0]
		if b := listenerRates(s, "web", "http-8080").GetBackends(); len(b) != 1 || b[0].GetHealth() != "up" {
			return fmt.Errorf("http-8080 backends %v, want the member up", b)
		}
		return nil
	})

	// Traffic: HTTP requests through the http listener and connections
	// through the tcp one, until stopped.
	var sent atomic.Int64
	paths := sync.Map{} // path -> true
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			path := fmt.Sprintf("/req/%d", i)
			if resp, err := hc.Get("http://127.0.27.100:8080" + path); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				sent.Add(1)
				paths.Store(path, resp.StatusCode)
			}
			if resp, err := hc.Get("http://127.0.27.100:9000/l4"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	stopped := false
	stopTraffic := func() {
		if !stopped {
			close(stop)
			wg.Wait()
			stopped = true
		}
	}
	defer stopTraffic()

	during := topSamples(t, c, n2, 2)
	for i, s := range during {
		if !slices.Equal(s.GetNodes(), []string{"node1", "node2"}) || len(s.GetMissing()) != 0 {
			t.Errorf("sample %d: summed over %v, missing %v; want node1 and node2", i, s.GetNodes(), s.GetMissing())
		}
		h, l4 := listenerRates(s, "web", "http-8080"), listenerRates(s, "web", "tcp-9000")
		if h.GetRates().GetRequests() <= 0 || h.GetRates().GetErrorRatio() != 0 || h.GetBackends()[0].GetRates().GetRequests() <= 0 {
			t.Errorf("sample %d during traffic: http-8080 %v, want requests/s > 0 on it and its member, no errors", i, h)
		}
		if l4.GetRates().GetNewFlows() <= 0 || l4.GetRates().GetBits() <= 0 || l4.GetBackends()[0].GetRates().GetNewFlows() <= 0 {
			t.Errorf("sample %d during traffic: tcp-9000 %v, want new flows/s and bits/s > 0", i, l4)
		}
	}
	// describe's rates are YAML comments.
	describe := func() string {
		t.Helper()
		out, err := c.weft(n2, "", "describe", "lb", "web")
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(out, "\n# ", "\n")
	}
	out := describe()
	if r := row(out, "http-8080"); len(r) < 10 || r[8] == "0" {
		t.Errorf("describe during traffic: http-8080 row %v, want req/s > 0:\n%s", r, out)
	}
	if r := row(out, "tcp-9000"); len(r) < 10 || r[5] == "0" {
		t.Errorf("describe during traffic: tcp-9000 row %v, want new/s > 0:\n%s", r, out)
	}
	t.Logf("describe lb web during traffic:\n%s", out[strings.Index(out, "rates over"):])

	stopTraffic()
	// The last connections close and their bytes are counted; then every
	// rate is zero.
	waitFor(t, 10*time.Second, "zero rates after the traffic", func() error {
		s := topSamples(t, c, n2, 1)[0]
		for _, l := range []string{"http-8080", "tcp-9000"} {
			r := listenerRates(s, "web", l).GetRates()
			if r.GetRequests() != 0 || r.GetNewFlows() != 0 || r.GetBits() != 0 || r.GetActiveFlows() != 0 {
				return fmt.Errorf("%s rates %v", l, r)
			}
		}
		return nil
	})
	out = describe()
	if r := row(out, "http-8080"); len(r) < 10 || r[8] != "0" {
		t.Errorf("describe after traffic: http-8080 row %v, want 0 req/s:\n%s", r, out)
	}
	if r := row(out, "tcp-9000"); len(r) < 10 || r[5] != "0" || r[4] != "0" {
		t.Errorf("describe after traffic: tcp-9000 row %v, want 0 bps and new/s:\n%s", r, out)
	}

	// The access log: one line per request sent through the http
	// listener, warm-up requests included.
	var lines []map[string]any
	waitFor(t, 5*time.Second, "the access log written out", func() error {
		b, err := os.ReadFile(accessLog)
		if err != nil {
			return err
		}
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("access log line %q: %v", l, err)
			}
			if strings.HasPrefix(m["path"].(string), "/req/") {
				lines = append(lines, m)
			}
		}
		if int64(len(lines)) != sent.Load() {
			return fmt.Errorf("%d lines of /req/ requests, %d sent", len(lines), sent.Load())
		}
		return nil
	})
	upstream := member.String()
	for _, m := range lines {
		path := m["path"].(string)
		status, ok := paths.Load(path)
		if !ok || m["status"] != float64(status.(int)) || m["method"] != "GET" || m["listener"] != "web/http-8080" ||
			m["upstream"] != upstream || m["host"] != "127.0.27.100:8080" || m["route"] != "default" ||
			m["bytes"] != float64(len("hello from the member\n")) {
			t.Errorf("access log line %v does not match the request sent (status %v, upstream %s)", m, status, upstream)
		}
	}

	// logrotate: the file renamed, SIGHUP, and the next lines go to a new
	// file at the path.
	if err := os.Rename(accessLog, accessLog+".1"); err != nil {
		t.Fatal(err)
	}
	if err := n1.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "node1 reopening its access log", func() error {
		if !strings.Contains(n1.log.String(), "access log reopened") {
			return errors.New("not yet")
		}
		return nil
	})
	for range 5 {
		resp, err := hc.Get("http://127.0.27.100:8080/after-rotation")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitFor(t, 5*time.Second, "five lines in the new access log", func() error {
		b, err := os.ReadFile(accessLog)
		if n := strings.Count(string(b), `"path":"/after-rotation"`); err != nil || n != 5 {
			return fmt.Errorf("%d lines (%v)", n, err)
		}
		return nil
	})

	checkJSONLog(t, n1)

	// Without node1, node2 sums only itself and says why.
	n1.kill()
	waitFor(t, 10*time.Second, "node1 named as not counted", func() error {
		s := topSamples(t, c, n2, 1)[0]
		if !slices.Equal(s.GetNodes(), []string{"node2"}) || len(s.GetMissing()) != 1 || s.GetMissing()[0].GetNode() != "node1" {
			return fmt.Errorf("summed over %v, missing %v", s.GetNodes(), s.GetMissing())
		}
		return nil
	})
	out, err = c.weft(n2, "", "top", "--iterations", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "summed over node2; not counted: node1 (") {
		t.Errorf("weft top does not name node1 as not counted:\n%s", out)
	}
}
