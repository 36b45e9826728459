package lab

import (
	"context"
	"strings"
	"testing"
)

func TestUpDown(t *testing.T) {
	if err := Requirements(); err != nil {
		t.Skipf("lab test skipped: %v", err)
	}
	ctx := context.Background()
	topo := Topology{Prefix: "weftlabt", Nodes: []Node{{"node1", "a"}, {"node2", "b"}}, Servers: 2}
	l, err := Up(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Down() })
	// Up again replaces the lab instead of failing.
	if l, err = Up(ctx, topo); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	for _, to := range append([]Host{l.Router}, append(l.Nodes, l.Servers...)...) {
		target := to.Addr.String()
		if to.Name == "router" {
			target = RouterOuter.String()
		}
		if out, err := l.Command(ctx, l.Client, "ping", "-c1", "-W2", target).CombinedOutput(); err != nil && to.Name == "router" {
			t.Errorf("client cannot ping %s (%s): %v %s", to.Name, target, err, out)
		}
	}
	pass, err := l.AttachPass(l.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	if mac, err := l.MAC(l.Servers[0], "eth0"); err != nil || len(mac) != 6 {
		t.Errorf("MAC of server1: %v %v", mac, err)
	}
	for _, to := range l.Servers {
		if out, err := l.Command(ctx, l.Nodes[0], "ping", "-c1", "-W2", to.Addr.String()).CombinedOutput(); err != nil {
			t.Errorf("node1 cannot reach %s: %v %s", to.Name, err, out)
		}
	}
	// Servers reach the client through the router (their default route).
	if out, err := l.Command(ctx, l.Servers[0], "ping", "-c1", "-W2", ClientAddr.String()).CombinedOutput(); err != nil {
		t.Errorf("server1 cannot reach the client: %v %s", err, out)
	}
	out, err := l.Birdc(ctx, "show", "protocols")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		if !strings.Contains(out, n.Name) {
			t.Errorf("bird has no BGP session for %s:\n%s", n.Name, out)
		}
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if gone, _ := l.Command(ctx, l.Client, "true").CombinedOutput(); !strings.Contains(string(gone), "weftlabt-client") {
		t.Errorf("client namespace still exists after Down: %q", gone)
	}
}
