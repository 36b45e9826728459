package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// routeVia returns the addresses of the nodes the lab router's route to
// the VIP goes through, sorted.
func routeVia(l *lab.Lab) ([]string, error) {
	hosts, err := l.RouteVia(context.Background(), labVIP)
	var via []string
	for _, h := range hosts {
		via = append(via, h.Addr.String())
	}
	slices.Sort(via)
	return via, err
}

// TestLab_Fabric: three weft agents in two zones (2 + 1) peer over BGP with
// the lab's bird2 router; a load balancer applied through the CLI becomes
// an ECMP route via all three nodes, zone preference narrows it to the
// primary zone, a drained node withdraws, and losing the primary zone
// moves the VIP to the backup. The nodes forward with XDP, and again with
// the userspace dataplane (the VIP on their lo).
func TestLab_Fabric(t *testing.T) {
	for _, mode := range []string{"xdp", "userspace"} {
		t.Run(mode, func(t *testing.T) { fabric(t, mode) })
	}
}

func fabric(t *testing.T, mode string) {
	l := upLab(t, lab.Topology{Prefix: "weftf", Servers: 2,
		Nodes: []lab.Node{{Name: "node1", Zone: "a"}, {Name: "node2", Zone: "a"}, {Name: "node3", Zone: "b"}}},
		[]string{"curl", "wrk"}, false, "-addr", ":8080")
	c := &cluster{t: t, dir: t.TempDir(), lab: l}
	t.Cleanup(c.stopAll)
	for i, h := range l.Nodes {
		dataplane := []string{"--dataplane", "userspace"}
		if mode == "xdp" {
			dataplane = []string{"--dataplane", "xdp", "--interface", h.Iface}
			pass, err := l.AttachPass(h)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pass.Close() })
		} else if out, err := exec.Command("ip", "-n", h.NS, "addr", "add", labVIP.String()+"/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Fatalf("VIP on %s: %v %s", h.Name, err, out)
		}
		c.agents = append(c.agents, &agent{name: h.Name, ip: h.Addr.String(), zone: l.Topology.Nodes[i].Zone, ns: h.NS,
			dataDir: filepath.Join(c.dir, h.Name), extra: []string{dataplane[0], dataplane[1],
				"--bgp-asn", fmt.Sprint(lab.NodeASN), "--bgp-peer", fmt.Sprintf("%s:%d", lab.RouterInner, lab.RouterASN),
				"--drain-delay", "500ms"}})
		c.agents[i].extra = append(c.agents[i].extra, dataplane[2:]...)
	}
	c.initCluster(c.agents[0])
	c.join(c.agents[1], c.agents[0])
	c.join(c.agents[2], c.agents[0])

	manifest := func(zones string) string {
		return fmt.Sprintf(`kind: Pool
metadata: {name: web}
spec: {members: [{address: %s, port: 8080}, {address: %s, port: 8080}]}
---
kind: LoadBalancer
metadata: {name: web}
spec:
  vip: %s
  %s
  listeners: [{port: 80, protocol: tcp, pool: web}]
`, l.Servers[0].Addr, l.Servers[1].Addr, labVIP, zones)
	}
	if _, err := c.weft(c.agents[0], manifest("region: lab"), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	took := waitVia(t, l, 5*time.Second, l.Nodes...)
	t.Logf("router has an ECMP route via all three nodes %.0f ms after apply returned", took.Seconds()*1000)
	out, err := c.weft(c.agents[0], "", "status")
	if err != nil || !strings.Contains(out, "established") || !strings.Contains(out, "announced "+labVIP.String()+"/32 (prepends 0)") {
		t.Errorf("status does not show the BGP session and the announcement: %v\n%s", err, out)
	}
	r := &labRig{t: t, l: l}
	// XDP nodes learn the servers' MACs from their own health checks.
	waitFor(t, 10*time.Second, "curl through the VIP", func() error {
		body, err := r.curl("80")
		if err == nil && !strings.HasPrefix(body, "server") {
			err = fmt.Errorf("answer %q", body)
		}
		return err
	})
	if reqs, errs := r.wrk("80", 2, "-H", "Connection: close"); reqs == 0 || errs != 0 {
		t.Errorf("wrk over ECMP: %d requests, %d errors", reqs, errs)
	}

	// Zone preference: backup zone b announces with prepends.
	if _, err := c.weft(c.agents[0], manifest("primaryZone: a\n  backupZones: [b]"), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitVia(t, l, 5*time.Second, l.Nodes[0], l.Nodes[1])

	// Planned drain: node2 withdraws, traffic stays on node1.
	if _, err := c.weft(c.agents[0], "", "node", "drain", "node2"); err != nil {
		t.Fatal(err)
	}
	waitVia(t, l, 5*time.Second, l.Nodes[0])
	if _, err := c.weft(c.agents[0], "", "node", "undrain", "node2"); err != nil {
		t.Fatal(err)
	}
	waitVia(t, l, 5*time.Second, l.Nodes[0], l.Nodes[1])

	// Zone loss: both primary-zone nodes freeze (SIGSTOP: no FIN or RST
	// reaches the router, as when machines or their links die); the
	// backup zone takes over within the hold time (3 s) + 1 s.
	for _, a := range c.agents[:2] {
		a.cmd.Process.Signal(syscall.SIGSTOP)
	}
	took = waitVia(t, l, 4*time.Second, l.Nodes[2])
	t.Logf("VIP served from the backup zone %.0f ms after the primary zone was lost", took.Seconds()*1000)
	if body, err := r.curl("80"); err != nil || !strings.HasPrefix(body, "server") {
		t.Fatalf("curl through the backup zone: %q %v", body, err)
	}
	// The zone returns: traffic moves back.
	for _, a := range c.agents[:2] {
		a.cmd.Process.Signal(syscall.SIGCONT)
	}
	took = waitVia(t, l, 15*time.Second, l.Nodes[0], l.Nodes[1])
	t.Logf("traffic back in the primary zone %.0f ms after it returned", took.Seconds()*1000)
}
