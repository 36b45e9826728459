package xdp

import (
	"context"
	"net/netip"
	"testing"
)

// TestNonSYNFloodKeepsFlows: TCP segments other than a SYN never create
// connection-table entries, so a flood of them (spoofed ACKs, say) cannot
// evict established flows from the LRU table, however large it is. FullNAT
// drops them; DSR forwards them by the Maglev table (they may be of flows
// ECMP moved from another node), still without an entry.
func TestNonSYNFloodKeepsFlows(t *testing.T) {
	const size = 512
	for _, tc := range []struct {
		name      string
		vip       netip.AddrPort
		floodWant uint32
	}{
		{"fullnat", netip.MustParseAddrPort("192.0.2.1:80"), xdpDrop},
		{"dsr", netip.MustParseAddrPort("192.0.2.2:80"), xdpTX},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDataplane(t, Options{ConnTrackSize: size, TableSize: testTableSize})
			if err := d.Apply(context.Background(), testConfig()); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			r := runner{d.objs.XdpLb}
			flow := func(src netip.AddrPort, syn bool) []byte {
				return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: tc.vip, proto: "tcp", syn: syn, ack: !syn}.frame(t)
			}
			// Fewer than size/2: a FullNAT flow also takes a reverse entry.
			const established = 100
			for i := range established {
				if act, _ := r.run(t, flow(netip.AddrPortFrom(client4.Addr(), uint16(2000+i)), true)); act != xdpTX {
					t.Fatalf("syn %d: action %s", i, actionNames[act])
				}
			}
			for i := range 20 * size {
				src := netip.AddrPortFrom(addN(ip("100.64.0.0"), uint32(i/1000)), uint16(1000+i%1000))
				if act, _ := r.run(t, flow(src, false)); act != tc.floodWant {
					t.Fatalf("flood segment %d: action %s, want %s", i, actionNames[act], actionNames[tc.floodWant])
				}
			}
			for i := range established {
				src := netip.AddrPortFrom(client4.Addr(), uint16(2000+i))
				if !isTracked(d, flowTuple{src, tc.vip, protoTCP}) {
					t.Errorf("established flow %d lost its entry to the flood", i)
				}
				if act, _ := r.run(t, flow(src, false)); act != xdpTX {
					t.Errorf("established flow %d after the flood: action %s, want XDP_TX", i, actionNames[act])
				}
			}
		})
	}
}
