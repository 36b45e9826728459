package api

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftlb/weft/pki"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/tokens"
	"github.com/weftlb/weft/validate"
	"github.com/weftlb/weft/version"
)

// Join tokens default to one use within a day, like kubeadm's.
const (
	defaultJoinTTL  = 24 * time.Hour
	defaultJoinUses = 1
)

// clusterService implements weftv1connect.ClusterServiceHandler.
type clusterService struct{ s *Server }

var _ weftv1connect.ClusterServiceHandler = (*clusterService)(nil)

type csc = weftv1connect.ClusterServiceClient

// Observed is what a node observes beside the committed state, as Status
// shows it: its gossip membership (nil before gossip starts) and its copy
// of the agreed health view (nil on nodes that run no health checks), and
// what its DNS server answers for each DNS record (nil on nodes that run
// none).
type Observed struct {
	Gossip []*weftv1.GossipMember
	Health []*weftv1.MemberHealth
	DNS    map[string]*weftv1.DNSRecordStatus
}

// observed returns this node's observations, or none.
func (s *Server) observed() Observed {
	if s.cfg.Observed == nil {
		return Observed{}
	}
	return s.cfg.Observed()
}

// livenessUnknown is the liveness of a node this node's gossip has no
// record of.
const livenessUnknown = "unknown"

// nodes returns the node table with each node's Raft suffrage and whether
// it leads, as this replica sees them, and its liveness and version as this
// node's gossip sees them.
func (s *Server) nodes() []*weftv1.Node {
	gossip := map[string]*weftv1.GossipMember{}
	for _, g := range s.observed().Gossip {
		gossip[g.GetName()] = g
	}
	suffrage := map[string]string{}
	if servers, err := s.cfg.Replica.Servers(); err == nil {
		for _, sv := range servers {
			if sv.Suffrage == raft.Voter {
				suffrage[string(sv.ID)] = "voter"
			} else {
				suffrage[string(sv.ID)] = "nonvoter"
			}
		}
	}
	leader, _ := s.cfg.Replica.Leader()
	var out []*weftv1.Node
	for _, n := range s.fsm.State().Nodes() {
		n = proto.Clone(n).(*weftv1.Node)
		name := n.GetMetadata().GetName()
		n.Status = &weftv1.NodeStatus{Suffrage: suffrage[name], Leader: name == leader, Liveness: livenessUnknown}
		if g := gossip[name]; g != nil {
			n.Status.Liveness, n.Status.Version = g.GetState(), g.GetVersion()
		}
		out = append(out, n)
	}
	return out
}

// Status is served by every node about itself, never forwarded: it is how
// an operator (and voter placement) sees each replica's progress.
func (c *clusterService) Status(ctx context.Context, req *connect.Request[weftv1.StatusRequest]) (*connect.Response[weftv1.StatusResponse], error) {
	s := c.s
	if index := req.Msg.GetWaitAppliedIndex(); index > 0 {
		if err := c.waitApplied(ctx, index); err != nil {
			return nil, err
		}
	}
	state, term, commit, applied := s.cfg.Replica.Stats()
	res := &weftv1.StatusResponse{
		NodeName: s.cfg.NodeName, Term: term, CommitIndex: commit, AppliedIndex: applied, State: state,
		Nodes: s.nodes(), Version: version.String(),
	}
	if s.cfg.Local != nil {
		s.cfg.Local(res)
	}
	if id, _ := s.cfg.Replica.Leader(); id != "" {
		res.LeaderName = id
		if n := s.fsm.State().Node(id); n != nil {
			res.LeaderApiAddress = n.GetSpec().GetApiAddress()
		}
	}
	return connect.NewResponse(res), nil
}

// maxStatusWait bounds a Status wait whose request has no deadline.
const maxStatusWait = time.Minute

