package l7

// QUIC connection IDs that name the node that issued them, so that any node
// (the XDP program, dataplane/bpf/quic.h) can route a packet of a migrated
// connection, whose new address and port hash elsewhere, to the node that
// holds the connection: the idea of Katran's server ids in QUIC CIDs.

import (
	"crypto/rand"
	"encoding/binary"

	"github.com/quic-go/quic-go"
)

// Layout of the connection IDs the proxy issues (all of them, the server's
// first source CID included), 8 bytes:
//
//	byte 0      bits 7-6: version, 01; bits 5-0: random
//	bytes 1-2   server id, big endian (Options.QUICServerID)
//	bytes 3-7   random
//
// A client's first Initial carries a CID it chose itself; every later
// packet to the node carries one of these. In a short-header packet the
// destination CID starts at the UDP payload's second byte, so the server id
// is payload bytes 2-3.
const (
	quicCIDLen     = 8
	quicCIDVersion = 0b01
)

// serverCIDs generates the proxy's connection IDs.
type serverCIDs struct{ id uint16 }

func (g serverCIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [quicCIDLen]byte
	rand.Read(b[:]) // never fails
	b[0] = quicCIDVersion<<6 | b[0]&0x3f
	binary.BigEndian.PutUint16(b[1:3], g.id)
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (serverCIDs) ConnectionIDLen() int { return quicCIDLen }

var _ quic.ConnectionIDGenerator = serverCIDs{}
