package health

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// record is one checker's latest verdict on one member. Seq orders one
// checker's verdicts: it is the checker's wall clock in nanoseconds, bumped
// to stay above every earlier one, so it survives restarts of the checker.
type record struct {
	checker string
	member  MemberKey
	up      bool
	seq     uint64
}

// Wire format of a broadcast (one record) and of the push-pull state (all
// records): a version byte, a record count, then per record the checker,
// pool, member address (netip binary form), a flags byte and seq.
const (
	wireVersion = 1
	flagUp      = 1 << 0
)

func encodeRecords(rs []record) []byte {
	b := []byte{wireVersion}
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = appendBytes(b, []byte(r.checker))
		b = appendBytes(b, []byte(r.member.Pool))
		addr, _ := r.member.Addr.MarshalBinary()
		b = appendBytes(b, addr)
		var flags byte
		if r.up {
			flags |= flagUp
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, r.seq)
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

var errTruncated = errors.New("truncated")

func decodeRecords(b []byte) ([]record, error) {
	if len(b) == 0 || b[0] != wireVersion {
		return nil, errors.New("health results: unknown version")
	}
	b = b[1:]
	n, sz := binary.Uvarint(b)
	if sz <= 0 {
		return nil, errTruncated
	}
	b = b[sz:]
	// Each record takes at least 5 bytes, so a count beyond that is a lie.
	if n > uint64(len(b)/5) {
		return nil, fmt.Errorf("health results: %d records in %d bytes", n, len(b))
	}
	rs := make([]record, 0, n)
	for range n {
		var r record
		var checker, pool, addr []byte
		var err error
		if checker, b, err = readBytes(b); err != nil {
			return nil, err
		}
		if pool, b, err = readBytes(b); err != nil {
			return nil, err
		}
		if addr, b, err = readBytes(b); err != nil {
			return nil, err
		}
		var ap netip.AddrPort
		if err := ap.UnmarshalBinary(addr); err != nil {
			return nil, fmt.Errorf("health results: member address: %w", err)
		}
		if len(b) == 0 {
			return nil, errTruncated
		}
		r.up = b[0]&flagUp != 0
		seq, sz := binary.Uvarint(b[1:])
		if sz <= 0 {
			return nil, errTruncated
		}
		b = b[1+sz:]
		r.checker, r.member, r.seq = string(checker), MemberKey{Pool: string(pool), Addr: ap}, seq
		rs = append(rs, r)
	}
	return rs, nil
}

func readBytes(b []byte) (v, rest []byte, err error) {
	n, sz := binary.Uvarint(b)
	if sz <= 0 || n > uint64(len(b)-sz) {
		return nil, nil, errTruncated
	}
	return b[sz : sz+int(n)], b[sz+int(n):], nil
}
