package gslb

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is how many datagrams one recvmmsg/sendmmsg moves: a loaded
// server answers a batch per pair of system calls instead of one per
// query, and with no goroutine per query (miekg/dns's server starts one).
const udpBatch = 64

// udpReadSize is the largest query read: real queries are a few hundred
// bytes, and one cut short here does not unpack and is answered FORMERR.
const udpReadSize = 4096

// batchConn is the part of ipv4.PacketConn and ipv6.PacketConn the loop
// uses.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers queries on a socket bound to one address (replies go
// out from it: no control messages needed) with one batching reader per
// CPU; it returns when the socket is closed.
func (s *Server) serveUDP(pc *net.UDPConn) {
	var bc batchConn = ipv4.NewPacketConn(pc)
	if s.addr.Addr().Is6() {
		bc = ipv6.NewPacketConn(pc)
	}
	for range runtime.GOMAXPROCS(0) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.udpLoop(bc)
		}()
	}
}

func (s *Server) udpLoop(bc batchConn) {
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		out[i].Buffers = [][]byte{make([]byte, MaxUDPSize)}
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns: read udp", "error", err)
			continue
		}
		k := 0
		for _, m := range in[:n] {
			src, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			if b := s.handleUDP(m.Buffers[0][:m.N], src.AddrPort().Addr().Unmap(), out[k].Buffers[0][:0]); b != nil {
				out[k].Buffers[0], out[k].Addr = b, m.Addr
				k++
			}
		}
		for sent := 0; sent < k; {
			w, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil {
				s.log.Debug("dns: write udp", "error", err)
				break
			}
			sent += w
		}
		for i := range out[:k] {
			out[i].Buffers[0] = out[i].Buffers[0][:cap(out[i].Buffers[0])]
		}
	}
}

// handleUDP answers one datagram into buf (of MaxUDPSize capacity) and
// returns the answer, or nil for none. Malformed queries are treated as
// miekg/dns's server treats them: responses and too-short messages are
// dropped, unknown opcodes get NOTIMP, messages that do not unpack or
// carry several questions FORMERR.
func (s *Server) handleUDP(b []byte, src netip.Addr, buf []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	h := dns.Header{Id: binary.BigEndian.Uint16(b), Bits: binary.BigEndian.Uint16(b[2:]),
		Qdcount: binary.BigEndian.Uint16(b[4:]), Ancount: binary.BigEndian.Uint16(b[6:]),
		Nscount: binary.BigEndian.Uint16(b[8:]), Arcount: binary.BigEndian.Uint16(b[10:])}
	var m *dns.Msg
	switch dns.DefaultMsgAcceptFunc(h) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgReject, dns.MsgRejectNotImplemented:
		m = rejection(h)
	default:
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			m = rejection(h)
			m.Rcode = dns.RcodeFormatError
		} else if m, _ = s.reply(s.table.Load(), req, src, false); m == nil {
			return nil
		}
	}
	out, err := m.PackBuffer(buf)
	if err != nil {
		s.log.Debug("dns: pack response", "to", src, "error", err)
		return nil
	}
	return out
}

// rejection is the empty answer to a query refused before it is read:
// NOTIMP for an unknown opcode, FORMERR otherwise.
func rejection(h dns.Header) *dns.Msg {
	m := new(dns.Msg)
	m.Id = h.Id
	m.Response = true
	m.Opcode = int(h.Bits>>11) & 0xF
	m.Rcode = dns.RcodeFormatError
	if m.Opcode != dns.OpcodeQuery && m.Opcode != dns.OpcodeNotify {
		m.Rcode = dns.RcodeNotImplemented
	}
	return m
}
