// Package dataplane is the contract of Weft's L4 forwarders: the Config
// the reconciler hands them and the flow hash they share. Two drivers
// implement it: xdp (the XDP program, the fast path) and userspace (a
// TCP/UDP proxy for where XDP cannot run). Both pick a flow's backend as
// Maglev table[hash % M] over the same table and hash, so a flow gets the
// same backend whichever node and driver serves it.
package dataplane

import (
	"context"
	"encoding/binary"
	"math/bits"
	"net"
	"net/netip"
)

// Config is the desired state of the dataplane, applied as a whole.
type Config struct {
	Services []Service
	// LocalAddrs are the node's addresses FullNAT uses as the source of
	// forwarded packets.
	LocalAddrs []netip.Addr
	// Neighbors are the MACs of on-link next hops (XDP only).
	Neighbors map[netip.Addr]net.HardwareAddr
	// Gateway is the MAC of the default gateway (XDP only).
	Gateway net.HardwareAddr
}

// Service is one (VIP, port, protocol) balanced over Backends.
type Service struct {
	VIP   netip.Addr
	Port  uint16
	Proto string // "tcp" or "udp"
	// Mode is "fullnat" or "dsr".
	Mode string
	// Scheduler is "maglev" (the default when empty) or "source-hash".
	Scheduler string
	// NewFlowRate is how many new flows a second the node opens for the
	// service, above which it drops them (XDP only); 0 is unlimited.
	NewFlowRate uint32
	// Fragments, for a DSR UDP service, has the node forward IP fragments
	// to it: its backend is then picked by the client's and the VIP's
	// addresses, not the ports, so that every fragment of a datagram goes
	// where its first went (XDP only; at most one such service a VIP).
	// Without it fragments to a VIP are dropped.
	Fragments bool
	Backends  []Backend
}

// Backend is a destination of a service. Weight is relative to the
// service's other backends'; 0 takes no new flows.
type Backend struct {
	Addr   netip.Addr
	Port   uint16
	Weight uint32
}

// ID is the backend's identity in Maglev tables: the same on every node.
func (b Backend) ID() string { return netip.AddrPortFrom(b.Addr, b.Port).String() }

// Protocol, mode and scheduler names.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"

	ModeFullNAT = "fullnat"
	ModeDSR     = "dsr"

	SchedulerMaglev     = "maglev"
	SchedulerSourceHash = "source-hash"
)

// Driver is a forwarder the reconciler drives. Apply keeps no slice of
// cfg: once it returns, the caller may write into cfg's arrays again (the
// reconciler builds each Config in the array of the one before last).
type Driver interface {
	Apply(ctx context.Context, cfg Config) error
	Close() error
}

// Seeds of the flow hash, as in bpf/consts.h.
const (
	flowHashSeed = 0x77656674
)

// FlowHash is the hash the XDP program computes over a flow's 5-tuple
// (bpf/hash.h) to pick its backend. IPv4 addresses are hashed IPv4-mapped.
func FlowHash(src, dst netip.AddrPort, proto uint8) uint32 {
	h := hashAddr(flowHashSeed, src.Addr())
	h = hashAddr(h, dst.Addr())
	h = hashWord(h, uint32(src.Port())<<16|uint32(dst.Port()))
	h = hashWord(h, uint32(proto))
	return hashFinal(h, 40)
}

// SourceHash is the hash of the source address alone, which source-hash
// services use to pick a backend.
func SourceHash(src netip.Addr) uint32 {
	return hashFinal(hashAddr(flowHashSeed, src), 16)
}

func hashAddr(h uint32, a netip.Addr) uint32 {
	b := a.As16()
	for i := 0; i < 16; i += 4 {
		h = hashWord(h, binary.BigEndian.Uint32(b[i:]))
	}
	return h
}

// hashWord and hashFinal are MurmurHash3's (x86_32) block and final mixes.
func hashWord(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = bits.RotateLeft32(k, 15)
	k *= 0x1b873593
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

func hashFinal(h, n uint32) uint32 {
	h ^= n
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
