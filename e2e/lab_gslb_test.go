package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"

	"github.com/weftlb/weft/deploy/lab"
)

// The GSLB lab: every node of the fabric answers DNS on the anycast
// address dnsVIP, announced over BGP from all three; two regions' load
// balancers (eu: a backend of the test's own, so it can be stopped; us:
// server2's :8080).
var (
	dnsVIP = netip.MustParseAddr("198.51.100.53")
	euVIP  = netip.MustParseAddr("198.51.100.11")
	usVIP  = netip.MustParseAddr("198.51.100.12")
)

// Health checks of the eu pool: a stopped backend is down within
// interval x fall (+ a timeout), back after rise x interval.
const (
	gslbInterval = time.Second
	gslbFall     = 2
	gslbRise     = 2
)

func gslbManifest(client netip.Addr) string {
	big := make([]string, 12)
	for i := range big {
		big[i] = fmt.Sprintf("%q", strings.Repeat(string(rune('a'+i)), 200))
	}
	return fmt.Sprintf(`kind: Pool
metadata: {name: eu}
spec: {members: [{address: 198.18.1.21, port: 9090}], healthCheck: {interval: 1s, rise: %d, fall: %d}}
---
kind: Pool
metadata: {name: us}
spec: {members: [{address: 198.18.1.22, port: 8080}], healthCheck: {interval: 1s}}
---
kind: LoadBalancer
metadata: {name: web-eu}
spec: {vip: %s, region: eu, listeners: [{port: 80, protocol: tcp, pool: eu}]}
---
kind: LoadBalancer
metadata: {name: web-us}
spec: {vip: %s, region: us, listeners: [{port: 80, protocol: tcp, pool: us}]}
---
kind: DNSRecord
metadata: {name: example}
spec:
  fqdn: example.com
  zone:
    nameservers: [ns1.example.com]
    negativeTtl: 7
    secondaries: [%s]
    regions:
      - {name: eu, cidrs: [203.0.113.0/24, 198.18.0.0/24]}
      - {name: us, cidrs: [192.0.2.0/24]}
---
kind: DNSRecord
metadata: {name: ns1}
spec: {fqdn: ns1.example.com, type: A, ttl: 3600, values: [%s]}
---
kind: DNSRecord
metadata: {name: www}
spec: {fqdn: www.example.com, policy: failover, ttl: 1, targets: [{loadBalancer: web-eu, priority: 1}, {loadBalancer: web-us, priority: 2}]}
---
kind: DNSRecord
metadata: {name: geo}
spec: {fqdn: geo.example.com, policy: geo, ttl: 30, targets: [{loadBalancer: web-eu}, {loadBalancer: web-us}]}
---
kind: DNSRecord
metadata: {name: all}
spec: {fqdn: all.example.com, policy: all-healthy, targets: [{loadBalancer: web-eu}, {loadBalancer: web-us}]}
---
kind: DNSRecord
metadata: {name: near}
spec: {fqdn: near.example.com, policy: nearest, targets: [{loadBalancer: web-eu}, {loadBalancer: web-us, region: lab}]}
---
kind: DNSRecord
metadata: {name: wrr}
spec: {fqdn: wrr.example.com, policy: weighted, ttl: 0, targets: [{loadBalancer: web-eu, weight: 3}, {loadBalancer: web-us, weight: 1}]}
---
kind: DNSRecord
metadata: {name: ext}
spec: {fqdn: ext.example.com, policy: all-healthy, healthCheck: {port: 8080, interval: 1s}, targets: [{address: 198.18.1.22}, {address: 198.18.1.23}, {address: 198.18.1.24}]}
---
kind: DNSRecord
metadata: {name: v6}
spec: {fqdn: v6.example.com, type: AAAA, values: ["2001:db8::53"]}
---
kind: DNSRecord
metadata: {name: alias}
spec: {fqdn: alias.example.com, type: CNAME, ttl: 60, values: [www.example.com]}
---
kind: DNSRecord
metadata: {name: txt}
spec: {fqdn: txt.example.com, type: TXT, values: ["hello world"]}
---
kind: DNSRecord
metadata: {name: big}
spec: {fqdn: big.example.com, type: TXT, values: [%s]}
`, gslbRise, gslbFall, euVIP, usVIP, client, dnsVIP, strings.Join(big, ", "))
}

