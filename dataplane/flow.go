package dataplane

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Flow is a connection-table entry as nodes exchange it to keep a flow
// alive on another node: the client flow, where it goes, and its state.
type Flow struct {
	// Client -> VIP is the flow as the client sends it; Proto is 6 or 17.
	Client, VIP netip.AddrPort
	Proto       uint8
	// Backend is where the flow goes. In DSR its port is the VIP's.
	Backend netip.AddrPort
	// Local is the FullNAT source towards the backend; not valid in DSR.
	Local netip.AddrPort
	// Established: a TCP packet other than the SYN was seen (always set for
	// UDP). Closing: a FIN or RST was seen.
	Established, Closing bool
	// Idle is how long ago the flow's last packet was seen.
	Idle time.Duration
}

// FullNAT reports whether the flow is translated (it has a local source).
func (f Flow) FullNAT() bool { return f.Local.IsValid() }

// Hash is the flow hash of the flow's 5-tuple, which places it in an
// ownership bucket.
func (f Flow) Hash() uint32 { return FlowHash(f.Client, f.VIP, f.Proto) }

// Install says which tables an installed flow goes into.
type Install uint8

const (
	// InstallForward puts the flow in the connection table, so this node
	// forwards the client's packets of the flow.
	InstallForward Install = 1 << iota
	// InstallReply puts a FullNAT flow in the reverse table, so this node
	// translates the backend's replies to its local address.
	InstallReply
)

// TargetSelf is the target of a bucket or local address that this node
// handles itself.
const TargetSelf = ^uint32(0)

// FlowRouting tells the dataplane where to hand the packets of flows it
// has no entry for, and which local addresses it answers ARP for.
type FlowRouting struct {
	// Sync turns flow reports on.
	Sync bool
	// MAC is this node's MAC on the segment the peers share.
	MAC net.HardwareAddr
	// Peers are the other nodes' MACs; targets index them.
	Peers []net.HardwareAddr
	// Owners is, per bucket (the FlowBuckets of the dataplane), the peer a
	// client packet of an unknown flow is handed to, or TargetSelf.
	Owners []uint32
	// Local is, per local address of the cluster, where a reply that
	// misses the reverse table goes and whether this node holds the
	// address (answers ARP for it).
	Local map[netip.Addr]LocalTarget
}

// LocalTarget is what the dataplane does with one local address.
type LocalTarget struct {
	Target uint32
	Held   bool
}

// FlowDriver is a dataplane whose flows other nodes can keep copies of.
type FlowDriver interface {
	// FlowBuckets is the number of ownership buckets: a flow's bucket is
	// the top bits of its hash (Bucket).
	FlowBuckets() int
	// SetFlowRouting replaces the routing of unknown flows.
	SetFlowRouting(FlowRouting) error
	// ReadFlows calls report with each batch of flows the dataplane reports
	// (established, closing, refreshed) until ctx ends.
	ReadFlows(ctx context.Context, report func([]Flow)) error
	// InstallFlows writes flows from other nodes into the given tables.
	InstallFlows(flows []Flow, into []Install) error
	// Flows calls yield with every flow in the tables, until it returns false.
	Flows(yield func(Flow) bool) error
}

// Bucket is the ownership bucket of a flow hash among n (a power of two),
// as the XDP program computes it (bpf/flow.h): the hash's top bits.
func Bucket(hash uint32, n int) int {
	shift := 32
	for m := n; m > 1; m >>= 1 {
		shift--
	}
	return int(hash >> shift)
}
