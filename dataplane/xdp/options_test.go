package xdp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
)

// TestMapSizeDefaults: the Go defaults are the program's compiled sizes.
func TestMapSizeDefaults(t *testing.T) {
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m    string
		want uint32
	}{
		{lbMapServices, 2 * DefaultMaxServices}, {lbMapSvcById, DefaultMaxServices}, {lbMapVips, DefaultMaxServices},
		{lbMapNewFlowRate, DefaultMaxServices}, {lbMapSvcStats, DefaultMaxServices},
		{lbMapMaglevTables, 2 * DefaultMaxServices},
		{lbMapBackends, DefaultMaxBackends}, {lbMapNeighbors, DefaultMaxBackends}, {lbMapBackendStats, DefaultMaxBackends},
	} {
		if got := spec.Maps[c.m].MaxEntries; got != c.want {
			t.Errorf("map %s: compiled with %d entries, Go's default is %d", c.m, got, c.want)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{
		{TableSize: 1000},
		{ConnTrackSize: MaxConnTrackSize + 1},
		{MaxServices: MaxServices + 1},
		{MaxBackends: MaxBackends + 1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): no error, want one", o)
		}
	}
	d := newTestDataplane(t, Options{ConnTrackSize: 1024, TableSize: testTableSize, MaxServices: 3, MaxBackends: 5})
	if want := (limits{services: 3, backends: 5, tables: 6, localAddrs: d.limits.localAddrs}); d.limits != want {
		t.Fatalf("limits %+v, want %+v", d.limits, want)
	}
	cfg := func(services, backends int) Config {
		c := Config{LocalAddrs: []netip.Addr{local4}, Gateway: gwMAC}
		for i := range services {
			s := Service{VIP: ip("192.0.2.1"), Port: uint16(80 + i), Proto: "tcp", Mode: ModeFullNAT}
			for j := range backends {
				s.Backends = append(s.Backends, be(fmt.Sprintf("10.1.0.%d", j+1), 8080, 1))
			}
			c.Services = append(c.Services, s)
		}
		return c
	}
	ctx := context.Background()
	if err := d.Apply(ctx, cfg(3, 5)); err != nil {
		t.Fatalf("Apply of 3 services, 5 backends: %v", err)
	}
	for _, c := range [][2]int{{4, 1}, {1, 6}} {
		if err := d.Apply(ctx, cfg(c[0], c[1])); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Apply of %d services, %d backends: %v, want ErrInvalidConfig", c[0], c[1], err)
		}
	}
	// The distinct backends count those applied until the new ones take
	// over: a service moved to five other backends makes ten.
	moved := cfg(1, 5)
	moved.Services[0].Backends = nil
	for j := range 5 {
		moved.Services[0].Backends = append(moved.Services[0].Backends, be(fmt.Sprintf("10.1.1.%d", j+1), 8080, 1))
	}
	if err := d.Apply(ctx, moved); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Apply of five other backends: %v, want ErrInvalidConfig", err)
	}
	for _, c := range [][2]int{{1, 3}, {3, 5}} {
		if err := d.Apply(ctx, cfg(c[0], c[1])); err != nil {
			t.Errorf("Apply of %d services, %d backends: %v", c[0], c[1], err)
		}
	}
}

// TestSameService: a change of any field of a Service makes it another.
func TestSameService(t *testing.T) {
	base := Service{VIP: ip("192.0.2.1"), Port: 80, Proto: "tcp", Mode: ModeFullNAT, Scheduler: SchedulerMaglev,
		NewFlowRate: 10, Backends: []Backend{be("10.1.0.11", 8080, 1)}}
	if !sameService(base, withService(base, func(*Service) {})) {
		t.Fatal("a copy is not the same service")
	}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		other := withService(base, func(*Service) {})
		f := reflect.ValueOf(&other).Elem().Field(i)
		switch typ.Field(i).Name {
		case "VIP":
			other.VIP = ip("192.0.2.2")
		case "Backends":
			other.Backends[0].Weight = 2
		default:
			switch f.Kind() {
			case reflect.String:
				f.SetString(f.String() + "x")
			case reflect.Uint16, reflect.Uint32:
				f.SetUint(f.Uint() + 1)
			case reflect.Bool:
				f.SetBool(!f.Bool())
			default:
				t.Fatalf("field %s of kind %s: teach the test how to change it", typ.Field(i).Name, f.Kind())
			}
		}
		if sameService(base, other) {
			t.Errorf("a service whose %s changed is the same", typ.Field(i).Name)
		}
	}
}
