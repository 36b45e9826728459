package xdp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/weftlb/weft/dataplane"
)

// Counters are a service's, a backend's or the program's counters, summed
// over CPUs since the service or backend was added.
type Counters struct {
	Packets  uint64
	Bytes    uint64 // whole frames, Ethernet header included
	NewFlows uint64
	Drops    Drops
}

// Drops counts dropped packets by reason.
type Drops struct {
	TTL         uint64 // TTL or hop limit <= 1
	NoConn      uint64 // TCP segment other than a SYN with no connection entry
	NoBackend   uint64 // the service has no backend (all weights 0)
	NoNeighbor  uint64 // no MAC for the next hop
	NATPorts    uint64 // no FullNAT local address or free port
	Fragment    uint64 // IP fragment to a VIP
	Malformed   uint64 // truncated or inconsistent header to a VIP
	NewFlowRate uint64 // new flow above the service's new-flow rate
	EthDst      uint64 // frame to a VIP not addressed to this host's MAC
	IPChecksum  uint64 // bad IPv4 header checksum
	IPOptions   uint64 // IPv4 source route or malformed option
	Martian     uint64 // source no host sends from, or this node's own
	L4Checksum  uint64 // bad TCP/UDP checksum on a packet that would open, establish or close a flow; zero IPv6 UDP checksum
	TCPFlags    uint64 // TCP flags an endpoint discards (SYN with FIN or RST; none of SYN, ACK, RST)
}

// Total is the drops of every reason.
func (d Drops) Total() uint64 {
	return d.TTL + d.NoConn + d.NoBackend + d.NoNeighbor + d.NATPorts + d.Fragment + d.Malformed + d.NewFlowRate +
		d.EthDst + d.IPChecksum + d.IPOptions + d.Martian + d.L4Checksum + d.TCPFlags
}

// ServiceStats are the counters of one service, both directions of its
// flows.
type ServiceStats struct {
	VIP   netip.Addr
	Port  uint16
	Proto string
	Counters
}

// BackendStats are the counters of one backend over all its services.
// Its drops are those decided after the backend was chosen: NoNeighbor and
// NATPorts.
type BackendStats struct {
	Addr netip.Addr
	Port uint16
	Counters
}

// Stats are the dataplane's counters.
type Stats struct {
	Services []ServiceStats // sorted by VIP, port, protocol
	Backends []BackendStats // sorted by address, port
	// Global counts drops that belong to no service: fragments and
	// malformed packets to a VIP.
	Global Counters
}

