package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// TestLab_Metrics: a real Prometheus (Debian's) in the client namespace
// scrapes the three XDP nodes every second with deploy/prometheus's
// config. After a known number of connections through the FullNAT VIP:80
// and the DSR VIP:81 and of requests through an http listener on VIP:82,
// PromQL over Prometheus's HTTP API gives per backend the new flows the
// test made (it knows which server answered each connection) and the
// packets the servers' own nftables counters saw, and per route the
// requests sent, all within 1%, with no error; promtool passes every
// node's /metrics.
func TestLab_Metrics(t *testing.T) {
	r := newFabricRig(t, "weftm", 0, 0, 1, 2)
	needPromtool(t)
	if err := lab.EnsureTools(context.Background(), "prometheus", "nft"); err != nil {
		t.Fatal(err)
	}
	l := r.l
	r.waitApplied(r.apply(r.manifest([]int{0, 1, 2}, -1,
		"{port: 82, protocol: http, pool: web, rules: [{pathPrefix: /api/, pool: web}]}")), 10*time.Second)
	prom := startPrometheus(t, r)
	waitFor(t, 20*time.Second, "Prometheus scraping the three nodes", func() error {
		return prom.upAfter(time.Time{})
	})
	before := prom.quiet(t)
	counters := countServerPackets(t, r)

	const conns, l7Requests = 600, 600
	served := map[string]map[string]int{} // port -> server name -> connections
	for _, port := range []string{"80", "81"} {
		served[port] = r.connections(port, conns)
	}
	apiReqs, otherReqs := r.httpRequests("82", l7Requests)
	after := prom.quiet(t)

	// delta is what an expression gained between the two quiet moments,
	// by the label (from 0 for series that began meanwhile).
	delta := func(expr, by string) map[string]float64 {
		t.Helper()
		sum := fmt.Sprintf("sum by (%s) (%s)", by, expr)
		q := fmt.Sprintf("%s - (sum by (%s) (%s @ %s) or %s * 0)", sum, by, expr, promTime(before), sum)
		return prom.query(t, q, after, by)
	}
	within := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 0.01*want || (want == 0 && got != 0) {
			t.Errorf("%s: Prometheus says %.0f, the test sent %.0f (beyond 1%%)", what, got, want)
		}
	}
	packets := counters.read(t)
	newFlows := delta(`weft_l4_backend_new_flows_total`, "backend")
	backendPackets := delta(`weft_l4_backend_packets_total`, "backend")
	for i, s := range l.Servers {
		for _, port := range []string{"80", "81"} {
			backendPort := map[string]string{"80": "8080", "81": "81"}[port]
			b := s.Addr.String() + ":" + backendPort
			within("new flows to "+b, newFlows[b], float64(served[port][s.Name]))
			within("packets of "+b, backendPackets[b], float64(packets[i][port]))
		}
	}
	t.Logf("per backend new flows %v, packets %v; servers counted %v", newFlows, backendPackets, packets)
	routes := delta(`weft_l7_route_requests_total{lb="web",listener="http-82"}`, "route")
	within("requests of route 0 (/api/)", routes["0"], float64(apiReqs))
	within("requests of the default route", routes["default"], float64(otherReqs))
	errs := delta(`weft_l7_requests_total{lb="web",listener="http-82",class=~"none|4xx|5xx"}`, "listener")
	drops := delta(`weft_l4_listener_drops_total{lb="web"}`, "listener")
	if errs["http-82"] != 0 || drops["tcp-80"] != 0 || drops["tcp-81"] != 0 {
		t.Errorf("error ratio not 0: %v failed requests, %v drops", errs, drops)
	}
	t.Logf("routes %v; traffic from %s to %s", routes, before.Format(time.TimeOnly), after.Format(time.TimeOnly))

	for _, a := range r.c.agents {
		text, err := r.c.scrape(a)
		if err != nil {
			t.Fatal(err)
		}
		promtoolCheck(t, a.name, text)
		for _, f := range []string{"weft_l4_fullnat_ports_in_use", "weft_l7_route_request_duration_seconds",
			"weft_bgp_session_established", "weft_health_check_duration_seconds", "weft_gossip_members"} {
			if !families(text)[f] {
				t.Errorf("%s exports no %s", a.name, f)
			}
		}
	}

	// Connections held open count once each summed over the nodes (flow
	// sync keeps copies on two), per listener and over its backends.
	const held = 20
	for range held {
		for _, port := range []string{"80", "81"} {
			c, err := r.c.dial(context.Background(), "tcp", net.JoinHostPort(labVIP.String(), port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("Prometheus counting %d active flows per listener", held), func() error {
		now := time.Now()
		for _, f := range []string{"weft_l4_listener_active_flows", "weft_l4_backend_active_flows"} {
			got := prom.query(t, fmt.Sprintf(`sum by (listener) (%s{lb="web"})`, f), now, "listener")
			if got["tcp-80"] != held || got["tcp-81"] != held {
				return fmt.Errorf("%s summed over the nodes: %v", f, got)
			}
		}
		return nil
	})
}

// connections opens n connections to VIP:port from the client, 8 at a
// time, and returns how many each server answered.
func (r *fabricRig) connections(port string, n int) map[string]int {
	r.t.Helper()
	var mu sync.Mutex
	by := map[string]int{}
	var failed []error
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range work {
				body, err := r.get(port, 3*time.Second)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					by[body]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		r.t.Fatalf("%d of %d connections to VIP:%s failed, first: %v", len(failed), n, port, failed[0])
	}
	return by
}

// httpRequests sends n GETs to the http listener on VIP:port over 8
// kept-alive connections, two in three to /api/ (route 0), the others
// to / (the default route), and returns the two counts.
func (r *fabricRig) httpRequests(port string, n int) (api, other int) {
	r.t.Helper()
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: r.c.dial, MaxIdleConnsPerHost: 8}}
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				path := "/"
				if i%3 != 2 {
					path = "/api/x"
				}
				resp, err := hc.Get("http://" + labVIP.String() + ":" + port + path)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET %s: %s", path, resp.Status)
					}
				}
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, err.Error())
				case path == "/":
					other++
				default:
					api++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	hc.CloseIdleConnections()
	if len(failed) > 0 {
		r.t.Fatalf("%d of %d requests to VIP:%s failed, first: %s", len(failed), n, port, failed[0])
	}
	return api, other
}

