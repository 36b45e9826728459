package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/deploy/lab"
	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// The DNS benchmark's addresses: the agent is 127.0.53.1, the servers'
// DNS ports are below, and the backends both check 127.0.53.11-12:8080.
const (
	benchWeftDNS = "127.0.53.1:5300"
	benchPDNS    = "127.0.53.1:5301"
	benchGdnsd   = "127.0.53.1:5302"
	benchBackA   = "127.0.53.11"
	benchBackB   = "127.0.53.12"
)

// benchCases are the records both servers answer, by policy: Weft's and
// PowerDNS's Lua equivalent. Both check the backends themselves.
var benchCases = []struct {
	name, weft, pdns, gdnsd string
	// want is the answer once both checked the backends (sorted; "" for
	// a draw).
	want string
}{
	{"static", `{fqdn: static.example.com, type: A, values: [192.0.2.1]}`,
		`static IN A 192.0.2.1`, `static A 192.0.2.1`, "192.0.2.1"},
	{"failover-http", `{fqdn: failover-http.example.com, policy: failover, healthCheck: {type: http, port: 8080, interval: 1s},
  targets: [{address: ` + benchBackA + `, priority: 1}, {address: ` + benchBackB + `, priority: 2}]}`,
		`failover-http IN LUA A "ifurlup('http://` + benchBackA + `:8080/', {{'` + benchBackA + `'}, {'` + benchBackB + `'}})"`,
		`failover-http DYNA simplefo!failover`, benchBackA},
	{"all-healthy-tcp", `{fqdn: all-healthy-tcp.example.com, policy: all-healthy, healthCheck: {port: 8080, interval: 1s},
  targets: [{address: ` + benchBackA + `}, {address: ` + benchBackB + `}]}`,
		`all-healthy-tcp IN LUA A "ifportup(8080, {'` + benchBackA + `', '` + benchBackB + `'}, {selector='all'})"`,
		`all-healthy-tcp DYNA multifo!all`, benchBackA + " " + benchBackB},
	{"weighted", `{fqdn: weighted.example.com, policy: weighted, targets: [{address: ` + benchBackA + `, weight: 3}, {address: ` + benchBackB + `, weight: 1}]}`,
		`weighted IN LUA A "pickwrandom({{3, '` + benchBackA + `'}, {1, '` + benchBackB + `'}})"`,
		`weighted DYNA weighted!weighted`, ""},
}

// BenchmarkDNS measures, with dnsperf (bounded: 5 s a run), the queries
// per second Weft's DNS server, PowerDNS Authoritative (4.7, bind backend,
// shared Lua state, its packet cache on as shipped) and gdnsd (3.8: its
// simplefo, multifo and weighted plugins) answer for the same records,
// each server pinned to CPU 1 and dnsperf to CPU 0; and
// the p99 latency at a fixed 5000 queries/s both sustain. Names are
// BenchmarkDNS/<server>/<case>; medians and ratios to PowerDNS come from
// deploy/bench/median -base BenchmarkDNS=powerdns.
func BenchmarkDNS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the DNS benchmark installs dnsperf and PowerDNS (root)")
	}
	if runtime.NumCPU() < 2 {
		b.Skip("the DNS benchmark pins servers and dnsperf to different CPUs")
	}
	if err := lab.EnsureTools(context.Background(), "dig", "dnsperf", "pdns_server", "gdnsd"); err != nil {
		b.Fatal(err)
	}
	for _, a := range []string{benchBackA, benchBackB} {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, "8080"))
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
		go srv.Serve(ln)
		b.Cleanup(func() { srv.Close() })
	}
	servers := []struct {
		name, addr string
		start      func(b *testing.B)
	}{
		{"powerdns", benchPDNS, startPDNS},
		{"gdnsd", benchGdnsd, startGdnsd},
		{"weft", benchWeftDNS, startWeftDNS},
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			srv.start(b)
			for _, c := range benchCases {
				name := c.name + ".example.com"
				// Both check their backends: wait until the answer is the
				// healthy one (PowerDNS counts every address down at first).
				waitFor(b, 20*time.Second, srv.name+" answers "+name, func() error {
					out, err := exec.Command("dig", "+short", "-p", port(srv.addr), "@"+host(srv.addr), name).Output()
					got := strings.Fields(string(out))
					slices.Sort(got)
					if err != nil || len(got) == 0 || c.want != "" && strings.Join(got, " ") != c.want {
						return fmt.Errorf("answer %q, want %q: %v", out, c.want, err)
					}
					return nil
				})
				b.Run(c.name, func(b *testing.B) {
					qps := dnsperf(b, srv.addr, name, "-l", "5", "-c", "4", "-q", "200")
					p99 := dnsperfP99(b, srv.addr, name)
					b.ReportMetric(qps, "qps")
					b.ReportMetric(p99, "p99-ms")
				})
			}
		})
	}
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// startWeftDNS runs one weft agent on CPU 1 answering DNS, without rate
// limiting (dnsperf is one client), with the benchmark's records.
func startWeftDNS(b *testing.B) {
	c := newCluster(b, 53)
	a := c.newAgent("dns1", "a", "--dns-addr", benchWeftDNS, "--dns-rate-limit", "-1")
	a.wrap = []string{"taskset", "-c", "1"}
	c.initCluster(a)
	var docs []string
	docs = append(docs, "kind: DNSRecord\nmetadata: {name: example}\nspec: {fqdn: example.com, zone: {}}\n")
	for _, bc := range benchCases {
		docs = append(docs, fmt.Sprintf("kind: DNSRecord\nmetadata: {name: %s}\nspec: %s\n", bc.name, bc.weft))
	}
	rs, err := manifest.Decode(strings.NewReader(strings.Join(docs, "---\n")))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.client(a).LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: rs})); err != nil {
		b.Fatal(err)
	}
}

