package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftlb/weft/deploy/lab"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// nftDNAT makes the node balance VIP:82 with the kernel's conntrack NAT
// (DNAT to the three servers' :8080, round robin, and masquerade): the
// peer Weft's XDP FullNAT is measured against, on the same hosts.
func (r *xdpRig) nftDNAT() {
	r.t.Helper()
	if err := lab.EnsureTools(context.Background(), "nft"); err != nil {
		r.t.Fatal(err)
	}
	var targets []string
	for i, s := range r.l.Servers {
		targets = append(targets, fmt.Sprintf("%d : %s", i, s.Addr))
	}
	node := r.l.Nodes[0]
	script := fmt.Sprintf(`table ip weftbench {
  chain pre { type nat hook prerouting priority -100; ip daddr %s tcp dport 82 dnat to numgen inc mod %d map { %s } : 8080; }
  chain post { type nat hook postrouting priority 100; ip daddr %s tcp dport 8080 masquerade; }
}
`, labVIP, len(r.l.Servers), strings.Join(targets, ", "), lab.FabricPrefix)
	for _, args := range [][]string{
		{"ip", "netns", "exec", node.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", node.NS, "ip", "addr", "add", labVIP.String() + "/32", "dev", "lo"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			r.t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", node.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("nft: %v %s", err, out)
	}
}

// rxPackets reads the node's received packets on its fabric interface.
func (r *xdpRig) rxPackets() uint64 {
	node := r.l.Nodes[0]
	out, err := exec.Command("ip", "-n", node.NS, "-j", "-s", "link", "show", node.Iface).Output()
	if err != nil {
		r.t.Fatal(err)
	}
	var links []struct {
		Stats64 struct {
			RX struct{ Packets uint64 } `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) == 0 {
		r.t.Fatalf("ip -s link: %v %s", err, out)
	}
	return links[0].Stats64.RX.Packets
}

// BenchmarkLab_L4 measures, in the lab and in one run, requests per second
// over keep-alive connections (forwarded packets per second at the node)
// and new TCP connections per second through the VIP, for Weft's XDP
// FullNAT and DSR and for nftables DNAT+masquerade on the same node. Each
// figure is the median of -count runs; ratios are to nftables.
func BenchmarkLab_L4(b *testing.B) {
	r := newXDPRig(b)
	r.nftDNAT()
	for _, c := range []struct{ name, port string }{{"nftables-dnat", "82"}, {"xdp-fullnat", "80"}, {"xdp-dsr", "81"}} {
		for _, conn := range []string{"keepalive", "new-conn"} {
			b.Run(c.name+"/"+conn, func(b *testing.B) {
				var extra []string
				if conn == "new-conn" {
					extra = []string{"-H", "Connection: close"}
				}
				const seconds = 5
				for i := 0; i < b.N; i++ {
					rx := r.rxPackets()
					start := time.Now()
					reqs, errs := r.wrk(c.port, seconds, extra...)
					elapsed := time.Since(start).Seconds()
					// Errors are reported, not failed on: a benchmark measures.
					b.ReportMetric(float64(errs), "errors")
					b.ReportMetric(float64(reqs)/seconds, "req/s")
					b.ReportMetric(float64(r.rxPackets()-rx)/elapsed, "node-rx-pps")
				}
			})
		}
	}
}

// BenchmarkLab_Failover measures issue 4's fabric on three XDP nodes behind
// the bird2 router (ECMP), in one lab per run:
//   - propagation: the time from an apply returning (with its Raft index)
//     to every subsystem of every node reporting that index applied, over
//     propagationApplies changes (server3 joining or leaving both pools);
//   - zone-loss: both primary-zone nodes frozen (SIGSTOP: no FIN reaches
//     the router); the time until the router's route is via the backup
//     zone's node only (BGP hold time 3 s);
//   - node-loss: one node SIGKILLed under 200 DSR and 200 FullNAT
//     long-lived connections and new connections (TestLab_NodeLoss); the
//     kernel closes the agent's BGP session, so the router withdraws at once;
//   - host-loss: the same with the node cut off first (isolate), as when a
//     machine dies: the router waits for the hold time;
//   - node-loss-backend-change: node-loss while a server joins the pools
//     and another is drained in the same second (TestLab_FlowSync);
//   - zone-loss-sessions: both primary-zone nodes SIGKILLed under the same
//     load; survival on the backup zone's node;
//   - rolling-restart: every node stopped (SIGTERM) and started again in
//     turn under the same load.
//
// Figures are reported, never asserted.
func BenchmarkLab_Failover(b *testing.B) {
	r := newFabricRig(b, "weftp", 500*time.Millisecond, 0, 1)
	sub := func(name string, fn func(b *testing.B)) {
		b.Run(name, func(sb *testing.B) { defer r.on(sb)(); fn(sb) })
	}
	sub("propagation", func(b *testing.B) {
		for range b.N {
			propagation(b, r)
		}
	})
	sub("zone-loss", func(b *testing.B) {
		for range b.N {
			r.zones = "primaryZone: a, backupZones: [b]"
			r.waitApplied(r.apply(r.manifest([]int{0, 1}, -1, "")), 10*time.Second)
			waitVia(b, r.l, 5*time.Second, r.l.Nodes[0], r.l.Nodes[1])
			for _, a := range r.c.agents[:2] {
				a.cmd.Process.Signal(syscall.SIGSTOP)
			}
			took := waitVia(b, r.l, holdTime+5*time.Second, r.l.Nodes[2])
			for _, a := range r.c.agents[:2] {
				a.cmd.Process.Signal(syscall.SIGCONT)
			}
			b.ReportMetric(took.Seconds()*1000, "takeover-ms")
			waitVia(b, r.l, 15*time.Second, r.l.Nodes[0], r.l.Nodes[1])
			r.zones = "region: lab"
			r.waitApplied(r.apply(r.manifest([]int{0, 1}, -1, "")), 10*time.Second)
			waitVia(b, r.l, 5*time.Second, r.l.Nodes...)
		}
	})
	report := func(b *testing.B, dsr, fullnat lab.ProbeResult, withdrawn time.Duration) {
		b.ReportMetric(dsr.SurvivalPct, "dsr-survival-%")
		b.ReportMetric(fullnat.SurvivalPct, "fullnat-survival-%")
		b.ReportMetric(max(dsr.RecoveryMs, fullnat.RecoveryMs), "recovery-ms")
		b.ReportMetric(withdrawn.Seconds()*1000, "withdraw-ms")
	}
	sub("node-loss", func(b *testing.B) {
		for range b.N {
			r.restore(1)
			dsr, fullnat, withdrawn := nodeLoss(b, r, 1, 200, nil)
			report(b, dsr, fullnat, withdrawn)
		}
	})
	sub("host-loss", func(b *testing.B) {
		for range b.N {
			r.restore(1)
			dsr, fullnat, withdrawn := nodeLoss(b, r, 1, 200, func() { r.isolate(1, true) })
			report(b, dsr, fullnat, withdrawn)
		}
	})
	survival := func(b *testing.B, dsr, fullnat lab.ProbeResult) {
		b.ReportMetric(dsr.SurvivalPct, "dsr-survival-%")
		b.ReportMetric(fullnat.SurvivalPct, "fullnat-survival-%")
	}
	sub("node-loss-backend-change", func(b *testing.B) {
		for range b.N {
			r.restore(1)
			r.waitFlowsReady(20 * time.Second)
			dsr, fullnat := nodeLossWithBackendChange(b, r)
			survival(b, dsr, fullnat)
		}
	})
	sub("zone-loss-sessions", func(b *testing.B) {
		for range b.N {
			r.restore(1)
			r.waitFlowsReady(20 * time.Second)
			dsr, fullnat := zoneLoss(b, r)
			survival(b, dsr, fullnat)
		}
	})
	sub("rolling-restart", func(b *testing.B) {
		for range b.N {
			for i := range r.c.agents {
				r.restore(i)
			}
			r.waitFlowsReady(20 * time.Second)
			dsr, fullnat := rollingRestart(b, r)
			survival(b, dsr, fullnat)
		}
	})
}

// propagation reports the p50 and p99 over 30 changes (server3 joining or
// leaving both pools) of the time from an apply returning to every
// subsystem of every node reporting its index applied.
func propagation(b *testing.B, r *fabricRig) {
	const applies = 30
	var took []float64
	for i := range applies {
		servers := []int{0, 1, 2}
		if i%2 == 1 {
			servers = []int{0, 1}
		}
		index := r.apply(r.manifest(servers, -1, ""))
		took = append(took, r.waitApplied(index, 10*time.Second).Seconds()*1000)
	}
	b.Logf("propagation of each change, in order (ms): %.1f", took)
	slices.Sort(took)
	rank := func(q float64) float64 { return took[int(math.Ceil(q*float64(len(took))))-1] }
	b.ReportMetric(rank(0.5), "p50-ms")
	b.ReportMetric(rank(0.99), "p99-ms")
}

// BenchmarkLab_Propagation measures propagation (as BenchmarkLab_Failover
// does) on the three XDP nodes with 1, 1,000 and 10,000 load balancers
// committed, and the largest node's RSS at each size. The extra load
// balancers have a tcp listener each, on 100 VIPs of ports 10000-10099,
// to 100 pools of the three servers (checked every 5 minutes); the nodes
// run with --max-services 10240 and --maglev-table-size 1021 (8 KiB
// tables), as such a node would be sized. Each subsystem's mean apply over
// the changes' rounds is reported too (<subsystem>-ms, from the nodes'
// weft_reconcile_apply_duration_seconds).
func BenchmarkLab_Propagation(b *testing.B) {
	r := newFabricRigWith(b, "weftv", 500*time.Millisecond,
		[]string{"--max-services", "10240", "--maglev-table-size", "1021"}, 0, 1)
	for _, n := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("lbs-%d", n), func(sb *testing.B) {
			defer r.on(sb)()
			if n > 1 {
				var servers []netip.Addr
				for _, s := range r.l.Servers {
					servers = append(servers, s.Addr)
				}
				took := r.waitApplied(r.applyResources(fillers(n-1, servers), time.Minute), 2*time.Minute)
				sb.Logf("%d load balancers applied on every node %v after the apply returned", n, took.Round(time.Millisecond))
			}
			before := applyDurations(sb, r)
			for range sb.N {
				propagation(sb, r)
			}
			// Where the time went: each subsystem's mean apply over the
			// rounds of the changes, on every node.
			for sub, a := range applyDurations(sb, r) {
				if applies := a[1] - before[sub][1]; applies > 0 {
					sb.ReportMetric((a[0]-before[sub][0])/applies*1000, sub+"-ms")
				}
			}
			rss := 0.0
			for _, a := range r.c.agents {
				rss = max(rss, float64(vmRSS(sb, a.cmd.Process.Pid))/(1<<20))
			}
			sb.ReportMetric(rss, "max-rss-MiB")
		})
	}
}

// applyDurations are the seconds each subsystem spent applying states and
// its applies, summed over the agents (weft_reconcile_apply_duration_seconds).
func applyDurations(b *testing.B, r *fabricRig) map[string][2]float64 {
	out := map[string][2]float64{}
	sub := regexp.MustCompile(`^weft_reconcile_apply_duration_seconds_(sum|count)\{.*subsystem="([^"]+)".*\} (\S+)$`)
	for _, a := range r.c.agents {
		text, err := r.c.scrape(a)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(text, "\n") {
			m := sub.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				b.Fatalf("%s: %q: %v", a.name, line, err)
			}
			sum := out[m[2]]
			sum[map[string]int{"sum": 0, "count": 1}[m[1]]] += v
			out[m[2]] = sum
		}
	}
	return out
}

// fillers are n load balancers (and the pools of servers they use)
// beside the rig's.
func fillers(n int, servers []netip.Addr) []*weftv1.Resource {
	var rs []*weftv1.Resource
	for p := range min(n, 100) {
		pool := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: fmt.Sprintf("fill%d", p)}, Spec: &weftv1.PoolSpec{
			HealthCheck: &weftv1.HealthCheck{Interval: durationpb.New(5 * time.Minute)}}}
		for _, a := range servers {
			pool.Spec.Members = append(pool.Spec.Members, &weftv1.Member{Address: a.String(), Port: 8080})
		}
		rs = append(rs, &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: pool}})
	}
	for i := range n {
		vip := netip.AddrFrom4([4]byte{198, 51, 100, byte(20 + i/100)})
		rs = append(rs, &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{
			Metadata: &weftv1.Metadata{Name: fmt.Sprintf("fill%d", i)},
			Spec: &weftv1.LoadBalancerSpec{Vip: vip.String(), Region: "lab",
				Listeners: []*weftv1.Listener{{Port: uint32(10000 + i%100), Protocol: "tcp", Pool: fmt.Sprintf("fill%d", i%100)}}},
		}}})
	}
	return rs
}

