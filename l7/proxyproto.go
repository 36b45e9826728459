package l7

import (
	"encoding/binary"
	"net/netip"
)

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyHeaderV2 is the PROXY protocol v2 header announcing a TCP
// connection from src to dst (the client and the VIP it reached).
func proxyHeaderV2(src, dst netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	b := make([]byte, 0, 16+36)
	b = append(b, proxyV2Sig...)
	b = append(b, 0x21) // version 2, PROXY
	if s.Is4() && d.Is4() {
		b = append(b, 0x11) // TCP over IPv4
		b = binary.BigEndian.AppendUint16(b, 12)
		a4, d4 := s.As4(), d.As4()
		b = append(b, a4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x21) // TCP over IPv6
		b = binary.BigEndian.AppendUint16(b, 36)
		a16, d16 := s.As16(), d.As16()
		b = append(b, a16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return b
}