// gslbRig is the fabric with the DNS service on every node.
type gslbRig struct {
	*fabricRig
	// eu is the eu pool's only backend (server1's :9090).
	eu *exec.Cmd
}

func newGSLBRig(t *testing.T) *gslbRig {
	t.Helper()
	f := newFabricRigWith(t, "weftg", 500*time.Millisecond,
		[]string{"--dns-addr", netip.AddrPortFrom(dnsVIP, 53).String(), "--dns-anycast"}, 0, 1, 2)
	if err := lab.EnsureTools(context.Background(), "dig", "kdig", "unbound", "nft"); err != nil {
		t.Fatal(err)
	}
	r := &gslbRig{fabricRig: f}
	r.startEU()
	r.waitApplied(r.apply(gslbManifest(lab.ClientAddr)), 10*time.Second)
	waitFor(t, 15*time.Second, "route to the DNS VIP via the three nodes", func() error {
		hosts, err := r.l.RouteVia(context.Background(), dnsVIP)
		if err != nil || len(hosts) != 3 {
			return fmt.Errorf("via %v: %v", hosts, err)
		}
		return nil
	})
	r.waitAnswer("www.example.com", euVIP.String(), 10*time.Second)
	// 198.18.1.24 is no host: its checks fail (fall 3 at 1 s).
	r.waitAnswer("ext.example.com", "198.18.1.22 198.18.1.23", 15*time.Second)
	return r
}

// startEU (re)starts the eu backend.
func (r *gslbRig) startEU() {
	r.t.Helper()
	r.eu = r.l.Command(context.Background(), r.l.Servers[0], labServerBin, "-name", "eu", "-addr", ":9090")
	if err := r.eu.Start(); err != nil {
		r.t.Fatal(err)
	}
	cmd := r.eu
	r.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

func (r *gslbRig) stopEU() {
	r.eu.Process.Kill()
	r.eu.Wait()
}

// digResult is one answer as dig prints it (+yaml).
type digResult struct {
	Status, Flags     string
	Answer, Authority []string
	UDPSize           int
	Protocol          string
	out               string
}

// addrs are the answer's A and AAAA addresses, sorted.
func (d digResult) addrs() []string {
	var out []string
	for _, rr := range d.Answer {
		f := strings.Fields(rr)
		if len(f) == 5 && (f[3] == "A" || f[3] == "AAAA") {
			out = append(out, f[4])
		}
	}
	slices.Sort(out)
	return out
}

// dig runs dig in the client's namespace against server (default: the
// DNS VIP) and returns its last message.
func (r *gslbRig) dig(args ...string) digResult {
	r.t.Helper()
	res, err := r.tryDig(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return res
}

func (r *gslbRig) tryDig(args ...string) (digResult, error) {
	full := append([]string{"+yaml", "+norec", "+tries=1", "+time=2"}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "@") }) {
		full = append(full, "@"+dnsVIP.String())
	}
	out, err := r.l.Command(context.Background(), r.l.Client, "dig", full...).CombinedOutput()
	if err != nil {
		return digResult{}, fmt.Errorf("dig %v: %w: %s", args, err, out)
	}
	var docs []struct {
		Message struct {
			Protocol string `yaml:"socket_protocol"`
			Data     struct {
				Status    string                    `yaml:"status"`
				Flags     string                    `yaml:"flags"`
				Opt       map[string]map[string]any `yaml:"OPT_PSEUDOSECTION"`
				Answer    []string                  `yaml:"ANSWER_SECTION"`
				Authority []string                  `yaml:"AUTHORITY_SECTION"`
			} `yaml:"response_message_data"`
		} `yaml:"message"`
	}
	// dig prints comments (";; Truncated, retrying in TCP mode.") between
	// the YAML documents.
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, ";;") {
			lines = append(lines, l)
		}
	}
	if err := yaml.Unmarshal([]byte(strings.Join(lines, "\n")), &docs); err != nil || len(docs) == 0 {
		return digResult{}, fmt.Errorf("dig %v: output is not YAML (%v):\n%s", args, err, out)
	}
	m := docs[len(docs)-1].Message
	res := digResult{Status: m.Data.Status, Flags: m.Data.Flags, Answer: m.Data.Answer, Authority: m.Data.Authority,
		Protocol: m.Protocol, out: string(out)}
	for i := range res.Answer {
		res.Answer[i] = strings.Join(strings.Fields(res.Answer[i]), " ")
	}
	for i := range res.Authority {
		res.Authority[i] = strings.Join(strings.Fields(res.Authority[i]), " ")
	}
	if edns, ok := m.Data.Opt["EDNS"]; ok {
		fmt.Sscan(fmt.Sprint(edns["udp"]), &res.UDPSize)
	}
	return res, nil
}

