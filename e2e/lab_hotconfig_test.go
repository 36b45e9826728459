package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestLab_HotConfig: while wrk runs keep-alive connections (FullNAT, VIP:80)
// and a new connection per request (DSR, VIP:81) through the three XDP
// nodes, server3 joins both pools, is drained (member drain: true: no new
// flows, open ones finish) and removed, and a listener on VIP:82 is added
// and removed. No request fails: flows whose backend stays are never
// disturbed, and the drain lets server3's flows finish before it goes.
// Each change is applied on every node within seconds (the benchmark
// BenchmarkLab_Propagation measures how fast).
func TestLab_HotConfig(t *testing.T) {
	r := newFabricRig(t, "weftn", 500*time.Millisecond, 0, 1)
	type run struct{ reqs, errs int }
	keep, fresh := make(chan run, 1), make(chan run, 1)
	go func() { a, b := r.wrk("80", 10); keep <- run{a, b} }()
	go func() { a, b := r.wrk("81", 10, "-H", "Connection: close"); fresh <- run{a, b} }()
	time.Sleep(time.Second) // wrk's keep-alive connections are open

	change := func(what, yaml string) {
		t.Helper()
		took := r.waitApplied(r.apply(yaml), 10*time.Second)
		t.Logf("%s: applied on every node %.1f ms after the apply returned", what, took.Seconds()*1000)
	}
	// answers reports how many of n new connections to port server answered.
	answers := func(port, server string, n int) (int, error) {
		got := 0
		for range n {
			body, err := r.get(port, time.Second)
			if err != nil {
				return got, err
			}
			if body == server {
				got++
			}
		}
		return got, nil
	}

	change("add server3", r.manifest([]int{0, 1, 2}, -1, ""))
	waitFor(t, 10*time.Second, "server3 takes new DSR flows", func() error {
		if n, err := answers("81", "server3", 30); err != nil || n == 0 {
			return fmt.Errorf("%d of 30 new connections went to server3 (%v)", n, err)
		}
		return nil
	})
	change("drain server3", r.manifest([]int{0, 1, 2}, 2, ""))
	if n, err := answers("81", "server3", 30); err != nil || n != 0 {
		t.Errorf("after its drain, %d of 30 new connections went to server3 (%v), want 0", n, err)
	}
	change("remove server3", r.manifest([]int{0, 1}, -1, ""))

	more := "{port: 82, protocol: tcp, pool: web}"
	change("add listener :82", r.manifest([]int{0, 1}, -1, more))
	waitFor(t, 10*time.Second, "VIP:82 answers", func() error {
		_, err := answers("82", "", 10)
		return err
	})
	change("remove listener :82", r.manifest([]int{0, 1}, -1, ""))
	if body, err := r.get("82", 500*time.Millisecond); err == nil {
		t.Errorf("VIP:82 answered %q after its listener was removed", body)
	}

	k, f := <-keep, <-fresh
	if k.reqs == 0 || k.errs != 0 {
		t.Errorf("keep-alive wrk (FullNAT) across the changes: %d requests, %d errors; want no errors", k.reqs, k.errs)
	}
	if f.reqs == 0 || f.errs != 0 {
		t.Errorf("new-connection wrk (DSR) across the changes: %d requests, %d errors; want no errors", f.reqs, f.errs)
	}
}
