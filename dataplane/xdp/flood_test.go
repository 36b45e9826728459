package xdp

import (
	"context"
	"net/netip"
	"testing"
)

// TestNonSYNFloodKeepsFlows: TCP segments other than a SYN never create
// connection-table entries, so a flood of them (spoofed ACKs, say) cannot
// evict established flows from the LRU table, however large it is.
func TestNonSYNFloodKeepsFlows(t *testing.T) {
	const size = 512
	d := newTestDataplane(t, Options{ConnTrackSize: size, TableSize: testTableSize})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	vip := netip.MustParseAddrPort("192.0.2.2:80") // DSR: no reverse entries
	flow := func(src netip.AddrPort, syn bool) []byte {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: vip, proto: "tcp", syn: syn, ack: !syn}.frame(t)
	}
	const established = 100
	for i := range established {
		if act, _ := r.run(t, flow(netip.AddrPortFrom(client4.Addr(), uint16(2000+i)), true)); act != xdpTX {
			t.Fatalf("syn %d: action %s", i, actionNames[act])
		}
	}
	for i := range 20 * size {
		src := netip.AddrPortFrom(addN(ip("100.64.0.0"), uint32(i/1000)), uint16(1000+i%1000))
		if act, _ := r.run(t, flow(src, false)); act != xdpDrop {
			t.Fatalf("flood segment %d: action %s, want XDP_DROP", i, actionNames[act])
		}
	}
	for i := range established {
		if act, _ := r.run(t, flow(netip.AddrPortFrom(client4.Addr(), uint16(2000+i)), false)); act != xdpTX {
			t.Errorf("established flow %d after the flood: action %s, want XDP_TX", i, actionNames[act])
		}
	}
}