// serverCounters are nftables counters in every server's namespace of the
// packets the XDP nodes forward: FullNAT flows both ways (from and to the
// nodes' local addresses, port 8080) and DSR flows in (from the client,
// port 81). Health checks come from the nodes' own addresses: not counted.
type serverCounters struct{ r *fabricRig }

func countServerPackets(t *testing.T, r *fabricRig) serverCounters {
	var locals []string
	for i := range r.l.Nodes {
		locals = append(locals, lab.LocalAddr(i).String())
	}
	set := "{ " + strings.Join(locals, ", ") + " }"
	rules := fmt.Sprintf(`table inet weftm {
	counter fullnat_in {}
	counter fullnat_out {}
	counter dsr_in {}
	chain in { type filter hook input priority 0; ip saddr %s tcp dport 8080 counter name fullnat_in; ip saddr %s tcp dport 81 counter name dsr_in; }
	chain out { type filter hook output priority 0; ip daddr %s tcp sport 8080 counter name fullnat_out; }
}
`, set, lab.ClientAddr, set)
	for _, s := range r.l.Servers {
		cmd := r.l.Command(context.Background(), s, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft on %s: %v %s", s.Name, err, out)
		}
	}
	return serverCounters{r}
}

var nftCounter = regexp.MustCompile(`counter (\w+) \{\s*packets (\d+)`)

