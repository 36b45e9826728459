package xdp

import (
	"context"
	"maps"
	"net/netip"
	"reflect"
	"testing"

	"github.com/weftlb/weft/dataplane"
)

func TestStats(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: testTableSize})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: client4, dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true}
	ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
	stray := ack.with(func(q *packet) { q.src = netip.MustParseAddrPort("198.51.100.99:9") })
	ttl := syn.with(func(q *packet) { q.ttl = 1 })
	frag := syn.with(func(q *packet) { q.mf = true })
	noNeigh := syn.with(func(q *packet) { q.dst = netip.MustParseAddrPort("192.0.2.5:80") })
	var bytes uint64
	for _, p := range []packet{syn, ack, ack, stray, ttl, frag, noNeigh} {
		f := p.frame(t)
		if p.ttl == 0 && !p.mf && p.src == client4 && p.dst == syn.dst {
			bytes += uint64(len(f))
		}
		r.run(t, f)
	}
	st, err := d.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	var svc *ServiceStats
	for i := range st.Services {
		if st.Services[i].VIP == ip("192.0.2.1") && st.Services[i].Port == 80 && st.Services[i].Proto == "tcp" {
			svc = &st.Services[i]
		}
	}
	if svc == nil {
		t.Fatalf("no stats for 192.0.2.1:80/tcp in %+v", st.Services)
	}
	want := Counters{Packets: 3, Bytes: bytes, NewFlows: 1, Drops: Drops{NoConn: 1, TTL: 1}}
	if svc.Counters != want {
		t.Errorf("service counters = %+v, want %+v", svc.Counters, want)
	}
	var backendPackets, backendFlows uint64
	for _, b := range st.Backends {
		backendPackets += b.Packets
		backendFlows += b.NewFlows
	}
	if backendPackets != 3 || backendFlows != 1 {
		t.Errorf("backend packets, new flows = %d, %d; want 3, 1", backendPackets, backendFlows)
	}
	for _, b := range st.Backends {
		if b.Addr == ip("10.1.0.99") && b.Drops.NoNeighbor != 1 {
			t.Errorf("backend %v: no-neighbor drops = %d, want 1", b.Addr, b.Drops.NoNeighbor)
		}
	}
	if st.Global.Drops.Fragment != 1 {
		t.Errorf("global fragment drops = %d, want 1", st.Global.Drops.Fragment)
	}
	if len(st.Services) != len(testConfig().Services) {
		t.Errorf("%d services in stats, want %d", len(st.Services), len(testConfig().Services))
	}
}

// TestDropsTotal: Total adds every reason, including any added later.
func TestDropsTotal(t *testing.T) {
	var d Drops
	v := reflect.ValueOf(&d).Elem()
	var want uint64
	for i := range v.NumField() {
		v.Field(i).SetUint(1 << i)
		want += 1 << i
	}
	if got := d.Total(); got != want {
		t.Errorf("Total = %b, want %b: a reason is left out", got, want)
	}
}

func TestFlowStats(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, NewConnTrackSize: 256, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r := runner{d.objs.XdpLb}
	const n = 20
	var fullnat []packet
	for _, svc := range []Service{cfg.Services[0], cfg.Services[2]} { // FullNAT and DSR tcp :80
		for i := range n {
			p := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.AddrPortFrom(client4.Addr(), uint16(30000+i)),
				dst: netip.AddrPortFrom(svc.VIP, svc.Port), proto: "tcp", syn: true}
			r.run(t, p.frame(t))
			if svc.Mode == "fullnat" {
				fullnat = append(fullnat, p)
			}
		}
	}
	// The FullNAT flows' second packets move them to conntrack and
	// nat_reverse; the DSR flows stay new, in ct_new.
	for _, p := range fullnat {
		r.run(t, p.with(func(q *packet) { q.syn, q.ack = false, true }).frame(t))
	}
	live := 0
	fs, err := d.FlowStats(func(dataplane.Flow) { live++ })
	if err != nil {
		t.Fatalf("FlowStats: %v", err)
	}
	entries := map[string]int{}
	for _, tb := range fs.Tables {
		entries[tb.Name] = tb.Entries
		if want := map[bool]int{true: 1024, false: 256}[tb.Name == "conntrack" || tb.Name == "nat_reverse"]; tb.Capacity != want {
			t.Errorf("%s holds %d entries, want %d", tb.Name, tb.Capacity, want)
		}
	}
	if want := map[string]int{"conntrack": n, "ct_new": n, "nat_reverse": n, "nat_new": 0}; !maps.Equal(entries, want) {
		t.Errorf("table entries %v, want %v", entries, want)
	}
	// Each FullNAT flow is given once, from conntrack; each DSR one is new,
	// in ct_new only.
	if live != n {
		t.Errorf("FlowStats gave %d live flows, want %d", live, n)
	}
	if len(fs.NATPorts) != 1 || fs.NATPorts[local4] != n {
		t.Errorf("FullNAT ports in use: got %v, want %d on %v", fs.NATPorts, n, local4)
	}
}
