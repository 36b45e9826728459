package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClusterWrites measures acknowledged writes through the API of a
// 3-node cluster of real agents on loopback: 16 or 64 concurrent clients,
// each write an Apply of one pool sent to the leader or, with
// via=follower, to a follower that forwards it.
func BenchmarkClusterWrites(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		for _, writers := range []int{16, 64} {
			b.Run(fmt.Sprintf("via=%s/clients=%d", via, writers), func(b *testing.B) { clusterWrites(b, via, writers) })
		}
	}
}

func clusterWrites(b *testing.B, via string, writers int) {
	c := threeNodes(b, 20)
	ctx := context.Background()
	target, err := c.leader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if via == "follower" {
		for _, a := range c.agents {
			if a != target {
				target = a
				break
			}
		}
	}
	cl := c.client(target)
	lat := make([][]time.Duration, writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := applyPool(ctx, cl, fmt.Sprintf("b%d", i)); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
