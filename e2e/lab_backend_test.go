package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLab_BackendFailure: three XDP nodes serve the VIP over ECMP to three
// servers, each probed (HTTP, interval 1 s, rise 2, fall 2) by two of the
// nodes, the verdicts shared over gossip. While a bounded wrk and a stream
// of new connections run, server2's HTTP process is killed: within
// interval x fall + 1 s no node sends it new flows (new connections
// succeed again for good); when it comes back it takes new flows again
// after rise checks.
func TestLab_BackendFailure(t *testing.T) {
	r := newFabricRig(t, "weftb", 500*time.Millisecond, 0, 1, 2)
	const interval, rise, fall = time.Second, 2, 2
	r.check = fmt.Sprintf("{type: http, path: /, interval: %s, timeout: 500ms, rise: %d, fall: %d}", interval, rise, fall)
	r.waitApplied(r.apply(r.manifest([]int{0, 1, 2}, -1, "")), 10*time.Second)
	victim := r.l.Servers[1]
	// reaches reports whether any of n new connections to the VIP's
	// FullNAT port reached the victim.
	reaches := func(n int) bool {
		for range n {
			if body, err := r.get("80", time.Second); err == nil && body == victim.Name {
				return true
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, victim.Name+" takes new flows", func() error {
		if !reaches(30) {
			return fmt.Errorf("30 new connections missed %s", victim.Name)
		}
		return nil
	})

	wrkDone := make(chan [2]int, 1)
	go func() { a, b := r.wrk("80", 8, "-H", "Connection: close"); wrkDone <- [2]int{a, b} }()
	p := startProber(t, r.l, "backend-failure", "80", 10, 6*time.Second)
	time.Sleep(time.Second)
	p.mark(t)
	pids, err := exec.Command("ip", "netns", "pids", victim.NS).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(pids)) {
		if pid, err := strconv.Atoi(f); err == nil {
			exec.Command("kill", "-9", strconv.Itoa(pid)).Run()
		}
	}
	res := p.result(t)
	limit := interval*fall + time.Second
	if res.RecoveryMs > float64(limit.Milliseconds()) {
		t.Errorf("new connections failed until %.0f ms after %s's server stopped, want at most %s (interval x fall + 1 s)",
			res.RecoveryMs, victim.Name, limit)
	}
	w := <-wrkDone
	t.Logf("wrk across the failure: %d requests, %d errors (connections that reached %s before every node dropped it)",
		w[0], w[1], victim.Name)

	// The server returns: new flows reach it again after rise checks.
	cmd := exec.Command("ip", "netns", "exec", victim.NS, labServerBin, "-name", victim.Name, "-addr", ":8080,:81")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	start := time.Now()
	waitFor(t, interval*rise+3*time.Second, victim.Name+" takes new flows again", func() error {
		if !reaches(30) {
			return fmt.Errorf("30 new connections missed %s", victim.Name)
		}
		return nil
	})
	t.Logf("%s back in new flows %.0f ms after its server restarted (rise %d x interval %s)",
		victim.Name, time.Since(start).Seconds()*1000, rise, interval)
}
