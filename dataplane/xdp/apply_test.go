package xdp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestValidate(t *testing.T) {
	lim := limits{services: 4, backends: 8, tables: 8, localAddrs: 2}
	ok := Service{VIP: ip("192.0.2.1"), Port: 80, Proto: "tcp", Mode: "fullnat", Backends: []Backend{be("10.1.0.11", 80, 1)}}
	locals := []netip.Addr{local4}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"valid", Config{Services: []Service{ok}, LocalAddrs: locals}, true},
		{"valid dsr without local address", Config{Services: []Service{withService(ok, func(s *Service) { s.Mode = "dsr" })}}, true},
		{"fullnat without local address", Config{Services: []Service{ok}}, false},
		{"fullnat v6 with only a v4 local address", Config{Services: []Service{{VIP: ip("2001:db8::1"), Port: 80, Proto: "tcp", Mode: "fullnat"}}, LocalAddrs: locals}, false},
		{"bad protocol", Config{Services: []Service{withService(ok, func(s *Service) { s.Proto = "sctp" })}, LocalAddrs: locals}, false},
		{"bad mode", Config{Services: []Service{withService(ok, func(s *Service) { s.Mode = "nat" })}, LocalAddrs: locals}, false},
		{"bad scheduler", Config{Services: []Service{withService(ok, func(s *Service) { s.Scheduler = "rr" })}, LocalAddrs: locals}, false},
		{"port 0", Config{Services: []Service{withService(ok, func(s *Service) { s.Port = 0 })}, LocalAddrs: locals}, false},
		{"invalid vip", Config{Services: []Service{withService(ok, func(s *Service) { s.VIP = netip.Addr{} })}, LocalAddrs: locals}, false},
		{"duplicate service", Config{Services: []Service{ok, ok}, LocalAddrs: locals}, false},
		{"duplicate service through a mapped vip", Config{Services: []Service{ok, withService(ok, func(s *Service) { s.VIP = ip("::ffff:192.0.2.1") })}, LocalAddrs: locals}, false},
		{"backend of the other family", Config{Services: []Service{withService(ok, func(s *Service) { s.Backends = []Backend{be("fd00::1", 80, 1)} })}, LocalAddrs: locals}, false},
		{"fullnat backend port 0", Config{Services: []Service{withService(ok, func(s *Service) { s.Backends = []Backend{be("10.1.0.11", 0, 1)} })}, LocalAddrs: locals}, false},
		{"duplicate backend", Config{Services: []Service{withService(ok, func(s *Service) { s.Backends = append(s.Backends, s.Backends[0]) })}, LocalAddrs: locals}, false},
		{"too many local addresses", Config{LocalAddrs: []netip.Addr{ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")}}, false},
		{"short neighbor mac", Config{Neighbors: map[netip.Addr]net.HardwareAddr{ip("10.0.0.1"): {1, 2}}}, false},
		{"short gateway mac", Config{Gateway: []byte{1}}, false},
		{"too many services", Config{Services: manyServices(5), LocalAddrs: locals}, false},
		{"too many backends", Config{Services: []Service{withService(ok, func(s *Service) {
			s.Backends = nil
			for i := range 9 {
				s.Backends = append(s.Backends, be(fmt.Sprintf("10.1.0.%d", i+1), 80, 1))
			}
		})}, LocalAddrs: locals}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validate(tc.cfg, lim, nil)
			if tc.ok && err != nil {
				t.Fatalf("validate: %v, want no error", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("validate: %v, want an error wrapping ErrInvalidConfig", err)
			}
		})
	}
}

func withService(s Service, f func(*Service)) Service {
	s.Backends = append([]Backend(nil), s.Backends...)
	f(&s)
	return s
}

func manyServices(n int) []Service {
	var out []Service
	for i := range n {
		out = append(out, Service{VIP: ip("192.0.2.1"), Port: uint16(1000 + i), Proto: "tcp", Mode: "dsr"})
	}
	return out
}

func TestIDPool(t *testing.T) {
	p := idPool{max: 3}
	var got []uint32
	for range 3 {
		id, ok := p.get()
		if !ok {
			t.Fatal("get: pool empty too early")
		}
		got = append(got, id)
	}
	if _, ok := p.get(); ok {
		t.Fatal("get beyond max succeeded")
	}
	p.put(1)
	p.put(0)
	for _, want := range []uint32{1, 0} {
		if id, _ := p.get(); id != want {
			t.Fatalf("get = %d, want %d (oldest freed first)", id, want)
		}
	}
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("fresh ids = %v, want [0 1 2]", got)
	}
}

