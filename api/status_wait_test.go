package api

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// TestStatusWaitApplied: Status with wait_applied_index answers after the
// node's WaitApplied returns, maps its errors to codes that name the
// node, and is refused where nothing can be waited for.
func TestStatusWaitApplied(t *testing.T) {
	var waitErr error
	var asked uint64
	n := newTestNode(t, func(c *Config) {
		c.WaitApplied = func(ctx context.Context, index uint64) error {
			asked = index
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline given to WaitApplied")
			}
			if waitErr == context.DeadlineExceeded {
				<-ctx.Done()
				return ctx.Err()
			}
			return waitErr
		}
	})
	c := n.client(n.admin)
	status := func(ctx context.Context, index uint64) error {
		_, err := c.Cluster.Status(ctx, connect.NewRequest(&weftv1.StatusRequest{WaitAppliedIndex: index}))
		return err
	}
	if err := status(context.Background(), 7); err != nil || asked != 7 {
		t.Fatalf("Status waiting for 7: %v (WaitApplied asked for %d)", err, asked)
	}
	waitErr = errors.New("dataplane failed to apply index 9: no room")
	if err := status(context.Background(), 9); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		err.Error() != "failed_precondition: wait_applied_index: node n1: dataplane failed to apply index 9: no room" {
		t.Fatalf("Status with a failed apply: %v", err)
	}
	waitErr = context.DeadlineExceeded
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := status(ctx, 11); connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Fatalf("Status past its deadline: %v", err)
	}
	asked = 0
	if err := status(context.Background(), 0); err != nil || asked != 0 {
		t.Fatalf("Status without a wait: %v (WaitApplied asked for %d)", err, asked)
	}

	bare := newTestNode(t)
	_, err := bare.client(bare.admin).Cluster.Status(context.Background(), connect.NewRequest(&weftv1.StatusRequest{WaitAppliedIndex: 1}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("Status waiting on a node with no subsystems: %v", err)
	}
}
