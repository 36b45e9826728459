//go:build katranbench

package xdp

// BenchmarkKatran and BenchmarkFloor put Facebook Katran's balancer
// (vendored, GPL-2.0, under deploy/bench/katran) and the harness floor
// (deploy/bench/katran/floor.bpf.c) on BenchmarkXDP's harness: the same
// frames, one BPF_PROG_TEST_RUN per packet on CPU 0, the kernel's time as
// ns/pkt. deploy/bench/katran/run.sh compiles both programs into
// $KATRAN_BENCH_OBJ and runs these; the build tag keeps them out of make
// test, which has neither the programs nor a reason to build them.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/weftlb/weft/dataplane/maglev"
)

// Katran's constants (katran/lib/bpf/balancer_consts.h) the set-up needs.
const (
	katranMaxVIPs   = 512   // MAX_VIPS: the global counters start there in stats
	katranRingSize  = 65537 // RING_SIZE: ch_rings slots per VIP
	katranLRUCntrs  = 0     // LRU_CNTRS: v1 packets to VIPs, v2 LRU misses
	katranFIPv6     = 1     // F_IPV6 in real_definition.flags
	katranIPIP      = 4     // IPPROTO_IPIP, the outer protocol of IPv4 in IPv4
	katranIPv6inIP6 = 41    // IPPROTO_IPV6, that of IPv6 in IPv6
	// katranLRUSize is the per-CPU LRU's size, that of BenchmarkXDP's
	// connection table (Katran's default, 8M flows over the forwarding
	// CPUs, would measure a table too large for this machine's caches
	// against one that fits).
	katranLRUSize = 1 << 17
)

// katranStats is Katran's struct lb_stats, one per CPU.
type katranStats struct{ V1, V2 uint64 }

// katranLB is Katran's balancer loaded with one VIP.
type katranLB struct {
	coll  *ebpf.Collection
	reals []netip.Addr
}

// BenchmarkKatran reports Katran's time per packet in its IPIP mode (IPv6
// reals get IPv6 in IPv6) for one TCP VIP with four reals, per family: a
// hit is an ACK of a flow in its LRU, a miss the SYN of a new flow (ring
// lookup and LRU insert; Katran looks no SYN up in its LRU). The VIPs,
// clients and frames are BenchmarkXDP's DSR ones, byte for byte.
func BenchmarkKatran(b *testing.B) {
	for _, c := range []struct {
		name  string
		vip   string
		src   netip.AddrPort
		reals []string
	}{
		{"ipip-v4", "192.0.2.2", client4, []string{"10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.14"}},
		{"ipip-v6", "2001:db8::2", client6, []string{"2001:db8:1::11", "2001:db8:1::12", "2001:db8:1::13", "2001:db8:1::14"}},
	} {
		func() {
			syn := benchSYN(ip(c.vip), c.src)
			ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
			k := newKatran(b, syn.dst, c.reals)
			defer k.coll.Close()
			r := runner{k.coll.Programs["balancer_ingress"]}
			b.Run(c.name+"-hit", func(b *testing.B) {
				pin(b)
				k.forward(b, r, syn.frame(b), true)
				k.forward(b, r, ack.frame(b), false)
				misses := k.lruMisses(b)
				benchRun(b, r, ack.frame(b))
				if got := k.lruMisses(b); got != misses {
					b.Fatalf("%d of the hits missed Katran's LRU", got-misses)
				}
			})
			b.Run(c.name+"-miss", func(b *testing.B) {
				pin(b)
				k.forward(b, r, syn.with(func(q *packet) { q.src = netip.AddrPortFrom(q.src.Addr(), 7) }).frame(b), true)
				misses := k.lruMisses(b)
				last := benchNewFlows(b, r, syn)
				if got := k.lruMisses(b) - misses; got != uint64(b.N) {
					b.Fatalf("%d of %d new flows missed Katran's LRU", got, b.N)
				}
				// The last new flow's ACK hits: the misses wrote the
				// LRU rather than bypassing it (as Katran does above
				// its new-flow rate).
				k.forward(b, r, ack.with(func(q *packet) { q.src = last }).frame(b), false)
			})
		}()
	}
}