// waitAnswer waits until name's A answer is want (addresses joined by
// spaces) and returns how long that took.
func (r *gslbRig) waitAnswer(name, want string, limit time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	waitFor(r.t, limit, name+" answers "+want, func() error {
		res, err := r.tryDig(name)
		if err != nil {
			return err
		}
		if got := strings.Join(res.addrs(), " "); got != want {
			return fmt.Errorf("answer %q", got)
		}
		return nil
	})
	return time.Since(start)
}

// TestLab_GSLB: the nodes of a three-node XDP fabric answer DNS on an
// anycast address for the zones of the committed state. dig, kdig and an
// unbound resolver in front get the expected answers for each record type,
// policy and error case; failover moves to the second region within
// interval x fall + 1 s of its backend stopping, and back after rise,
// without flapping when one checker disagrees; geo answers follow ECS with
// its scope; and a SIGKILLed node loses no query once its route is gone.
func TestLab_GSLB(t *testing.T) {
	r := newGSLBRig(t)
	t.Run("records", r.records)
	t.Run("kdig", r.kdig)
	t.Run("resolver", r.resolver)
	t.Run("geo", r.geo)
	t.Run("status", r.status)
	t.Run("failover", r.failover)
	t.Run("anycast", func(t *testing.T) {
		// SIGKILL: the kernel closes the BGP session, the router withdraws
		// at once. Host loss: cut off, then killed; the router waits out
		// the hold time.
		t.Run("kill", func(t *testing.T) { r.anycast(t, nil) })
		t.Run("host", func(t *testing.T) {
			defer r.on(t)()
			r.restore(2)
			r.anycast(t, func() { r.isolate(2, true) })
		})
	})
}