// Stats reads the counters of the services and backends of the last
// applied Config.
func (d *Dataplane) Stats() (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out Stats
	for k, s := range d.state.services {
		c, err := readCounters(d.objs.SvcStats, s.value.Id)
		if err != nil {
			return Stats{}, fmt.Errorf("read service %s counters: %w", k, err)
		}
		p := ProtoTCP
		if k.proto == protoUDP {
			p = ProtoUDP
		}
		out.Services = append(out.Services, ServiceStats{VIP: k.vip, Port: k.port, Proto: p, Counters: c})
	}
	slices.SortFunc(out.Services, func(a, b ServiceStats) int {
		return compareServiceKeys(serviceKey{a.VIP, a.Port, protoNumber(a.Proto)}, serviceKey{b.VIP, b.Port, protoNumber(b.Proto)})
	})
	for k, r := range d.state.backends {
		c, err := readCounters(d.objs.BackendStats, r.id)
		if err != nil {
			return Stats{}, fmt.Errorf("read backend %s counters: %w", k, err)
		}
		out.Backends = append(out.Backends, BackendStats{Addr: k.addr, Port: k.port, Counters: c})
	}
	slices.SortFunc(out.Backends, func(a, b BackendStats) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	g, err := readCounters(d.objs.GlobalStats, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("read global counters: %w", err)
	}
	out.Global = g
	return out, nil
}

func protoNumber(p string) uint8 {
	if p == ProtoUDP {
		return protoUDP
	}
	return protoTCP
}

// readCounters sums the per-CPU lb_stats at id.
func readCounters(m *ebpf.Map, id uint32) (Counters, error) {
	var per []lbLbStats
	if err := m.Lookup(id, &per); err != nil {
		return Counters{}, err
	}
	var c Counters
	for _, s := range per {
		c.Packets += s.Packets
		c.Bytes += s.Bytes
		c.NewFlows += s.NewFlows
		c.Drops.TTL += s.Drops[lbLbDropLB_DROP_TTL]
		c.Drops.NoConn += s.Drops[lbLbDropLB_DROP_NO_CONN]
		c.Drops.NoBackend += s.Drops[lbLbDropLB_DROP_NO_BACKEND]
		c.Drops.NoNeighbor += s.Drops[lbLbDropLB_DROP_NO_NEIGH]
		c.Drops.NATPorts += s.Drops[lbLbDropLB_DROP_NAT_PORTS]
		c.Drops.Fragment += s.Drops[lbLbDropLB_DROP_FRAGMENT]
		c.Drops.Malformed += s.Drops[lbLbDropLB_DROP_MALFORMED]
		c.Drops.NewFlowRate += s.Drops[lbLbDropLB_DROP_NEW_FLOW_RATE]
		c.Drops.EthDst += s.Drops[lbLbDropLB_DROP_ETH_DST]
		c.Drops.IPChecksum += s.Drops[lbLbDropLB_DROP_IP_CSUM]
		c.Drops.IPOptions += s.Drops[lbLbDropLB_DROP_IP_OPTIONS]
		c.Drops.Martian += s.Drops[lbLbDropLB_DROP_MARTIAN]
		c.Drops.L4Checksum += s.Drops[lbLbDropLB_DROP_L4CSUM]
		c.Drops.TCPFlags += s.Drops[lbLbDropLB_DROP_TCP_FLAGS]
	}
	return c, nil
}

// FlowCounters are the program's counters of flow ownership, sync and
// sampling, summed over CPUs.
type FlowCounters struct {
	SyncEvents      uint64 // flows reported for sync
	SyncLost        uint64 // reports lost: the ring was full
	RedirectForward uint64 // client packets handed to a flow's owner
	RedirectReply   uint64 // replies handed to a local address's holder
	ARPReplies      uint64 // ARP requests answered for held local addresses
	SamplesLost     uint64 // new-flow samples lost: the ring was full
	RedirectQUIC    uint64 // QUIC datagrams handed to the node their connection ID names
}

// FlowCounters reads the flow counters.
func (d *Dataplane) FlowCounters() (FlowCounters, error) {
	var per []lbFlowCounters
	if err := d.objs.FlowStats.Lookup(uint32(0), &per); err != nil {
		return FlowCounters{}, fmt.Errorf("read flow counters: %w", err)
	}
	var c FlowCounters
	for _, s := range per {
		c.SyncEvents += s.SyncEvents
		c.SyncLost += s.SyncLost
		c.RedirectForward += s.RedirectForward
		c.RedirectReply += s.RedirectReply
		c.ARPReplies += s.ArpReplies
		c.SamplesLost += s.SamplesLost
		c.RedirectQUIC += s.RedirectQuic
	}
	return c, nil
}

// FlowStats are what the connection tables hold, counted by the scan
// that also gives the live flows (Dataplane.FlowStats).
type FlowStats struct {
	// Tables are conntrack, ct_new, nat_reverse and nat_new: their
	// entries, expired ones an LRU has not reused yet included, and sizes.
	Tables []TableStats
	// NATPorts counts the live FullNAT source ports of nat_reverse and
	// nat_new by local address.
	NATPorts map[netip.Addr]int
}

// TableStats are one connection table's occupancy.
type TableStats struct {
	Name              string
	Entries, Capacity int
}

// FlowStats scans the connection tables once (for the metrics endpoint
// at scrape time): it counts their entries and gives each every live flow,
// as Flows does. It costs a batched read of every entry: about as long as
// the tables are full.
func (d *Dataplane) FlowStats(each func(dataplane.Flow)) (FlowStats, error) {
	fs := FlowStats{NATPorts: map[netip.Addr]int{}}
	if err := d.scanFlows(func(f dataplane.Flow) bool { each(f); return true }, &fs); err != nil {
		return FlowStats{}, err
	}
	now := monotonicSeconds()
	ctNew := TableStats{Name: lbMapCtNew, Capacity: int(d.objs.CtNew.MaxEntries())}
	err := batchEach(d.objs.CtNew, func(lbFlowKey, lbCtValue) bool {
		ctNew.Entries++
		return true
	})
	if err != nil {
		return FlowStats{}, err
	}
	natNew := TableStats{Name: lbMapNatNew, Capacity: int(d.objs.NatNew.MaxEntries())}
	err = batchEach(d.objs.NatNew, func(k lbFlowKey, v lbNatValue) bool {
		natNew.Entries++
		countNATPort(&fs, k, v, now)
		return true
	})
	if err != nil {
		return FlowStats{}, err
	}
	fs.Tables = append(fs.Tables, ctNew, natNew)
	slices.SortFunc(fs.Tables, func(a, b TableStats) int { return strings.Compare(a.Name, b.Name) })
	return fs, nil
}

// countNATPort counts a nat_reverse or nat_new entry's FullNAT source port
// in fs.NATPorts while it is live.
func countNATPort(fs *FlowStats, k lbFlowKey, v lbNatValue, now uint32) {
	replied, closing := v.Flags&lbNatFlagsNAT_REPLIED != 0, v.Flags&lbNatFlagsNAT_CLOSING != 0
	if !expired(k.Proto, replied, closing, now, v.LastSeen) {
		fs.NATPorts[addrOf(k.Dst)]++
	}
}
