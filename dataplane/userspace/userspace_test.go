package userspace

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/maglev"
)

// backend is a local server that greets with its name, then echoes lines.
type backend struct {
	name string
	addr netip.AddrPort
}

func startTCPBackends(t *testing.T, n int) []backend {
	t.Helper()
	var out []backend
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		name := fmt.Sprintf("b%d", i)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					fmt.Fprintf(c, "%s\n", name)
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						fmt.Fprintf(c, "%s %s\n", name, sc.Text())
					}
				}()
			}
		}()
		out = append(out, backend{name: name, addr: ln.Addr().(*net.TCPAddr).AddrPort()})
	}
	return out
}

func svcOf(vip string, port uint16, proto string, bs []backend, weights ...uint32) dataplane.Service {
	s := dataplane.Service{VIP: netip.MustParseAddr(vip), Port: port, Proto: proto}
	for i, b := range bs {
		w := uint32(1)
		if i < len(weights) {
			w = weights[i]
		}
		s.Backends = append(s.Backends, dataplane.Backend{Addr: b.addr.Addr(), Port: b.addr.Port(), Weight: w})
	}
	return s
}

// expected computes independently which backend the XDP program would
// choose for a flow: Maglev over the same IDs, the same flow hash.
func expected(t *testing.T, s dataplane.Service, src netip.AddrPort, proto uint8) string {
	t.Helper()
	var mbs []maglev.Backend
	for _, b := range s.Backends {
		mbs = append(mbs, maglev.Backend{ID: b.ID(), Weight: b.Weight})
	}
	tab, err := maglev.Build(mbs, maglev.DefaultSize)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := tab.Lookup(uint64(dataplane.FlowHash(src, netip.AddrPortFrom(s.VIP, s.Port), proto)))
	if !ok {
		return ""
	}
	return b.ID
}

func dialGreeting(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("read greeting through %s: %v", addr, err)
	}
	return c, strings.TrimSpace(line)
}

func TestTCP_SameChoiceAsXDP(t *testing.T) {
	bs := startTCPBackends(t, 3)
	f := New(Options{})
	defer f.Close()
	svc := svcOf("127.0.70.1", 8080, dataplane.ProtoTCP, bs)
	if err := f.Apply(context.Background(), dataplane.Config{Services: []dataplane.Service{svc}}); err != nil {
		t.Fatal(err)
	}
	byAddr := map[string]string{}
	for _, b := range bs {
		byAddr[b.addr.String()] = b.name
	}
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		c, got := dialGreeting(t, "127.0.70.1:8080")
		src := c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.Close()
		if want := byAddr[expected(t, svc, src, 6)]; got != want {
			t.Fatalf("flow from %s went to %s, the XDP choice is %s", src, got, want)
		}
		seen[got]++
	}
	if len(seen) != 3 {
		t.Errorf("60 flows reached %v, want all three backends", seen)
	}
	active := func() (flows, open uint64) {
		for _, b := range f.Stats()[0].Backends {
			flows += b.NewFlows
			open += b.Active
		}
		return flows, open
	}
	if flows, _ := active(); flows != 60 {
		t.Errorf("stats count %d new flows, want 60", flows)
	}
	held, _ := dialGreeting(t, "127.0.70.1:8080")
	waitFor(t, func() bool { _, open := active(); return open == 1 })
	held.Close()
	waitFor(t, func() bool { _, open := active(); return open == 0 })
}

func TestTCP_TableChangeKeepsOpenFlows(t *testing.T) {
	bs := startTCPBackends(t, 3)
	f := New(Options{})
	defer f.Close()
	ctx := context.Background()
	svc := svcOf("127.0.70.2", 8080, dataplane.ProtoTCP, bs)
	if err := f.Apply(ctx, dataplane.Config{Services: []dataplane.Service{svc}}); err != nil {
		t.Fatal(err)
	}
	c, first := dialGreeting(t, "127.0.70.2:8080")
	defer c.Close()
	// Remove the backend this connection uses.
	var rest []backend
	for _, b := range bs {
		if b.name != first {
			rest = append(rest, b)
		}
	}
	if err := f.Apply(ctx, dataplane.Config{Services: []dataplane.Service{svcOf("127.0.70.2", 8080, dataplane.ProtoTCP, rest)}}); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "still there?\n")
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, first+" ") {
		t.Fatalf("open flow after its backend was removed: %q %v, want an echo from %s", line, err, first)
	}
	for i := 0; i < 20; i++ {
		c2, got := dialGreeting(t, "127.0.70.2:8080")
		c2.Close()
		if got == first {
			t.Fatalf("a new flow reached removed backend %s", first)
		}
	}
}