func (r *gslbRig) records(t *testing.T) {
	soa := "example.com. 7 IN SOA ns1.example.com. hostmaster.example.com."
	cases := []struct {
		name   string
		args   []string
		status string
		// answer and authority are prefixes of the records, in order
		answer, authority []string
		flags             string // must contain
	}{
		{"A, failover to the first region, TTL 1", []string{"www.example.com"}, "NOERROR",
			[]string{"www.example.com. 1 IN A " + euVIP.String()}, nil, "qr aa"},
		{"case insensitive", []string{"WwW.ExAmPlE.CoM"}, "NOERROR", []string{"www.example.com. 1 IN A " + euVIP.String()}, nil, "aa"},
		{"static A, its TTL", []string{"ns1.example.com"}, "NOERROR", []string{"ns1.example.com. 3600 IN A " + dnsVIP.String()}, nil, "aa"},
		{"AAAA", []string{"v6.example.com", "AAAA"}, "NOERROR", []string{"v6.example.com. 30 IN AAAA 2001:db8::53"}, nil, "aa"},
		{"CNAME chased", []string{"alias.example.com"}, "NOERROR",
			[]string{"alias.example.com. 60 IN CNAME www.example.com.", "www.example.com. 1 IN A " + euVIP.String()}, nil, "aa"},
		{"TXT", []string{"txt.example.com", "TXT"}, "NOERROR", []string{`txt.example.com. 30 IN TXT "hello world"`}, nil, "aa"},
		{"all-healthy", []string{"all.example.com"}, "NOERROR",
			[]string{"all.example.com. 30 IN A 198.51.100.1", "all.example.com. 30 IN A 198.51.100.1"}, nil, "aa"},
		{"nearest: the answering node's region", []string{"near.example.com"}, "NOERROR",
			[]string{"near.example.com. 30 IN A " + usVIP.String()}, nil, "aa"},
		{"address targets by their own checks", []string{"ext.example.com"}, "NOERROR",
			[]string{"ext.example.com. 30 IN A 198.18.1.2", "ext.example.com. 30 IN A 198.18.1.2"}, nil, "aa"},
		{"SOA", []string{"example.com", "SOA"}, "NOERROR", []string{"example.com. 3600 IN SOA ns1.example.com."}, nil, "aa"},
		{"NS", []string{"example.com", "NS"}, "NOERROR", []string{"example.com. 3600 IN NS ns1.example.com."}, nil, "aa"},
		{"NXDOMAIN with the SOA, negative TTL", []string{"nope.example.com"}, "NXDOMAIN", nil, []string{soa}, "aa"},
		{"NODATA with the SOA", []string{"www.example.com", "MX"}, "NOERROR", nil, []string{soa}, "aa"},
		{"minimal ANY", []string{"www.example.com", "ANY"}, "NOERROR", []string{`www.example.com. 3600 IN HINFO "RFC8482" ""`}, nil, "aa"},
		{"REFUSED outside the zone, no recursion", []string{"+rec", "example.org"}, "REFUSED", nil, nil, "rd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := r.dig(tc.args...)
			if res.Status != tc.status || !strings.Contains(res.Flags, tc.flags) || strings.Contains(res.Flags, "ra") {
				t.Errorf("status %s flags %q, want %s with %q and no ra:\n%s", res.Status, res.Flags, tc.status, tc.flags, res.out)
			}
			for _, sec := range []struct {
				name      string
				got, want []string
			}{{"answer", res.Answer, tc.answer}, {"authority", res.Authority, tc.authority}} {
				if len(sec.got) != len(sec.want) {
					t.Errorf("%s: got %q, want %q", sec.name, sec.got, sec.want)
					continue
				}
				for i := range sec.got {
					if !strings.HasPrefix(sec.got[i], sec.want[i]) {
						t.Errorf("%s[%d]: got %q, want %q...", sec.name, i, sec.got[i], sec.want[i])
					}
				}
			}
		})
	}
	t.Run("weighted draws both by weight", func(t *testing.T) {
		seen := map[string]int{}
		for range 24 {
			seen[strings.Join(r.dig("wrr.example.com").addrs(), " ")]++
		}
		if seen[euVIP.String()] == 0 || seen[usVIP.String()] == 0 || len(seen) != 2 || seen[euVIP.String()] < seen[usVIP.String()] {
			t.Errorf("24 answers: %v, want both VIPs, eu (weight 3) more often than us (weight 1)", seen)
		}
	})
	t.Run("EDNS size and truncation, then TCP", func(t *testing.T) {
		res := r.dig("+bufsize=4096", "big.example.com", "TXT")
		// dig asked over UDP: the answer it shows came over TCP.
		if res.UDPSize != 1232 || res.Protocol != "TCP" || len(res.Answer) != 12 {
			t.Errorf("got udp size %d over %s with %d answers, want 1232, TCP after TC, 12:\n%s",
				res.UDPSize, res.Protocol, len(res.Answer), res.out)
		}
		tc := r.dig("+ignore", "+bufsize=4096", "big.example.com", "TXT")
		if !strings.Contains(tc.Flags, "tc") || tc.Protocol != "UDP" || tc.UDPSize != 1232 {
			t.Errorf("UDP answer: flags %q over %s, udp size %d; want tc over UDP, 1232:\n%s", tc.Flags, tc.Protocol, tc.UDPSize, tc.out)
		}
	})
	t.Run("AXFR to the secondary only", func(t *testing.T) {
		out, err := r.l.Command(context.Background(), r.l.Client, "dig", "+noall", "+answer", "@"+dnsVIP.String(), "example.com", "AXFR").CombinedOutput()
		if err != nil || strings.Count(string(out), "IN\tSOA") != 2 || !strings.Contains(string(out), "www.example.com.\t1\tIN\tA\t"+euVIP.String()) {
			t.Errorf("AXFR from the client: %v\n%s", err, out)
		}
		out, _ = r.l.Command(context.Background(), r.l.Servers[1], "dig", "@"+dnsVIP.String(), "example.com", "AXFR").CombinedOutput()
		if !strings.Contains(string(out), "Transfer failed") {
			t.Errorf("AXFR from a server is not refused:\n%s", out)
		}
	})
}

