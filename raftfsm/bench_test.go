package raftfsm

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
)

// BenchmarkApply measures commits on a three-node loopback TLS cluster with
// 8 x GOMAXPROCS parallel writers. It reports throughput and the commit
// latency seen by Apply (proposal to applied on the leader).
func BenchmarkApply(b *testing.B) {
	ctx := context.Background()
	c := newTestCluster(b)
	leader := c.start("n1", true, nil)
	c.leader(10 * time.Second)
	for _, id := range []string{"n2", "n3"} {
		c.start(id, false, nil)
		if err := leader.AddNonvoter(ctx, id, c.addr(id)); err != nil {
			b.Fatalf("AddNonvoter(%s): %v", id, err)
		}
	}
	waitFor(b, 15*time.Second, "three voters", func() bool { return voters(b, leader) == 3 })

	// Several writers per core, as API handlers would be: raft batches
	// their proposals into shared disk writes and round trips.
	b.SetParallelism(8)
	var (
		mu        sync.Mutex
		latencies []time.Duration
		seq       atomic.Int64
	)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		for pb.Next() {
			i := seq.Add(1)
			cmd := &statev1.UpsertNodeCommand{Node: node(fmt.Sprintf("bench-%d", i%1024), "a")}
			t0 := time.Now()
			if _, _, err := leader.Apply(ctx, UpsertNodeType, cmd); err != nil {
				b.Errorf("Apply: %v", err)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()

	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	quantile := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(quantile(0.50), "p50-ms")
	b.ReportMetric(quantile(0.99), "p99-ms")
}