// waitApplied waits for wait_applied_index: until the node's subsystems
// have applied index, the request's deadline, or maxStatusWait.
func (c *clusterService) waitApplied(ctx context.Context, index uint64) error {
	if c.s.cfg.WaitApplied == nil {
		return connect.NewError(connect.CodeUnimplemented, fmt.Errorf("wait_applied_index: node %s runs no subsystems to wait for", c.s.cfg.NodeName))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxStatusWait)
		defer cancel()
	}
	err := c.s.cfg.WaitApplied(ctx, index)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("wait_applied_index: node %s has not applied index %d yet", c.s.cfg.NodeName, index))
	case ctx.Err() != nil:
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("wait_applied_index: node %s: %w", c.s.cfg.NodeName, err))
}

func (c *clusterService) ListNodes(ctx context.Context, req *connect.Request[weftv1.ListNodesRequest]) (*connect.Response[weftv1.ListNodesResponse], error) {
	return serve(ctx, c.s, req, readAccess(req.Msg.GetStale()), clusterCall(csc.ListNodes), func() (*weftv1.ListNodesResponse, error) {
		return &weftv1.ListNodesResponse{Nodes: c.s.nodes()}, nil
	})
}

func (c *clusterService) RemoveNode(ctx context.Context, req *connect.Request[weftv1.RemoveNodeRequest]) (*connect.Response[weftv1.RemoveNodeResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.RemoveNode), func() (*weftv1.RemoveNodeResponse, error) {
		name := req.Msg.GetName()
		if c.s.fsm.State().Node(name) == nil {
			return nil, notFound("node %q not found", name)
		}
		if name == c.s.cfg.NodeName {
			return nil, connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("node %q is the leader: transfer leadership first", name))
		}
		if err := c.s.cfg.Replica.RemoveServer(ctx, name); err != nil {
			return nil, fmt.Errorf("remove %s from raft: %w", name, err)
		}
		if _, _, err := c.s.cfg.Replica.Apply(ctx, raftfsm.DeleteNodeType, &statev1.DeleteNodeCommand{Name: name}); err != nil {
			return nil, err
		}
		return &weftv1.RemoveNodeResponse{}, nil
	})
}

func (s *Server) setDrain(ctx context.Context, name string, drain bool) (*weftv1.Node, error) {
	resp, _, err := s.cfg.Replica.Apply(ctx, raftfsm.SetNodeDrainType, &statev1.SetNodeDrainCommand{Name: name, Drain: drain})
	if err != nil {
		return nil, err
	}
	return resp.(*weftv1.Node), nil
}

func (c *clusterService) DrainNode(ctx context.Context, req *connect.Request[weftv1.DrainNodeRequest]) (*connect.Response[weftv1.DrainNodeResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.DrainNode), func() (*weftv1.DrainNodeResponse, error) {
		n, err := c.s.setDrain(ctx, req.Msg.GetName(), true)
		return &weftv1.DrainNodeResponse{Node: n}, err
	})
}

func (c *clusterService) UndrainNode(ctx context.Context, req *connect.Request[weftv1.UndrainNodeRequest]) (*connect.Response[weftv1.UndrainNodeResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.UndrainNode), func() (*weftv1.UndrainNodeResponse, error) {
		n, err := c.s.setDrain(ctx, req.Msg.GetName(), false)
		return &weftv1.UndrainNodeResponse{Node: n}, err
	})
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *connect.Request[weftv1.TransferLeadershipRequest]) (*connect.Response[weftv1.TransferLeadershipResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.TransferLeadership), func() (*weftv1.TransferLeadershipResponse, error) {
		name := req.Msg.GetName()
		if name != "" && c.s.fsm.State().Node(name) == nil {
			return nil, notFound("node %q not found", name)
		}
		if err := c.s.cfg.Replica.TransferLeadership(ctx, name); err != nil {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("transfer leadership: %w", err))
		}
		leader, _ := c.s.cfg.Replica.Leader()
		return &weftv1.TransferLeadershipResponse{LeaderName: leader}, nil
	})
}

