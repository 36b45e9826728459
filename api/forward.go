package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
)

// forwardedHeader marks a request a follower passed to the leader, so that
// a request never bounces between nodes that disagree on the leader.
const forwardedHeader = "Weft-Forwarded-By"

// peer holds clients for another node's API.
type peer struct {
	lb      weftv1connect.LoadBalancerServiceClient
	cluster weftv1connect.ClusterServiceClient
	stats   weftv1connect.StatsServiceClient
}

type access int

const (
	linearizable access = iota // a read that must see every acknowledged write
	stale                      // a read served by this replica as it is
	write
)

// route decides where a call runs: here (nil peer) or on the leader. Reads
// marked stale run here; linearizable reads run here after a ReadIndex
// check when this node leads; everything else goes to the leader, waiting
// out an election for up to Config.LeaderWait.
func (s *Server) route(ctx context.Context, h http.Header, a access) (*peer, error) {
	if a == stale {
		return nil, nil
	}
	deadline := time.Now().Add(s.cfg.LeaderWait)
	for {
		if s.cfg.Replica.IsLeader() {
			if a == write {
				return nil, nil
			}
			err := s.cfg.Replica.ConsistentRead(ctx)
			if err == nil {
				return nil, nil
			}
			if !errors.Is(err, raftfsm.ErrNotLeader) {
				return nil, toConnect(err)
			}
		} else if id, _ := s.cfg.Replica.Leader(); id != "" && id != s.cfg.NodeName {
			if by := h.Get(forwardedHeader); by != "" {
				return nil, connect.NewError(connect.CodeUnavailable,
					fmt.Errorf("node %s is not the leader (forwarded by %s); retry", s.cfg.NodeName, by))
			}
			return s.peer(id)
		}
		if time.Now().After(deadline) {
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("no leader elected; retry"))
		}
		select {
		case <-ctx.Done():
			return nil, toConnect(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// peer returns clients for the node named id, from its API address in the
// replicated node table.
func (s *Server) peer(id string) (*peer, error) {
	n := s.fsm.State().Node(id)
	if n == nil || n.GetSpec().GetApiAddress() == "" {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("node %s has no known API address; retry", id))
	}
	addr := n.GetSpec().GetApiAddress()
	if p, ok := s.peers.Load(addr); ok {
		return p.(*peer), nil
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     s.cfg.PeerTLS,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}
	url := "https://" + addr
	p := &peer{
		lb:      weftv1connect.NewLoadBalancerServiceClient(hc, url),
		cluster: weftv1connect.NewClusterServiceClient(hc, url),
		stats:   weftv1connect.NewStatsServiceClient(hc, url),
	}
	actual, _ := s.peers.LoadOrStore(addr, p)
	return actual.(*peer), nil
}

// forward passes a call to the leader with the caller's credentials, so the
// leader authorises it again.
func forward[Req, Res any](ctx context.Context, s *Server, req *connect.Request[Req],
	call func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error),
) (*connect.Response[Res], error) {
	out := connect.NewRequest(req.Msg)
	if v := req.Header().Get("Authorization"); v != "" {
		out.Header().Set("Authorization", v)
	}
	out.Header().Set(forwardedHeader, s.cfg.NodeName)
	return call(ctx, out)
}
