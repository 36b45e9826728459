package node

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testNetns makes a network namespace for the test (skipping it without
// root) and returns its name and a netlink handle in it; both go when the
// test ends.
func testNetns(t *testing.T, name string) (string, *netlink.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace)")
	}
	ns := fmt.Sprintf("%s%d", name, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsh.Close() })
	nl, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return ns, nl
}

// TestNeighbors reads a neighbour table and default route made with
// iproute2 in a network namespace of its own.
func TestNeighbors(t *testing.T) {
	ns, nl := testNetns(t, "weftnbr")
	for _, args := range [][]string{
		{"link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"link", "set", "d0", "up"},
		{"link", "set", "d1", "up"},
		{"addr", "add", "10.9.0.1/24", "dev", "d0"},
		{"addr", "add", "2001:db8::1/64", "dev", "d0", "nodad"},
		{"neigh", "add", "10.9.0.2", "lladdr", "02:00:00:00:00:02", "dev", "d0", "nud", "permanent"},
		{"neigh", "add", "10.9.0.3", "lladdr", "02:00:00:00:00:03", "dev", "d0", "nud", "stale"},
		{"neigh", "add", "2001:db8::2", "lladdr", "02:00:00:00:00:06", "dev", "d0", "nud", "permanent"},
		{"route", "add", "default", "via", "10.9.0.3", "dev", "d0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	table, gw, err := neighbors(nl, "d0")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"10.9.0.2": "02:00:00:00:00:02", "10.9.0.3": "02:00:00:00:00:03", "2001:db8::2": "02:00:00:00:00:06"}
	for a, mac := range want {
		if got := table[netip.MustParseAddr(a)]; got.String() != mac {
			t.Errorf("neighbour %s: got %v, want %s", a, got, mac)
		}
	}
	if gw.String() != "02:00:00:00:00:03" {
		t.Errorf("gateway MAC %v, want the default route's via (02:00:00:00:00:03)", gw)
	}
	if _, _, err := neighbors(nl, "nosuch0"); err == nil {
		t.Error("an unknown interface: got no error")
	}
}
