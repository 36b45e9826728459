package raftfsm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// scaleResources are n load balancers, each a VIP with a tcp listener to a
// pool of its own of three members, and their pools.
func scaleResources(n int) []*weftv1.Resource {
	var rs []*weftv1.Resource
	for i := range n {
		name := fmt.Sprintf("s%05d", i)
		var addrs []string
		for j := range 3 {
			addrs = append(addrs, fmt.Sprintf("10.%d.%d.%d", 1+i/62500, i/250%250, i%250+j+1))
		}
		rs = append(rs, pool(name, 0, addrs...),
			lb(name, 0, fmt.Sprintf("198.%d.%d.%d", 18+i/65536%2, i/256%256, i%256), listener("tcp", 80, name)))
	}
	return rs
}

// memSink is a raft.SnapshotSink into memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "bench" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// BenchmarkSnapshot measures the FSM's snapshot of 10,000 load balancers
// (and their 10,000 pools): its size (snapshot-MiB), the time to write it
// (persist-ms) and to restore a new store from it (restore-ms).
func BenchmarkSnapshot(b *testing.B) {
	f := NewFSM(0)
	rs := scaleResources(10000)
	mustApply(b, f, 1, ApplyResourcesType, upsert(rs...))
	var persist, restore time.Duration
	var size int
	for range b.N {
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		var sink memSink
		t0 := time.Now()
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		size = sink.Len()
		g := NewFSM(0)
		if err := g.Restore(io.NopCloser(&sink)); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(t1)
		persist += t1.Sub(t0)
		if got := len(g.State().LoadBalancers()); got != len(rs)/2 {
			b.Fatalf("restored %d load balancers, want %d", got, len(rs)/2)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
	b.ReportMetric(float64(persist.Microseconds())/1000/float64(b.N), "persist-ms")
	b.ReportMetric(float64(restore.Microseconds())/1000/float64(b.N), "restore-ms")
}

// BenchmarkCatchUp measures a joining node's catch-up on a loopback TLS
// cluster whose leader holds 10,000 load balancers and has compacted its
// log into a snapshot: from AddNonvoter to the node's FSM applying the
// leader's last index (install-ms), through Raft's InstallSnapshot.
func BenchmarkCatchUp(b *testing.B) {
	ctx := context.Background()
	rs := scaleResources(10000)
	var took time.Duration
	for range b.N {
		b.StopTimer()
		c := newTestCluster(b)
		n1 := c.start("n1", true, nil)
		c.leader(10 * time.Second)
		// Applies of 1,000 resources: each entry stays well under the API's
		// 4 MiB request limit.
		for i := 0; i < len(rs); i += 1000 {
			if _, _, err := n1.Apply(ctx, ApplyResourcesType, upsert(rs[i:min(i+1000, len(rs))]...)); err != nil {
				b.Fatal(err)
			}
		}
		if err := n1.raft.Snapshot().Error(); err != nil {
			b.Fatal(err)
		}
		n2 := c.start("n2", false, nil)
		want := n1.FSM().AppliedIndex()
		b.StartTimer()
		t0 := time.Now()
		if err := n1.AddNonvoter(ctx, "n2", c.addr("n2")); err != nil {
			b.Fatal(err)
		}
		waitFor(b, time.Minute, "n2 to catch up", func() bool { return n2.FSM().AppliedIndex() >= want })
		took += time.Since(t0)
		b.StopTimer()
		if got := len(n2.FSM().State().LoadBalancers()); got != len(rs)/2 {
			b.Fatalf("n2 holds %d load balancers, want %d", got, len(rs)/2)
		}
		c.stop("n2")
		c.stop("n1")
		b.StartTimer()
	}
	b.ReportMetric(float64(took.Microseconds())/1000/float64(b.N), "install-ms")
}
