package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
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
//     machine dies: the router waits for the hold time.
//
// Figures are reported, never asserted.
func BenchmarkLab_Failover(b *testing.B) {
	r := newFabricRig(b, "weftp", 500*time.Millisecond, 0, 1)
	sub := func(name string, fn func(b *testing.B)) {
		b.Run(name, func(sb *testing.B) { defer r.on(sb)(); fn(sb) })
	}
	sub("propagation", func(b *testing.B) {
		const propagationApplies = 30
		for range b.N {
			var took []float64
			for i := range propagationApplies {
				servers := []int{0, 1, 2}
				if i%2 == 1 {
					servers = []int{0, 1}
				}
				index := r.apply(r.manifest(servers, -1, ""))
				took = append(took, r.waitApplied(index, 10*time.Second).Seconds()*1000)
			}
			slices.Sort(took)
			rank := func(q float64) float64 { return took[int(math.Ceil(q*float64(len(took))))-1] }
			b.ReportMetric(rank(0.5), "p50-ms")
			b.ReportMetric(rank(0.99), "p99-ms")
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
}