// BenchmarkFloor reports the harness floor: a program that does one
// per-CPU array lookup and returns XDP_TX, run on BenchmarkXDP's DSR IPv4
// hit frame. array-lookup-tx runs it as every benchmark here runs its
// program, once per BPF_PROG_TEST_RUN, so it includes the kernel's timing
// of one run; array-lookup-tx-repeat has the kernel run it floorRepeat
// times per call (which the others cannot do: a rewritten frame would be
// run again), so the difference is that fixed cost of the harness.
func BenchmarkFloor(b *testing.B) {
	coll, _ := loadBenchObject(b, "floor.o")
	defer coll.Close()
	r := runner{coll.Programs["floor_tx"]}
	frame := benchSYN(ip("192.0.2.2"), client4).with(func(q *packet) { q.syn, q.ack = false, true }).frame(b)
	b.Run("array-lookup-tx", func(b *testing.B) {
		pin(b)
		before := floorCount(b, coll)
		benchRun(b, r, frame)
		if got := floorCount(b, coll) - before; got != uint64(b.N) {
			b.Fatalf("floor counted %d of %d runs", got, b.N)
		}
	})
	b.Run("array-lookup-tx-repeat", func(b *testing.B) {
		pin(b)
		before := floorCount(b, coll)
		var total time.Duration
		for b.Loop() {
			ret, mean, err := r.prog.Benchmark(frame, floorRepeat, nil)
			if err != nil || ret != xdpTX {
				b.Fatalf("floor: action %s, %v", actionNames[ret], err)
			}
			total += mean
		}
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		// At least: a call a signal interrupts is made again (by
		// cilium/ebpf), after some runs were counted.
		if got := floorCount(b, coll) - before; got < uint64(b.N)*floorRepeat {
			b.Fatalf("floor counted %d of %d runs", got, b.N*floorRepeat)
		}
	})
}

// floorRepeat is how many times array-lookup-tx-repeat runs the floor per
// BPF_PROG_TEST_RUN.
const floorRepeat = 100