func (c *clusterService) CreateJoinToken(ctx context.Context, req *connect.Request[weftv1.CreateJoinTokenRequest]) (*connect.Response[weftv1.CreateJoinTokenResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.CreateJoinToken), func() (*weftv1.CreateJoinTokenResponse, error) {
		ttl, uses := defaultJoinTTL, uint32(defaultJoinUses)
		if req.Msg.GetTtl() != nil {
			ttl = req.Msg.GetTtl().AsDuration()
			if ttl <= 0 || ttl > 30*24*time.Hour {
				return nil, invalidArgument("ttl: must be between 1s and 720h, got %s", ttl)
			}
		}
		if req.Msg.GetUses() != 0 {
			uses = req.Msg.GetUses()
			if uses > 1000 {
				return nil, invalidArgument("uses: must be 1..1000, got %d", uses)
			}
		}
		return c.s.createJoinToken(ctx, ttl, uses, req.Msg.GetDescription())
	})
}

// createJoinToken makes a join token pinned to the cluster CA.
func (s *Server) createJoinToken(ctx context.Context, ttl time.Duration, uses uint32, description string) (*weftv1.CreateJoinTokenResponse, error) {
	ca, err := s.clusterCA()
	if err != nil {
		return nil, err
	}
	tok, err := tokens.NewJoin(ca.pin)
	if err != nil {
		return nil, err
	}
	rec := &statev1.JoinTokenRecord{
		Token: &weftv1.JoinToken{
			Id: tok.ID, Description: description, UsesRemaining: uses,
			ExpiresAt: timestamppb.New(s.now().Add(ttl)),
		},
		SecretHash: tokens.Hash(tok.Secret),
	}
	_, index, err := s.cfg.Replica.Apply(ctx, raftfsm.CreateJoinTokenType, &statev1.CreateJoinTokenCommand{Record: rec})
	if err != nil {
		return nil, err
	}
	out := proto.Clone(rec.Token).(*weftv1.JoinToken)
	out.CreateIndex = index
	return &weftv1.CreateJoinTokenResponse{Token: out, Secret: tok.String()}, nil
}

func (c *clusterService) ListJoinTokens(ctx context.Context, req *connect.Request[weftv1.ListJoinTokensRequest]) (*connect.Response[weftv1.ListJoinTokensResponse], error) {
	return serve(ctx, c.s, req, linearizable, clusterCall(csc.ListJoinTokens), func() (*weftv1.ListJoinTokensResponse, error) {
		out := &weftv1.ListJoinTokensResponse{}
		for _, r := range c.s.fsm.State().JoinTokens() {
			out.Tokens = append(out.Tokens, proto.Clone(r.GetToken()).(*weftv1.JoinToken))
		}
		return out, nil
	})
}

func (c *clusterService) RevokeJoinToken(ctx context.Context, req *connect.Request[weftv1.RevokeJoinTokenRequest]) (*connect.Response[weftv1.RevokeJoinTokenResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.RevokeJoinToken), func() (*weftv1.RevokeJoinTokenResponse, error) {
		_, _, err := c.s.cfg.Replica.Apply(ctx, raftfsm.RevokeJoinTokenType, &statev1.RevokeJoinTokenCommand{Id: req.Msg.GetId()})
		return &weftv1.RevokeJoinTokenResponse{}, err
	})
}

func (c *clusterService) CreateAPIToken(ctx context.Context, req *connect.Request[weftv1.CreateAPITokenRequest]) (*connect.Response[weftv1.CreateAPITokenResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.CreateAPIToken), func() (*weftv1.CreateAPITokenResponse, error) {
		role, err := tokens.ParseRole(req.Msg.GetRole())
		if err != nil {
			return nil, invalidArgument("role: %v", err)
		}
		var ttl time.Duration
		if req.Msg.GetTtl() != nil {
			if ttl = req.Msg.GetTtl().AsDuration(); ttl <= 0 {
				return nil, invalidArgument("ttl: must be positive, got %s", ttl)
			}
		}
		return c.s.CreateAPIToken(ctx, role, req.Msg.GetDescription(), ttl)
	})
}

