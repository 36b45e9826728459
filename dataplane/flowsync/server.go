package flowsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// Handler serves FlowSyncService, to be mounted on the node's API (whose
// TLS and authentication run first); it returns the path to mount it at.
func (s *Syncer) Handler(opts ...connect.HandlerOption) (string, http.Handler) {
	return weftv1connect.NewFlowSyncServiceHandler(&service{s}, opts...)
}

type service struct{ s *Syncer }

var _ weftv1connect.FlowSyncServiceHandler = (*service)(nil)

// caller checks that a call comes from the node it says it is: only nodes,
// by their cluster-signed certificates, may sync.
func (h *service) caller(ctx context.Context, claimed string) (string, error) {
	node, ok := h.s.cfg.Authenticate(ctx)
	if !ok {
		return "", connect.NewError(connect.CodePermissionDenied, errors.New("flow sync: only cluster nodes may sync flows (a node certificate is required)"))
	}
	if claimed != node {
		return "", connect.NewError(connect.CodePermissionDenied, fmt.Errorf("flow sync: node %q may not speak for %q", node, claimed))
	}
	return node, nil
}

// Sync installs the flows a peer streams, answering at once and at every
// heartbeat with this node's readiness, until the peer closes the stream or
// this node's syncer stops.
func (h *service) Sync(ctx context.Context, stream *connect.BidiStream[weftv1.SyncRequest, weftv1.SyncResponse]) error {
	first, err := stream.Receive()
	if err != nil {
		return err
	}
	from, err := h.caller(ctx, first.GetNode())
	if err != nil {
		return err
	}
	answer := func() error {
		h.s.mu.Lock()
		res := &weftv1.SyncResponse{Ready: h.s.pulled, ReadyEpoch: h.s.pulledEpoch}
		h.s.mu.Unlock()
		return stream.Send(res)
	}
	if err := answer(); err != nil {
		return err
	}
	if err := h.s.install(from, first.GetFlows()); err != nil {
		h.s.log.Warn("install synced flows", "peer", from, "error", err)
	}
	msgs := make(chan *weftv1.SyncRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(h.s.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-h.s.ctx.Done():
			return connect.NewError(connect.CodeUnavailable, errors.New("flow sync: node stopping"))
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-tick.C:
			if err := answer(); err != nil {
				return err
			}
		case msg := <-msgs:
			if err := h.s.install(from, msg.GetFlows()); err != nil {
				h.s.log.Warn("install synced flows", "peer", from, "error", err)
			}
		}
	}
}

// Pull streams the flows the calling node keeps copies of.
func (h *service) Pull(ctx context.Context, req *connect.Request[weftv1.PullRequest], stream *connect.ServerStream[weftv1.PullResponse]) error {
	from, err := h.caller(ctx, req.Msg.GetNode())
	if err != nil {
		return err
	}
	err = h.s.pullFor(from, func(batch []*weftv1.SyncedFlow) error {
		return stream.Send(&weftv1.PullResponse{Flows: batch})
	})
	if err != nil {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("flows for %s: %w", from, err))
	}
	return nil
}
