package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/deploy/lab"
)

// TestLab_XDPFragments sends UDP datagrams larger than the lab's MTU (1500)
// through a DSR VIP, so the client's kernel sends each as fragments and
// the server's kernel reassembles them. With forwardFragments every
// datagram arrives whole (the server answers with its size), each client
// address's at one server, the clients spread over the servers; without
// it the fragments are dropped and counted while small datagrams still
// pass. Through a FullNAT VIP, small questions get large answers, which
// the server's kernel sends as fragments: the client gets them whole.
func TestLab_XDPFragments(t *testing.T) {
	r := newXDPRig(t)
	const clients, size = 24, 4000
	var addrs []netip.Addr
	for i := range clients {
		a := addrN(lab.ClientAddr, uint32(10+i))
		if out, err := exec.Command("ip", "-n", r.l.Client.NS, "addr", "add", a.String()+"/24", "dev", r.l.Client.Iface).CombinedOutput(); err != nil {
			t.Fatalf("client address %v: %v %s", a, err, out)
		}
		addrs = append(addrs, a)
	}
	apply := func(fragments bool) {
		t.Helper()
		cfg := r.base
		dsr := xdp.Service{VIP: labVIP, Port: 81, Proto: xdp.ProtoUDP, Mode: xdp.ModeDSR, Fragments: fragments}
		full := xdp.Service{VIP: labVIP, Port: 82, Proto: xdp.ProtoUDP, Mode: xdp.ModeFullNAT}
		for _, s := range r.l.Servers {
			dsr.Backends = append(dsr.Backends, xdp.Backend{Addr: s.Addr, Port: 81, Weight: 1})
			full.Backends = append(full.Backends, xdp.Backend{Addr: s.Addr, Port: 81, Weight: 1})
		}
		cfg.Services = []xdp.Service{dsr, full}
		if err := r.d.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	// send sends msg from src to VIP:port and returns the answer, "" if
	// none came within timeout.
	send := func(src netip.Addr, port uint16, msg []byte, timeout time.Duration) string {
		t.Helper()
		var answer string
		err := r.l.Do(r.l.Client, func() error {
			conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
			if err != nil {
				return err
			}
			defer conn.Close()
			if _, err := conn.WriteToUDPAddrPort(msg, netip.AddrPortFrom(labVIP, port)); err != nil {
				return err
			}
			conn.SetReadDeadline(time.Now().Add(timeout))
			buf := make([]byte, 65536)
			m, _, err := conn.ReadFromUDPAddrPort(buf)
			if err == nil {
				answer = string(buf[:m])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return answer
	}
	// ask sends n bytes to the DSR VIP.
	ask := func(src netip.Addr, n int, timeout time.Duration) string {
		return send(src, 81, make([]byte, n), timeout)
	}

	apply(true)
	servers := map[string]int{}
	for _, src := range addrs {
		first := ""
		for range 3 { // a new source port each time
			got := ask(src, size, 2*time.Second)
			name, n, ok := strings.Cut(got, " ")
			if !ok || n != fmt.Sprint(size) || !strings.HasPrefix(name, "server") {
				t.Fatalf("from %v: a %d-byte datagram through the VIP answered %q, want \"serverN %d\"", src, size, got, size)
			}
			if first == "" {
				first = name
			} else if name != first {
				t.Errorf("from %v: datagrams answered by %s and %s, want one server per client address", src, first, name)
			}
		}
		servers[first]++
	}
	t.Logf("clients per server: %v", servers)
	if len(servers) < 2 {
		t.Errorf("%d client addresses all reached %v, want them spread", clients, servers)
	}

	// FullNAT: large answers to small questions come back in fragments.
	for _, src := range addrs[:8] {
		got := send(src, 82, []byte(fmt.Sprintf("size %d", size)), 2*time.Second)
		if len(got) != size || !strings.HasPrefix(got, "server") {
			t.Fatalf("from %v through the FullNAT VIP: a %d-byte answer arrived as %d bytes %.20q", src, size, len(got), got)
		}
	}

	apply(false)
	before, err := r.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := ask(addrs[0], size, time.Second); got != "" {
		t.Errorf("without forwardFragments a %d-byte datagram was answered %q", size, got)
	}
	after, err := r.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// 4000 bytes of UDP in 1500-byte packets: three fragments.
	if got := after.Global.Drops.Fragment - before.Global.Drops.Fragment; got != 3 {
		t.Errorf("%d fragment drops counted, want 3", got)
	}
	if got := ask(addrs[0], 100, 2*time.Second); !strings.HasSuffix(got, " 100") {
		t.Errorf("without forwardFragments a small datagram was answered %q, want its size", got)
	}
}

// addrN returns a plus n in its last 32 bits.
func addrN(a netip.Addr, n uint32) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