func TestTCP_NoBackendAndSourceHash(t *testing.T) {
	bs := startTCPBackends(t, 3)
	f := New(Options{})
	defer f.Close()
	ctx := context.Background()
	zero := svcOf("127.0.70.3", 8080, dataplane.ProtoTCP, bs, 0, 0, 0)
	sh := svcOf("127.0.70.3", 8081, dataplane.ProtoTCP, bs)
	sh.Scheduler = dataplane.SchedulerSourceHash
	if err := f.Apply(ctx, dataplane.Config{Services: []dataplane.Service{zero, sh}}); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", "127.0.70.3:8080", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("a service with only weight-0 backends answered: %d %v", n, err)
	}
	c.Close()
	var firstName string
	for i := 0; i < 10; i++ {
		c, got := dialGreeting(t, "127.0.70.3:8081")
		c.Close()
		if firstName == "" {
			firstName = got
		} else if got != firstName {
			t.Fatalf("source-hash sent one client to %s and %s", firstName, got)
		}
	}
	waitFor(t, func() bool { return f.Stats()[0].NoBackend == 1 })
}

func TestUDP(t *testing.T) {
	var bs []backend
	for i := 0; i < 3; i++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		name := fmt.Sprintf("u%d", i)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte(name+" "+string(buf[:n])), from)
			}
		}()
		bs = append(bs, backend{name: name, addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()})
	}
	f := New(Options{})
	defer f.Close()
	svc := svcOf("127.0.70.4", 5353, dataplane.ProtoUDP, bs)
	if err := f.Apply(context.Background(), dataplane.Config{Services: []dataplane.Service{svc}}); err != nil {
		t.Fatal(err)
	}
	byAddr := map[string]string{}
	for _, b := range bs {
		byAddr[b.addr.String()] = b.name
	}
	for i := 0; i < 10; i++ {
		c, err := net.Dial("udp", "127.0.70.4:5353")
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		for j := 0; j < 2; j++ {
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("udp reply: %v", err)
			}
			src := c.LocalAddr().(*net.UDPAddr).AddrPort()
			if want := byAddr[expected(t, svc, src, 17)] + " ping"; string(buf[:n]) != want {
				t.Fatalf("udp flow from %s got %q, want %q", src, buf[:n], want)
			}
		}
		c.Close()
	}
}

func TestApply_BadConfigChangesNothing(t *testing.T) {
	bs := startTCPBackends(t, 1)
	f := New(Options{})
	defer f.Close()
	ctx := context.Background()
	good := svcOf("127.0.70.5", 8080, dataplane.ProtoTCP, bs)
	if err := f.Apply(ctx, dataplane.Config{Services: []dataplane.Service{good}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []dataplane.Service{
		{VIP: netip.MustParseAddr("127.0.70.5"), Port: 0, Proto: "tcp"},
		{VIP: netip.MustParseAddr("127.0.70.5"), Port: 80, Proto: "sctp"},
		{VIP: netip.MustParseAddr("127.0.70.5"), Port: 80, Proto: "tcp", Mode: "tunnel"},
		{VIP: netip.MustParseAddr("127.0.70.5"), Port: 80, Proto: "tcp", Scheduler: "random"},
		{Port: 80, Proto: "tcp"},
	} {
		if err := f.Apply(ctx, dataplane.Config{Services: []dataplane.Service{bad}}); err == nil {
			t.Errorf("Apply(%+v) succeeded", bad)
		}
	}
	c, got := dialGreeting(t, "127.0.70.5:8080")
	c.Close()
	if got != "b0" {
		t.Errorf("after rejected configs the service answered %q", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