// startPDNS runs pdns_server on CPU 1 with the bind backend and the
// benchmark's records as Lua records.
func startPDNS(b *testing.B) {
	dir := b.TempDir()
	zone := []string{"$TTL 30", "@ IN SOA ns1.example.com. hostmaster.example.com. 1 3600 600 604800 30", "@ IN NS ns1.example.com.",
		"ns1 IN A 127.0.53.1"}
	for _, c := range benchCases {
		zone = append(zone, c.pdns)
	}
	files := map[string]string{
		"example.com.zone": strings.Join(zone, "\n") + "\n",
		"named.conf":       fmt.Sprintf("zone \"example.com\" { type master; file \"%s\"; };\n", filepath.Join(dir, "example.com.zone")),
		"pdns.conf": fmt.Sprintf(`launch=bind
bind-config=%s
local-address=%s
local-port=%s
enable-lua-records=shared
lua-health-checks-interval=1
daemon=no
guardian=no
socket-dir=%s
disable-syslog=yes
loglevel=3
webserver=no
`, filepath.Join(dir, "named.conf"), host(benchPDNS), port(benchPDNS), dir),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	startPinned(b, "pdns_server", "--config-dir="+dir)
}

// startGdnsd runs gdnsd on CPU 1 with the benchmark's records as its
// plugins' resources, checking the backends as often as it allows (2 s).
func startGdnsd(b *testing.B) {
	dir := b.TempDir()
	zone := []string{"$TTL 30", "@ SOA ns1 hostmaster 1 3600 600 604800 30", "@ NS ns1", "ns1 A 127.0.53.1"}
	for _, c := range benchCases {
		zone = append(zone, c.gdnsd)
	}
	config := fmt.Sprintf(`options => {
  listen => [ %s ]
  run_dir => %s
  state_dir => %s
  udp_threads => 1
  tcp_threads => 1
}
service_types => {
  web_http => { plugin => http_status, port => 8080, url_path => "/", interval => 2, timeout => 1 }
  web_tcp => { plugin => tcp_connect, port => 8080, interval => 2, timeout => 1 }
}
plugins => {
  simplefo => { failover => { primary => %[4]s, secondary => %[5]s, service_types => web_http } }
  multifo => { all => { service_types => web_tcp, a => %[4]s, b => %[5]s } }
  weighted => { weighted => { a => [ %[4]s, 3 ], b => [ %[5]s, 1 ] } }
}
`, benchGdnsd, filepath.Join(dir, "run"), filepath.Join(dir, "state"), benchBackA, benchBackB)
	for _, d := range []string{"zones", "run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for name, text := range map[string]string{"config": config, "zones/example.com": strings.Join(zone, "\n") + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	startPinned(b, "gdnsd", "-c", dir, "start")
}

// startPinned runs a server on CPU 1 until the benchmark ends.
func startPinned(b *testing.B, name string, args ...string) {
	cmd := exec.Command("taskset", append([]string{"-c", "1", name}, args...)...)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if b.Failed() {
			b.Logf("%s log:\n%s", name, tail(log.String(), 40))
		}
	})
}

var (
	dnsperfQPS  = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	dnsperfLost = regexp.MustCompile(`Queries lost:\s+(\d+)`)
)

// dnsperf runs dnsperf on CPU 0 asking name over and over and returns
// the queries per second it measured.
func dnsperf(b *testing.B, addr, name string, args ...string) float64 {
	b.Helper()
	out := runDNSPerf(b, addr, name, args...)
	m := dnsperfQPS.FindSubmatch(out)
	if m == nil {
		b.Fatalf("dnsperf printed no rate:\n%s", out)
	}
	qps, _ := strconv.ParseFloat(string(m[1]), 64)
	return qps
}

func runDNSPerf(b *testing.B, addr, name string, args ...string) []byte {
	b.Helper()
	data := filepath.Join(b.TempDir(), "queries")
	if err := os.WriteFile(data, []byte(name+" A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	full := append([]string{"-c", "0", "dnsperf", "-s", host(addr), "-p", port(addr), "-d", data, "-t", "2"}, args...)
	out, err := exec.Command("taskset", full...).CombinedOutput()
	if err != nil {
		b.Fatalf("dnsperf: %v\n%s", err, out)
	}
	if m := dnsperfLost.FindSubmatch(out); m != nil && string(m[1]) != "0" {
		b.Logf("dnsperf lost %s queries", m[1])
	}
	return out
}

// dnsperfP99 is the 99th percentile latency, in ms, of 2 s of queries at
// 5000/s (dnsperf -v reports each query's latency).
func dnsperfP99(b *testing.B, addr, name string) float64 {
	b.Helper()
	out := runDNSPerf(b, addr, name, "-l", "2", "-Q", "5000", "-v")
	var lat []float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 5 && f[0] == ">" && f[1] == "NOERROR" {
			if v, err := strconv.ParseFloat(f[4], 64); err == nil {
				lat = append(lat, v*1000)
			}
		}
	}
	if len(lat) < 1000 {
		b.Fatalf("dnsperf -v reported %d answered queries, want thousands:\n%s", len(lat), tail(string(out), 20))
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100]
}
