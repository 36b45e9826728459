package xdp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/maglev"
)

// tableAt reads the table in slot through the map, entry by entry.
func tableAt(t testing.TB, d *Dataplane, slot uint32) []uint32 {
	t.Helper()
	var ring *ebpf.Map
	if err := d.objs.MaglevTables.Lookup(slot, &ring); err != nil {
		t.Fatalf("table slot %d: %v", slot, err)
	}
	defer ring.Close()
	out := make([]uint32, d.tableSize)
	for i := range out {
		if err := ring.Lookup(uint32(i), &out[i]); err != nil {
			t.Fatalf("table slot %d: entry %d: %v", slot, i, err)
		}
	}
	return out
}

// rebuilt is the table of s built from scratch with d's backend ids.
func rebuilt(t testing.TB, d *Dataplane, s Service) []uint32 {
	t.Helper()
	ids := make([]uint32, len(s.Backends))
	for i, b := range s.Backends {
		r := d.state.backends[backendKey{b.Addr.Unmap(), b.Port}]
		if r == nil {
			t.Fatalf("backend %v:%d of %v:%d has no id", b.Addr, b.Port, s.VIP, s.Port)
		}
		ids[i] = r.id
	}
	e, err := tableEntries(s.Backends, ids, d.tableSize)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func keyOf(s Service) serviceKey {
	k := serviceKey{s.VIP.Unmap(), s.Port, protoTCP}
	if s.Proto == ProtoUDP {
		k.proto = protoUDP
	}
	return k
}

func differing(a, b []uint32) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// checkTables fails unless the live table of every service of cfg, as
// the services map names it, is what a full rebuild gives.
func checkTables(t *testing.T, d *Dataplane, cfg Config, step string) {
	t.Helper()
	for _, s := range cfg.Services {
		k := keyOf(s)
		var v lbSvcValue
		if err := d.objs.Services.Lookup(svcKey(k), &v); err != nil {
			t.Fatalf("%s: service %s: %v", step, k, err)
		}
		if n := differing(tableAt(t, d, v.Table), rebuilt(t, d, s)); n != 0 {
			t.Fatalf("%s: service %s: %d entries of the live table (slot %d) differ from a full rebuild", step, k, n, v.Table)
		}
	}
}

// TestTableWrites checks that a change writes only the entries that
// differ from the standby table's, and that the result is the table a
// full rebuild gives.
func TestTableWrites(t *testing.T) {
	const m = 4099
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: m})
	ctx := context.Background()
	apply := func(cfg Config) uint64 {
		t.Helper()
		before := d.state.entriesWritten
		if err := d.Apply(ctx, cfg); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return d.state.entriesWritten - before
	}
	c0 := rollingConfig(0, 20)
	k := keyOf(c0.Services[0])
	// A new service's two tables are written whole (fresh maps hold
	// backend id 0 in every entry, so few entries already match).
	if n := apply(c0); n < m {
		t.Errorf("new service: %d entries written, want at least %d (both tables)", n, m)
	}
	if n := apply(c0); n != 0 {
		t.Errorf("unchanged config: %d entries written, want 0", n)
	}
	prev := map[int][]uint32{0: rebuilt(t, d, c0.Services[0])}
	for change := 1; change <= 6; change++ {
		cfg := rollingConfig(change, 20)
		n := apply(cfg)
		want := rebuilt(t, d, cfg.Services[0])
		// The standby held the table of two changes before (the first
		// change: the same as the live one).
		standby := prev[max(change-2, 0)]
		if diff := differing(standby, want); n != uint64(diff) {
			t.Errorf("change %d: %d entries written, want %d (those that differ from the standby's)", change, n, diff)
		}
		if moved := differing(prev[change-1], want); moved == 0 || moved > m/10 {
			t.Errorf("change %d: %d entries changed of %d; want some and at most a tenth", change, moved, m)
		}
		checkTables(t, d, cfg, fmt.Sprintf("change %d", change))
		if got := tableAt(t, d, d.state.services[k].standby); differing(got, prev[change-1]) != 0 {
			t.Errorf("change %d: the standby table is not the table before the change", change)
		}
		prev[change] = want
	}
}

// TestTablesRandomChanges applies random changes (members added, removed
// and reweighted, services added and removed, so that spare tables are
// reused) and checks every live table against a full rebuild each time.
func TestTablesRandomChanges(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: testTableSize})
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	services := map[uint16][]Backend{}
	for step := range 150 {
		port := uint16(1 + rng.IntN(12))
		bs, ok := services[port]
		switch op := rng.IntN(10); {
		case !ok || op == 0:
			// (Re)create the service with a few of 40 backends.
			bs = nil
			for i := range 40 {
				if rng.IntN(4) == 0 {
					bs = append(bs, Backend{Addr: addN(ip("10.3.0.0"), uint32(i+1)), Port: 8080, Weight: uint32(1 + rng.IntN(3))})
				}
			}
			services[port] = bs
		case op == 1:
			delete(services, port)
		case op < 5 && len(bs) > 0:
			i := rng.IntN(len(bs))
			services[port] = append(bs[:i:i], bs[i+1:]...)
		case op < 8:
			b := Backend{Addr: addN(ip("10.3.0.0"), uint32(41+rng.IntN(40))), Port: 8080, Weight: 1}
			if !containsBackend(bs, b) {
				services[port] = append(bs, b)
			}
		case len(bs) > 0:
			nb := append([]Backend(nil), bs...)
			nb[rng.IntN(len(nb))].Weight = uint32(rng.IntN(4))
			services[port] = nb
		}
		cfg := Config{LocalAddrs: []netip.Addr{local4}, Gateway: gwMAC}
		for p, bs := range services {
			cfg.Services = append(cfg.Services, Service{VIP: ip("192.0.2.1"), Port: p, Proto: "tcp", Mode: ModeFullNAT, Backends: bs})
		}
		if err := d.Apply(ctx, cfg); err != nil {
			t.Fatalf("step %d: Apply: %v", step, err)
		}
		checkTables(t, d, cfg, fmt.Sprintf("step %d", step))
	}
	if used := d.state.tables.slots.next; used > 2*12 {
		t.Errorf("%d table slots used for at most 12 services, want at most 24 (spares reused)", used)
	}
}

