package flowsync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// maxQueue bounds the flows waiting for one peer; beyond it, reports for
// that peer are dropped (and counted unsent) rather than holding memory
// for a peer that cannot keep up.
const maxQueue = 1 << 16

// peer is this node's stream to another node: the flows it keeps copies
// of go out on it, and its answers say whether it is alive and ready.
type peer struct {
	s      *Syncer
	name   string
	api    string
	client weftv1connect.FlowSyncServiceClient
	ctx    context.Context
	cancel context.CancelFunc
	wakeup chan struct{} // capacity 1: flows were queued

	mu         sync.Mutex
	queue      []*weftv1.SyncedFlow
	oldest     time.Time // when the first queued flow was queued
	up         bool
	connecting bool
	ready      bool
	readyEpoch uint64
	lastHeard  time.Time
	everUp     bool
	sent       uint64
}

func newPeer(s *Syncer, name, api string) *peer {
	ctx, cancel := context.WithCancel(s.ctx)
	return &peer{s: s, name: name, api: api, ctx: ctx, cancel: cancel, wakeup: make(chan struct{}, 1),
		client: weftv1connect.NewFlowSyncServiceClient(s.cfg.Client, "https://"+api)}
}

func (p *peer) stop() { p.cancel() }

func (p *peer) isUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// wasUp reports whether the stream was ever up.
func (p *peer) wasUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.everUp
}

func (p *peer) state() (up, ready bool, readyEpoch uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up, p.ready, p.readyEpoch
}

// enqueue queues a flow for the peer; false if it is down or its queue full.
func (p *peer) enqueue(w *weftv1.SyncedFlow) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.up || len(p.queue) >= maxQueue {
		return false
	}
	if len(p.queue) == 0 {
		p.oldest = time.Now()
	}
	p.queue = append(p.queue, w)
	select {
	case p.wakeup <- struct{}{}:
	default:
	}
	return true
}

// take removes up to sendBatch queued flows.
func (p *peer) take() []*weftv1.SyncedFlow {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(len(p.queue), sendBatch)
	out := p.queue[:n:n]
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	} else {
		p.oldest = time.Now()
	}
	return out
}

// drain waits until the queue is sent, or deadline.
func (p *peer) drain(deadline time.Time) {
	for time.Now().Before(deadline) {
		p.mu.Lock()
		n := len(p.queue)
		p.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run keeps a stream to the peer open until stop, reconnecting with
// backoff.
func (p *peer) run() {
	backoff := 50 * time.Millisecond
	for p.ctx.Err() == nil {
		p.mu.Lock()
		p.connecting = true
		p.mu.Unlock()
		wasUp, err := p.session()
		p.mu.Lock()
		changed := p.up
		p.s.c.unsent.Add(uint64(len(p.queue)))
		p.up, p.connecting, p.ready, p.queue = false, false, false, nil
		p.mu.Unlock()
		if changed {
			p.s.log.Warn("flow sync peer down", "peer", p.name, "error", err)
			p.s.wake()
		}
		if wasUp {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-p.ctx.Done():
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(2*backoff, time.Second)
	}
}

var errSilent = errors.New("no answer within the dead-after time")

// session runs one stream: sends queued flows (or a heartbeat when idle)
// and watches the peer's answers. It returns whether the peer came up.
func (p *peer) session() (bool, error) {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stream := p.client.Sync(ctx)
	defer stream.CloseResponse()
	if err := stream.Send(&weftv1.SyncRequest{Node: p.s.cfg.Self}); err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	p.mu.Lock()
	p.lastHeard = time.Now()
	p.mu.Unlock()
	recvErr := make(chan error, 1)
	go func() {
		for {
			res, err := stream.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			p.heard(res)
		}
	}()
	tick := time.NewTicker(p.s.cfg.Heartbeat)
	defer tick.Stop()
	lastSent := time.Now()
	for {
		select {
		case <-p.ctx.Done():
			stream.CloseRequest()
			return p.isUp(), p.ctx.Err()
		case err := <-recvErr:
			return p.isUp(), fmt.Errorf("stream: %w", err)
		case <-tick.C:
			p.mu.Lock()
			silent := time.Since(p.lastHeard) > p.s.cfg.DeadAfter
			p.mu.Unlock()
			if silent {
				return p.isUp(), errSilent
			}
			if time.Since(lastSent) < p.s.cfg.Heartbeat {
				continue
			}
		case <-p.wakeup:
		}
		for {
			req := &weftv1.SyncRequest{Flows: p.take()}
			if err := stream.Send(req); err != nil {
				return p.isUp(), fmt.Errorf("send: %w", err)
			}
			lastSent = time.Now()
			if len(req.Flows) == 0 {
				break
			}
			batch := req.Flows
			p.s.c.sent.Add(uint64(len(batch)))
			p.s.c.sentBytes.Add(uint64(proto.Size(req)))
			p.mu.Lock()
			p.sent += uint64(len(batch))
			more := len(p.queue) > 0
			p.mu.Unlock()
			if !more {
				break
			}
		}
	}
}

// heard records an answer of the peer.
func (p *peer) heard(res *weftv1.SyncResponse) {
	p.mu.Lock()
	changed := !p.up || p.ready != res.GetReady() || p.readyEpoch != res.GetReadyEpoch()
	if !p.up {
		p.s.log.Info("flow sync peer up", "peer", p.name)
	}
	p.up, p.everUp, p.connecting, p.ready, p.readyEpoch, p.lastHeard = true, true, false, res.GetReady(), res.GetReadyEpoch(), time.Now()
	p.mu.Unlock()
	if changed {
		p.s.wake()
	}
}

// pull fetches the flows this node keeps copies of from the peer and
// installs them; it returns how many it received.
func (p *peer) pull(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stream, err := p.client.Pull(ctx, connect.NewRequest(&weftv1.PullRequest{Node: p.s.cfg.Self}))
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	n := 0
	for stream.Receive() {
		flows := stream.Msg().GetFlows()
		n += len(flows)
		p.s.c.pulled.Add(uint64(len(flows)))
		if err := p.s.install(p.name, flows); err != nil {
			return n, err
		}
	}
	return n, stream.Err()
}

// status describes the peer for Status.
func (p *peer) status() *weftv1.FlowSyncPeer {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := &weftv1.FlowSyncPeer{Name: p.name, State: "down", ReadyEpoch: p.readyEpoch, Backlog: uint32(len(p.queue)), Sent: p.sent}
	switch {
	case p.up:
		st.State = "up"
	case p.connecting:
		st.State = "connecting"
	}
	if len(p.queue) > 0 {
		st.LagMs = uint32(time.Since(p.oldest).Milliseconds())
	}
	return st
}