// CreateAPIToken makes an API token with a role; ttl 0 never expires. It
// must run on the leader; `weft agent --init` uses it for the admin token.
func (s *Server) CreateAPIToken(ctx context.Context, role tokens.Role, description string, ttl time.Duration) (*weftv1.CreateAPITokenResponse, error) {
	tok, err := tokens.NewAPI()
	if err != nil {
		return nil, err
	}
	rec := &statev1.APITokenRecord{
		Token:      &weftv1.APIToken{Id: tok.ID, Description: description, Role: string(role)},
		SecretHash: tokens.Hash(tok.Secret),
	}
	if ttl > 0 {
		rec.Token.ExpiresAt = timestamppb.New(s.now().Add(ttl))
	}
	_, index, err := s.cfg.Replica.Apply(ctx, raftfsm.CreateAPITokenType, &statev1.CreateAPITokenCommand{Record: rec})
	if err != nil {
		return nil, err
	}
	out := proto.Clone(rec.Token).(*weftv1.APIToken)
	out.CreateIndex = index
	return &weftv1.CreateAPITokenResponse{Token: out, Secret: tok.String()}, nil
}

// CreateJoinToken is createJoinToken with the defaults, for `weft agent --init`.
func (s *Server) CreateJoinToken(ctx context.Context, uses uint32) (*weftv1.CreateJoinTokenResponse, error) {
	return s.createJoinToken(ctx, defaultJoinTTL, uses, "created by cluster init")
}

func (c *clusterService) ListAPITokens(ctx context.Context, req *connect.Request[weftv1.ListAPITokensRequest]) (*connect.Response[weftv1.ListAPITokensResponse], error) {
	return serve(ctx, c.s, req, linearizable, clusterCall(csc.ListAPITokens), func() (*weftv1.ListAPITokensResponse, error) {
		out := &weftv1.ListAPITokensResponse{}
		for _, r := range c.s.fsm.State().APITokens() {
			out.Tokens = append(out.Tokens, proto.Clone(r.GetToken()).(*weftv1.APIToken))
		}
		return out, nil
	})
}

func (c *clusterService) RevokeAPIToken(ctx context.Context, req *connect.Request[weftv1.RevokeAPITokenRequest]) (*connect.Response[weftv1.RevokeAPITokenResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.RevokeAPIToken), func() (*weftv1.RevokeAPITokenResponse, error) {
		if caller, ok := CallerFrom(ctx); ok && caller.TokenID == req.Msg.GetId() {
			return nil, connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("api token %s is the one making this call; revoke it with another admin token", req.Msg.GetId()))
		}
		_, _, err := c.s.cfg.Replica.Apply(ctx, raftfsm.RevokeAPITokenType, &statev1.RevokeAPITokenCommand{Id: req.Msg.GetId()})
		return &weftv1.RevokeAPITokenResponse{}, err
	})
}

// Join admits a node: the token is spent in Raft (so its uses and expiry
// hold cluster-wide), the CSR signed with the cluster CA, the node recorded
// and added to Raft as a non-voter; placement promotes it once caught up.
func (c *clusterService) Join(ctx context.Context, req *connect.Request[weftv1.JoinRequest]) (*connect.Response[weftv1.JoinResponse], error) {
	return serve(ctx, c.s, req, write, clusterCall(csc.Join), func() (*weftv1.JoinResponse, error) {
		return c.s.join(ctx, req.Msg)
	})
}

