package xdp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
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
			d, r, flow := floodRig(t, size, tc.vip)
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

// floodRig loads the program with a connection table of size entries
// and testConfig; seg makes a client's TCP segment to vip, a SYN or an
// ACK.
func floodRig(t *testing.T, size uint32, vip netip.AddrPort) (d *Dataplane, r runner, seg func(src netip.AddrPort, syn bool) []byte) {
	d = newTestDataplane(t, Options{ConnTrackSize: size, TableSize: testTableSize})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return d, runner{d.objs.XdpLb}, func(src netip.AddrPort, syn bool) []byte {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: vip, proto: "tcp", syn: syn, ack: !syn}.frame(t)
	}
}

// TestSYNFloodKeepsEstablished: a SYN flood of many times the table's
// size in new tuples leaves every established flow in conntrack (and,
// FullNAT, its reply tuple in nat_reverse), forwarded and translated back
// as before: new flows live in ct_new and nat_new until their second
// packet, so a flood evicts new flows only. A flow that is still new when
// the flood stops gets its reply translated too.
func TestSYNFloodKeepsEstablished(t *testing.T) {
	const size = 512
	for _, tc := range []struct {
		name    string
		vip     netip.AddrPort
		fullNAT bool
	}{
		{"fullnat", netip.MustParseAddrPort("192.0.2.1:80"), true},
		{"dsr", netip.MustParseAddrPort("192.0.2.2:80"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, r, seg := floodRig(t, size, tc.vip)
			// As many as the tables hold: a flood that got in would
			// evict some.
			const established = size - 12
			client := func(i int) netip.AddrPort { return netip.AddrPortFrom(client4.Addr(), uint16(2000+i)) }
			replyTo := map[int]netip.AddrPort{} // FullNAT: the flow's reply tuple's source and destination
			for i := range established {
				if act, _ := r.run(t, seg(client(i), true)); act != xdpTX {
					t.Fatalf("syn %d: action %s", i, actionNames[act])
				}
				act, out := r.run(t, seg(client(i), false))
				if act != xdpTX {
					t.Fatalf("ack %d: action %s", i, actionNames[act])
				}
				src, dst := tuple(out)
				replyTo[i] = src
				replyTo[-1-i] = dst
			}
			for i := range 20 * size {
				src := netip.AddrPortFrom(addN(ip("100.64.0.0"), uint32(i/1000)), uint16(1000+i%1000))
				if act, _ := r.run(t, seg(src, true)); act != xdpTX {
					t.Fatalf("flood syn %d: action %s", i, actionNames[act])
				}
			}
			late := netip.AddrPortFrom(ip("198.51.100.77"), 4242)
			act, out := r.run(t, seg(late, true))
			if act != xdpTX {
				t.Fatalf("syn after the flood: action %s", actionNames[act])
			}
			lateSrc, lateDst := tuple(out)
			for i := range established {
				f := flowTuple{client(i), tc.vip, protoTCP}
				var ct lbCtValue
				if err := d.objs.Conntrack.Lookup(f.key(), &ct); err != nil || ct.Flags&lbCtFlagsCT_ESTABLISHED == 0 {
					t.Errorf("established flow %d lost its conntrack entry to the flood (%v)", i, err)
				}
				if act, _ := r.run(t, seg(client(i), false)); act != xdpTX {
					t.Errorf("established flow %d after the flood: action %s, want XDP_TX", i, actionNames[act])
				}
				if tc.fullNAT {
					reply := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: replyTo[-1-i], dst: replyTo[i], proto: "tcp", ack: true}
					act, out := r.run(t, reply.frame(t))
					if act != xdpTX {
						t.Errorf("reply of established flow %d: action %s", i, actionNames[act])
						continue
					}
					if src, dst := tuple(out); src != tc.vip || dst != client(i) {
						t.Errorf("reply of established flow %d translated to %v -> %v, want %v -> %v", i, src, dst, tc.vip, client(i))
					}
				}
			}
			if tc.fullNAT {
				synAck := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: lateDst, dst: lateSrc, proto: "tcp", syn: true, ack: true}
				act, out := r.run(t, synAck.frame(t))
				if act != xdpTX {
					t.Fatalf("syn-ack of a new flow: action %s", actionNames[act])
				}
				if src, dst := tuple(out); src != tc.vip || dst != late {
					t.Errorf("syn-ack of a new flow translated to %v -> %v, want %v -> %v", src, dst, tc.vip, late)
				}
			}
			// The late flow's handshake completes: it joins conntrack.
			if act, _ := r.run(t, seg(late, false)); act != xdpTX {
				t.Fatalf("ack of the late flow: action %s", actionNames[act])
			}
			var ct lbCtValue
			if err := d.objs.Conntrack.Lookup(flowTuple{late, tc.vip, protoTCP}.key(), &ct); err != nil {
				t.Errorf("late flow not in conntrack once established: %v", err)
			}
		})
	}
}

