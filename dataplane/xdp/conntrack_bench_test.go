package xdp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// BenchmarkConntrackFull measures connection-table hits with the table
// full: n entries written first, then `live` FullNAT flows opened (SYN,
// ACK), whose ACKs are sent in turn, so that the hits go to entries all
// over the table rather than to one in cache. It reports ns/pkt (as
// BenchmarkXDP), the kernel memory of the connection tables (conntrack,
// nat_reverse and the new-flow tables, from their memlock) and the
// process's RSS.
func BenchmarkConntrackFull(b *testing.B) {
	const live = 1 << 15
	for _, n := range []uint32{1 << 16, 4 << 20} {
		b.Run(fmt.Sprintf("entries-%d", n), func(b *testing.B) {
			cfg := testConfig()
			for i := range uint32(15) {
				cfg.LocalAddrs = append(cfg.LocalAddrs, addN(local4, 1+i))
			}
			d := newTestDataplane(b, Options{ConnTrackSize: n, NewConnTrackSize: 2 * live})
			if err := d.Apply(context.Background(), cfg); err != nil {
				b.Fatalf("Apply: %v", err)
			}
			fillConntrack(b, d.objs.Conntrack, n-live)
			r := runner{d.objs.XdpLb}
			pin(b)
			acks := make([][]byte, live)
			for i := range acks {
				src := netip.AddrPortFrom(addN(client4.Addr(), uint32(i)/50000), uint16(1024+i%50000))
				syn := benchSYN(ip("192.0.2.1"), src)
				ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
				for _, p := range []packet{syn, ack} {
					if act, _ := r.run(b, p.frame(b)); act != xdpTX {
						b.Fatalf("flow %d: handshake: action %s", i, actionNames[act])
					}
				}
				acks[i] = ack.frame(b)
			}
			var mem uint64
			for _, m := range []*ebpf.Map{d.objs.Conntrack, d.objs.NatReverse, d.objs.CtNew, d.objs.NatNew} {
				info, err := m.Info()
				if err != nil {
					b.Fatal(err)
				}
				ml, _ := info.Memlock()
				mem += ml
			}
			var total uint64
			i := 0
			for b.Loop() {
				ret, dur := runTimed(b, r, acks[i%live])
				if ret != xdpTX {
					b.Fatalf("ack %d: action %s", i%live, actionNames[ret])
				}
				total += dur
				i++
			}
			b.ReportMetric(float64(total)/float64(b.N), "ns/pkt")
			b.ReportMetric(float64(mem)/(1<<20), "tables-MiB")
			b.ReportMetric(float64(selfRSS(b))/(1<<20), "rss-MiB")
		})
	}
}

// fillConntrack writes n entries of made-up flows (zero values: they
// hold their place in the LRU like any other) with batch updates.
func fillConntrack(b *testing.B, m *ebpf.Map, n uint32) {
	const chunk = 1 << 16
	keys := make([]lbFlowKey, chunk)
	vals := make([]lbCtValue, chunk)
	for done := uint32(0); done < n; done += chunk {
		k := min(chunk, n-done)
		for i := range k {
			src := addN(ip("100.64.0.0"), done+i)
			keys[i] = lbFlowKey{Src: lbAddr(src), Dst: lbAddr(ip("192.0.2.1")), Sport: be16(40000), Dport: be16(80), Proto: protoTCP}
		}
		if _, err := m.BatchUpdate(keys[:k], vals[:k], nil); err != nil {
			b.Fatalf("fill conntrack: %v", err)
		}
	}
}

// selfRSS is this process's resident set in bytes.
func selfRSS(b *testing.B) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}
