package xdp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/dataplane"
)

// BenchmarkXDP reports the program's time per packet, as the kernel
// measures a BPF_PROG_TEST_RUN (ns/pkt; ns/op adds the syscall), for a
// connection-table hit and a miss (a new flow), per mode and family. A miss in FullNAT also
// allocates the source port and writes the reverse entry. The handshake's
// last packet is measured with flow reports off and on (the cost of flow
// sync in the program), and a segment of an unknown flow handed to its
// owner, and datagrams to an L7 proxy's HTTP/3 port. New flows are sampled as the agent does by default (one in 16),
// the samples read as they come.
func BenchmarkXDP(b *testing.B) {
	d := newTestDataplane(b, Options{ConnTrackSize: 1 << 17, SampleEvery: benchSampleEvery})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.ReadSamples(ctx, func([]FlowSample) {})
	cfg := testConfig()
	// Enough FullNAT sources (31744 ports per local address and backend)
	// for the misses' new flows, which hold their ports for the SYN-only
	// lifetime (30 s) and so accumulate over the runs.
	for i := range uint32(15) {
		cfg.LocalAddrs = append(cfg.LocalAddrs, addN(local4, 1+i), addN(local6, 1+i))
	}
	if err := d.Apply(context.Background(), cfg); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	// The floor: a packet to no service, parsed, looked up and passed.
	for _, c := range []struct {
		name string
		dst  string
		src  netip.AddrPort
	}{
		{"pass/ipv4", "203.0.113.9", client4},
		{"pass/ipv6", "2001:db8:ff::9", client6},
	} {
		b.Run(c.name, func(b *testing.B) {
			pin(b)
			other := benchSYN(ip(c.dst), c.src).with(func(q *packet) { q.syn, q.ack = false, true })
			benchRunAction(b, r, other.frame(b), xdpPass)
		})
	}
	// An L7 proxy's HTTP/3 port (quic.h): a datagram of a connection of
	// this node passed to the stack, one of another node's handed to it.
	if err := d.SetQUICRouting(quicRouting()); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		id   uint16
		act  uint32
	}{
		{"quic/own", selfQUIC, xdpPass},
		{"quic/handed", peerQUIC, xdpTX},
	} {
		b.Run(c.name, func(b *testing.B) {
			pin(b)
			p := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: client4, dst: netip.AddrPortFrom(quicVIP4, 443), proto: "udp",
				payload: quicShort(1, c.id, 1200)}
			benchRunAction(b, r, p.frame(b), c.act)
		})
	}
	for _, c := range []struct {
		name string
		vip  string
		src  netip.AddrPort
	}{
		{"fullnat/ipv4", "192.0.2.1", client4},
		{"dsr/ipv4", "192.0.2.2", client4},
		{"fullnat/ipv6", "2001:db8::1", client6},
		{"dsr/ipv6", "2001:db8::2", client6},
	} {
		syn := benchSYN(ip(c.vip), c.src)
		ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
		b.Run(c.name+"/hit", func(b *testing.B) {
			pin(b)
			if act, _ := r.run(b, syn.frame(b)); act != xdpTX {
				b.Fatalf("syn: action %s", actionNames[act])
			}
			benchRun(b, r, ack.frame(b))
		})
		// The packet that completes a handshake: its flow becomes
		// established and, with flow sync on, is reported to Go.
		for _, sync := range []bool{false, true} {
			name := c.name + "/establish/sync-off"
			if sync {
				name = c.name + "/establish/sync-on"
			}
			b.Run(name, func(b *testing.B) {
				pin(b)
				stop := drainReports(b, d, sync)
				defer stop()
				var total uint64
				for i := uint32(0); b.Loop(); i++ {
					src := netip.AddrPortFrom(addN(syn.src.Addr(), 100+i/60000), uint16(1024+i%60000))
					if act, _ := r.run(b, syn.with(func(q *packet) { q.src = src }).frame(b)); act != xdpTX {
						b.Fatalf("syn: action %s", actionNames[act])
					}
					ret, dur := runTimed(b, r, ack.with(func(q *packet) { q.src = src }).frame(b))
					if ret != xdpTX {
						b.Fatalf("ack: action %s", actionNames[ret])
					}
					total += dur
				}
				b.ReportMetric(float64(total)/float64(b.N), "ns/pkt")
			})
		}
		// A segment of a flow this node does not know, handed to the
		// owner of its bucket.
		b.Run(c.name+"/handed", func(b *testing.B) {
			pin(b)
			if err := d.SetFlowRouting(routing(d, 0, false)); err != nil {
				b.Fatal(err)
			}
			defer d.SetFlowRouting(routing(d, dataplane.TargetSelf, false))
			unknown := ack.with(func(q *packet) { q.src = netip.AddrPortFrom(q.src.Addr(), 7) })
			benchRun(b, r, unknown.frame(b))
		})
		b.Run(c.name+"/miss", func(b *testing.B) {
			// Each run is a SYN of a new flow: a miss, then an insert
			// (evicting the least recently used entry once the table
			// is full).
			pin(b)
			benchNewFlows(b, r, syn)
		})
	}
}

