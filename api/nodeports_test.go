package api

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"testing"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/validate"
)

// TestListenerOnNodePort: a listener may not take a port the node itself
// listens on, on its address or, for a wildcard bind, on any; the error
// names the field. The test node's record has its API at 127.0.0.1:<port
// of the test server> and Raft at 127.0.0.1:1; its configuration adds a
// gossip wildcard bind.
func TestListenerOnNodePort(t *testing.T) {
	gossip := validate.NodePort{Node: "n1", Service: validate.ServiceGossip, Addr: netip.MustParseAddrPort("0.0.0.0:7946")}
	n := newTestNode(t, func(c *Config) { c.LocalPorts = []validate.NodePort{gossip} })
	c := n.client(n.admin)
	ctx := context.Background()
	if _, err := c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: pool("web")})); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(n.url)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.ParseUint(u.Port(), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	listener := func(protocol string, port uint64) *weftv1.Listener {
		return &weftv1.Listener{Protocol: protocol, Port: uint32(port), Pool: "web"}
	}
	create := func(l *weftv1.LoadBalancer) error {
		_, err := c.LB.CreateLoadBalancer(ctx, connect.NewRequest(&weftv1.CreateLoadBalancerRequest{LoadBalancer: l}))
		return err
	}
	cases := []struct {
		name string
		call func() error
		want string // "" for success
	}{
		{"tcp on the API port", func() error { return create(lb("x", "127.0.0.1", listener("tcp", 80), listener("tcp", port))) },
			fmt.Sprintf(`load balancer "x": spec.listeners[1].port: %d is the API port of node n1 (127.0.0.1:%d)`, port, port)},
		{"http on the Raft port", func() error { return create(lb("x", "127.0.0.1", listener("http", 1))) },
			`load balancer "x": spec.listeners[0].port: 1 is the Raft port of node n1 (127.0.0.1:1)`},
		{"udp on a wildcard gossip bind", func() error { return create(lb("x", "198.51.100.10", listener("udp", 7946))) },
			`load balancer "x": spec.listeners[0].port: 7946 is the gossip port of node n1 (0.0.0.0:7946, every address)`},
		{"in a batch", func() error {
			_, err := c.LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: []*weftv1.Resource{
				asRes(pool("other")), asRes(lb("x", "198.51.100.10", listener("http", 7946)))}}))
			return err
		}, `resources[1]: load balancer "x": spec.listeners[0].port: 7946 is the gossip port of node n1 (0.0.0.0:7946, every address)`},
		{"udp on the API port", func() error { return create(lb("udp", "127.0.0.1", listener("udp", port))) }, ""},
		{"the API port on another address", func() error { return create(lb("other", "127.0.0.2", listener("tcp", port))) }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.resources()
			err := tc.call()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			wantCode(t, err, connect.CodeInvalidArgument)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Message() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if !sameResources(before, n.resources()) {
				t.Error("state changed by a refused write")
			}
		})
	}
}

// TestFragmentsPerVIP: of the load balancers of one VIP, one listener may
// forward fragments; a second is refused, naming the field, and changes
// nothing, while a load balancer of another VIP may.
func TestFragmentsPerVIP(t *testing.T) {
	n := newTestNode(t)
	c := n.client(n.admin)
	ctx := context.Background()
	if _, err := c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: pool("dns")})); err != nil {
		t.Fatal(err)
	}
	fragments := func(port uint32) *weftv1.Listener {
		return &weftv1.Listener{Protocol: "udp", Port: port, Mode: "dsr", Pool: "dns", ForwardFragments: true}
	}
	create := func(l *weftv1.LoadBalancer) error {
		_, err := c.LB.CreateLoadBalancer(ctx, connect.NewRequest(&weftv1.CreateLoadBalancerRequest{LoadBalancer: l}))
		return err
	}
	if err := create(lb("a", "198.51.100.20", fragments(53))); err != nil {
		t.Fatal(err)
	}
	before := n.resources()
	err := create(lb("b", "198.51.100.20", &weftv1.Listener{Protocol: "tcp", Port: 80, Pool: "dns"}, fragments(54)))
	wantCode(t, err, connect.CodeInvalidArgument)
	want := `load balancer "b": spec.listeners[1].forwardFragments: load balancer "a" forwards the fragments of VIP 198.51.100.20 already; a fragment has no port to choose by`
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Message() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if !sameResources(before, n.resources()) {
		t.Error("state changed by a refused write")
	}
	if err := create(lb("c", "198.51.100.21", fragments(53))); err != nil {
		t.Errorf("another VIP: %v", err)
	}
	if err := create(lb("d", "198.51.100.20", &weftv1.Listener{Protocol: "udp", Port: 55, Mode: "dsr", Pool: "dns"})); err != nil {
		t.Errorf("the VIP without fragments: %v", err)
	}
}
