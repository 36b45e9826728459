// Package lab builds Weft's testing ground: hosts in network namespaces
// joined by veth pairs and a bridge (DESIGN.md "Testing ground").
//
//	client --- router ===[ bridge in the "sw" namespace ]=== node1..N, server1..M
//
// The client reaches VIPs through the router, which learns them over BGP
// from the nodes (bird2, ECMP with an L4 hash). Nodes and servers share one
// L2 segment, so the XDP program forwards with XDP_TX in both FullNAT and
// DSR mode. Addresses come from the benchmarking range 198.18.0.0/15 and
// VIPs from TEST-NET-2 (198.51.100.0/24); nothing leaves the machine.
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fixed lab addresses.
var (
	ClientAddr     = netip.MustParseAddr("198.18.0.2")
	RouterOuter    = netip.MustParseAddr("198.18.0.1")
	RouterInner    = netip.MustParseAddr("198.18.1.1")
	FabricPrefix   = netip.MustParsePrefix("198.18.1.0/24")
	VIPPrefix      = netip.MustParsePrefix("198.51.100.0/24")
	RouterASN      = uint32(64512)
	NodeASN        = uint32(64513)
	firstNodeHost  = 11
	firstSrvHost   = 21
	firstLocalHost = 111
)

// LocalAddr is the FullNAT local address of the lab's i-th node (from 0):
// on the fabric, but on no interface; the node's XDP program answers ARP
// for it, and another node takes it over if the node is lost.
func LocalAddr(i int) netip.Addr { return hostAddr(firstLocalHost + i) }

// Topology says which hosts to build.
type Topology struct {
	// Prefix names the namespaces (<prefix>-client, ...); one lab per prefix.
	Prefix string
	// Nodes are Weft nodes with their zones.
	Nodes []Node
	// Servers is the number of real servers.
	Servers int
}

// Node is a Weft node's host.
type Node struct{ Name, Zone string }

// Host is one namespace of a running lab.
type Host struct {
	Name string // e.g. "node1"
	NS   string // network namespace
	Addr netip.Addr
	// Iface is the host's interface on its segment.
	Iface string
}

// Lab is a built lab.
type Lab struct {
	Topology
	Client, Router, Switch Host
	Nodes, Servers         []Host
}

// Requirements returns why the lab cannot run here, or nil.
func Requirements() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the lab needs iproute2 (ip)")
	}
	return nil
}

// Up builds the lab, first removing any leftover with the same prefix, so
// it is idempotent.
func Up(ctx context.Context, t Topology) (*Lab, error) {
	if err := Requirements(); err != nil {
		return nil, err
	}
	if t.Prefix == "" {
		t.Prefix = "weft"
	}
	if err := EnsureTools(ctx, "ping", "ethtool"); err != nil {
		return nil, err
	}
	l := &Lab{Topology: t}
	l.Down()
	l.Client = Host{Name: "client", NS: t.Prefix + "-client", Addr: ClientAddr, Iface: "eth0"}
	l.Router = Host{Name: "router", NS: t.Prefix + "-router", Addr: RouterInner, Iface: "eth1"}
	l.Switch = Host{Name: "sw", NS: t.Prefix + "-sw", Iface: "br0"}
	for i, n := range t.Nodes {
		l.Nodes = append(l.Nodes, Host{Name: n.Name, NS: t.Prefix + "-" + n.Name,
			Addr: hostAddr(firstNodeHost + i), Iface: "eth0"})
	}
	for i := 0; i < t.Servers; i++ {
		name := fmt.Sprintf("server%d", i+1)
		l.Servers = append(l.Servers, Host{Name: name, NS: t.Prefix + "-" + name,
			Addr: hostAddr(firstSrvHost + i), Iface: "eth0"})
	}
	if err := l.build(ctx); err != nil {
		l.Down()
		return nil, err
	}
	return l, nil
}

func hostAddr(n int) netip.Addr {
	a := FabricPrefix.Addr().As4()
	a[3] = byte(n)
	return netip.AddrFrom4(a)
}

