package xdp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestTableChangeKeepsFlows: flows in the connection table stay on their
// backend across a backend added, removed and reweighted, in both modes,
// while new flows follow the new table.
func TestTableChangeKeepsFlows(t *testing.T) {
	for _, mode := range []string{ModeFullNAT, ModeDSR} {
		t.Run(mode, func(t *testing.T) { testTableChange(t, mode) })
	}
}

func testTableChange(t *testing.T, mode string) {
	d := newTestDataplane(t, Options{ConnTrackSize: 8192, TableSize: testTableSize})
	r := runner{d.objs.XdpLb}
	ctx := context.Background()
	port := uint16(8080) // in DSR only the backend's identity
	all := []Backend{be("10.1.0.11", port, 1), be("10.1.0.12", port, 1), be("10.1.0.13", port, 1)}
	vip := netip.AddrPortFrom(ip("192.0.2.1"), 80)
	cfgWith := func(bs ...Backend) Config {
		cfg := testConfig()
		cfg.Services = []Service{{VIP: vip.Addr(), Port: vip.Port(), Proto: "tcp", Mode: mode, Backends: bs}}
		return cfg
	}
	if err := d.Apply(ctx, cfgWith(all[0], all[1])); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	// backendOf sends p and returns the backend the output went to.
	backendOf := func(p packet) string {
		t.Helper()
		act, out := r.run(t, p.frame(t))
		if act != xdpTX {
			t.Fatalf("%v: action %s, want XDP_TX", p.src, actionNames[act])
		}
		pkt := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
		if mode == ModeDSR {
			dst := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC
			for a, m := range backendMAC {
				if net.HardwareAddr.String(m) == dst.String() {
					return a.String()
				}
			}
			t.Fatalf("output to unknown MAC %v", dst)
		}
		ip4 := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		return fmt.Sprintf("%v:%d", ip4.DstIP, tcp.DstPort)
	}
	flow := func(i int, syn bool) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, proto: "tcp", syn: syn, ack: !syn,
			src: netip.AddrPortFrom(ip("198.51.100.7"), uint16(10000+i)), dst: vip}
	}

	const n = 300
	owner := make([]string, n)
	for i := range owner {
		owner[i] = backendOf(flow(i, true))
	}
	steps := []struct {
		name     string
		backends []Backend
		gone     string // a backend new flows must not reach
	}{
		{"backend added", []Backend{all[0], all[1], all[2]}, ""},
		{"weight changed", []Backend{all[0], {Addr: all[1].Addr, Port: port, Weight: 5}, all[2]}, ""},
		{"backend removed", []Backend{all[0], all[2]}, netip.AddrPortFrom(all[1].Addr, port).String()},
	}
	next := n
	for _, st := range steps {
		if err := d.Apply(ctx, cfgWith(st.backends...)); err != nil {
			t.Fatalf("%s: Apply: %v", st.name, err)
		}
		// The change must matter: some tracked flows would go elsewhere if
		// they were new.
		cfg := cfgWith(st.backends...)
		wouldMove := 0
		for i := range owner {
			e := expect(t, cfg, cfg.Services[0], flow(i, true))
			b := e.backend.String()
			if mode == ModeDSR {
				b = e.backend.Addr().String()
			}
			if b != owner[i] {
				wouldMove++
			}
		}
		if wouldMove == 0 {
			t.Errorf("%s: no tracked flow maps elsewhere in the new table; the test proves nothing", st.name)
		}
		for i := range owner {
			if got := backendOf(flow(i, false)); got != owner[i] {
				t.Errorf("%s: flow %d went to %s, want %s (its backend before the change)", st.name, i, got, owner[i])
			}
		}
		moved := 0
		for range 100 {
			b := backendOf(flow(next, true))
			next++
			if mode == ModeDSR {
				b = netip.AddrPortFrom(ip(b), port).String()
			}
			if b == st.gone {
				moved++
			}
		}
		if moved > 0 {
			t.Errorf("%s: %d new flows went to the removed backend %s", st.name, moved, st.gone)
		}
	}
}