func (r *gslbRig) kdig(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"over TCP", []string{"+tcp", "www.example.com"}, []string{"status: NOERROR", "www.example.com.", euVIP.String(), "(TCP)"}},
		{"ECS us", []string{"+subnet=192.0.2.0/24", "geo.example.com"}, []string{"CLIENT-SUBNET: 192.0.2.0/24/24", usVIP.String()}},
		{"NXDOMAIN", []string{"nope.example.com"}, []string{"status: NXDOMAIN", "example.com.", "SOA"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := r.l.Command(context.Background(), r.l.Client, "kdig", append([]string{"@" + dnsVIP.String()}, tc.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("kdig: %v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("kdig %v: no %q in\n%s", tc.args, w, out)
				}
			}
		})
	}
}

// resolver runs unbound in the client's namespace, with example.com
// stubbed to the DNS VIP and 0x20 case randomisation on: answers must
// come back with the case asked, and cached answers count their TTL down.
func (r *gslbRig) resolver(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`server:
  interface: 127.0.0.1@5300
  access-control: 127.0.0.0/8 allow
  do-daemonize: no
  chroot: ""
  username: ""
  pidfile: ""
  use-syslog: no
  logfile: ""
  directory: "%s"
  module-config: "iterator"
  use-caps-for-id: yes
  qname-minimisation: no
  do-ip6: no
stub-zone:
  name: "example.com"
  stub-addr: %s
`, dir, dnsVIP)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := r.l.Command(context.Background(), r.l.Client, "unbound", "-c", conf)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var first digResult
	waitFor(t, 10*time.Second, "unbound answers", func() error {
		res, err := r.tryDig("+rec", "@127.0.0.1", "-p", "5300", "geo.example.com")
		if err != nil || res.Status != "NOERROR" || len(res.addrs()) != 1 {
			return fmt.Errorf("%+v %v; unbound: %s", res, err, log.String())
		}
		first = res
		return nil
	})
	if got := first.addrs(); got[0] != euVIP.String() {
		t.Errorf("through unbound from the client (region eu): got %v, want %s", got, euVIP)
	}
	var ttl1, ttl2 int
	fmt.Sscan(strings.Fields(first.Answer[0])[1], &ttl1)
	waitFor(t, 5*time.Second, "the cached TTL counts down", func() error {
		res := r.dig("+rec", "@127.0.0.1", "-p", "5300", "geo.example.com")
		fmt.Sscan(strings.Fields(res.Answer[0])[1], &ttl2)
		if ttl1 > 30 || ttl2 >= ttl1 {
			return fmt.Errorf("TTL %d then %d, want at most 30 and then less", ttl1, ttl2)
		}
		return nil
	})
	if res := r.dig("+rec", "@127.0.0.1", "-p", "5300", "nope.example.com"); res.Status != "NXDOMAIN" {
		t.Errorf("NXDOMAIN through unbound: got %s", res.Status)
	}
}

func (r *gslbRig) geo(t *testing.T) {
	cases := []struct {
		name, subnet, want, scope string
	}{
		{"eu subnet", "203.0.113.0/24", euVIP.String(), "203.0.113.0/24/24"},
		{"us subnet", "192.0.2.0/24", usVIP.String(), "192.0.2.0/24/24"},
		{"a longer eu prefix: scope /24", "203.0.113.128/25", euVIP.String(), "203.0.113.128/25/24"},
		{"no region: every healthy target", "10.1.0.0/16", euVIP.String() + " " + usVIP.String(), "10.1.0.0/16/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := r.dig("+subnet="+tc.subnet, "geo.example.com")
			if got := strings.Join(res.addrs(), " "); got != tc.want || !strings.Contains(res.out, tc.scope) {
				t.Errorf("got %q, want %s with ECS %s:\n%s", got, tc.want, tc.scope, res.out)
			}
		})
	}
	t.Run("without ECS the resolver's address decides", func(t *testing.T) {
		if got := r.dig("geo.example.com").addrs(); len(got) != 1 || got[0] != euVIP.String() {
			t.Errorf("from the client 198.18.0.2 (eu): got %v, want %s", got, euVIP)
		}
		out, err := r.l.Command(context.Background(), r.l.Servers[1], "dig", "+short", "@"+dnsVIP.String(), "geo.example.com").CombinedOutput()
		got := strings.Fields(string(out))
		slices.Sort(got)
		if err != nil || strings.Join(got, " ") != euVIP.String()+" "+usVIP.String() {
			t.Errorf("from server2 198.18.1.22 (no region): got %q, %v; want both VIPs", out, err)
		}
	})
	t.Run("weft dns query --subnet", func(t *testing.T) {
		out, err := r.c.weft(r.c.agents[0], "", "dns", "query", "geo.example.com", "--subnet", "192.0.2.0/24")
		if err != nil || !strings.Contains(out, usVIP.String()) || !strings.Contains(out, "region us") || !strings.Contains(out, "scope:   /24") {
			t.Errorf("weft dns query: %v\n%s", err, out)
		}
	})
}