// benchSampleEvery is node.DefaultSampleNewFlows (node imports this
// package).
const benchSampleEvery = 16

// BenchmarkXDPScraped runs BenchmarkXDP's FullNAT IPv4 hit and DSR IPv4
// miss while the metrics endpoint's reads (Stats, FlowStats, Flows,
// FlowCounters) run every second from another goroutine ("scraped") and
// without them ("idle"); make bench prints the ratio. Run it with a
// benchtime of seconds, so that scrapes happen.
func BenchmarkXDPScraped(b *testing.B) {
	d := newTestDataplane(b, Options{ConnTrackSize: 1 << 17})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	fullnat := benchSYN(ip("192.0.2.1"), client4)
	ack := fullnat.with(func(q *packet) { q.syn, q.ack = false, true })
	if act, _ := r.run(b, fullnat.frame(b)); act != xdpTX {
		b.Fatalf("syn: action %s", actionNames[act])
	}
	dsr := benchSYN(ip("192.0.2.2"), client4)
	for _, mode := range []string{"idle", "scraped"} {
		b.Run("fullnat/ipv4/hit/"+mode, func(b *testing.B) {
			pin(b)
			defer scrapeEverySecond(b, d, mode == "scraped")()
			benchRun(b, r, ack.frame(b))
		})
		b.Run("dsr/ipv4/miss/"+mode, func(b *testing.B) {
			pin(b)
			defer scrapeEverySecond(b, d, mode == "scraped")()
			benchNewFlows(b, r, dsr)
		})
	}
}

// scrapeEverySecond, when on, reads what a metrics scrape reads every
// second until the returned function is called, and reports the scrapes
// made.
func scrapeEverySecond(b *testing.B, d *Dataplane, on bool) (stop func()) {
	if !on {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan int)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		n := 0
		for {
			select {
			case <-done:
				finished <- n
				return
			case <-t.C:
			}
			if _, err := d.Stats(); err != nil {
				b.Error(err)
			}
			if _, err := d.FlowStats(func(dataplane.Flow) {}); err != nil {
				b.Error(err)
			}
			if _, err := d.FlowCounters(); err != nil {
				b.Error(err)
			}
			n++
		}
	}()
	return func() {
		close(done)
		b.ReportMetric(float64(<-finished), "scrapes")
	}
}

// benchSYN is the benchmarks' packet: a SYN from src to dst:80 with 64
// bytes of payload.
func benchSYN(dst netip.Addr, src netip.AddrPort) packet {
	return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: netip.AddrPortFrom(dst, 80),
		proto: "tcp", syn: true, payload: string(make([]byte, 64))}
}

// benchNewFlows runs syn from a new source address and port each time and
// reports the kernel's mean time per run as ns/pkt; building the frames is
// not counted. It returns the last source used.
func benchNewFlows(b *testing.B, r runner, syn packet) netip.AddrPort {
	var total uint64
	last := syn.src
	for i := uint32(0); b.Loop(); i++ {
		last = netip.AddrPortFrom(addN(syn.src.Addr(), i/60000), uint16(1024+i%60000))
		ret, dur := runTimed(b, r, syn.with(func(q *packet) { q.src = last }).frame(b))
		if ret != xdpTX {
			b.Fatalf("syn: action %s", actionNames[ret])
		}
		total += dur
	}
	b.ReportMetric(float64(total)/float64(b.N), "ns/pkt")
	return last
}