func containsBackend(bs []Backend, b Backend) bool {
	for _, x := range bs {
		if x.Addr == b.Addr && x.Port == b.Port {
			return true
		}
	}
	return false
}

// TestTableChangeUnderTraffic runs new flows through the program
// (BPF_PROG_TEST_RUN) while a service's members are replaced one at a
// time, and checks that every flow went to the backend of a table that
// was live while it ran: the last one applied when it started, or one
// applied before it ended. A removed backend is in none of them, and a
// table seen half-written would give backends of neither.
func TestTableChangeUnderTraffic(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 1 << 16, TableSize: testTableSize})
	r := runner{d.objs.XdpLb}
	vip := netip.AddrPortFrom(ip("192.0.2.1"), 80)
	const members, changes = 10, 200
	cfgs := make([]Config, changes+1)
	tables := make([]maglev.Table, changes+1)
	for c := range cfgs {
		// Change c replaces member c-1 by member members+c-1.
		cfg := Config{LocalAddrs: []netip.Addr{local4}, Gateway: gwMAC}
		s := Service{VIP: vip.Addr(), Port: vip.Port(), Proto: "tcp", Mode: ModeFullNAT}
		var mbs []maglev.Backend
		for i := c; i < c+members; i++ {
			b := Backend{Addr: addN(ip("10.4.0.0"), uint32(i+1)), Port: 8080, Weight: 1}
			s.Backends = append(s.Backends, b)
			mbs = append(mbs, maglev.Backend{ID: b.ID(), Weight: 1})
		}
		cfg.Services = []Service{s}
		cfgs[c] = cfg
		tbl, err := maglev.Build(mbs, testTableSize)
		if err != nil {
			t.Fatal(err)
		}
		tables[c] = tbl
	}
	ctx := context.Background()
	if err := d.Apply(ctx, cfgs[0]); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	var applied atomic.Int64 // configs applied after the first
	stop := make(chan struct{})
	type result struct {
		src       netip.AddrPort
		from, to  int64 // the configs that could be live
		action    uint32
		backendTo netip.AddrPort
		err       error
	}
	var results []result
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src := netip.AddrPortFrom(addN(ip("198.51.100.0"), 1+i/50000), uint16(1024+i%50000))
			p := packet{srcMAC: gwMAC, dstMAC: nodeMAC, proto: "tcp", syn: true, src: src, dst: vip}
			frame, err := p.serialize()
			res := result{src: src, from: applied.Load(), err: err}
			if err == nil {
				var out []byte
				res.action, out, res.err = r.try(frame)
				res.backendTo, _ = fullNATDestination(out)
			}
			// A config whose Apply had begun may be live too.
			res.to = min(applied.Load()+1, changes)
			results = append(results, res)
		}
	})
	for c := 1; c <= changes; c++ {
		if err := d.Apply(ctx, cfgs[c]); err != nil {
			t.Fatalf("change %d: Apply: %v", c, err)
		}
		applied.Store(int64(c))
	}
	close(stop)
	wg.Wait()
	if len(results) < changes {
		t.Fatalf("%d flows ran during %d changes; want at least one per change", len(results), changes)
	}
	bad := 0
	for _, res := range results {
		if res.err != nil {
			t.Fatalf("flow from %v: %v", res.src, res.err)
		}
		h := dataplane.FlowHash(res.src, vip, protoTCP)
		ok := false
		var want []string
		for c := res.from; c <= res.to; c++ {
			b, _ := tables[c].Lookup(uint64(h))
			want = append(want, b.ID)
			ok = ok || (res.action == xdpTX && b.ID == res.backendTo.String())
		}
		if !ok {
			if bad++; bad <= 10 {
				t.Errorf("flow from %v (configs %d..%d live): %s to %v, want XDP_TX to one of %v",
					res.src, res.from, res.to, actionNames[res.action], res.backendTo, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d flows went elsewhere than a live table said", bad, len(results))
	}
	t.Logf("%d flows during %d changes", len(results), changes)
}

// fullNATDestination is the destination of a forwarded IPv4 TCP frame.
func fullNATDestination(frame []byte) (netip.AddrPort, error) {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not IPv4")
	}
	tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("not TCP")
	}
	a, _ := netip.AddrFromSlice(ip4.DstIP)
	return netip.AddrPortFrom(a.Unmap(), uint16(tcp.DstPort)), nil
}