// status: weft get and describe show what each record answers and why.
func (r *gslbRig) status(t *testing.T) {
	out, err := r.c.weft(r.c.agents[1], "", "get", "dnsrecords")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"www.example.com.", "failover", "2/2 healthy", euVIP.String(), "eu:" + euVIP.String(), "us:" + usVIP.String()} {
		if !strings.Contains(out, want) {
			t.Errorf("weft get dnsrecords: no %q in\n%s", want, out)
		}
	}
	out, err = r.c.weft(r.c.agents[1], "", "describe", "dnsrecord", "www")
	if err != nil || !strings.Contains(out, "failover: priority 1 (web-eu)") || !strings.Contains(out, "VIP announced by node1, node2, node3") {
		t.Errorf("describe dnsrecord www: %v\n%s", err, out)
	}
	st, err := status(context.Background(), r.api[1])
	if err != nil {
		t.Fatal(err)
	}
	d := st.GetDns()
	if d == nil || !d.GetAnnounced() || len(d.GetZones()) != 1 || d.GetZones()[0].GetSerial() == 0 || len(d.GetFailOpenRecords()) != 0 {
		t.Errorf("status dns: got %v, want the anycast address announced, example.com served, nothing failing open", d)
	}
	if out, err := r.c.weft(r.c.agents[1], "", "status"); err != nil || !strings.Contains(out, "dns: "+dnsVIP.String()+":53 (anycast, announced over BGP)") {
		t.Errorf("weft status: %v\n%s", err, out)
	}
	ann := map[string]bool{}
	for _, a := range st.GetBgp().GetAnnounced() {
		ann[a.GetPrefix()] = true
	}
	if !ann[dnsVIP.String()+"/32"] {
		t.Errorf("bgp announcements %v lack the DNS VIP", st.GetBgp().GetAnnounced())
	}
}

// failover stops the eu backend: www moves to us within interval x fall +
// 1 s, and back within rise x interval + 1 s of its return; one checker
// that cannot reach the backend changes nothing.
func (r *gslbRig) failover(t *testing.T) {
	member := "198.18.1.21"
	checkers := r.checkersOf(t, "eu", member)
	if len(checkers) != 2 {
		t.Fatalf("eu's member has checkers %v, want 2", checkers)
	}
	// One checker loses its way to the backend; the other still reaches it.
	var lone *agent
	for _, a := range r.c.agents {
		if a.name == checkers[0] {
			lone = a
		}
	}
	nft := r.l.Command(context.Background(), lab.Host{NS: lone.ns}, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(fmt.Sprintf("table inet weftg {\n chain out {\n  type filter hook output priority 0;\n  ip daddr %s tcp dport 9090 reject with tcp reset\n }\n}\n", member))
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft on %s: %v %s", lone.name, err, out)
	}
	waitFor(t, 10*time.Second, lone.name+"'s own probe of eu sees it down", func() error {
		st, err := status(context.Background(), r.api[slices.Index(r.c.agents, lone)])
		if err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetPool() == "eu" && m.GetProbe() == "down" {
				return nil
			}
		}
		return fmt.Errorf("members %v", st.GetMembers())
	})
	tick := time.NewTicker(100 * time.Millisecond) // paced: RRL is on
	defer tick.Stop()
	for end := time.Now().Add(3 * gslbInterval * gslbFall); time.Now().Before(end); <-tick.C {
		if got := strings.Join(r.dig("www.example.com").addrs(), " "); got != euVIP.String() {
			t.Fatalf("with one checker disagreeing the answer moved to %q", got)
		}
	}
	if out, err := r.l.Command(context.Background(), lab.Host{NS: lone.ns}, "nft", "delete", "table", "inet", "weftg").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}

	bound := gslbInterval*gslbFall + time.Second
	r.stopEU()
	took := r.waitAnswer("www.example.com", usVIP.String(), bound+5*time.Second)
	t.Logf("every eu backend stopped: www answers us after %v (bound interval x fall + 1 s = %v)", took, bound)
	if took > bound {
		t.Errorf("failover took %v, more than %v", took, bound)
	}
	// The anycast address may bring the next query to another node, whose
	// view can agree the verdict a moment later: it gets a second.
	r.waitAnswer("all.example.com", usVIP.String(), time.Second)
	r.startEU()
	back := gslbInterval*gslbRise + time.Second
	took = r.waitAnswer("www.example.com", euVIP.String(), back+5*time.Second)
	t.Logf("eu backend back: www answers eu after %v (bound rise x interval + 1 s = %v)", took, back)
	if took > back {
		t.Errorf("return took %v, more than %v", took, back)
	}
}

