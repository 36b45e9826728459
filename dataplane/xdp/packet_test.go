package xdp

// Test helpers: a packet description built into frames with gopacket, the
// BPF_PROG_TEST_RUN wrapper, and a checksum verifier.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// XDP actions.
const (
	xdpAborted = 0
	xdpDrop    = 1
	xdpPass    = 2
	xdpTX      = 3
)

var actionNames = map[uint32]string{xdpAborted: "XDP_ABORTED", xdpDrop: "XDP_DROP", xdpPass: "XDP_PASS", xdpTX: "XDP_TX"}

// packet describes a test frame.
type packet struct {
	srcMAC, dstMAC net.HardwareAddr
	vlans          []uint16 // outermost first; 802.1ad for the outer of two
	src, dst       netip.AddrPort
	proto          string // "tcp", "udp" or "icmp"
	syn, ack, fin  bool
	rst            bool
	ttl            uint8               // 0 means 64
	ipOptions      []layers.IPv4Option // IPv4 options (nops: 3 NOPs and an end)
	mf             bool                // IPv4 more-fragments
	fragOffset     uint16
	zeroUDPCsum    bool // IPv4 UDP without checksum
	payload        string
}

// nops are IPv4 options that change nothing: 3 NOPs and an end.
var nops = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}

func (p packet) with(f func(*packet)) packet {
	f(&p)
	return p
}

// frame serializes p with gopacket, checksums computed.
func (p packet) frame(t testing.TB) []byte {
	t.Helper()
	b, err := p.serialize()
	if err != nil {
		t.Fatalf("build frame: %v", err)
	}
	return b
}

func (p packet) serialize() ([]byte, error) {
	var ls []gopacket.SerializableLayer
	v6 := p.dst.Addr().Is6()
	ethType := layers.EthernetTypeIPv4
	if v6 {
		ethType = layers.EthernetTypeIPv6
	}
	eth := &layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: p.dstMAC, EthernetType: ethType}
	ls = append(ls, eth)
	for i, id := range p.vlans {
		next := ethType
		if i+1 < len(p.vlans) {
			next = layers.EthernetTypeDot1Q
		}
		outer := layers.EthernetTypeDot1Q
		if i == 0 && len(p.vlans) > 1 {
			outer = layers.EthernetTypeQinQ
		}
		if i == 0 {
			eth.EthernetType = outer
		}
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: id, Type: next})
	}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	var l4proto layers.IPProtocol
	switch p.proto {
	case "tcp":
		l4proto = layers.IPProtocolTCP
	case "udp":
		l4proto = layers.IPProtocolUDP
	case "icmp":
		l4proto = layers.IPProtocolICMPv4
		if v6 {
			l4proto = layers.IPProtocolICMPv6
		}
	}
	var nl gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: l4proto,
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		ls = append(ls, ip)
		nl = ip
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: l4proto, Id: 0x1234,
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice(), FragOffset: p.fragOffset}
		if p.mf {
			ip.Flags = layers.IPv4MoreFragments
		}
		ip.Options = p.ipOptions
		ls = append(ls, ip)
		nl = ip
	}
	switch p.proto {
	case "tcp":
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()),
			SYN: p.syn, ACK: p.ack, FIN: p.fin, RST: p.rst, Seq: 1000, Window: 65535}
		if p.ack {
			tcp.Ack = 2000
		}
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		ls = append(ls, tcp)
	case "udp":
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
		if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		ls = append(ls, udp)
	case "icmp":
		if v6 {
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
			if err := icmp.SetNetworkLayerForChecksum(nl); err != nil {
				return nil, err
			}
			ls = append(ls, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
		} else {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1})
		}
	}
	ls = append(ls, gopacket.Payload(p.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if p.zeroUDPCsum {
		off := l4Offset(b)
		b[off+6], b[off+7] = 0, 0
	}
	return b, nil
}

// l4Offset returns the offset of the L4 header of an Ethernet/IP frame
// (VLAN tags, IPv4 options and no IPv6 extension header).
func l4Offset(b []byte) int {
	off := 12
	et := binary.BigEndian.Uint16(b[off:])
	for et == 0x8100 || et == 0x88a8 {
		off += 4
		et = binary.BigEndian.Uint16(b[off:])
	}
	off += 2
	if et == 0x86dd {
		return off + 40
	}
	return off + int(b[off]&0x0f)*4
}

// runner runs frames through the program pinned to one CPU, since the
// connection table is per CPU, as a flow's packets are under RSS.
type runner struct {
	prog *ebpf.Program
}

func (r runner) run(t testing.TB, in []byte) (uint32, []byte) {
	t.Helper()
	ret, out, err := r.try(in)
	if err != nil {
		t.Fatalf("prog.Run: %v", err)
	}
	return ret, out
}

func (r runner) try(in []byte) (uint32, []byte, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return 0, nil, fmt.Errorf("get affinity: %w", err)
	}
	var cpu0 unix.CPUSet
	cpu0.Set(0)
	if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
		return 0, nil, fmt.Errorf("pin to cpu 0: %w", err)
	}
	defer unix.SchedSetaffinity(0, &old)
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{Data: in, DataOut: out}
	ret, err := r.prog.Run(opts)
	return ret, opts.DataOut, err
}

