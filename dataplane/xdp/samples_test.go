package xdp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestSampleNewFlows: with every new flow sampled, each SYN that opens a
// flow and each one refused by the new-flow rate is one sample with its
// client and VIP; retransmitted SYNs, ACKs and packets of no service are
// none. With sampling off the ring stays empty.
func TestSampleNewFlows(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize, SampleEvery: 1})
	cpus := ebpf.MustPossibleCPU()
	const perCPU = 3
	cfg := testConfig()
	cfg.Services[0].NewFlowRate = uint32(perCPU * cpus) // 192.0.2.1:80, FullNAT
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	limited, unlimited := netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("192.0.2.2:80")
	seg := func(src, dst netip.AddrPort, syn bool) []byte {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: dst, proto: "tcp", syn: syn, ack: !syn}.frame(t)
	}

	type key struct {
		client, vip netip.Addr
		limited     bool
	}
	want := map[key]int{}
	// Three clients open 5, 3 and 1 flows to the DSR VIP, each SYN sent
	// twice and followed by its ACK.
	for c, n := range []int{5, 3, 1} {
		client := addN(ip("198.51.100.10"), uint32(c))
		for i := range n {
			src := netip.AddrPortFrom(client, uint16(4000+i))
			for _, syn := range []bool{true, true, false} {
				if act, _ := r.run(t, seg(src, unlimited, syn)); act != xdpTX {
					t.Fatalf("client %v flow %d: action %s", client, i, actionNames[act])
				}
			}
		}
		want[key{client, unlimited.Addr(), false}] = n
	}
	// A flood from one address above the FullNAT VIP's rate.
	flooder := ip("100.64.2.2")
	for i := range 100 {
		switch act, _ := r.run(t, seg(netip.AddrPortFrom(flooder, uint16(1000+i)), limited, true)); act {
		case xdpTX:
			want[key{flooder, limited.Addr(), false}]++
		case xdpDrop:
			want[key{flooder, limited.Addr(), true}]++
		default:
			t.Fatalf("flood syn %d: action %s", i, actionNames[act])
		}
	}
	if want[key{flooder, limited.Addr(), true}] == 0 {
		t.Fatal("no SYN of the flood was refused by the rate")
	}
	// Not a service: no sample.
	r.run(t, seg(netip.AddrPortFrom(flooder, 9), netip.MustParseAddrPort("192.0.2.99:80"), true))

	total := 0
	for _, n := range want {
		total += n
	}
	got := map[key]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		seen int
		done = make(chan error, 1)
	)
	go func() {
		done <- d.ReadSamples(ctx, func(ss []FlowSample) {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range ss {
				got[key{s.Client, s.VIP, s.Limited}]++
				seen++
			}
		})
	}()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		mu.Lock()
		n := seen
		mu.Unlock()
		if n >= total {
			break
		}
	}
	// A little longer: a sample too many would show.
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("ReadSamples: %v, want context.Canceled", err)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%v → %v limited=%v: %d samples, want %d", k.client, k.vip, k.limited, got[k], n)
		}
	}
	if seen != total {
		t.Errorf("%d samples, want %d: %v", seen, total, got)
	}
	if c, err := d.FlowCounters(); err != nil || c.SamplesLost != 0 {
		t.Errorf("FlowCounters: %+v, %v; want no sample lost", c, err)
	}
}

// TestSampleNone: SampleEvery 0 puts nothing in the ring.
func TestSampleNone(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	for i := range 20 {
		src := netip.AddrPortFrom(client4.Addr(), uint16(5000+i))
		p := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: netip.MustParseAddrPort("192.0.2.2:80"), proto: "tcp", syn: true}
		if act, _ := r.run(t, p.frame(t)); act != xdpTX {
			t.Fatalf("syn %d: action %s", i, actionNames[act])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	n := 0
	d.ReadSamples(ctx, func(ss []FlowSample) { n += len(ss) })
	if n != 0 {
		t.Errorf("%d samples with sampling off, want 0", n)
	}
}
