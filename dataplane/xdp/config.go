package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weftlb/weft/dataplane"
)

// The dataplane's configuration types are the shared ones of package
// dataplane, so that Dataplane is a dataplane.Driver.
type (
	// Config is the desired state, applied as a whole. LocalAddrs: at
	// most 16 per family; their FullNAT source ports come from
	// 1024-32767, below Linux's ephemeral range, so the node's own
	// connections from them do not collide with FullNAT flows as long as
	// ip_local_port_range stays above 32767. Neighbors: the MACs of every
	// DSR backend and of FullNAT backends and clients not reached through
	// Gateway.
	Config = dataplane.Config
	// Service is one (VIP, port, protocol). DSR: the backends have the
	// VIP on loopback and answer the client directly; the port is not
	// rewritten.
	Service = dataplane.Service
	// Backend is a destination of a service; weight 0 takes no new flows
	// but keeps those in the connection table.
	Backend = dataplane.Backend
)

// Protocol, mode and scheduler names accepted in a Service.
const (
	ProtoTCP = dataplane.ProtoTCP
	ProtoUDP = dataplane.ProtoUDP

	ModeFullNAT = dataplane.ModeFullNAT
	ModeDSR     = dataplane.ModeDSR

	SchedulerMaglev     = dataplane.SchedulerMaglev
	SchedulerSourceHash = dataplane.SchedulerSourceHash
)

var _ dataplane.Driver = (*Dataplane)(nil)

// ErrInvalidConfig is wrapped by the errors Apply returns for a Config it
// rejects without changing anything.
var ErrInvalidConfig = errors.New("invalid xdp config")

// serviceKey identifies a service.
type serviceKey struct {
	vip   netip.Addr
	port  uint16
	proto uint8
}

func (k serviceKey) String() string {
	p := ProtoTCP
	if k.proto == protoUDP {
		p = ProtoUDP
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.vip, k.port), p)
}

// backendKey identifies a backend; backends are shared by services.
type backendKey struct {
	addr netip.Addr
	port uint16
}

func (k backendKey) String() string { return netip.AddrPortFrom(k.addr, k.port).String() }

const (
	protoTCP = 6
	protoUDP = 17
)

// desired are a validated config's services, keyed, and how they differ
// from those applied.
type desired struct {
	// same marks the services given as at the same position of the last
	// Config applied: validated then, applied as they are, and in no map
	// here. services holds the others.
	same     []bool
	services map[serviceKey]Service
	// keys are the key of each service not the same, by position (the
	// state's array: read them before the next validate).
	keys []serviceKey
	// changed are the keys of the new and changed services, added how many
	// of them are new.
	changed []serviceKey
	added   int
	// applied counts the services applied that are still wanted: all of
	// them means none is removed.
	applied int
}

// wants reports whether the applied service st, of key k, is among the
// desired.
func (w desired) wants(k serviceKey, st *serviceState) bool {
	if _, ok := w.services[k]; ok {
		return true
	}
	return w.samePos(st)
}

// samePos reports whether st is applied as the service at its position,
// given again unchanged.
func (w desired) samePos(st *serviceState) bool {
	return st != nil && st.pos >= 0 && st.pos < len(w.same) && w.same[st.pos]
}

