package node

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/raftfsm"
)

// l4Collector reads the XDP dataplane: its per-CPU counters summed
// (Stats) and a scan of its connection tables (FlowStats). Services are
// named by the load balancer and listener the committed state gives them.
type l4Collector struct {
	metricSet
	xdp func() *xdp.Dataplane
	// state is the committed state, which names the services.
	state func() *raftfsm.State
	// counts says which flows this node counts (Agent.flowCounter).
	counts func() func(dataplane.Flow) bool

	lnPackets, lnBytes, lnNewFlows, lnDrops, lnActive *prometheus.Desc
	bePackets, beBytes, beNewFlows, beDrops, beActive *prometheus.Desc
	drops, entries, maxEntries, natPorts              *prometheus.Desc
	syncEvents, syncLost, redirects, arpReplies       *prometheus.Desc
}

func newL4Collector(a *Agent) *l4Collector {
	c := &l4Collector{xdp: func() *xdp.Dataplane { return a.xdp }, state: func() *raftfsm.State { return a.raft.FSM().State() }, counts: a.flowCounter}
	ln := []string{"lb", "listener"}
	c.lnPackets = c.desc("weft_l4_listener_packets_total", "Packets forwarded for a tcp or udp listener, both directions of FullNAT flows.", ln...)
	c.lnBytes = c.desc("weft_l4_listener_bytes_total", "Bytes (whole frames) forwarded for a tcp or udp listener.", ln...)
	c.lnNewFlows = c.desc("weft_l4_listener_new_flows_total", "Flows a tcp or udp listener opened.", ln...)
	c.lnDrops = c.desc("weft_l4_listener_drops_total", "Packets to a tcp or udp listener dropped, by reason.", "lb", "listener", "reason")
	c.lnActive = c.desc("weft_l4_listener_active_flows", "Open flows (established, not closing) of a tcp or udp listener that this node counts: each flow on one node, its flow-sync bucket's first owner.", ln...)
	c.bePackets = c.desc("weft_l4_backend_packets_total", "Packets forwarded to and (FullNAT) from a backend, over all its listeners.", "backend")
	c.beBytes = c.desc("weft_l4_backend_bytes_total", "Bytes forwarded to and (FullNAT) from a backend, over all its listeners.", "backend")
	c.beNewFlows = c.desc("weft_l4_backend_new_flows_total", "Flows sent to a backend, over all its listeners.", "backend")
	c.beDrops = c.desc("weft_l4_backend_drops_total", "Packets dropped after a backend was chosen, by reason (no_neighbor, nat_ports).", "backend", "reason")
	c.beActive = c.desc("weft_l4_backend_active_flows", "Open flows of a tcp or udp listener to one backend that this node counts, as weft_l4_listener_active_flows.", "lb", "listener", "backend")
	c.drops = c.desc("weft_l4_drops_total", "Packets to a VIP dropped before a listener was found (fragments, malformed), by reason.", "reason")
	c.entries = c.desc("weft_l4_conntrack_entries", "Entries of a connection table (conntrack, ct_new: flows that sent one packet, nat_reverse, nat_new), expired ones an LRU has not reused yet included.", "table")
	c.maxEntries = c.desc("weft_l4_conntrack_max_entries", "Size of a connection table.", "table")
	c.natPorts = c.desc("weft_l4_fullnat_ports_in_use", "FullNAT source ports of live flows, per local address.", "local")
	c.syncEvents = c.desc("weft_l4_flow_sync_events_total", "Flows the program reported for flow sync.")
	c.syncLost = c.desc("weft_l4_flow_sync_lost_total", "Flow sync reports lost to a full ring buffer.")
	c.redirects = c.desc("weft_l4_flow_redirects_total", "Packets handed to another node: forward (a flow's owner), reply (a local address's holder), quic (the node a QUIC connection ID names).", "direction")
	c.arpReplies = c.desc("weft_l4_arp_replies_total", "ARP requests for held FullNAT local addresses answered by the program.")
	return c
}