// read returns per server the packets of port 80's flows (FullNAT, both
// ways) and of port 81's (DSR, in).
func (c serverCounters) read(t *testing.T) []map[string]int {
	var out []map[string]int
	for _, s := range c.r.l.Servers {
		text, err := c.r.l.Command(context.Background(), s, "nft", "list", "counters", "table", "inet", "weftm").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list on %s: %v %s", s.Name, err, text)
		}
		n := map[string]int{}
		for _, m := range nftCounter.FindAllStringSubmatch(string(text), -1) {
			n[m[1]], _ = strconv.Atoi(m[2])
		}
		out = append(out, map[string]int{"80": n["fullnat_in"] + n["fullnat_out"], "81": n["dsr_in"]})
	}
	return out
}

// prometheus is a Prometheus server in the lab's client namespace.
type prometheus struct {
	r    *fabricRig
	addr string
	hc   *http.Client
}

func startPrometheus(t *testing.T, r *fabricRig) *prometheus {
	config, err := filepath.Abs("../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	p := &prometheus{r: r, addr: lab.ClientAddr.String() + ":9090",
		hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: r.c.dial}}}
	cmd := r.l.Command(context.Background(), r.l.Client, "prometheus", "--config.file="+config,
		"--storage.tsdb.path="+t.TempDir(), "--web.listen-address="+p.addr, "--log.level=warn")
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(log.String(), 20))
		}
	})
	return p
}

// promTime is a time as PromQL and the HTTP API write it: seconds.
func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// result is one series of an instant query's answer.
type result struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (p *prometheus) instant(expr string, at time.Time) ([]result, error) {
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", promTime(at))
	}
	resp, err := p.hc.Get("http://" + p.addr + "/api/v1/query?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []result `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, body.Error)
	}
	return body.Data.Result, nil
}

// query gives an instant query's values by one label.
func (p *prometheus) query(t *testing.T, expr string, at time.Time, by string) map[string]float64 {
	t.Helper()
	res, err := p.instant(expr, at)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, s := range res {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			t.Fatalf("query %q: value %v", expr, s.Value)
		}
		out[s.Metric[by]] = v
	}
	return out
}

// upAfter checks that Prometheus scraped all three nodes successfully,
// each last at or after since. (An instant query's answer carries the
// evaluation time: the samples' own is what timestamp() of a plain
// selector gives; of an expression, such as up == 1, it is the evaluation
// time again.)
func (p *prometheus) upAfter(since time.Time) error {
	up, err := p.instant(`up{job="weft"}`, time.Time{})
	if err != nil {
		return err
	}
	at, err := p.instant(`timestamp(up{job="weft"})`, time.Time{})
	if err != nil {
		return err
	}
	if len(up) != len(p.r.c.agents) || len(at) != len(up) {
		return fmt.Errorf("%d targets, want %d", len(up), len(p.r.c.agents))
	}
	for i, s := range up {
		ts, err := strconv.ParseFloat(fmt.Sprint(at[i].Value[1]), 64)
		if s.Value[1] != "1" || err != nil || time.UnixMilli(int64(ts*1000)).Before(since) {
			return fmt.Errorf("target %s: up %v, last scraped at %v, want 1 after %v", s.Metric["instance"], s.Value[1], at[i].Value[1], since)
		}
	}
	return nil
}

// quiet returns a moment at which Prometheus holds, for every node, a
// scrape taken after all the traffic sent so far, and none of traffic
// sent afterwards: each node's last scrape at or before the moment was
// taken after this call started, and the call returns only once every
// node has been scraped again after the moment (so no scrape at or
// before it can still be reading counters).
func (p *prometheus) quiet(t *testing.T) time.Time {
	t.Helper()
	start := time.Now()
	waitFor(t, 10*time.Second, "a scrape of every node after the traffic", func() error { return p.upAfter(start) })
	at := time.Now()
	waitFor(t, 10*time.Second, "a scrape of every node after the quiet moment", func() error { return p.upAfter(at) })
	return at
}