// vmRSS is a process's resident set in bytes.
func vmRSS(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// BenchmarkLab_FlowSync measures what flow sync costs, on the three XDP
// nodes of the failover rig: new FullNAT connections per second through
// the VIP with sync on and with it off (the same agents restarted with
// --flow-sync=false), the protobuf bytes sent per synced flow, and the
// kernel memory of a FullNAT flow's conntrack and reverse entries.
func BenchmarkLab_FlowSync(b *testing.B) {
	r := newFabricRig(b, "weftq", 500*time.Millisecond, 0, 1, 2)
	r.waitFlowsReady(20 * time.Second)
	const seconds = 5
	// newConns runs wrk with a connection per request and returns the
	// connections it made.
	newConns := func(b *testing.B) int {
		reqs, errs := r.wrk("80", seconds, "-H", "Connection: close")
		b.ReportMetric(float64(reqs)/seconds, "conn/s")
		b.ReportMetric(float64(errs), "errors")
		return reqs
	}
	b.Run("sync-on/new-conn", func(b *testing.B) {
		defer r.on(b)()
		for range b.N {
			before := r.syncTotals()
			conns := newConns(b)
			after := r.syncTotals()
			// A flow goes to its bucket's owners and its local address's
			// heir, less the node that reports it: up to three copies.
			if conns > 0 {
				b.ReportMetric(float64(after.bytes-before.bytes)/float64(conns), "sync-bytes/conn")
				b.ReportMetric(float64(after.sent-before.sent)/float64(conns), "sync-copies/conn")
			}
			b.ReportMetric(float64(r.flowEntryBytes()), "ct-bytes/flow")
		}
	})
	b.Run("sync-off/new-conn", func(b *testing.B) {
		defer r.on(b)()
		for _, a := range r.c.agents {
			a.extra = append(a.extra, "--flow-sync=false")
			a.stop(b)
			r.c.restart(a)
		}
		waitVia(b, r.l, 20*time.Second, r.l.Nodes...)
		r.waitServing("80")
		for range b.N {
			newConns(b)
		}
	})
}

type syncTotals struct{ sent, bytes uint64 }

// syncTotals sums, over the running agents, the flows and bytes their
// flow sync sent.
func (r *fabricRig) syncTotals() syncTotals {
	r.t.Helper()
	var t syncTotals
	for i, a := range r.c.agents {
		if !a.running() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := status(ctx, r.api[i])
		cancel()
		if err != nil {
			r.t.Fatal(err)
		}
		t.sent += st.GetFlowSync().GetSent()
		t.bytes += st.GetFlowSync().GetSentBytes()
	}
	return t
}

// flowEntryBytes is the kernel memory of one FullNAT flow on node1: an
// entry of conntrack and one of nat_reverse, both preallocated LRU hashes,
// so their memlock over their entries is the cost of one.
func (r *fabricRig) flowEntryBytes() uint64 {
	r.t.Helper()
	out, err := exec.Command("ip", "-n", r.l.Nodes[0].NS, "-d", "link", "show", r.l.Nodes[0].Iface).CombinedOutput()
	m := xdpProgID.FindSubmatch(out)
	if err != nil || m == nil {
		r.t.Fatalf("xdp program of node1: %v %s", err, out)
	}
	id, _ := strconv.Atoi(string(m[1]))
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		r.t.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		r.t.Fatal(err)
	}
	ids, _ := info.MapIDs()
	var total uint64
	for _, mid := range ids {
		mp, err := ebpf.NewMapFromID(mid)
		if err != nil {
			r.t.Fatal(err)
		}
		mi, err := mp.Info()
		mp.Close()
		if err != nil {
			r.t.Fatal(err)
		}
		if mi.Name != "conntrack" && mi.Name != "nat_reverse" {
			continue
		}
		mem, ok := mi.Memlock()
		if !ok {
			r.t.Fatalf("map %s reports no memlock", mi.Name)
		}
		total += mem / uint64(mi.MaxEntries)
	}
	return total
}

var xdpProgID = regexp.MustCompile(`prog/xdp id (\d+)`)