func (l *Lab) build(ctx context.Context) error {
	all := append([]Host{l.Client, l.Router, l.Switch}, append(l.Nodes, l.Servers...)...)
	for _, h := range all {
		if err := run(ctx, "ip", "netns", "add", h.NS); err != nil {
			return err
		}
		if err := l.ip(ctx, h.NS, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	sw := l.Switch.NS
	steps := []step{
		{"", []string{"link", "add", "br0", "netns", sw, "type", "bridge"}},
		{sw, []string{"link", "set", "br0", "up"}},
		// client eth0 <-> router eth0 (created in place: names may repeat
		// across namespaces, never in the root one).
		{"", []string{"link", "add", "eth0", "netns", l.Client.NS, "type", "veth", "peer", "name", "eth0", "netns", l.Router.NS}},
		{l.Client.NS, []string{"addr", "add", ClientAddr.String() + "/24", "dev", "eth0"}},
		{l.Client.NS, []string{"link", "set", "eth0", "up"}},
		{l.Client.NS, []string{"route", "add", "default", "via", RouterOuter.String()}},
		{l.Router.NS, []string{"addr", "add", RouterOuter.String() + "/24", "dev", "eth0"}},
		{l.Router.NS, []string{"link", "set", "eth0", "up"}},
	}
	// Fabric hosts: one veth each into the switch's bridge.
	for i, h := range append([]Host{l.Router}, append(l.Nodes, l.Servers...)...) {
		port := fmt.Sprintf("p%d", i)
		steps = append(steps,
			step{"", []string{"link", "add", port, "netns", sw, "type", "veth", "peer", "name", h.Iface, "netns", h.NS}},
			step{sw, []string{"link", "set", port, "master", "br0"}},
			step{sw, []string{"link", "set", port, "up"}},
			step{h.NS, []string{"addr", "add", h.Addr.String() + "/24", "dev", h.Iface}},
			step{h.NS, []string{"link", "set", h.Iface, "up"}},
		)
		if h.Name != "router" {
			steps = append(steps, step{h.NS, []string{"route", "add", "default", "via", RouterInner.String()}})
		}
	}
	for _, st := range steps {
		if err := l.ip(ctx, st.ns, st.args...); err != nil {
			return err
		}
	}
	// Senders finish their checksums themselves, as a real NIC would:
	// a frame XDP forwards keeps whatever checksum it arrived with.
	for _, h := range append([]Host{l.Client}, l.Servers...) {
		if err := run(ctx, "ip", "netns", "exec", h.NS, "ethtool", "-K", h.Iface, "tx", "off"); err != nil {
			return err
		}
	}
	sysctls := map[string][]string{
		l.Router.NS: {"net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"},
	}
	for _, s := range l.Servers {
		// DSR: servers hold VIPs on lo and must not answer ARP for them.
		sysctls[s.NS] = []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"}
	}
	for ns, kvs := range sysctls {
		for _, kv := range kvs {
			if err := run(ctx, "ip", "netns", "exec", ns, "sysctl", "-qw", kv); err != nil {
				return err
			}
		}
	}
	if len(l.Nodes) > 0 {
		return l.startRouter(ctx)
	}
	return nil
}

// Down removes every namespace of the lab (and leftovers of its prefix).
func (l *Lab) Down() error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	var errs []error
	var killed []int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], l.Prefix+"-") {
			continue
		}
		// Processes outlive a deleted namespace: stop them first.
		if out, err := exec.Command("ip", "netns", "pids", f[0]).Output(); err == nil {
			for _, field := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(field); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed = append(killed, pid)
				}
			}
		}
		if err := exec.Command("ip", "netns", "del", f[0]).Run(); err != nil {
			errs = append(errs, fmt.Errorf("delete netns %s: %w", f[0], err))
		}
	}
	// Wait for the killed processes, so that nothing of the lab runs once
	// Down returns.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		killed = slices.DeleteFunc(killed, exited)
		if len(killed) == 0 {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("processes %v still run 5s after SIGKILL", killed))
			break
		}
	}
	os.RemoveAll(l.runDir())
	return errors.Join(errs...)
}

// exited reports whether process pid has exited; a zombie has (nothing
// may reap it: the lab's processes are not the caller's children).
func exited(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold any character.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// Command returns a command that runs in a host's namespace.
func (l *Lab) Command(ctx context.Context, h Host, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// step is one `ip` command, in a namespace ("" for the root one).
type step struct {
	ns   string
	args []string
}

func (l *Lab) ip(ctx context.Context, ns string, args ...string) error {
	if ns == "" {
		return run(ctx, append([]string{"ip"}, args...)...)
	}
	return run(ctx, append([]string{"ip", "-n", ns}, args...)...)
}

func run(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
