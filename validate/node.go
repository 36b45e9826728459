package validate

import (
	"net"
	"strconv"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

const kindNode = "node"

// Node checks a joining node's identity: its name, region and zone are DNS
// labels and its Raft, API and (when set: nodes from before gossip have
// none) gossip addresses are host:port with a valid port.
func Node(n *weftv1.Node) error {
	c, err := metadata(kindNode, n.GetMetadata())
	if err != nil {
		return err
	}
	if err := c.label("spec.region", n.GetSpec().GetRegion()); err != nil {
		return err
	}
	if err := c.label("spec.zone", n.GetSpec().GetZone()); err != nil {
		return err
	}
	if err := c.hostPort("spec.raftAddress", n.GetSpec().GetRaftAddress()); err != nil {
		return err
	}
	if err := c.hostPort("spec.apiAddress", n.GetSpec().GetApiAddress()); err != nil {
		return err
	}
	if g := n.GetSpec().GetGossipAddress(); g != "" {
		return c.hostPort("spec.gossipAddress", g)
	}
	return nil
}

func (c checker) hostPort(field, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return c.fail(field, "%q is not host:port", s)
	}
	if p := hostProblem(host); p != "" && net.ParseIP(host) == nil {
		return c.fail(field, "host %q: %s", host, p)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return c.fail(field, "port %q is not a number", port)
	}
	return c.port(field, uint32(n))
}

// KindName is the name error messages use for a kind as the state store
// spells it ("LoadBalancer" -> "load balancer").
func KindName(kind string) string {
	switch kind {
	case "LoadBalancer":
		return kindLoadBalancer
	case "Pool":
		return kindPool
	case "Certificate":
		return kindCertificate
	case "DNSRecord":
		return kindDNSRecord
	case "AddressPool":
		return kindAddressPool
	}
	return kind
}