// loadBenchObject loads a program run.sh compiled, and its spec.
func loadBenchObject(b *testing.B, name string) (*ebpf.Collection, *ebpf.CollectionSpec) {
	dir := os.Getenv("KATRAN_BENCH_OBJ")
	if dir == "" {
		b.Fatal("KATRAN_BENCH_OBJ is not set: deploy/bench/katran/run.sh compiles the programs and sets it")
	}
	spec, err := ebpf.LoadCollectionSpec(filepath.Join(dir, name))
	if err != nil {
		b.Fatalf("load %s: %v", name, err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return coll, spec
}

// floorCount is the floor's packet counter on CPU 0.
func floorCount(b *testing.B, coll *ebpf.Collection) uint64 {
	var n []uint64
	if err := coll.Maps["packets"].Lookup(uint32(0), &n); err != nil {
		b.Fatalf("floor counter: %v", err)
	}
	return n[0]
}

// newKatran loads Katran's balancer and configures it as its userspace
// (katran/lib/KatranLb.cpp) would for one VIP of reals: the VIP in
// vip_map (number 0, no flags), the reals at indexes 1.. (0 means none),
// the VIP's ring filled by Maglev, the default gateway's MAC in ctl_array,
// and an LRU per CPU in lru_mapping.
func newKatran(b *testing.B, vip netip.AddrPort, reals []string) *katranLB {
	coll, spec := loadBenchObject(b, "balancer.o")
	k := &katranLB{coll: coll}
	put := func(m string, key, value any) {
		if err := coll.Maps[m].Put(key, value); err != nil {
			coll.Close()
			b.Fatalf("katran %s: %v", m, err)
		}
	}

	// struct vip_definition: address, port (network order), protocol.
	var vipKey [20]byte
	copy(vipKey[:16], vip.Addr().AsSlice())
	binary.BigEndian.PutUint16(vipKey[16:], vip.Port())
	vipKey[18] = 6 // TCP
	// struct vip_meta: flags 0, vip_num 0.
	put("vip_map", vipKey, [8]byte{})

	backends := make([]maglev.Backend, len(reals))
	for i, s := range reals {
		backends[i] = maglev.Backend{ID: s, Weight: 1}
	}
	table, err := maglev.Build(backends, katranRingSize)
	if err != nil {
		coll.Close()
		b.Fatal(err)
	}
	for i, be := range table.Backends {
		a := ip(be.ID)
		k.reals = append(k.reals, a)
		var def [20]byte // struct real_definition: address, flags
		copy(def[:16], a.AsSlice())
		if a.Is6() {
			def[16] = katranFIPv6
		}
		put("reals", uint32(i+1), def)
	}
	slots := make([]uint32, katranRingSize)
	ids := make([]uint32, katranRingSize)
	for i, e := range table.Entries {
		slots[i], ids[i] = uint32(i), uint32(e+1)
	}
	if _, err := coll.Maps["ch_rings"].BatchUpdate(slots, ids, nil); err != nil {
		coll.Close()
		b.Fatalf("katran ch_rings: %v", err)
	}

	var ctl [8]byte // struct ctl_value: the MAC frames are sent to
	copy(ctl[:], gwMAC)
	put("ctl_array", uint32(0), ctl)

	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		coll.Close()
		b.Fatal(err)
	}
	lruSpec := spec.Maps["lru_mapping"].InnerMap.Copy()
	lruSpec.MaxEntries = katranLRUSize
	for cpu := range cpus {
		lru, err := ebpf.NewMap(lruSpec)
		if err != nil {
			coll.Close()
			b.Fatalf("katran lru for cpu %d: %v", cpu, err)
		}
		put("lru_mapping", uint32(cpu), lru)
		lru.Close() // lru_mapping holds it
	}
	return k
}

// forward runs frame through Katran and checks that it is sent, IPIP
// encapsulated, to one of the reals, and that the LRU was missed (the flow
// routed by the ring) or hit as miss says.
func (k *katranLB) forward(b *testing.B, r runner, frame []byte, miss bool) {
	b.Helper()
	before := k.lruMisses(b)
	act, out := r.run(b, frame)
	if act != xdpTX {
		b.Fatalf("katran: action %s", actionNames[act])
	}
	if got := k.lruMisses(b) - before; got != 0 && !miss || got != 1 && miss {
		b.Fatalf("katran: %d LRU misses, want miss %v", got, miss)
	}
	if err := k.checkEncap(frame, out); err != nil {
		b.Fatalf("katran: %v", err)
	}
}

// checkEncap checks that out is in behind an outer IP header to one of the
// reals, from gwMAC's side: Katran's encap_v4 and encap_v6.
func (k *katranLB) checkEncap(in, out []byte) error {
	hdr, proto, ethType := 20, byte(katranIPIP), uint16(0x0800)
	if k.reals[0].Is6() {
		hdr, proto, ethType = 40, katranIPv6inIP6, 0x86dd
	}
	if len(out) != len(in)+hdr {
		return fmt.Errorf("out frame of %d bytes, want %d", len(out), len(in)+hdr)
	}
	if !bytes.Equal(out[:6], gwMAC) || !bytes.Equal(out[6:12], in[:6]) {
		return fmt.Errorf("out MACs %x -> %x, want %x -> %x", out[6:12], out[:6], in[:6], []byte(gwMAC))
	}
	if binary.BigEndian.Uint16(out[12:]) != ethType {
		return fmt.Errorf("out ethertype %#x", binary.BigEndian.Uint16(out[12:]))
	}
	outer := out[14 : 14+hdr]
	var dst netip.Addr
	if hdr == 20 {
		if outer[0] != 0x45 || outer[9] != proto || csum(outer) != 0xffff {
			return fmt.Errorf("outer IPv4 header %x: want IHL 5, protocol %d, a valid checksum", outer, proto)
		}
		dst = netip.AddrFrom4([4]byte(outer[16:20]))
	} else {
		if outer[0]>>4 != 6 || outer[6] != proto {
			return fmt.Errorf("outer IPv6 header %x: want next header %d", outer, proto)
		}
		dst = netip.AddrFrom16([16]byte(outer[24:40]))
	}
	if !bytes.Equal(out[14+hdr:], in[14:]) {
		return fmt.Errorf("inner packet changed")
	}
	for _, a := range k.reals {
		if a == dst {
			return nil
		}
	}
	return fmt.Errorf("outer destination %s is not a real", dst)
}

// lruMisses is Katran's count of packets routed by the ring on CPU 0.
func (k *katranLB) lruMisses(b *testing.B) uint64 {
	var s []katranStats
	if err := k.coll.Maps["stats"].Lookup(uint32(katranMaxVIPs+katranLRUCntrs), &s); err != nil {
		b.Fatalf("katran stats: %v", err)
	}
	return s[0].V2
}
