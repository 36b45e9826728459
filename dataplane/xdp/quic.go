package xdp

// Routing of migrated QUIC connections by the server id in their
// connection IDs (../bpf/quic.h).

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
)

// QUICRouting is what the program needs to hand a datagram of a migrated
// QUIC connection to the node that holds it.
type QUICRouting struct {
	// Ports are the VIP:port (UDP) where every node's L7 proxy serves
	// HTTP/3. The program passes their datagrams to the stack, or hands
	// them to the node their connection ID names.
	Ports []netip.AddrPort
	// Servers are the other nodes' QUIC server ids -> their MACs on the
	// segment of the interface the program runs on. This node's own id
	// must not be among them.
	Servers map[uint16]net.HardwareAddr
}

// quicState is the QUIC routing last written.
type quicState struct {
	ports   map[serviceKey]bool // wanted; an L4 service of the key, if any, holds its entry
	servers map[uint16]string   // id -> MAC, as written
	macs    map[string]uint16   // quic_peer_macs as written
}

// quicValue is the services entry of an HTTP/3 port: no id, no table.
var quicValue = lbSvcValue{Id: noBackend, Flags: lbSvcFlagsSVC_QUIC}

// SetQUICRouting writes r: the HTTP/3 ports' entries in services (and
// their VIPs' bits in vip_filter, but not vips: fragments and malformed
// packets to them are the stack's, as before), then the servers. An L4
// service on the same key keeps its entry (validation forbids both).
func (d *Dataplane) SetQUICRouting(r QUICRouting) error {
	if len(r.Servers) > int(d.objs.QuicServers.MaxEntries()) {
		return fmt.Errorf("%w: %d QUIC servers, at most %d", ErrInvalidConfig, len(r.Servers), d.objs.QuicServers.MaxEntries())
	}
	macs := make(map[string]uint16, len(r.Servers))
	for id, m := range r.Servers {
		if len(m) != 6 {
			return fmt.Errorf("%w: QUIC server %d: MAC %q is not 6 bytes", ErrInvalidConfig, id, m)
		}
		if other, ok := macs[string(m)]; ok {
			return fmt.Errorf("%w: QUIC servers %d and %d have the same MAC %s", ErrInvalidConfig, other, id, m)
		}
		macs[string(m)] = id
	}
	want := make(map[serviceKey]bool, len(r.Ports))
	for _, ap := range r.Ports {
		if !ap.Addr().IsValid() || ap.Port() == 0 {
			return fmt.Errorf("%w: QUIC port %v", ErrInvalidConfig, ap)
		}
		want[serviceKey{ap.Addr().Unmap(), ap.Port(), protoUDP}] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	q := &d.state.quic
	if q.ports == nil {
		q.ports, q.servers, q.macs = map[serviceKey]bool{}, map[uint16]string{}, map[string]uint16{}
	}
	for k := range want {
		if q.ports[k] {
			continue
		}
		// The filter bit first, so that no datagram of the port is passed
		// by before its entry is seen.
		if err := d.setVIPBit(k.vip, 1); err != nil {
			return err
		}
		q.ports[k] = true
		if err := d.putQUICPort(k); err != nil {
			return err
		}
	}
	for k := range q.ports {
		if want[k] {
			continue
		}
		if d.state.services[k] == nil {
			if err := d.objs.Services.Delete(svcKey(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("delete QUIC port %s: %w", k, err)
			}
		}
		delete(q.ports, k)
		if err := d.setVIPBit(k.vip, -1); err != nil {
			return err
		}
	}
	// MACs of new servers first: a datagram from one is not handed on
	// once the program can hand datagrams to it.
	for m, id := range macs {
		if old, ok := q.macs[m]; ok && old == id {
			continue
		}
		var k lbPeerMac
		copy(k.Mac[:], m)
		if err := d.objs.QuicPeerMacs.Put(k, uint32(id)); err != nil {
			return fmt.Errorf("write QUIC server %d mac: %w", id, err)
		}
		q.macs[m] = id
	}
	for id, m := range r.Servers {
		if q.servers[id] == string(m) {
			continue
		}
		p := lbPeer{Valid: 1}
		copy(p.Mac[:], m)
		if err := d.objs.QuicServers.Put(uint32(id), p); err != nil {
			return fmt.Errorf("write QUIC server %d: %w", id, err)
		}
		q.servers[id] = string(m)
	}
	for id := range q.servers {
		if _, ok := r.Servers[id]; ok {
			continue
		}
		if err := d.objs.QuicServers.Delete(uint32(id)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete QUIC server %d: %w", id, err)
		}
		delete(q.servers, id)
	}
	for m := range q.macs {
		if _, ok := macs[m]; ok {
			continue
		}
		var k lbPeerMac
		copy(k.Mac[:], m)
		if err := d.objs.QuicPeerMacs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete QUIC server mac %s: %w", net.HardwareAddr(m), err)
		}
		delete(q.macs, m)
	}
	return nil
}

// putQUICPort writes the services entry of HTTP/3 port k, unless an L4
// service holds the key.
func (d *Dataplane) putQUICPort(k serviceKey) error {
	if d.state.services[k] != nil {
		return nil
	}
	if err := d.objs.Services.Put(svcKey(k), quicValue); err != nil {
		return fmt.Errorf("write QUIC port %s: %w", k, err)
	}
	return nil
}
