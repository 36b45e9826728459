// Package xdp loads Weft's XDP load balancer (the C in ../bpf), attaches it
// to interfaces and programs its maps from a Config: services, their
// Maglev tables, backends, FullNAT local addresses and next-hop MACs.
package xdp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/dataplane/maglev"
)

// Defaults of Options: the connection-table entries (the forward and the
// FullNAT reverse tables each), and the services and backends the maps
// hold (the program's MAX_SERVICES and MAX_BACKENDS).
const (
	DefaultConnTrackSize = 1 << 20
	DefaultMaxServices   = 1024
	DefaultMaxBackends   = 4096
)

// Bounds of Options' map sizes, which keep a mistaken setting from asking
// the kernel for terabytes.
const (
	MaxConnTrackSize = 1 << 28
	MaxServices      = 1 << 20
	MaxBackends      = 1 << 22
)

// Options configure New.
type Options struct {
	// ConnTrackSize is the number of entries of the connection table and
	// of the FullNAT reverse table; 0 means DefaultConnTrackSize.
	ConnTrackSize uint32
	// NewConnTrackSize is the number of entries of the tables of new
	// flows (one packet seen: a SYN, a first UDP datagram), kept apart so
	// that a flood of new flows cannot evict established ones; 0 means
	// a quarter of ConnTrackSize.
	NewConnTrackSize uint32
	// TableSize is the Maglev table size M, a prime; 0 means
	// maglev.DefaultSize. Every node must use the same M, or nodes pick
	// different backends for the same flow.
	TableSize uint32
	// SampleEvery samples one new flow in SampleEvery, on average, for
	// ReadSamples; 0 samples none.
	SampleEvery uint32
	// MaxServices and MaxBackends size the service and backend maps (each
	// service has two Maglev table slots); 0 means DefaultMaxServices and
	// DefaultMaxBackends.
	MaxServices, MaxBackends uint32
	// Logger receives warnings (generic-mode attach); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Dataplane is the loaded XDP program and its maps.
type Dataplane struct {
	objs      lbObjects
	ringSpec  *ebpf.MapSpec
	tableSize uint32
	limits    limits
	log       *slog.Logger

	mu    sync.Mutex
	links []link.Link
	state state
}

// limits are the map sizes the program was built with (../bpf/consts.h).
type limits struct {
	services, backends, tables, localAddrs uint32
}

// New loads the XDP program and its maps. It needs CAP_BPF (root) and a
// kernel with BPF and BTF.
func New(opts Options) (*Dataplane, error) {
	if opts.ConnTrackSize == 0 {
		opts.ConnTrackSize = DefaultConnTrackSize
	}
	if opts.NewConnTrackSize == 0 {
		opts.NewConnTrackSize = max(opts.ConnTrackSize/4, 1)
	}
	if opts.TableSize == 0 {
		opts.TableSize = maglev.DefaultSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxServices == 0 {
		opts.MaxServices = DefaultMaxServices
	}
	if opts.MaxBackends == 0 {
		opts.MaxBackends = DefaultMaxBackends
	}
	if err := validateOptions(opts); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", err)
	}
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("load xdp object: %w", err)
	}
	spec.Maps[lbMapConntrack].MaxEntries = opts.ConnTrackSize
	spec.Maps[lbMapNatReverse].MaxEntries = opts.ConnTrackSize
	spec.Maps[lbMapCtNew].MaxEntries = opts.NewConnTrackSize
	spec.Maps[lbMapNatNew].MaxEntries = opts.NewConnTrackSize
	for _, m := range []string{lbMapSvcById, lbMapVips, lbMapNewFlowRate, lbMapSvcStats} {
		spec.Maps[m].MaxEntries = opts.MaxServices
	}
	// services also holds the (VIP, 0, UDP) aliases of fragment-forwarding
	// services.
	spec.Maps[lbMapServices].MaxEntries = 2 * opts.MaxServices
	spec.Maps[lbMapMaglevTables].MaxEntries = 2 * opts.MaxServices
	for _, m := range []string{lbMapBackends, lbMapNeighbors, lbMapBackendStats} {
		spec.Maps[m].MaxEntries = opts.MaxBackends
	}
	ring := spec.Maps[lbMapMaglevTables].InnerMap
	ring.MaxEntries = opts.TableSize
	// Go writes the tables through a mapping of their memory (tables.go).
	ring.Flags |= unix.BPF_F_MMAPABLE
	if err := spec.Variables[lbVarRingSize].Set(opts.TableSize); err != nil {
		return nil, fmt.Errorf("set maglev table size: %w", err)
	}
	if err := spec.Variables[lbVarSampleEvery].Set(opts.SampleEvery); err != nil {
		return nil, fmt.Errorf("set new-flow sampling: %w", err)
	}
	d := &Dataplane{
		ringSpec:  ring.Copy(),
		tableSize: opts.TableSize,
		limits: limits{
			services:   spec.Maps[lbMapSvcById].MaxEntries,
			backends:   spec.Maps[lbMapBackends].MaxEntries,
			tables:     spec.Maps[lbMapMaglevTables].MaxEntries,
			localAddrs: spec.Maps[lbMapLocalAddrs].MaxEntries / 2,
		},
		log: opts.Logger,
	}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load xdp program: %w\n%+v", err, verr)
		}
		return nil, fmt.Errorf("load xdp program: %w", err)
	}
	d.state = newState(d.limits)
	d.state.neighborsChanged()
	return d, nil
}

