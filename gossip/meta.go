package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
)

// MetaMaxSize is memberlist's limit for a node's metadata: an encoded
// NodeMeta larger than this is rejected by New and UpdateMeta.
const MetaMaxSize = 512

// NodeMeta is what a node tells the cluster about itself through memberlist's
// node metadata. The node's name is not part of it: memberlist already carries
// it (Member.Name).
type NodeMeta struct {
	Region string
	Zone   string
	// Addrs names the node's addresses by role, e.g. "raft" or "api" ->
	// "10.0.0.1:7000". The gossip package does not interpret them.
	Addrs map[string]string
	// Draining is set while the node is being drained (`weft node drain`).
	Draining bool
	// Checker is set on nodes that run health checks (those that serve
	// traffic), the candidates for probing pool members.
	Checker bool
	// AppliedIndex is the Raft index the node's subsystems have applied.
	AppliedIndex uint64
	// Version is the node's weft version (package version): observed
	// state, so it changes with the binary and needs no Raft write.
	Version string
	// Flows is set on nodes that keep copies of L4 flows (flow sync).
	Flows *FlowMeta
	// QUIC is set on nodes whose L7 proxy serves HTTP/3.
	QUIC *QUICMeta

	// leaving is set by Leave just before memberlist's leave message, so the
	// others can tell a departure from a failure.
	leaving bool
}

// FlowMeta is what flow sync needs to know of a node before it can reach
// it: its MAC on the forwarding segment, where other nodes hand it packets,
// and its FullNAT local addresses, which another node takes over if it is
// lost.
type FlowMeta struct {
	MAC   net.HardwareAddr
	Local []netip.Addr
}

// QUICMeta is what other nodes need to route a migrated HTTP/3 connection
// to the node that holds it: the server id in the connection IDs its L7
// proxy issues (l7/quiccid.go) and, on nodes whose XDP program can be
// handed datagrams, its MAC on that segment (none: it cannot be).
type QUICMeta struct {
	ServerID uint16
	MAC      net.HardwareAddr
}

// The encoding is a version byte followed by tag-length-value fields, so a
// newer node can add fields that older ones skip. Tags are append-only.
const (
	metaVersion = 1

	tagRegion  = 1
	tagZone    = 2
	tagAddr    = 3 // value: uvarint key length, key, address
	tagFlags   = 4 // value: one byte, bit 0 = draining, bit 1 = leaving, bit 2 = checker
	tagApplied = 5 // value: uvarint
	tagVersion = 6
	tagFlows   = 7 // value: 6-byte MAC, then 16 bytes per local address
	tagQUIC    = 8 // value: server id (2 bytes, big endian), then a 6-byte MAC or nothing

	flagDraining = 1 << 0
	flagLeaving  = 1 << 1
	flagChecker  = 1 << 2
)

// MarshalBinary encodes m compactly; it fails if the result would exceed
// MetaMaxSize.
func (m NodeMeta) MarshalBinary() ([]byte, error) {
	b := []byte{metaVersion}
	b = appendField(b, tagRegion, []byte(m.Region))
	b = appendField(b, tagZone, []byte(m.Zone))
	// Sorted so that the same meta always encodes to the same bytes.
	for _, k := range slices.Sorted(maps.Keys(m.Addrs)) {
		v := binary.AppendUvarint(nil, uint64(len(k)))
		v = append(v, k...)
		v = append(v, m.Addrs[k]...)
		b = appendField(b, tagAddr, v)
	}
	// The flags are always there, so that setting leaving cannot push a
	// meta over the limit.
	var flags byte
	if m.Draining {
		flags |= flagDraining
	}
	if m.leaving {
		flags |= flagLeaving
	}
	if m.Checker {
		flags |= flagChecker
	}
	b = append(b, tagFlags, 1, flags)
	if m.AppliedIndex != 0 {
		b = appendField(b, tagApplied, binary.AppendUvarint(nil, m.AppliedIndex))
	}
	b = appendField(b, tagVersion, []byte(m.Version))
	if f := m.Flows; f != nil {
		if len(f.MAC) != 6 {
			return nil, fmt.Errorf("node meta: flow MAC %q is not 6 bytes", f.MAC)
		}
		v := slices.Clone([]byte(f.MAC))
		for _, a := range f.Local {
			a16 := a.As16()
			v = append(v, a16[:]...)
		}
		b = appendField(b, tagFlows, v)
	}
	if q := m.QUIC; q != nil {
		if len(q.MAC) != 0 && len(q.MAC) != 6 {
			return nil, fmt.Errorf("node meta: QUIC MAC %q is not 6 bytes", q.MAC)
		}
		b = appendField(b, tagQUIC, append(binary.BigEndian.AppendUint16(nil, q.ServerID), q.MAC...))
	}
	if len(b) > MetaMaxSize {
		return nil, fmt.Errorf("node meta is %d bytes encoded, more than memberlist's limit of %d", len(b), MetaMaxSize)
	}
	return b, nil
}

