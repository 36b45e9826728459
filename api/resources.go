package api

import (
	"context"

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
	return redact(r), nil
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

// writeResources validates rs and proposes them as one Raft entry.
func (s *Server) writeResources(ctx context.Context, mode statev1.WriteMode, rs []*weftv1.Resource) (*raftfsm.ApplyResult, error) {
	for i, r := range rs {
		if err := s.checkResource(r); err != nil {
			if len(rs) > 1 {
				return nil, invalidArgument("resources[%d]: %v", i, err)
			}
			return nil, err
		}
	}
	resp, _, err := s.cfg.Replica.Apply(ctx, raftfsm.ApplyResourcesType, &statev1.ApplyResourcesCommand{Mode: mode, Resources: rs})
	if err != nil {
		return nil, err
	}
	return resp.(*raftfsm.ApplyResult), nil
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

// list returns copies of every stored resource of a kind, and the index
// they are current at.
func (s *Server) list(kind string) ([]*weftv1.Resource, uint64) {
	st := s.fsm.State()
	var out []*weftv1.Resource
	for _, r := range st.Resources() {
		if raftfsm.KindOf(r) == kind {
			out = append(out, redact(r))
		}
	}
	return out, st.Index()
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