func validateOptions(opts Options) error {
	if err := maglev.ValidateSize(opts.TableSize); err != nil {
		return fmt.Errorf("xdp options: table size: %w", err)
	}
	for _, o := range []struct {
		name     string
		v, limit uint32
	}{
		{"conntrack size", opts.ConnTrackSize, MaxConnTrackSize},
		{"max services", opts.MaxServices, MaxServices},
		{"max backends", opts.MaxBackends, MaxBackends},
	} {
		if o.v > o.limit {
			return fmt.Errorf("xdp options: %s %d is above the maximum %d", o.name, o.v, o.limit)
		}
	}
	return nil
}

// Attach attaches the program to the interface ifname in native (driver)
// mode, falling back to generic mode, with a warning, where the driver has
// no XDP support.
func (d *Dataplane) Attach(ifname string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attach xdp: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{
		Program:   d.objs.XdpLb,
		Interface: iface.Index,
		Flags:     link.XDPDriverMode,
	})
	if err != nil {
		nativeErr := err
		l, err = link.AttachXDP(link.XDPOptions{
			Program:   d.objs.XdpLb,
			Interface: iface.Index,
			Flags:     link.XDPGenericMode,
		})
		if err != nil {
			return fmt.Errorf("attach xdp to %s: native: %v; generic: %w", ifname, nativeErr, err)
		}
		d.log.Warn("xdp attached in generic mode, which is slower", "interface", ifname, "native_error", nativeErr)
	}
	d.mu.Lock()
	d.links = append(d.links, l)
	d.mu.Unlock()
	var addrs []netip.Addr
	if ifas, err := iface.Addrs(); err == nil {
		for _, ifa := range ifas {
			if n, ok := ifa.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok {
					addrs = append(addrs, a.Unmap())
				}
			}
		}
	}
	return d.setInterface(iface.HardwareAddr, addrs)
}

// setInterface tells the program the MAC and addresses of the interface it
// serves: it takes only frames addressed to the MAC, and opens no flow
// from one of the addresses (a forged source). An interface without a MAC
// (loopback) has frames addressed to zero, which is what is written.
func (d *Dataplane) setInterface(mac net.HardwareAddr, addrs []netip.Addr) error {
	if len(mac) != 0 && len(mac) != 6 {
		return fmt.Errorf("xdp interface MAC %q is not 6 bytes", mac)
	}
	if len(addrs) > int(d.objs.OwnAddrs.MaxEntries()) {
		addrs = addrs[:d.objs.OwnAddrs.MaxEntries()]
	}
	for _, a := range addrs {
		if err := d.objs.OwnAddrs.Put(lbAddr(a), uint8(1)); err != nil {
			return fmt.Errorf("write own address %v: %w", a, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.state.config.Mac = [6]uint8{}
	copy(d.state.config.Mac[:], mac)
	if err := d.objs.Config.Put(uint32(0), d.state.config); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// Close detaches the program from every interface and releases the maps.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.awaitGrace()
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	errs = append(errs, d.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close xdp dataplane: %w", err)
	}
	return nil
}
