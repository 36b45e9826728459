package api

import (
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/validate"
)

// checkResource normalises and validates r (validate.Resource), then checks
// what needs the state: a load balancer's listeners against the ports the
// nodes listen on, and against other load balancers of its VIP that
// forward fragments.
func (s *Server) checkResource(r *weftv1.Resource) error {
	if err := validate.Resource(r); err != nil {
		return err
	}
	if lb := r.GetLoadBalancer(); lb != nil {
		if err := validate.ListenerPorts(lb, s.nodePorts()); err != nil {
			return err
		}
		return validate.FragmentListeners(lb, s.fsm.State().LoadBalancers())
	}
	return nil
}

// nodePorts lists the ports nodes listen on: every node's API, Raft and
// gossip address from the node table (as advertised, which is what the
// nodes bind unless they bind a wildcard), then this node's own listen
// addresses (Config.LocalPorts), which the table does not hold and which may
// be wildcards that take the port on every VIP.
func (s *Server) nodePorts() []validate.NodePort {
	var ports []validate.NodePort
	for _, n := range s.fsm.State().Nodes() {
		spec := n.GetSpec()
		ports = append(ports, validate.NodePorts(n.GetMetadata().GetName(),
			spec.GetApiAddress(), spec.GetRaftAddress(), spec.GetGossipAddress())...)
	}
	return append(ports, s.cfg.LocalPorts...)
}
