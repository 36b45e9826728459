package xdp

import (
	"context"
	"net/netip"
	"slices"
	"testing"
)

// TestServiceByID checks the hit path's service lookup: a conntrack entry
// names its service by id (svc_by_id), and a packet whose entry names an
// id another service has since taken is not forwarded with that
// service's configuration.
func TestServiceByID(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	vip := netip.MustParseAddrPort("192.0.2.2:80") // DSR
	syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.50:4000"), dst: vip, proto: "tcp", syn: true}
	ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
	r.run(t, syn.frame(t))
	if act, _ := r.run(t, ack.frame(t)); act != xdpTX {
		t.Fatalf("ack: action %s, want TX", actionNames[act])
	}
	id := d.state.services[serviceKey{vip.Addr(), vip.Port(), protoTCP}].value.Id
	var ct lbCtValue
	if err := d.objs.Conntrack.Lookup(flowKey(syn.src, vip, protoTCP), &ct); err != nil {
		t.Fatal(err)
	}
	if uint32(ct.SvcId) != id {
		t.Fatalf("conntrack entry names service %d, want %d", ct.SvcId, id)
	}

	// The service goes; a DSR service of another VIP takes its id. The
	// VIP keeps its UDP service, so its packets are still looked up.
	other := Service{VIP: ip("192.0.2.9"), Port: 80, Proto: "tcp", Mode: "dsr", Backends: cfg.Services[2].Backends}
	cfg.Services = slices.DeleteFunc(slices.Clone(cfg.Services), func(s Service) bool {
		return s.VIP == vip.Addr() && s.Port == vip.Port() && s.Proto == "tcp"
	})
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// Fresh ids run out first, so that the next one is the freed id.
	d.state.svcIDs.next = d.state.svcIDs.max
	cfg.Services = append(cfg.Services, other)
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := d.state.services[serviceKey{other.VIP, 80, protoTCP}].value.Id; got != id {
		t.Fatalf("the new service has id %d, want the freed %d (the test needs it)", got, id)
	}
	if act, _ := r.run(t, ack.frame(t)); act != xdpPass {
		t.Errorf("ack of a removed service's flow: action %s, want PASS", actionNames[act])
	}
	// The new service's own flows are forwarded.
	syn9 := syn.with(func(q *packet) { q.dst = netip.AddrPortFrom(other.VIP, 80) })
	ack9 := syn9.with(func(q *packet) { q.syn, q.ack = false, true })
	r.run(t, syn9.frame(t))
	if act, _ := r.run(t, ack9.frame(t)); act != xdpTX {
		t.Errorf("ack to the new service: action %s, want TX", actionNames[act])
	}
}

// TestVIPFilter checks vip_filter: a bit is set while a VIP with that bit
// has a service, including when two VIPs share the bit, and cleared when
// none has.
func TestVIPFilter(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	// Two VIPs on one bit.
	a := ip("192.0.2.10")
	b := a
	for n := uint32(1); ; n++ {
		if b = addN(a, n); vipBit(b) == vipBit(a) {
			break
		}
	}
	svc := func(vip netip.Addr) Service {
		return Service{VIP: vip, Port: 80, Proto: "tcp", Mode: "dsr", Backends: cfg.Services[2].Backends}
	}
	bitSet := func(addr netip.Addr) bool {
		t.Helper()
		var w uint64
		bit := vipBit(addr)
		if err := d.objs.VipFilter.Lookup(bit/64, &w); err != nil {
			t.Fatal(err)
		}
		return w>>(bit%64)&1 == 1
	}
	forwarded := func(vip netip.Addr) bool {
		t.Helper()
		syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort("198.51.100.51:4000"),
			dst: netip.AddrPortFrom(vip, 80), proto: "tcp", syn: true}
		act, _ := runner{d.objs.XdpLb}.run(t, syn.frame(t))
		return act == xdpTX
	}

	cfg.Services = append(cfg.Services, svc(a), svc(b))
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Services {
		if !bitSet(s.VIP) {
			t.Errorf("VIP %v: filter bit %d clear", s.VIP, vipBit(s.VIP))
		}
	}
	cfg.Services = cfg.Services[:len(cfg.Services)-1] // b goes
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if !bitSet(a) || !forwarded(a) {
		t.Errorf("after %v went: %v's bit set %v, forwarded %v; want both", b, a, bitSet(a), forwarded(a))
	}
	if err := d.Apply(context.Background(), Config{Neighbors: cfg.Neighbors, Gateway: cfg.Gateway}); err != nil {
		t.Fatal(err)
	}
	for _, s := range append(cfg.Services, svc(b)) {
		if bitSet(s.VIP) {
			t.Errorf("no services: VIP %v's filter bit %d still set", s.VIP, vipBit(s.VIP))
		}
	}
}
