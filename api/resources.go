package api

import (
	"context"
	"errors"
	"net/netip"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/validate"
)

// remoteCall runs a call on a peer (the leader).
type remoteCall[Req, Res any] func(*peer, context.Context, *connect.Request[Req]) (*connect.Response[Res], error)

func lbCall[Req, Res any](m func(weftv1connect.LoadBalancerServiceClient, context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) remoteCall[Req, Res] {
	return func(p *peer, ctx context.Context, req *connect.Request[Req]) (*connect.Response[Res], error) {
		return m(p.lb, ctx, req)
	}
}

func clusterCall[Req, Res any](m func(weftv1connect.ClusterServiceClient, context.Context, *connect.Request[Req]) (*connect.Response[Res], error)) remoteCall[Req, Res] {
	return func(p *peer, ctx context.Context, req *connect.Request[Req]) (*connect.Response[Res], error) {
		return m(p.cluster, ctx, req)
	}
}

// serve runs local here or passes the call to the leader, as route decides.
func serve[Req, Res any](ctx context.Context, s *Server, req *connect.Request[Req], a access,
	remote remoteCall[Req, Res], local func() (*Res, error),
) (*connect.Response[Res], error) {
	p, err := s.route(ctx, req.Header(), a)
	if err != nil {
		return nil, err
	}
	if p != nil {
		return forward(ctx, s, req, func(ctx context.Context, r *connect.Request[Req]) (*connect.Response[Res], error) {
			return remote(p, ctx, r)
		})
	}
	res, err := local()
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(res), nil
}

func readAccess(staleOK bool) access {
	if staleOK {
		return stale
	}
	return linearizable
}

// get returns a copy of a stored resource fit to show a caller.
func (s *Server) get(kind, name string) (*weftv1.Resource, error) {
	if err := validate.Name(validate.KindName(kind), name); err != nil {
		return nil, err
	}
	r := s.fsm.State().Resource(kind, name)
	if r == nil {
		return nil, notFound("%s %q not found", validate.KindName(kind), name)
	}
	r = redact(r)
	s.observe([]*weftv1.Resource{r})
	return r, nil
}

// observe sets the status of the pools and DNS records among rs (copies)
// from what this node observes.
func (s *Server) observe(rs []*weftv1.Resource) {
	obs := s.observed()
	s.observePools(rs, obs)
	for _, r := range rs {
		d := r.GetDnsRecord()
		if d == nil {
			continue
		}
		switch st := obs.DNS[d.GetMetadata().GetName()]; {
		case obs.DNS == nil:
			d.Status = &weftv1.DNSRecordStatus{Observer: s.cfg.NodeName,
				Reason: "node " + s.cfg.NodeName + " runs no DNS server (--dns-addr); ask one that does (weft --addr)"}
		case st == nil:
			d.Status = &weftv1.DNSRecordStatus{Observer: s.cfg.NodeName,
				Reason: "node " + s.cfg.NodeName + "'s DNS server has not applied this record yet"}
		default:
			d.Status = st
		}
	}
}

// observePools sets the status of the pools among rs from this node's
// health view: members up, down, and not in the view.
func (s *Server) observePools(rs []*weftv1.Resource, obs Observed) {
	view := map[string]map[netip.AddrPort]bool{}
	for _, h := range obs.Health {
		a, err := netip.ParseAddr(h.GetAddress())
		if err != nil {
			continue
		}
		if view[h.GetPool()] == nil {
			view[h.GetPool()] = map[netip.AddrPort]bool{}
		}
		view[h.GetPool()][netip.AddrPortFrom(a, uint16(h.GetPort()))] = h.GetUp()
	}
	for _, r := range rs {
		p := r.GetPool()
		if p == nil {
			continue
		}
		st := &weftv1.PoolStatus{Observer: s.cfg.NodeName}
		members := view[p.GetMetadata().GetName()]
		for _, m := range p.GetSpec().GetMembers() {
			a, err := netip.ParseAddr(m.GetAddress())
			up, known := members[netip.AddrPortFrom(a, uint16(m.GetPort()))]
			switch {
			case err != nil || !known:
				st.MembersUnknown++
			case up:
				st.MembersUp++
			default:
				st.MembersDown++
			}
		}
		p.Status = st
	}
}

// redact copies a resource without its secrets: certificate keys are never
// returned by reads.
func redact(r *weftv1.Resource) *weftv1.Resource {
	r = proto.Clone(r).(*weftv1.Resource)
	if c := r.GetCertificate(); c.GetSpec() != nil {
		c.Spec.PrivateKeyPem = ""
	}
	return r
}

// validateBatch normalises and validates rs in place, and drops what
// writes ignore (pool and DNS record status are observed, never stored).
func (s *Server) validateBatch(rs []*weftv1.Resource) error {
	for i, r := range rs {
		if err := s.checkResource(r); err != nil {
			if len(rs) > 1 {
				return invalidArgument("resources[%d]: %v", i, err)
			}
			return err
		}
		if p := r.GetPool(); p != nil {
			p.Status = nil
		}
		if d := r.GetDnsRecord(); d != nil {
			d.Status = nil
		}
	}
	return nil
}

// writeResources validates rs and proposes them as one Raft entry, unless
// the entry would change nothing (see answerFromState).
func (s *Server) writeResources(ctx context.Context, mode statev1.WriteMode, rs []*weftv1.Resource) (*raftfsm.ApplyResult, error) {
	if err := s.validateBatch(rs); err != nil {
		return nil, err
	}
	cmd := &statev1.ApplyResourcesCommand{Mode: mode, Resources: rs}
	if res, ok, err := s.answerFromState(ctx, cmd); ok {
		return res, err
	}
	resp, _, err := s.cfg.Replica.Apply(ctx, raftfsm.ApplyResourcesType, cmd)
	if err != nil {
		return nil, err
	}
	return resp.(*raftfsm.ApplyResult), nil
}

// answerFromState answers, on the leader, a write that would change nothing
// (every resource unchanged, or the batch refused by the state store) from
// the state instead of a Raft entry; ok is false when it must be proposed.
//
// The answer is linearizable: after a ReadIndex read (ConsistentRead) the
// state holds every write committed before this call, and evaluating the
// batch on it gives what the FSM would answer had the entry been applied
// there, versions and compare-and-set included. A write committed
// meanwhile is concurrent with this one, so either order is correct. The
// first evaluation, on the state as it is, spares writes that change
// something the read's round trip.
func (s *Server) answerFromState(ctx context.Context, cmd *statev1.ApplyResourcesCommand) (*raftfsm.ApplyResult, bool, error) {
	if res, _, err := s.fsm.EvaluateResources(cmd); !changesNothing(res, err) {
		return nil, false, nil
	}
	if err := s.cfg.Replica.ConsistentRead(ctx); err != nil {
		return nil, true, err
	}
	res, _, err := s.fsm.EvaluateResources(cmd)
	if !changesNothing(res, err) {
		return nil, false, nil
	}
	return res, true, err
}

// changesNothing reports whether an evaluated batch leaves the state as it
// is: refused by the state store, or with every resource unchanged.
func changesNothing(res *raftfsm.ApplyResult, err error) bool {
	var se *raftfsm.StateError
	if err != nil {
		return errors.As(err, &se)
	}
	for _, it := range res.Results {
		if it.Action != raftfsm.ActionUnchanged {
			return false
		}
	}
	return true
}

// writeOne creates or updates one resource and returns it as stored.
func (s *Server) writeOne(ctx context.Context, mode statev1.WriteMode, r *weftv1.Resource) (*weftv1.Resource, error) {
	res, err := s.writeResources(ctx, mode, []*weftv1.Resource{r})
	if err != nil {
		return nil, err
	}
	return s.get(res.Results[0].Kind, res.Results[0].Name)
}

func (s *Server) delete(ctx context.Context, kind string, req *weftv1.DeleteRequest) (*weftv1.DeleteResponse, error) {
	if err := validate.Name(validate.KindName(kind), req.GetName()); err != nil {
		return nil, err
	}
	_, index, err := s.cfg.Replica.Apply(ctx, raftfsm.DeleteResourceType, &statev1.DeleteResourceCommand{
		Kind: kind, Name: req.GetName(), Version: req.GetVersion(),
	})
	if err != nil {
		return nil, err
	}
	return &weftv1.DeleteResponse{Index: index}, nil
}

// Watch streams resource changes after from_index (see the proto). From
// index 0 it starts with the full listing, the list-then-watch pattern.
func (h *lbService) Watch(ctx context.Context, req *connect.Request[weftv1.WatchRequest], stream *connect.ServerStream[weftv1.WatchResponse]) error {
	from := req.Msg.GetFromIndex()
	for {
		events, reset, notify := h.s.fsm.Events(from)
		if reset || from == 0 {
			st := h.s.fsm.State()
			if err := stream.Send(&weftv1.WatchResponse{Type: "reset", Index: st.Index()}); err != nil {
				return err
			}
			for _, r := range st.Resources() {
				if err := stream.Send(&weftv1.WatchResponse{Type: "put", Index: st.Index(), Resource: redact(r)}); err != nil {
					return err
				}
			}
			if err := stream.Send(&weftv1.WatchResponse{Type: "sync", Index: st.Index()}); err != nil {
				return err
			}
			from = st.Index()
			continue
		}
		for _, ev := range events {
			if err := stream.Send(&weftv1.WatchResponse{Type: ev.Type, Index: ev.Index, Resource: redact(ev.Resource)}); err != nil {
				return err
			}
			from = ev.Index
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		}
	}
}

// Apply creates or updates a batch of resources in one Raft entry.
func (h *lbService) Apply(ctx context.Context, req *connect.Request[weftv1.ApplyRequest]) (*connect.Response[weftv1.ApplyResponse], error) {
	return serve(ctx, h.s, req, write, lbCall(weftv1connect.LoadBalancerServiceClient.Apply), func() (*weftv1.ApplyResponse, error) {
		if len(req.Msg.GetResources()) == 0 {
			return nil, invalidArgument("resources: at least one resource is required")
		}
		for i, r := range req.Msg.GetResources() {
			if raftfsm.KindOf(r) == "" {
				return nil, invalidArgument("resources[%d]: no resource kind set", i)
			}
		}
		if req.Msg.GetDryRun() {
			return h.s.dryRun(ctx, req.Msg.GetResources())
		}
		res, err := h.s.writeResources(ctx, statev1.WriteMode_WRITE_MODE_UPSERT, req.Msg.GetResources())
		if err != nil {
			return nil, err
		}
		out := &weftv1.ApplyResponse{Index: res.Index}
		for _, it := range res.Results {
			out.Results = append(out.Results, &weftv1.ApplyResult{Kind: it.Kind, Name: it.Name, Action: it.Action, Version: it.Version})
		}
		return out, nil
	})
}

// dryRun checks a batch as Apply would, on a linearizable read of the
// state, and reports each resource's action with its stored and desired
// forms; it proposes nothing.
func (s *Server) dryRun(ctx context.Context, rs []*weftv1.Resource) (*weftv1.ApplyResponse, error) {
	if err := s.validateBatch(rs); err != nil {
		return nil, err
	}
	if err := s.cfg.Replica.ConsistentRead(ctx); err != nil {
		return nil, err
	}
	res, st, err := s.fsm.EvaluateResources(&statev1.ApplyResourcesCommand{Mode: statev1.WriteMode_WRITE_MODE_UPSERT, Resources: rs})
	if err != nil {
		return nil, err
	}
	out := &weftv1.ApplyResponse{Index: res.Index}
	for i, it := range res.Results {
		r := &weftv1.ApplyResult{Kind: it.Kind, Name: it.Name, Action: it.Action, Version: it.Version, Desired: redact(rs[i])}
		if cur := st.Resource(it.Kind, it.Name); cur != nil {
			r.Current = redact(cur)
		}
		out.Results = append(out.Results, r)
	}
	return out, nil
}
