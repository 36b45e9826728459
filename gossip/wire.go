package gossip

import (
	"encoding/binary"
	"fmt"
)

// Wire formats of the two things the delegate carries besides node meta:
// user messages (broadcast by gossip, relayed once by every receiver) and the
// push-pull state exchanged on join and periodically.

const (
	kindMessage = 1 // first byte of a user message
	stateVer    = 1 // first byte of a push-pull state
)

// message is one broadcast; (origin, id) identifies it so relays and
// duplicates are recognised.
type message struct {
	origin  string
	id      uint64
	topic   string
	payload []byte
}

func (m message) encode() []byte {
	b := make([]byte, 0, 1+len(m.origin)+len(m.topic)+len(m.payload)+16)
	b = append(b, kindMessage)
	b = appendString(b, m.origin)
	b = binary.AppendUvarint(b, m.id)
	b = appendString(b, m.topic)
	return append(b, m.payload...)
}

func decodeMessage(b []byte) (message, error) {
	var m message
	if len(b) == 0 || b[0] != kindMessage {
		return m, fmt.Errorf("not a user message")
	}
	r := reader{b: b[1:]}
	m.origin = r.string()
	m.id = r.uvarint()
	m.topic = r.string()
	if r.err != nil {
		return m, fmt.Errorf("decode message: %w", r.err)
	}
	m.payload = r.b
	return m, nil
}

// encodeState lays out each topic's state after the sender's name.
func encodeState(origin string, topics []string, states [][]byte) []byte {
	b := []byte{stateVer}
	b = appendString(b, origin)
	for i, t := range topics {
		b = appendString(b, t)
		b = binary.AppendUvarint(b, uint64(len(states[i])))
		b = append(b, states[i]...)
	}
	return b
}

// decodeState calls f for each topic's state in b.
func decodeState(b []byte, f func(origin, topic string, state []byte)) error {
	if len(b) == 0 || b[0] != stateVer {
		return fmt.Errorf("push-pull state: unknown version")
	}
	r := reader{b: b[1:]}
	origin := r.string()
	for r.err == nil && len(r.b) > 0 {
		topic := r.string()
		state := r.bytes()
		if r.err == nil {
			f(origin, topic, state)
		}
	}
	if r.err != nil {
		return fmt.Errorf("decode push-pull state: %w", r.err)
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes length-prefixed fields; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errTruncated
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errTruncated
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes()) }