// benchRun runs frame b.N times, one BPF_PROG_TEST_RUN each: with
// Repeat the kernel would run the program again on the frame it has just
// rewritten. It reports the kernel's mean time per run as ns/pkt.
func benchRun(b *testing.B, r runner, frame []byte) {
	benchRunAction(b, r, frame, xdpTX)
}

func benchRunAction(b *testing.B, r runner, frame []byte, want uint32) {
	var total uint64
	for b.Loop() {
		ret, dur := runTimed(b, r, frame)
		if ret != want {
			b.Fatalf("action %s", actionNames[ret])
		}
		total += dur
	}
	b.ReportMetric(float64(total)/float64(b.N), "ns/pkt")
}

// runTimed runs frame once and returns the action and the kernel's
// measure of the run in ns.
func runTimed(b *testing.B, r runner, frame []byte) (uint32, uint64) {
	ret, dur, err := r.prog.Benchmark(frame, 1, nil)
	if err != nil {
		b.Fatalf("prog.Run: %v", err)
	}
	return ret, uint64(dur.Nanoseconds())
}

// pin keeps the benchmark on CPU 0, so runs are comparable.
func pin(b *testing.B) {
	runtime.LockOSThread()
	var old, cpu0 unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		b.Fatalf("get affinity: %v", err)
	}
	cpu0.Set(0)
	if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
		b.Fatalf("pin to cpu 0: %v", err)
	}
	b.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

// addN returns a plus n in its last 32 bits.
func addN(a netip.Addr, n uint32) netip.Addr {
	b := a.As16()
	binary.BigEndian.PutUint32(b[12:], binary.BigEndian.Uint32(b[12:])+n)
	return netip.AddrFrom16(b).Unmap()
}

// drainReports turns flow reports on or off and, when on, reads them
// (as flow sync does) until the returned function is called.
func drainReports(b *testing.B, d *Dataplane, on bool) (stop func()) {
	if err := d.SetFlowRouting(routing(d, dataplane.TargetSelf, on)); err != nil {
		b.Fatal(err)
	}
	if !on {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.ReadFlows(ctx, func([]dataplane.Flow) {}) }()
	return func() {
		cancel()
		<-done
		d.SetFlowRouting(routing(d, dataplane.TargetSelf, false))
	}
}

// BenchmarkNATCapacity fills the FullNAT source ports of one local
// address towards one backend with new flows, as new connections do while
// their ports are held (until each flow's entry expires: 10 s after a FIN,
// 30 s for a SYN alone), and reports how many flows it took before the
// first was refused (NAT_PORTS) and how many had a port once 1% were
// refused. The sustainable rate of new connections is about that over the
// holding time, per local address and backend: add local addresses
// (--local-addr) for more.
func BenchmarkNATCapacity(b *testing.B) {
	for b.Loop() {
		d := newTestDataplane(b, Options{ConnTrackSize: 1 << 17, TableSize: testTableSize})
		vip := netip.MustParseAddrPort("192.0.2.9:80")
		cfg := Config{Services: []Service{{VIP: vip.Addr(), Port: vip.Port(), Proto: "tcp", Mode: "fullnat",
			Backends: []Backend{be("10.1.0.11", 8080, 1)}}}, LocalAddrs: []netip.Addr{local4},
			Neighbors: map[netip.Addr]net.HardwareAddr{ip("10.1.0.11"): backendMAC[ip("10.1.0.11")]}, Gateway: gwMAC}
		if err := d.Apply(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		r := runner{d.objs.XdpLb}
		firstDrop, ok, refused := 0, 0, 0
		for i := uint32(0); ; i++ {
			syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, proto: "tcp", syn: true, dst: vip,
				src: netip.AddrPortFrom(addN(client4.Addr(), i/50000), uint16(1024+i%50000))}
			act, _ := r.run(b, syn.frame(b))
			if act == xdpTX {
				ok++
				continue
			}
			refused++
			if firstDrop == 0 {
				firstDrop = ok
			}
			if refused*100 >= ok+refused {
				break
			}
		}
		b.ReportMetric(float64(firstDrop), "flows-to-first-refusal")
		b.ReportMetric(float64(ok), "flows-at-1%-refused")
	}
}