// validate checks cfg against the program's limits and returns its
// services keyed, with addresses unmapped (a ::ffff:a.b.c.d VIP is the
// IPv4 VIP). A service listed as applied (nil: none) has its backends
// checked again only when they changed, and the distinct backends are
// counted from what is applied, so that the cost grows with what
// changed. A service given as it was at the same position of the last
// Config applied costs a comparison and no map operation: at 10,000
// services the maps were most of an Apply. The keys are written in
// applied's array (state.keys), the only thing validate changes.
func validate(cfg Config, lim limits, applied *state) (desired, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	var n4, n6 int
	for _, a := range cfg.LocalAddrs {
		switch {
		case !a.IsValid():
			return desired{}, fail("local address %v is not valid", a)
		case a.Unmap().Is4():
			n4++
		default:
			n6++
		}
	}
	if uint32(n4) > lim.localAddrs || uint32(n6) > lim.localAddrs {
		return desired{}, fail("at most %d local addresses per family", lim.localAddrs)
	}
	for a, mac := range cfg.Neighbors {
		if !a.IsValid() || len(mac) != 6 {
			return desired{}, fail("neighbor %v: need a valid address and a 6-byte MAC, got %q", a, mac)
		}
	}
	if len(cfg.Gateway) != 0 && len(cfg.Gateway) != 6 {
		return desired{}, fail("gateway MAC %q is not 6 bytes", cfg.Gateway)
	}
	if uint32(len(cfg.Services)) > lim.services {
		return desired{}, fail("%d services, at most %d", len(cfg.Services), lim.services)
	}
	if applied == nil {
		applied = &state{}
	}
	out := desired{same: make([]bool, len(cfg.Services)), services: map[serviceKey]Service{},
		keys: slices.Grow(applied.keys[:0], len(cfg.Services))[:len(cfg.Services)]}
	applied.keys = out.keys
	// A service that forwards fragments is always checked again: which
	// one of a VIP's does depends on those before it.
	if prev := applied.given; slices.Equal(cfg.LocalAddrs, applied.givenLocal) {
		for i, s := range cfg.Services {
			if i < len(prev) && !s.Fragments && sameService(s, prev[i]) {
				out.same[i] = true
				out.applied++
			}
		}
	}
	fragments := map[netip.Addr]serviceKey{} // VIP -> the service that forwards its fragments
	// seen holds the backends of new and changed services: 1 + the index
	// of the last service listing each.
	seen := map[backendKey]int{}
	for i, s := range cfg.Services {
		if out.same[i] {
			continue
		}
		s.VIP = s.VIP.Unmap()
		if !s.VIP.IsValid() {
			return desired{}, fail("service %d: VIP is not valid", i)
		}
		k := serviceKey{vip: s.VIP, port: s.Port}
		switch s.Proto {
		case ProtoTCP:
			k.proto = protoTCP
		case ProtoUDP:
			k.proto = protoUDP
		default:
			return desired{}, fail("service %s: protocol %q is not tcp or udp", netip.AddrPortFrom(s.VIP, s.Port), s.Proto)
		}
		if s.Port == 0 {
			return desired{}, fail("service %s: port 0 is not valid", k)
		}
		if _, dup := out.services[k]; dup || out.samePos(applied.services[k]) {
			return desired{}, fail("service %s is listed twice", k)
		}
		out.keys[i] = k
		switch s.Mode {
		case ModeFullNAT:
			if (s.VIP.Is4() && n4 == 0) || (s.VIP.Is6() && n6 == 0) {
				return desired{}, fail("service %s: fullnat needs a local address of the VIP's family", k)
			}
		case ModeDSR:
		default:
			return desired{}, fail("service %s: mode %q is not fullnat or dsr", k, s.Mode)
		}
		switch s.Scheduler {
		case "":
			s.Scheduler = SchedulerMaglev
		case SchedulerMaglev, SchedulerSourceHash:
		default:
			return desired{}, fail("service %s: scheduler %q is not maglev or source-hash", k, s.Scheduler)
		}
		if s.Fragments {
			if s.Proto != ProtoUDP || s.Mode != ModeDSR {
				return desired{}, fail("service %s: only dsr udp services forward fragments", k)
			}
			// The API refuses a second; one that slipped through (two
			// writes at once) does not stop the node's dataplane: the
			// first keeps the VIP's fragments.
			if _, dup := fragments[s.VIP]; dup {
				s.Fragments = false
			} else {
				fragments[s.VIP] = k
			}
		}
		old := applied.services[k]
		if old != nil {
			out.applied++
			if sameService(old.svc, s) {
				out.services[k] = old.svc
				continue
			}
		} else {
			out.added++
		}
		out.changed = append(out.changed, k)
		bs := make([]Backend, len(s.Backends))
		for j, b := range s.Backends {
			b.Addr = b.Addr.Unmap()
			if !b.Addr.IsValid() || b.Addr.Is4() != s.VIP.Is4() {
				return desired{}, fail("service %s: backend %d: address %v is not valid or not of the VIP's family", k, j, b.Addr)
			}
			if s.Mode == ModeFullNAT && b.Port == 0 {
				return desired{}, fail("service %s: backend %v: port 0 is not valid", k, b.Addr)
			}
			bk := backendKey{b.Addr, b.Port}
			if seen[bk] == i+1 {
				return desired{}, fail("service %s: backend %s is listed twice", k, bk)
			}
			seen[bk] = i + 1
			bs[j] = b
		}
		s.Backends = bs
		out.services[k] = s
	}
	// Apply takes the new backends' ids before it releases the old ones,
	// so what counts is the backends applied and the new ones together.
	peak := len(applied.backends)
	for bk := range seen {
		if applied.backends[bk] == nil {
			peak++
		}
	}
	if uint32(peak) > lim.backends {
		return desired{}, fail("%d distinct backends, counting those applied until the new ones take over, at most %d (replace them in steps)", peak, lim.backends)
	}
	return out, nil
}
