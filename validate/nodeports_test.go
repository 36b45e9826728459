package validate

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestNodePorts(t *testing.T) {
	tests := []struct {
		name            string
		api, raft, goss string
		want            []string // service@addr
	}{
		{"loopback", "127.0.0.1:7400", "127.0.0.1:7401", "127.0.0.1:7946", []string{"API@127.0.0.1:7400", "Raft@127.0.0.1:7401", "gossip@127.0.0.1:7946"}},
		{"IPv6 and mapped", "[2001:db8::1]:7400", "[::ffff:192.0.2.1]:7401", "", []string{"API@[2001:db8::1]:7400", "Raft@192.0.2.1:7401"}},
		{"wildcards", "0.0.0.0:7400", ":7401", "[::]:7946", []string{"API@0.0.0.0:7400", "Raft@[::]:7401", "gossip@[::]:7946"}},
		{"host names and bad ports left out", "node1.example.com:7400", "127.0.0.1:70000", "127.0.0.1:http", nil},
		{"no port", "127.0.0.1", "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range NodePorts("n1", tc.api, tc.raft, tc.goss) {
				if p.Node != "n1" {
					t.Errorf("node %q, want n1", p.Node)
				}
				got = append(got, p.Service+"@"+p.Addr.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
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
	ports = append(ports, ServicePorts("node3", ServiceDNS, "198.51.100.53:53")...)
	ports = append(ports, ServicePorts("node3", ServiceDNS, "dns.example:53")...) // a host name: left out
	ports = append(ports, ServicePorts("node3", ServiceMetrics, ":7402")...)
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
		{"udp on the DNS port", balancer("198.51.100.53", listener("udp", 53)),
			`load balancer "web": spec.listeners[0].port: 53 is the DNS port of node node3 (198.51.100.53:53)`},
		{"tcp on the DNS port", balancer("198.51.100.53", listener("tcp", 80), listener("tcp", 53)),
			`load balancer "web": spec.listeners[1].port: 53 is the DNS port of node node3 (198.51.100.53:53)`},
		{"DNS port of another address", balancer("198.51.100.54", listener("udp", 53)), ""},
		{"http on a wildcard metrics port", balancer("198.51.100.54", listener("http", 7402)),
			`load balancer "web": spec.listeners[0].port: 7402 is the metrics port of node node3 ([::]:7402, every address)`},
		{"udp on the metrics port", balancer("198.51.100.54", listener("udp", 7402)), ""},
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