func appendField(b []byte, tag byte, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

var errTruncated = errors.New("truncated")

// UnmarshalBinary decodes what MarshalBinary produced; unknown fields are
// skipped.
func (m *NodeMeta) UnmarshalBinary(b []byte) error {
	*m = NodeMeta{}
	if len(b) == 0 {
		return nil // a node that never set meta
	}
	if b[0] != metaVersion {
		return fmt.Errorf("node meta version %d is not supported", b[0])
	}
	b = b[1:]
	for len(b) > 0 {
		tag := b[0]
		n, sz := binary.Uvarint(b[1:])
		if sz <= 0 || n > uint64(len(b)-1-sz) {
			return fmt.Errorf("node meta field %d: %w", tag, errTruncated)
		}
		v := b[1+sz : 1+sz+int(n)]
		b = b[1+sz+int(n):]
		switch tag {
		case tagRegion:
			m.Region = string(v)
		case tagZone:
			m.Zone = string(v)
		case tagAddr:
			kl, ksz := binary.Uvarint(v)
			if ksz <= 0 || kl > uint64(len(v)-ksz) {
				return fmt.Errorf("node meta address: %w", errTruncated)
			}
			if m.Addrs == nil {
				m.Addrs = make(map[string]string)
			}
			m.Addrs[string(v[ksz:ksz+int(kl)])] = string(v[ksz+int(kl):])
		case tagFlags:
			if len(v) == 0 {
				return fmt.Errorf("node meta flags: %w", errTruncated)
			}
			m.Draining = v[0]&flagDraining != 0
			m.leaving = v[0]&flagLeaving != 0
			m.Checker = v[0]&flagChecker != 0
		case tagApplied:
			idx, isz := binary.Uvarint(v)
			if isz <= 0 {
				return fmt.Errorf("node meta applied index: %w", errTruncated)
			}
			m.AppliedIndex = idx
		case tagVersion:
			m.Version = string(v)
		case tagFlows:
			if len(v) < 6 || (len(v)-6)%16 != 0 {
				return fmt.Errorf("node meta flows: %d bytes", len(v))
			}
			f := &FlowMeta{MAC: slices.Clone(net.HardwareAddr(v[:6]))}
			for rest := v[6:]; len(rest) > 0; rest = rest[16:] {
				f.Local = append(f.Local, netip.AddrFrom16([16]byte(rest[:16])).Unmap())
			}
			m.Flows = f
		case tagQUIC:
			if len(v) != 2 && len(v) != 8 {
				return fmt.Errorf("node meta quic: %d bytes", len(v))
			}
			q := &QUICMeta{ServerID: binary.BigEndian.Uint16(v)}
			if len(v) == 8 {
				q.MAC = slices.Clone(net.HardwareAddr(v[2:]))
			}
			m.QUIC = q
		}
	}
	return nil
}
