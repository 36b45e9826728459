package xdp

// Flow sync: the reports the program puts in sync_ring, flows from other
// nodes written into conntrack and nat_reverse, the dump of both tables for
// a node that (re)joins, and the routing of flows this node does not know
// (../bpf/flow.h).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weftlb/weft/dataplane"
)

var _ dataplane.FlowDriver = (*Dataplane)(nil)

// reportBatch bounds how many reports are handed on at once.
const reportBatch = 1024

// routingState is the flow routing last written, so SetFlowRouting
// writes only what changed.
type routingState struct {
	owners []uint32
	peers  []string // MAC per peer index, as written
	local  map[netip.Addr]dataplane.LocalTarget
}

// FlowBuckets is the number of ownership buckets (FLOW_BUCKETS).
func (d *Dataplane) FlowBuckets() int { return int(d.objs.FlowOwners.MaxEntries()) }

// SetFlowRouting writes the routing of unknown flows: the peers' MACs, the
// owner of each bucket, the cluster's local addresses, and whether flows
// are reported.
func (d *Dataplane) SetFlowRouting(r dataplane.FlowRouting) error {
	if len(r.Owners) != d.FlowBuckets() {
		return fmt.Errorf("%w: %d bucket owners, want %d", ErrInvalidConfig, len(r.Owners), d.FlowBuckets())
	}
	if len(r.Peers) > int(d.objs.Peers.MaxEntries()) {
		return fmt.Errorf("%w: %d peers, at most %d", ErrInvalidConfig, len(r.Peers), d.objs.Peers.MaxEntries())
	}
	if len(r.MAC) != 6 {
		return fmt.Errorf("%w: MAC %q is not 6 bytes", ErrInvalidConfig, r.MAC)
	}
	for i, m := range r.Peers {
		if len(m) != 6 {
			return fmt.Errorf("%w: peer %d: MAC %q is not 6 bytes", ErrInvalidConfig, i, m)
		}
	}
	if len(r.Local) > int(d.objs.SnatAddrs.MaxEntries()) {
		return fmt.Errorf("%w: %d local addresses, at most %d", ErrInvalidConfig, len(r.Local), d.objs.SnatAddrs.MaxEntries())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := &d.state.routing
	// Peers first, so that no owner names a peer not yet written.
	for i, m := range r.Peers {
		if i < len(rs.peers) && rs.peers[i] == string(m) {
			continue
		}
		if i < len(rs.peers) {
			if err := d.deletePeerMAC(rs.peers[i]); err != nil {
				return err
			}
		}
		var p lbPeer
		copy(p.Mac[:], m)
		p.Valid = 1
		if err := d.objs.Peers.Put(uint32(i), p); err != nil {
			return fmt.Errorf("write peer %d: %w", i, err)
		}
		var k lbPeerMac
		copy(k.Mac[:], m)
		if err := d.objs.PeerMacs.Put(k, uint32(i)); err != nil {
			return fmt.Errorf("write peer %d mac: %w", i, err)
		}
		if i < len(rs.peers) {
			rs.peers[i] = string(m)
		} else {
			rs.peers = append(rs.peers, string(m))
		}
	}
	var changed []uint32
	for b, t := range r.Owners {
		if rs.owners == nil || rs.owners[b] != t {
			changed = append(changed, uint32(b))
		}
	}
	if len(changed) > 0 {
		vals := make([]uint32, len(changed))
		for i, b := range changed {
			vals[i] = r.Owners[b]
		}
		if _, err := d.objs.FlowOwners.BatchUpdate(changed, vals, nil); err != nil {
			return fmt.Errorf("write bucket owners: %w", err)
		}
		rs.owners = append(rs.owners[:0], r.Owners...)
	}
	for a, t := range r.Local {
		a = a.Unmap()
		if old, ok := rs.local[a]; ok && old == t {
			continue
		}
		v := lbSnatValue{Target: t.Target}
		if t.Held {
			v.Held = 1
		}
		if err := d.objs.SnatAddrs.Put(lbAddr(a), v); err != nil {
			return fmt.Errorf("write local address %v: %w", a, err)
		}
		if rs.local == nil {
			rs.local = map[netip.Addr]dataplane.LocalTarget{}
		}
		rs.local[a] = t
	}
	for a := range rs.local {
		if _, ok := r.Local[a]; ok {
			continue
		}
		if err := d.objs.SnatAddrs.Delete(lbAddr(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete local address %v: %w", a, err)
		}
		delete(rs.local, a)
	}
	// Peers no longer named go last, once nothing targets them.
	for len(rs.peers) > len(r.Peers) {
		i := len(rs.peers) - 1
		if err := d.deletePeerMAC(rs.peers[i]); err != nil {
			return err
		}
		if err := d.objs.Peers.Put(uint32(i), lbPeer{}); err != nil {
			return fmt.Errorf("clear peer %d: %w", i, err)
		}
		rs.peers = rs.peers[:i]
	}
	copy(d.state.config.Mac[:], r.MAC)
	d.state.config.Sync = 0
	if r.Sync {
		d.state.config.Sync = 1
	}
	if err := d.objs.Config.Put(uint32(0), d.state.config); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

func (d *Dataplane) deletePeerMAC(mac string) error {
	var k lbPeerMac
	copy(k.Mac[:], mac)
	if err := d.objs.PeerMacs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete peer mac %s: %w", net.HardwareAddr(mac), err)
	}
	return nil
}

// ReadFlows hands the program's flow reports to report until ctx ends, in
// batches of what the ring holds: a report is handed on as soon as the
// ring has no more, never held back for a batch to fill, since a flow is
// lost with its node until its copies are out (a connection opened just
// before a crash). One reader at a time.
func (d *Dataplane) ReadFlows(ctx context.Context, report func([]dataplane.Flow)) error {
	return readRing(ctx, d.objs.SyncRing, "sync ring", 0, d.decodeReport, report)
}

// decodeReport turns a sync_event into a Flow.
func (d *Dataplane) decodeReport(raw []byte) (dataplane.Flow, bool) {
	if len(raw) < int(unsafe.Sizeof(lbSyncEvent{})) {
		return dataplane.Flow{}, false
	}
	// The sample is the C struct, copied out of the ring into an aligned
	// buffer.
	e := *(*lbSyncEvent)(unsafe.Pointer(unsafe.SliceData(raw)))
	k := lbFlowKey{Src: lbLbAddr(e.Key.Src), Dst: lbLbAddr(e.Key.Dst), Sport: e.Key.Sport, Dport: e.Key.Dport, Proto: e.Key.Proto}
	f := dataplane.Flow{
		Client:      netip.AddrPortFrom(addrOf(k.Src), be16(k.Sport)),
		VIP:         netip.AddrPortFrom(addrOf(k.Dst), be16(k.Dport)),
		Proto:       k.Proto,
		Backend:     netip.AddrPortFrom(addrOf(lbLbAddr(e.Backend)), be16(e.Bport)),
		Established: lbCtFlags(e.Flags)&lbCtFlagsCT_ESTABLISHED != 0,
		Closing:     lbCtFlags(e.Flags)&lbCtFlagsCT_CLOSING != 0,
	}
	if lbLbMode(e.Mode) == lbLbModeLB_MODE_FULLNAT {
		f.Local = netip.AddrPortFrom(addrOf(lbLbAddr(e.Local)), be16(e.Lport))
	}
	return f, true
}

// InstallFlows writes flows synced from other nodes: into conntrack, so
// this node forwards their client packets, and, for FullNAT flows, into
// nat_reverse, so it translates their replies. Each flow's backend and
// service get this node's ids where it has them.
func (d *Dataplane) InstallFlows(flows []dataplane.Flow, into []dataplane.Install) error {
	if len(into) != len(flows) {
		return fmt.Errorf("install flows: %d flows, %d targets", len(flows), len(into))
	}
	now := monotonicSeconds()
	var (
		ctKeys  []lbFlowKey
		ctVals  []lbCtValue
		natKeys []lbFlowKey
		natVals []lbNatValue
	)
	d.mu.Lock()
	for i, f := range flows {
		svcID, backendID := d.flowIDs(f)
		seen := now - min(uint32(f.Idle/time.Second), now)
		if into[i]&dataplane.InstallForward != 0 {
			// svc_id is a hint the program checks: noBackend's low
			// bits name no service of this key.
			v := lbCtValue{Backend: lbAddr(f.Backend.Addr().Unmap()), Bport: be16(f.Backend.Port()),
				BackendId: backendID, SvcId: uint16(svcID), Flags: lbCtFlagsCT_VALID, LastSeen: seen, Synced: now}
			if f.Established {
				v.Flags |= lbCtFlagsCT_ESTABLISHED
			}
			if f.Closing {
				v.Flags |= lbCtFlagsCT_CLOSING
			}
			if f.FullNAT() {
				v.Local, v.Lport = lbAddr(f.Local.Addr().Unmap()), be16(f.Local.Port())
			}
			ctKeys = append(ctKeys, flowKey(f.Client, f.VIP, f.Proto))
			ctVals = append(ctVals, v)
		}
		if into[i]&dataplane.InstallReply != 0 && f.FullNAT() {
			v := lbNatValue{Client: lbAddr(f.Client.Addr().Unmap()), Vip: lbAddr(f.VIP.Addr().Unmap()),
				Cport: be16(f.Client.Port()), Vport: be16(f.VIP.Port()), SvcId: svcID, BackendId: backendID, LastSeen: seen}
			// A client that completed its handshake was answered.
			if f.Established {
				v.Flags |= lbNatFlagsNAT_REPLIED
			}
			if f.Closing {
				v.Flags |= lbNatFlagsNAT_CLOSING
			}
			natKeys = append(natKeys, flowKey(f.Backend, f.Local, f.Proto))
			natVals = append(natVals, v)
		}
	}
	d.mu.Unlock()
	if len(ctKeys) > 0 {
		if _, err := d.objs.Conntrack.BatchUpdate(ctKeys, ctVals, nil); err != nil {
			return fmt.Errorf("install flows: %w", err)
		}
	}
	if len(natKeys) > 0 {
		if _, err := d.objs.NatReverse.BatchUpdate(natKeys, natVals, nil); err != nil {
			return fmt.Errorf("install flow replies: %w", err)
		}
	}
	return nil
}

// flowIDs are this node's ids of a flow's service and backend, or
// noBackend where it has none (counters are then not kept).
func (d *Dataplane) flowIDs(f dataplane.Flow) (svcID, backendID uint32) {
	svcID, backendID = noBackend, noBackend
	s := d.state.services[serviceKey{f.VIP.Addr().Unmap(), f.VIP.Port(), f.Proto}]
	if s == nil {
		return
	}
	svcID = s.value.Id
	for _, bk := range s.backends {
		// In DSR the flow's backend port is the VIP's.
		if bk.addr == f.Backend.Addr().Unmap() && (bk.port == f.Backend.Port() || s.value.Mode == lbLbModeLB_MODE_DSR) {
			backendID = d.state.backends[bk].id
			return
		}
	}
	return
}

// Flows calls yield with every live flow of conntrack and of nat_reverse,
// each once (a FullNAT flow in both is given from conntrack).
func (d *Dataplane) Flows(yield func(dataplane.Flow) bool) error {
	return d.scanFlows(yield, nil)
}

// scanFlows is Flows; with fs, it also counts conntrack's and
// nat_reverse's entries into fs (yield must then not stop the scan).
func (d *Dataplane) scanFlows(yield func(dataplane.Flow) bool, fs *FlowStats) error {
	now := monotonicSeconds()
	seen := map[lbFlowKey]bool{}
	cont := true
	conntrack := TableStats{Name: lbMapConntrack, Capacity: int(d.objs.Conntrack.MaxEntries())}
	err := batchEach(d.objs.Conntrack, func(k lbFlowKey, v lbCtValue) bool {
		conntrack.Entries++
		established, closing := v.Flags&lbCtFlagsCT_ESTABLISHED != 0, v.Flags&lbCtFlagsCT_CLOSING != 0
		if v.Flags&lbCtFlagsCT_VALID == 0 || expired(k.Proto, established, closing, now, v.LastSeen) {
			return true
		}
		f := dataplane.Flow{
			Client: netip.AddrPortFrom(addrOf(k.Src), be16(k.Sport)), VIP: netip.AddrPortFrom(addrOf(k.Dst), be16(k.Dport)),
			Proto: k.Proto, Backend: netip.AddrPortFrom(addrOf(v.Backend), be16(v.Bport)),
			Established: established, Closing: closing, Idle: time.Duration(now-v.LastSeen) * time.Second,
		}
		if v.Lport != 0 {
			f.Local = netip.AddrPortFrom(addrOf(v.Local), be16(v.Lport))
		}
		seen[k] = true
		cont = yield(f)
		return cont
	})
	if err != nil || !cont {
		return err
	}
	natReverse := TableStats{Name: lbMapNatReverse, Capacity: int(d.objs.NatReverse.MaxEntries())}
	err = batchEach(d.objs.NatReverse, func(k lbFlowKey, v lbNatValue) bool {
		natReverse.Entries++
		if fs != nil {
			countNATPort(fs, k, v, now)
		}
		replied, closing := v.Flags&lbNatFlagsNAT_REPLIED != 0, v.Flags&lbNatFlagsNAT_CLOSING != 0
		if expired(k.Proto, replied, closing, now, v.LastSeen) {
			return true
		}
		fk := lbFlowKey{Src: v.Client, Dst: v.Vip, Sport: v.Cport, Dport: v.Vport, Proto: k.Proto}
		if seen[fk] {
			return true
		}
		return yield(dataplane.Flow{
			Client: netip.AddrPortFrom(addrOf(v.Client), be16(v.Cport)), VIP: netip.AddrPortFrom(addrOf(v.Vip), be16(v.Vport)),
			Proto: k.Proto, Backend: netip.AddrPortFrom(addrOf(k.Src), be16(k.Sport)),
			Local:       netip.AddrPortFrom(addrOf(k.Dst), be16(k.Dport)),
			Established: replied || k.Proto == protoUDP, Closing: closing, Idle: time.Duration(now-v.LastSeen) * time.Second,
		})
	})
	if err == nil && fs != nil {
		fs.Tables = append(fs.Tables, conntrack, natReverse)
	}
	return err
}

// batchEach calls fn with every entry of m, read in batches, until fn
// returns false.
func batchEach[K comparable, V any](m *ebpf.Map, fn func(K, V) bool) error {
	const n = 4096
	keys, vals := make([]K, n), make([]V, n)
	var cursor ebpf.MapBatchCursor
	for {
		got, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range got {
			if !fn(keys[i], vals[i]) {
				return nil
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", m, err)
		}
	}
}

// expired mirrors ct_timeout (../bpf/nat.h): whether an entry idle since
// lastSeen counts as absent.
func expired(proto uint8, established, closing bool, now, lastSeen uint32) bool {
	timeout := uint32(ctTimeoutUDP)
	switch {
	case proto != protoTCP:
	case closing:
		timeout = ctTimeoutClosing
	case established:
		timeout = ctTimeoutTCP
	default:
		timeout = ctTimeoutSYN
	}
	return now-lastSeen > timeout
}

// Entry lifetimes in seconds, CT_TIMEOUT_* of ../bpf/consts.h.
const (
	ctTimeoutSYN     = 30
	ctTimeoutTCP     = 900
	ctTimeoutClosing = 10
	ctTimeoutUDP     = 300
)

func flowKey(src, dst netip.AddrPort, proto uint8) lbFlowKey {
	return lbFlowKey{Src: lbAddr(src.Addr().Unmap()), Dst: lbAddr(dst.Addr().Unmap()),
		Sport: be16(src.Port()), Dport: be16(dst.Port()), Proto: proto}
}

// addrOf is the inverse of lbAddr: IPv4-mapped addresses come back IPv4.
func addrOf(x lbLbAddr) netip.Addr {
	var b [16]byte
	for i, w := range x.A {
		binary.NativeEndian.PutUint32(b[4*i:], w)
	}
	return netip.AddrFrom16(b).Unmap()
}

// monotonicSeconds is the clock of last_seen: bpf_ktime_get_coarse_ns in
// seconds.
func monotonicSeconds() uint32 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	return uint32(ts.Sec)
}