// TestApplyDiff checks that Apply touches only what changed: a service
// whose backends did not change keeps its table slots, a changed one
// switches to its standby table, removed services free their ids and
// leave their tables as spares.
func TestApplyDiff(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: testTableSize})
	ctx := context.Background()
	cfg := testConfig()
	if err := d.Apply(ctx, cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	before := map[serviceKey]serviceState{}
	for k, s := range d.state.services {
		before[k] = *s
	}
	if err := d.Apply(ctx, cfg); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for k, s := range d.state.services {
		if s.value != before[k].value || s.standby != before[k].standby {
			t.Errorf("service %s: value %+v, standby %d after an identical Apply, want %+v, %d",
				k, s.value, s.standby, before[k].value, before[k].standby)
		}
	}

	changed := testConfig()
	changed.Services[0].Backends = append(changed.Services[0].Backends, be("10.1.0.13", 8080, 2))
	changed.Services = changed.Services[:len(changed.Services)-1] // remove 192.0.2.5:80
	if err := d.Apply(ctx, changed); err != nil {
		t.Fatalf("Apply changed: %v", err)
	}
	k0 := serviceKey{ip("192.0.2.1"), 80, protoTCP}
	if got := d.state.services[k0]; got.value.Table != before[k0].standby || got.standby != before[k0].value.Table || got.value.Id != before[k0].value.Id {
		t.Errorf("changed service: value %+v, standby %d; want the same id and the tables %d and %d swapped",
			got.value, got.standby, before[k0].value.Table, before[k0].standby)
	}
	if !d.state.tables.busy[before[k0].value.Table] {
		t.Errorf("the table switched away from (slot %d) is not waiting for a grace period", before[k0].value.Table)
	}
	var v lbSvcValue
	if err := d.objs.Services.Lookup(svcKey(k0), &v); err != nil || v != d.state.services[k0].value {
		t.Errorf("services map holds %+v (err %v), want %+v", v, err, d.state.services[k0].value)
	}
	removed := serviceKey{ip("192.0.2.5"), 80, protoTCP}
	if err := d.objs.Services.Lookup(svcKey(removed), &v); err == nil {
		t.Errorf("removed service still in the services map")
	}
	if _, ok := d.state.backends[backendKey{ip("10.1.0.99"), 0}]; ok {
		t.Errorf("backend of the removed service still referenced")
	}
	var n uint32
	if err := d.objs.Vips.Lookup(lbAddr(ip("192.0.2.5")), &n); err == nil {
		t.Errorf("vip of the removed service still in vips (count %d)", n)
	}
	for _, slot := range []uint32{before[removed].value.Table, before[removed].standby} {
		if !slices.Contains(d.state.tables.spare, slot) {
			t.Errorf("table slot %d of the removed service is not a spare (spares %v)", slot, d.state.tables.spare)
		}
	}

	if err := d.Apply(ctx, Config{}); err != nil {
		t.Fatalf("Apply empty: %v", err)
	}
	if len(d.state.services) != 0 || len(d.state.backends) != 0 || len(d.state.vips) != 0 || len(d.state.neighbors) != 0 {
		t.Errorf("state after an empty Apply: %d services, %d backends, %d vips, %d neighbors; want none",
			len(d.state.services), len(d.state.backends), len(d.state.vips), len(d.state.neighbors))
	}
	if err := d.Apply(ctx, Config{Services: []Service{{VIP: ip("192.0.2.1"), Port: 80, Proto: "tcp", Mode: "fullnat"}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Apply invalid: %v, want ErrInvalidConfig", err)
	}
}