// TestNewFlowRate: above a service's new-flow rate (each CPU's share of
// it) SYNs of new flows are dropped and counted; established flows and
// retransmitted SYNs of flows already opened are not limited, nor are
// other services.
func TestNewFlowRate(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cpus := ebpf.MustPossibleCPU()
	const perCPU = 5
	cfg := testConfig()
	cfg.Services[0].NewFlowRate = uint32(perCPU * cpus) // 192.0.2.1:80, FullNAT
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	vip := netip.MustParseAddrPort("192.0.2.1:80")
	seg := func(src netip.AddrPort, syn bool) []byte {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: vip, proto: "tcp", syn: syn, ack: !syn}.frame(t)
	}
	first := netip.AddrPortFrom(client4.Addr(), 3000)
	if act, _ := r.run(t, seg(first, true)); act != xdpTX {
		t.Fatalf("first syn: action %s", actionNames[act])
	}
	const n = 200
	var passed, dropped uint64
	for i := range n {
		switch act, _ := r.run(t, seg(netip.AddrPortFrom(ip("100.64.1.1"), uint16(1000+i)), true)); act {
		case xdpTX:
			passed++
		case xdpDrop:
			dropped++
		default:
			t.Fatalf("syn %d: action %s", i, actionNames[act])
		}
	}
	// Each CPU opens perCPU a second; the loop may span two seconds and
	// run on every CPU.
	if passed > uint64(2*perCPU*cpus) || dropped == 0 {
		t.Errorf("%d of %d new flows passed, %d dropped; want at most %d passed", passed, n, dropped, 2*perCPU*cpus)
	}
	if act, _ := r.run(t, seg(first, true)); act != xdpTX {
		t.Errorf("retransmitted syn of an opened flow: action %s, want XDP_TX", actionNames[act])
	}
	if act, _ := r.run(t, seg(first, false)); act != xdpTX {
		t.Errorf("ack of an opened flow: action %s, want XDP_TX", actionNames[act])
	}
	other := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: first, dst: netip.MustParseAddrPort("192.0.2.2:80"), proto: "tcp", syn: true}
	if act, _ := r.run(t, other.frame(t)); act != xdpTX {
		t.Errorf("syn to an unlimited service: action %s, want XDP_TX", actionNames[act])
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		want := uint64(0)
		if s.VIP == vip.Addr() && s.Port == vip.Port() && s.Proto == ProtoTCP {
			want = dropped
		}
		if s.Drops.NewFlowRate != want {
			t.Errorf("service %v:%d/%s: %d new-flow rate drops, want %d", s.VIP, s.Port, s.Proto, s.Drops.NewFlowRate, want)
		}
	}
}

func TestPerCPURate(t *testing.T) {
	for _, tc := range []struct{ rate, cpus, want uint32 }{{0, 4, 0}, {1, 4, 1}, {8, 4, 2}, {9, 4, 3}, {1000, 1, 1000}} {
		if got := perCPURate(tc.rate, tc.cpus); got != tc.want {
			t.Errorf("perCPURate(%d, %d) = %d, want %d", tc.rate, tc.cpus, got, tc.want)
		}
	}
}
