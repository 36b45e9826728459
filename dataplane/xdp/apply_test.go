package xdp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// TestApplyGivenAgainMatchesFresh: services given again at their position
// skip validation (validate's same). Over 400 Applies of random changes
// (services changed, added, removed, moved, duplicated, backends changed
// in place by the caller after an Apply, local addresses dropped),
// Apply succeeds exactly when a full validation does, and what it holds
// applied is what a full validation of the Config gives.
func TestApplyGivenAgainMatchesFresh(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: 251, MaxServices: 64, MaxBackends: 256})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	newService := func() Service {
		s := Service{VIP: addN(ip("192.0.2.0"), uint32(rng.IntN(4))), Port: uint16(80 + rng.IntN(6)), Proto: "tcp", Mode: ModeFullNAT}
		if rng.IntN(4) == 0 {
			s.Proto, s.Mode, s.Fragments = "udp", ModeDSR, rng.IntN(2) == 0
		}
		for range 1 + rng.IntN(3) {
			s.Backends = append(s.Backends, Backend{Addr: addN(ip("10.7.0.0"), uint32(1+rng.IntN(12))), Port: 8080, Weight: uint32(rng.IntN(3))})
		}
		return s
	}
	cfg := Config{LocalAddrs: []netip.Addr{local4}, Gateway: gwMAC}
	for range 8 {
		cfg.Services = append(cfg.Services, newService())
	}
	applied, refused, givenAgain := 0, 0, 0
	for step := range 400 {
		next := cfg
		next.Services = slices.Clone(cfg.Services)
		for range 1 + rng.IntN(2) {
			n := len(next.Services)
			switch op := rng.IntN(8); {
			case op == 0 && n < 30:
				i := rng.IntN(n + 1)
				next.Services = slices.Insert(next.Services, i, newService())
			case op == 1 && n > 1:
				i := rng.IntN(n)
				next.Services = slices.Delete(next.Services, i, i+1)
			case op == 2 && n > 1:
				i, j := rng.IntN(n), rng.IntN(n)
				next.Services[i], next.Services[j] = next.Services[j], next.Services[i]
			case op == 3 && n > 0:
				i := rng.IntN(n)
				next.Services[i].Backends = newService().Backends
			case op == 4 && n > 0:
				// A copy equal to the service: given again.
				i := rng.IntN(n)
				next.Services[i].Backends = slices.Clone(next.Services[i].Backends)
			case op == 5 && n > 0:
				// The caller changes a backend in place.
				i := rng.IntN(n)
				next.Services[i].Backends[0].Weight = uint32(rng.IntN(3))
			case op == 6 && n > 0 && rng.IntN(3) == 0:
				next.Services = append(next.Services, next.Services[rng.IntN(n)]) // listed twice
			case op == 7:
				if len(next.LocalAddrs) == 1 && rng.IntN(4) == 0 {
					next.LocalAddrs = nil
				} else {
					next.LocalAddrs = []netip.Addr{local4}
				}
			}
		}
		fresh, ferr := validate(next, d.limits, nil)
		if pre, err := validate(next, d.limits, &d.state); err == nil {
			for _, same := range pre.same {
				if same {
					givenAgain++
				}
			}
		}
		err := d.Apply(ctx, next)
		if (err == nil) != (ferr == nil) {
			t.Fatalf("step %d: Apply: %v; a full validation: %v", step, err, ferr)
		}
		if err != nil {
			refused++
			continue
		}
		applied++
		if len(d.state.services) != len(fresh.services) {
			t.Fatalf("step %d: %d services applied, want %d", step, len(d.state.services), len(fresh.services))
		}
		for k, s := range fresh.services {
			st := d.state.services[k]
			if st == nil || !sameService(st.svc, s) {
				t.Fatalf("step %d: service %s applied as %+v, want %+v", step, k, st, s)
			}
		}
		cfg = next
	}
	if applied < 100 || refused < 20 || givenAgain < 1000 {
		t.Errorf("%d Applies succeeded and %d were refused, %d services were given again: the steps test too little", applied, refused, givenAgain)
	}
	t.Logf("%d Applies succeeded, %d refused, %d services given again", applied, refused, givenAgain)
}