func (c *l4Collector) Collect(ch chan<- prometheus.Metric) {
	d := c.xdp()
	if d == nil {
		return
	}
	st, err := d.Stats()
	if err != nil {
		failed(ch, c.entries, err)
		return
	}
	listeners := l4Listeners(c.state())
	active, add := activeFlows(listeners, c.counts())
	fs, err := d.FlowStats(add)
	if err != nil {
		failed(ch, c.entries, err)
		return
	}
	fc, err := d.FlowCounters()
	if err != nil {
		failed(ch, c.entries, err)
		return
	}
	perListener := map[l4Service]int{}
	for k, n := range active {
		perListener[k.service] += n
		if ln, ok := listeners[k.service]; ok && k.member.IsValid() {
			gauge(ch, c.beActive, float64(n), ln.lb, ln.listener, k.member.String())
		}
	}
	for _, s := range st.Services {
		k := l4Service{s.VIP, s.Port, s.Proto}
		ln, ok := listeners[k]
		if !ok {
			continue // being removed: no longer in the state
		}
		counter(ch, c.lnPackets, s.Packets, ln.lb, ln.listener)
		counter(ch, c.lnBytes, s.Bytes, ln.lb, ln.listener)
		counter(ch, c.lnNewFlows, s.NewFlows, ln.lb, ln.listener)
		// A listener's drop reasons appear once they count: 14 zero series
		// per listener would be most of a large node's output.
		for _, r := range dropReasons(s.Drops) {
			if r.n != 0 {
				counter(ch, c.lnDrops, r.n, ln.lb, ln.listener, r.reason)
			}
		}
		gauge(ch, c.lnActive, float64(perListener[k]), ln.lb, ln.listener)
	}
	for _, b := range st.Backends {
		id := netip.AddrPortFrom(b.Addr, b.Port).String()
		counter(ch, c.bePackets, b.Packets, id)
		counter(ch, c.beBytes, b.Bytes, id)
		counter(ch, c.beNewFlows, b.NewFlows, id)
		counter(ch, c.beDrops, b.Drops.NoNeighbor, id, "no_neighbor")
		counter(ch, c.beDrops, b.Drops.NATPorts, id, "nat_ports")
	}
	for _, r := range dropReasons(st.Global.Drops) {
		counter(ch, c.drops, r.n, r.reason)
	}
	for _, t := range fs.Tables {
		gauge(ch, c.entries, float64(t.Entries), t.Name)
		gauge(ch, c.maxEntries, float64(t.Capacity), t.Name)
	}
	for addr, n := range fs.NATPorts {
		gauge(ch, c.natPorts, float64(n), addr.String())
	}
	counter(ch, c.syncEvents, fc.SyncEvents)
	counter(ch, c.syncLost, fc.SyncLost)
	counter(ch, c.redirects, fc.RedirectForward, "forward")
	counter(ch, c.redirects, fc.RedirectReply, "reply")
	counter(ch, c.redirects, fc.RedirectQUIC, "quic")
	counter(ch, c.arpReplies, fc.ARPReplies)
}

type dropCount struct {
	reason string
	n      uint64
}

// dropReasons are the drop counters by their reason label.
func dropReasons(d xdp.Drops) []dropCount {
	return []dropCount{
		{"ttl", d.TTL}, {"no_conn", d.NoConn}, {"no_backend", d.NoBackend}, {"no_neighbor", d.NoNeighbor},
		{"nat_ports", d.NATPorts}, {"fragment", d.Fragment}, {"malformed", d.Malformed},
		{"new_flow_rate", d.NewFlowRate}, {"eth_dst", d.EthDst},
		{"ip_checksum", d.IPChecksum}, {"ip_options", d.IPOptions}, {"martian", d.Martian},
		{"l4_checksum", d.L4Checksum}, {"tcp_flags", d.TCPFlags},
	}
}