// checkersOf are the nodes assigned to probe a pool member.
func (r *gslbRig) checkersOf(t *testing.T, pool, addr string) []string {
	st, err := status(context.Background(), r.api[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.GetMembers() {
		if m.GetPool() == pool && m.GetAddress() == addr {
			return m.GetCheckers()
		}
	}
	t.Fatalf("no member %s of pool %s in %v", addr, pool, st.GetMembers())
	return nil
}

// anycast SIGKILLs a node (after cut, when set) while the client queries
// the anycast address from a new source port every 20 ms: once the router
// withdrew the node's route, every query is answered.
func (r *gslbRig) anycast(t *testing.T, cut func()) {
	type sent struct {
		at time.Time
		ok bool
	}
	var (
		mu      sync.Mutex
		results []sent
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	loop := make(chan struct{})
	go func() {
		defer close(loop)
		r.l.Do(r.l.Client, func() error {
			c := &dns.Client{Net: "udp", Timeout: time.Second}
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return nil
				case <-tick.C:
				}
				m := new(dns.Msg)
				m.SetQuestion("ns1.example.com.", dns.TypeA)
				at := time.Now()
				// Each exchange dials a new socket: a new source port, so
				// the router's ECMP hash spreads the queries over nodes.
				conn, err := net.Dial("udp", netip.AddrPortFrom(dnsVIP, 53).String())
				if err != nil {
					return err
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer conn.Close()
					res, _, err := c.ExchangeWithConn(m, &dns.Conn{Conn: conn})
					mu.Lock()
					results = append(results, sent{at: at, ok: err == nil && len(res.Answer) == 1})
					mu.Unlock()
				}()
			}
		})
	}()
	time.Sleep(time.Second) // a second of queries before the loss
	victim := r.c.agents[2]
	killed := time.Now()
	if cut != nil {
		cut()
	}
	victim.kill()
	var rest []netip.Addr
	for _, n := range r.l.Nodes[:2] {
		rest = append(rest, n.Addr)
	}
	waitFor(t, holdTime+5*time.Second, "route to the DNS VIP via the two nodes left", func() error {
		hosts, err := r.l.RouteVia(context.Background(), dnsVIP)
		if err != nil {
			return err
		}
		var via []netip.Addr
		for _, h := range hosts {
			via = append(via, h.Addr)
		}
		slices.SortFunc(via, netip.Addr.Compare)
		if !slices.Equal(via, rest) {
			return fmt.Errorf("via %v", via)
		}
		return nil
	})
	withdrawn := time.Now()
	time.Sleep(2 * time.Second) // queries after the withdrawal
	close(stop)
	<-loop
	wg.Wait()
	var before, after, lostBefore, lostAfter int
	for _, s := range results {
		switch {
		case s.at.After(withdrawn):
			after++
			if !s.ok {
				lostAfter++
			}
		case s.at.After(killed):
			before++
			if !s.ok {
				lostBefore++
			}
		}
	}
	t.Logf("node3 lost: route withdrawn after %v; %d of %d queries in between lost, %d of %d after",
		withdrawn.Sub(killed).Round(time.Millisecond), lostBefore, before, lostAfter, after)
	if after < 50 || lostAfter > 0 {
		t.Errorf("after the withdrawal: %d of %d queries lost, want none of at least 50", lostAfter, after)
	}
}
