package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// TestLab_K8s: a Service of type LoadBalancer served by the controller
// (with etcd, kube-apiserver and both replicas in the lab's client
// namespace) in front of an XDP node that announces its VIP over BGP:
// connections from the client to the VIP the Service was given reach the
// servers its EndpointSlice names, and follow the slice when one server is
// no longer ready.
func TestLab_K8s(t *testing.T) {
	l := upLab(t, lab.Topology{Prefix: "k8s", Servers: 2, Nodes: []lab.Node{{Name: "node1", Zone: "a"}}},
		[]string{"curl"}, false, "-addr", ":8080")
	c := &cluster{t: t, dir: t.TempDir(), lab: l}
	t.Cleanup(c.stopAll)
	h := l.Nodes[0]
	pass, err := l.AttachPass(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pass.Close() })
	a := &agent{name: h.Name, ip: h.Addr.String(), zone: "a", ns: h.NS, dataDir: filepath.Join(c.dir, h.Name),
		extra: []string{"--dataplane", "xdp", "--interface", h.Iface,
			"--bgp-asn", fmt.Sprint(lab.NodeASN), "--bgp-peer", fmt.Sprintf("%s:%d", lab.RouterInner, lab.RouterASN),
			"--local-addr", lab.LocalAddr(0).String()}}
	c.agents = append(c.agents, a)
	c.initCluster(a)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	servers := []string{l.Servers[0].Addr.String(), l.Servers[1].Addr.String()}
	r := newK8sRig(t, ctx, c, a, []string{"ip", "netns", "exec", l.Client.NS}, "198.51.100.64/28", servers, 8080)

	reached := func(want ...string) {
		t.Helper()
		waitFor(t, 20*time.Second, fmt.Sprintf("connections to %s:80 reach %v", r.vip, want), func() error {
			seen := map[string]bool{}
			for range 30 {
				name, err := serverName(c, net.JoinHostPort(r.vip, "80"), time.Second)
				if err != nil {
					return err
				}
				seen[name] = true
			}
			if len(seen) != len(want) {
				return fmt.Errorf("reached %v, want %v", seen, want)
			}
			for _, w := range want {
				if !seen[w] {
					return fmt.Errorf("reached %v, want %v", seen, want)
				}
			}
			return nil
		})
	}
	reached(l.Servers[0].Name, l.Servers[1].Name)
	r.setEndpoints(false, true)
	r.scaled("server1 not ready", 2*time.Second, servers[1])
	reached(l.Servers[1].Name)
	r.deleteService()
}