// newTestDataplane loads the program or skips the test when BPF is out
// of reach.
func newTestDataplane(t testing.TB, opts Options) *Dataplane {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading XDP programs needs root (CAP_BPF, CAP_NET_ADMIN)")
	}
	d, err := New(opts)
	if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("BPF not available: %v", err)
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := d.setInterface(nodeMAC, []netip.Addr{nodeAddr4, nodeAddr6}); err != nil {
		t.Fatalf("setInterface: %v", err)
	}
	return d
}

// frameDiff describes how two frames differ, decoded by gopacket, with a
// hex dump of both.
func frameDiff(got, want []byte) string {
	var sb strings.Builder
	gp := gopacket.NewPacket(got, layers.LayerTypeEthernet, gopacket.Default)
	wp := gopacket.NewPacket(want, layers.LayerTypeEthernet, gopacket.Default)
	gl, wl := gp.Layers(), wp.Layers()
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gopacket.LayerString(gl[i])
		}
		if i < len(wl) {
			w = gopacket.LayerString(wl[i])
		}
		if g != w {
			fmt.Fprintf(&sb, "layer %d:\n  got:  %s\n  want: %s\n", i, g, w)
		}
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		if i >= len(got) || i >= len(want) || got[i] != want[i] {
			fmt.Fprintf(&sb, "first differing byte at offset %d (got %d bytes, want %d)\n", i, len(got), len(want))
			break
		}
	}
	return sb.String()
}

// checksumsValid checks the IPv4 header and TCP/UDP checksums of an
// Ethernet/IP frame (VLAN tags, IPv4 options, no IPv6 extension header).
func checksumsValid(b []byte) error {
	off := 12
	if len(b) < off+2 {
		return errors.New("short frame")
	}
	et := binary.BigEndian.Uint16(b[off:])
	for et == 0x8100 || et == 0x88a8 {
		off += 4
		if len(b) < off+2 {
			return errors.New("short vlan tag")
		}
		et = binary.BigEndian.Uint16(b[off:])
	}
	off += 2
	var pseudo []byte
	var l4 []byte
	var proto byte
	switch et {
	case 0x0800:
		if len(b) < off+20 {
			return errors.New("short ipv4 header")
		}
		hl := int(b[off]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(b[off+2:]))
		if len(b) < off+tot || tot < hl {
			return errors.New("ipv4 total length beyond frame")
		}
		if s := csum(b[off : off+hl]); s != 0xffff {
			return fmt.Errorf("ipv4 header checksum: sum %#04x, want 0xffff", s)
		}
		proto = b[off+9]
		l4 = b[off+hl : off+tot]
		pseudo = append(pseudo, b[off+12:off+20]...)
		pseudo = append(pseudo, 0, proto, byte(len(l4)>>8), byte(len(l4)))
	case 0x86dd:
		if len(b) < off+40 {
			return errors.New("short ipv6 header")
		}
		pl := int(binary.BigEndian.Uint16(b[off+4:]))
		if len(b) < off+40+pl {
			return errors.New("ipv6 payload beyond frame")
		}
		proto = b[off+6]
		l4 = b[off+40 : off+40+pl]
		pseudo = append(pseudo, b[off+8:off+40]...)
		pseudo = append(pseudo, 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, proto)
	default:
		return nil
	}
	switch proto {
	case 6:
		if len(l4) < 20 {
			return errors.New("short tcp header")
		}
	case 17:
		if len(l4) < 8 {
			return errors.New("short udp header")
		}
		if et == 0x0800 && l4[6] == 0 && l4[7] == 0 {
			return nil
		}
	default:
		return nil
	}
	if s := csum(append(pseudo, l4...)); s != 0xffff {
		return fmt.Errorf("l4 (protocol %d) checksum: sum %#04x, want 0xffff", proto, s)
	}
	return nil
}

// csum returns the folded one's-complement sum of b.
func csum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
