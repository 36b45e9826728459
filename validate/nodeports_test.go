package validate

import (
	"errors"
	"net/netip"
	"testing"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestParseNodePort(t *testing.T) {
	tests := []struct {
		in     string
		want   string // netip.AddrPort text; "" when not ok
		wantOK bool
	}{
		{"127.0.0.1:7400", "127.0.0.1:7400", true},
		{"[2001:db8::1]:7401", "[2001:db8::1]:7401", true},
		{"[::ffff:192.0.2.1]:7946", "192.0.2.1:7946", true},
		{"0.0.0.0:7400", "0.0.0.0:7400", true},
		{":7400", "[::]:7400", true},
		{"node1.example.com:7400", "", false},
		{"127.0.0.1", "", false},
		{"127.0.0.1:70000", "", false},
		{"127.0.0.1:http", "", false},
	}
	for _, tc := range tests {
		p, ok := ParseNodePort("n1", ServiceAPI, tc.in)
		if ok != tc.wantOK || (ok && p.Addr.String() != tc.want) {
			t.Errorf("ParseNodePort(%q) = %v, %v; want %s, %v", tc.in, p.Addr, ok, tc.want, tc.wantOK)
		}
	}
}

func TestListenerPorts(t *testing.T) {
	ports := []NodePort{
		{Node: "node1", Service: ServiceAPI, Addr: netip.MustParseAddrPort("127.0.0.1:7400")},
		{Node: "node1", Service: ServiceRaft, Addr: netip.MustParseAddrPort("127.0.0.1:7401")},
		{Node: "node1", Service: ServiceGossip, Addr: netip.MustParseAddrPort("127.0.0.1:7946")},
		{Node: "node2", Service: ServiceAPI, Addr: netip.MustParseAddrPort("[2001:db8::2]:7400")},
		{Node: "node2", Service: ServiceRaft, Addr: netip.MustParseAddrPort("0.0.0.0:9401")},
	}
	balancer := func(vip string, ls ...*weftv1.Listener) *weftv1.LoadBalancer {
		return &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.LoadBalancerSpec{Vip: vip, Listeners: ls}}
	}
	listener := func(protocol string, port uint32) *weftv1.Listener {
		return &weftv1.Listener{Protocol: protocol, Port: port}
	}
	tests := []struct {
		name string
		lb   *weftv1.LoadBalancer
		want string // the error; "" for none
	}{
		{"api port on the node's address", balancer("127.0.0.1", listener("tcp", 80), listener("tcp", 7400)),
			`load balancer "web": spec.listeners[1].port: 7400 is the API port of node node1 (127.0.0.1:7400)`},
		{"http on the raft port", balancer("127.0.0.1", listener("http", 7401)),
			`load balancer "web": spec.listeners[0].port: 7401 is the Raft port of node node1 (127.0.0.1:7401)`},
		{"https on the gossip port", balancer("127.0.0.1", listener("https", 7946)),
			`load balancer "web": spec.listeners[0].port: 7946 is the gossip port of node node1 (127.0.0.1:7946)`},
		{"udp on the gossip port", balancer("127.0.0.1", listener("udp", 7946)),
			`load balancer "web": spec.listeners[0].port: 7946 is the gossip port of node node1 (127.0.0.1:7946)`},
		{"IPv6 node address", balancer("2001:db8::2", listener("tcp", 7400)),
			`load balancer "web": spec.listeners[0].port: 7400 is the API port of node node2 ([2001:db8::2]:7400)`},
		{"IPv4-mapped VIP", balancer("::ffff:127.0.0.1", listener("tcp", 7400)),
			`load balancer "web": spec.listeners[0].port: 7400 is the API port of node node1 (127.0.0.1:7400)`},
		{"wildcard bind takes every VIP", balancer("198.51.100.10", listener("tcp", 9401)),
			`load balancer "web": spec.listeners[0].port: 9401 is the Raft port of node node2 (0.0.0.0:9401, every address)`},
		{"wildcard bind takes IPv6 VIPs too", balancer("2001:db8::10", listener("http", 9401)),
			`load balancer "web": spec.listeners[0].port: 9401 is the Raft port of node node2 (0.0.0.0:9401, every address)`},
		{"udp on the api port", balancer("127.0.0.1", listener("udp", 7400)), ""},
		{"udp on a tcp-only wildcard port", balancer("198.51.100.10", listener("udp", 9401)), ""},
		{"api port on another address", balancer("127.0.0.2", listener("tcp", 7400)), ""},
		{"other ports on the node's address", balancer("127.0.0.1", listener("tcp", 80), listener("udp", 53)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ListenerPorts(tc.lb, ports)
			got := ""
			if err != nil {
				got = err.Error()
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Errorf("got %T, want a *FieldError", err)
				}
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
