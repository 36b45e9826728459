package validate

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// Services a node itself listens on, as NodePort.Service names them.
const (
	ServiceAPI    = "API"
	ServiceRaft   = "Raft"
	ServiceGossip = "gossip"
	ServiceDNS    = "DNS"
	// ServiceMetrics is the Prometheus endpoint (--metrics-addr).
	ServiceMetrics = "metrics"
)

// serviceTransports are the transports each node service listens on
// (memberlist gossips over UDP and pushes state over TCP, DNS answers over
// both). A new service of the node is added here, and its addresses to
// what the API passes ListenerPorts: the node table's and the node's own
// (api's nodePorts).
var serviceTransports = map[string][]string{
	ServiceAPI:     {"tcp"},
	ServiceRaft:    {"tcp"},
	ServiceGossip:  {"udp", "tcp"},
	ServiceDNS:     {"udp", "tcp"},
	ServiceMetrics: {"tcp"},
}

// NodePort is an address and port a node itself listens on.
type NodePort struct {
	Node    string
	Service string // ServiceAPI, ServiceRaft, ServiceGossip, ServiceDNS or ServiceMetrics
	// Addr is the address and port; an unspecified address (0.0.0.0 or
	// ::) is a wildcard bind, which takes the port on every address (Go
	// listens dual-stack on either).
	Addr netip.AddrPort
}

// NodePorts returns the NodePorts of a node's API, Raft and gossip
// addresses (host:port, as listened on or advertised). An empty host is a
// wildcard. A host name is left out: this stateless check cannot know its
// addresses; so is an empty address (nodes from before gossip have none).
func NodePorts(node, apiAddr, raftAddr, gossipAddr string) []NodePort {
	var ports []NodePort
	for _, a := range []struct{ service, addr string }{
		{ServiceAPI, apiAddr}, {ServiceRaft, raftAddr}, {ServiceGossip, gossipAddr},
	} {
		if p, ok := parseNodePort(node, a.service, a.addr); ok {
			ports = append(ports, p)
		}
	}
	return ports
}

// ServicePorts returns the NodePort of one service's address (host:port),
// as NodePorts reads each: none for an empty address or a host name.
func ServicePorts(node, service, addr string) []NodePort {
	if p, ok := parseNodePort(node, service, addr); ok {
		return []NodePort{p}
	}
	return nil
}

func parseNodePort(node, service, hostPort string) (p NodePort, ok bool) {
	host, portText, err := net.SplitHostPort(hostPort)
	if err != nil {
		return NodePort{}, false
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return NodePort{}, false
	}
	addr := netip.IPv6Unspecified()
	if host != "" {
		if addr, err = netip.ParseAddr(host); err != nil {
			return NodePort{}, false
		}
	}
	return NodePort{Node: node, Service: service, Addr: netip.AddrPortFrom(addr.Unmap(), uint16(port))}, true
}

// ListenerPorts checks that no listener of lb takes a port a node itself
// listens on, on the VIP or on every address (a wildcard bind), over the same
// transport: tcp, http and https listeners clash with the TCP services,
// udp listeners and https listeners with http3 with the UDP ones. Such a
// listener could never bind, or its traffic would reach the node's own
// service. The ports come from the node table and the node's
// configuration, which this package does not see; lb must have passed
// LoadBalancer.
func ListenerPorts(lb *weftv1.LoadBalancer, ports []NodePort) error {
	c := checker{kind: kindLoadBalancer, name: lb.GetMetadata().GetName()}
	// A VIP still to be taken from an address pool (empty) is checked
	// against wildcard binds only.
	var vip netip.Addr
	if s := lb.GetSpec().GetVip(); s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return c.fail("spec.vip", "%q is not an IP address", s)
		}
		vip = a.Unmap()
	}
	for i, l := range lb.GetSpec().GetListeners() {
		for _, p := range ports {
			if uint32(p.Addr.Port()) != l.GetPort() || !slices.ContainsFunc(Transports(l), func(tr string) bool {
				return slices.Contains(serviceTransports[p.Service], tr)
			}) {
				continue
			}
			switch {
			case p.Addr.Addr().IsUnspecified():
				return c.fail(fmt.Sprintf("spec.listeners[%d].port", i), "%d is the %s port of node %s (%s, every address)", l.GetPort(), p.Service, p.Node, p.Addr)
			case p.Addr.Addr() == vip:
				return c.fail(fmt.Sprintf("spec.listeners[%d].port", i), "%d is the %s port of node %s (%s)", l.GetPort(), p.Service, p.Node, p.Addr)
			}
		}
	}
	return nil
}
