package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
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
