package e2e

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/deploy/lab"
)

// xdpRig is issue 3's lab: client -> router -> one node running the XDP
// program -> three servers. FullNAT serves VIP:80 from the servers' :8080;
// DSR serves VIP:81 from their :81, with the VIP on their loopback.
type xdpRig struct {
	*labRig
	d    *xdp.Dataplane
	base xdp.Config
	// newFlowRate is the FullNAT service's new-flow rate (0: unlimited).
	newFlowRate uint32
}

func newXDPRig(t testing.TB) *xdpRig {
	return newXDPRigWith(t, xdp.Options{ConnTrackSize: 1 << 16})
}

// newXDPRigWith is newXDPRig with the dataplane's options and extra tools.
func newXDPRigWith(t testing.TB, opts xdp.Options, tools ...string) *xdpRig {
	t.Helper()
	return newXDPRigOn(t, "weftx", ":8080,:81", opts, tools...)
}

// newXDPRigOn is newXDPRigWith with a lab prefix of its own and the
// servers listening on addrs (comma-separated, :8080 and :81 among them).
func newXDPRigOn(t testing.TB, prefix, addrs string, opts xdp.Options, tools ...string) *xdpRig {
	t.Helper()
	l := upLab(t, lab.Topology{Prefix: prefix, Nodes: []lab.Node{{Name: "node1", Zone: "a"}}, Servers: 3},
		append([]string{"curl", "wrk", "nft"}, tools...), true, "-addr", addrs, "-udp", ":81")
	node := l.Nodes[0]
	if out, err := exec.Command("ip", "-n", l.Router.NS, "route", "add", labVIP.String()+"/32", "via", node.Addr.String()).CombinedOutput(); err != nil {
		t.Fatalf("route to the VIP: %v %s", err, out)
	}
	d, err := xdp.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := l.Do(node, func() error { return d.Attach(node.Iface) }); err != nil {
		t.Fatal(err)
	}
	pass, err := l.AttachPass(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pass.Close() })
	gw, err := l.MAC(l.Router, l.Router.Iface)
	if err != nil {
		t.Fatal(err)
	}
	r := &xdpRig{labRig: &labRig{t: t, l: l}, d: d, base: xdp.Config{
		LocalAddrs: []netip.Addr{node.Addr},
		Neighbors:  map[netip.Addr]net.HardwareAddr{},
		Gateway:    gw,
	}}
	for _, s := range l.Servers {
		mac, err := l.MAC(s, s.Iface)
		if err != nil {
			t.Fatal(err)
		}
		r.base.Neighbors[s.Addr] = mac
	}
	r.apply(map[string]uint32{"server1": 1, "server2": 1, "server3": 1})
	// Servers answer their first packets once they know their peers.
	waitFor(t, 10*time.Second, "servers listening", func() error {
		for _, port := range []string{"80", "81"} {
			if _, err := r.curl(port); err != nil {
				return err
			}
		}
		return nil
	})
	return r
}

// apply programs both services with the given server weights (a server
// missing from the map is removed).
func (r *xdpRig) apply(weights map[string]uint32) {
	r.t.Helper()
	cfg := r.base
	full := xdp.Service{VIP: labVIP, Port: 80, Proto: xdp.ProtoTCP, Mode: xdp.ModeFullNAT, NewFlowRate: r.newFlowRate}
	dsr := xdp.Service{VIP: labVIP, Port: 81, Proto: xdp.ProtoTCP, Mode: xdp.ModeDSR}
	for _, s := range r.l.Servers {
		w, ok := weights[s.Name]
		if !ok {
			continue
		}
		full.Backends = append(full.Backends, xdp.Backend{Addr: s.Addr, Port: 8080, Weight: w})
		dsr.Backends = append(dsr.Backends, xdp.Backend{Addr: s.Addr, Port: 81, Weight: w})
	}
	cfg.Services = []xdp.Service{full, dsr}
	if err := r.d.Apply(context.Background(), cfg); err != nil {
		r.t.Fatal(err)
	}
}

// newFlows returns the connection-table inserts per server for a port.
func (r *xdpRig) newFlows(port uint16) map[netip.Addr]uint64 {
	st, err := r.d.Stats()
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[netip.Addr]uint64{}
	for _, b := range st.Backends {
		if b.Port == port {
			out[b.Addr] = b.NewFlows
		}
	}
	return out
}

func TestLab_XDP(t *testing.T) {
	r := newXDPRig(t)
	for _, mode := range []struct {
		name, port  string
		backendPort uint16
	}{{"fullnat", "80", 8080}, {"dsr", "81", 81}} {
		t.Run(mode.name, func(t *testing.T) {
			r.t = t
			body, err := r.curl(mode.port)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(body, "server") {
				t.Fatalf("curl through the VIP answered %q, want a server name", body)
			}
			// A new connection per request: every request is a new flow.
			before := r.newFlows(mode.backendPort)
			reqs, errs := r.wrk(mode.port, 3, "-H", "Connection: close")
			if reqs == 0 || errs != 0 {
				t.Fatalf("wrk with a connection per request: %d requests, %d errors", reqs, errs)
			}
			after := r.newFlows(mode.backendPort)
			var total uint64
			for a := range after {
				total += after[a] - before[a]
			}
			if total < uint64(reqs) {
				t.Fatalf("the dataplane counted %d new flows for %d new connections", total, reqs)
			}
			for _, s := range r.l.Servers {
				got := after[s.Addr] - before[s.Addr]
				share := float64(got) / float64(total)
				t.Logf("%s: %d new flows (%.1f%%)", s.Name, got, share*100)
				if share < 1.0/3*0.9 || share > 1.0/3*1.1 {
					t.Errorf("%s took %.1f%% of %d flows, want 33.3%% ± 10%%", s.Name, share*100, total)
				}
			}

			// Keep-alive connections stay on their server through a weight
			// change and the removal of another server.
			done := make(chan [2]int)
			go func() { a, b := r.wrk(mode.port, 4); done <- [2]int{a, b} }()
			time.Sleep(time.Second)
			r.apply(map[string]uint32{"server1": 1, "server2": 3, "server3": 1})
			time.Sleep(time.Second)
			r.apply(map[string]uint32{"server1": 1, "server2": 3})
			res := <-done
			if res[0] == 0 || res[1] != 0 {
				t.Errorf("wrk across a weight change and a removal: %d requests, %d errors", res[0], res[1])
			}
			r.apply(map[string]uint32{"server1": 1, "server2": 1, "server3": 1})
		})
	}
}