func (s *Server) join(ctx context.Context, m *weftv1.JoinRequest) (*weftv1.JoinResponse, error) {
	tok, err := tokens.ParseJoin(m.GetToken())
	if err != nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, err)
	}
	ca, err := s.clusterCA()
	if err != nil {
		return nil, err
	}
	if tok.CAPin != ca.pin {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("join token is for another cluster (CA pin %s)", tok.CAPin))
	}
	node := &weftv1.Node{
		Metadata: &weftv1.Metadata{Name: m.GetName()},
		Spec: &weftv1.NodeSpec{
			Region: m.GetRegion(), Zone: m.GetZone(), RaftAddress: m.GetRaftAddress(), ApiAddress: m.GetApiAddress(),
			GossipAddress: m.GetGossipAddress(),
		},
	}
	if err := validate.Node(node); err != nil {
		return nil, err
	}
	if err := s.checkNewMember(m.GetName(), m.GetRaftAddress()); err != nil {
		return nil, err
	}
	if err := csrHostsAllowed(m); err != nil {
		return nil, invalidArgument("csr_pem: %v", err)
	}
	_, _, err = s.cfg.Replica.Apply(ctx, raftfsm.ConsumeJoinTokenType, &statev1.ConsumeJoinTokenCommand{
		Id: tok.ID, SecretHash: tokens.Hash(tok.Secret), NowUnixNano: s.now().UnixNano(),
	})
	if err != nil {
		if se, ok := err.(*raftfsm.StateError); ok && (se.Kind == raftfsm.NotFound || se.Kind == raftfsm.FailedPrecondition) {
			return nil, connect.NewError(connect.CodePermissionDenied, err)
		}
		return nil, err
	}
	cert, err := ca.ca.SignCSR([]byte(m.GetCsrPem()), m.GetName(), pki.NodeCertValidity)
	if err != nil {
		return nil, invalidArgument("csr_pem: %v", err)
	}
	if _, _, err := s.cfg.Replica.Apply(ctx, raftfsm.UpsertNodeType, &statev1.UpsertNodeCommand{Node: node}); err != nil {
		return nil, err
	}
	if err := s.cfg.Replica.AddNonvoter(ctx, m.GetName(), m.GetRaftAddress()); err != nil {
		return nil, fmt.Errorf("add %s to raft: %w", m.GetName(), err)
	}
	s.log.Info("node joined", "node", m.GetName(), "zone", m.GetZone(), "raft", m.GetRaftAddress(), "token", tok.ID)
	return &weftv1.JoinResponse{CertificatePem: string(cert), CaPem: string(ca.ca.CertPEM)}, nil
}

// checkNewMember refuses a joiner whose name or Raft address is taken,
// before its token is spent.
func (s *Server) checkNewMember(name, raftAddr string) error {
	if s.fsm.State().Node(name) != nil {
		return connect.NewError(connect.CodeAlreadyExists,
			fmt.Errorf("node %q is already a member; remove it first or pick another name", name))
	}
	servers, err := s.cfg.Replica.Servers()
	if err != nil {
		return err
	}
	for _, sv := range servers {
		if string(sv.ID) == name || string(sv.Address) == raftAddr {
			return connect.NewError(connect.CodeAlreadyExists,
				fmt.Errorf("raft already has server %s at %s; remove it first", sv.ID, sv.Address))
		}
	}
	return nil
}

// csrHostsAllowed keeps a joiner from obtaining a certificate for another
// node's addresses: the CSR may name only the joiner itself and the hosts of
// the addresses it registers.
func csrHostsAllowed(m *weftv1.JoinRequest) error {
	block, _ := pem.Decode([]byte(m.GetCsrPem()))
	if block == nil {
		return errors.New("not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return err
	}
	allowed := map[string]bool{m.GetName(): true}
	for _, addr := range []string{m.GetRaftAddress(), m.GetApiAddress()} {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			allowed[h] = true
		}
	}
	for _, ip := range csr.IPAddresses {
		if !allowed[ip.String()] {
			return fmt.Errorf("IP %s is not an address of node %q", ip, m.GetName())
		}
	}
	for _, name := range csr.DNSNames {
		if !allowed[name] {
			return fmt.Errorf("DNS name %q is not a name of node %q", name, m.GetName())
		}
	}
	return nil
}
