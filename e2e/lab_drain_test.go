package e2e

import (
	"encoding/json"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// nodeWatch records, for some nodes, when the router's route to the VIP
// stopped going via each and when each node's XDP program went away (the
// node stopped forwarding), polling every 20 ms.
type nodeWatch struct {
	mu       sync.Mutex
	withdrew map[string]time.Time
	detached map[string]time.Time
	stop     chan struct{}
	done     chan struct{}
}

func watchNodes(tb testing.TB, l *lab.Lab, nodes ...lab.Host) *nodeWatch {
	w := &nodeWatch{withdrew: map[string]time.Time{}, detached: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			via, err := routeVia(l)
			now := time.Now()
			w.mu.Lock()
			for _, n := range nodes {
				if _, ok := w.withdrew[n.Name]; !ok && err == nil && !slices.Contains(via, n.Addr.String()) {
					w.withdrew[n.Name] = now
				}
			}
			w.mu.Unlock()
			for _, n := range nodes {
				attached, err := xdpAttached(n)
				now := time.Now()
				w.mu.Lock()
				if _, ok := w.detached[n.Name]; !ok && err == nil && !attached {
					w.detached[n.Name] = now
				}
				w.mu.Unlock()
			}
		}
	}()
	tb.Cleanup(w.end)
	return w
}

func (w *nodeWatch) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// xdpAttached reports whether an XDP program runs on a node's interface.
func xdpAttached(h lab.Host) (bool, error) {
	out, err := exec.Command("ip", "-n", h.NS, "-j", "link", "show", h.Iface).Output()
	if err != nil {
		return false, err
	}
	var links []struct {
		XDP json.RawMessage `json:"xdp"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) == 0 {
		return false, err
	}
	return links[0].XDP != nil, nil
}

// TestLab_Drain: while wrk runs keep-alive connections through the VIP
// (DSR), node2 is drained with `weft node drain` and then stopped with
// SIGTERM, and node3, not drained, is stopped with SIGTERM alone. Each
// node's route is withdrawn before its XDP program goes away (it forwards
// for --drain-delay after withdrawing), and no request fails: the
// connections ECMP moves to node1 keep their server (DSR, same Maglev
// table). A FullNAT wrk with a new connection per request runs alongside;
// its errors are logged, not asserted: two of the three nodes stop in turn,
// and a FullNAT flow of the first keeps its replies only while the heir of
// its local address lives (flow sync keeps copies for one loss at a time;
// TestLab_FlowSync covers FullNAT through losses and restarts).
func TestLab_Drain(t *testing.T) {
	const drainDelay = 2 * time.Second
	r := newFabricRig(t, "weftn", drainDelay, 0, 1, 2)
	for i := range r.l.Nodes {
		if ok, err := xdpAttached(r.l.Nodes[i]); !ok || err != nil {
			t.Fatalf("%s: xdp attached %v, %v; want attached", r.l.Nodes[i].Name, ok, err)
		}
	}
	w := watchNodes(t, r.l, r.l.Nodes[1], r.l.Nodes[2])
	type run struct{ reqs, errs int }
	dsr, fullnat := make(chan run, 1), make(chan run, 1)
	go func() { a, b := r.wrk("81", 12); dsr <- run{a, b} }()
	go func() { a, b := r.wrk("80", 12, "-H", "Connection: close"); fullnat <- run{a, b} }()
	time.Sleep(time.Second) // wrk's connections are open and spread over the nodes

	if _, err := r.c.weft(r.c.agents[0], "", "node", "drain", "node2"); err != nil {
		t.Fatal(err)
	}
	took := waitVia(t, r.l, 5*time.Second, r.l.Nodes[0], r.l.Nodes[2])
	t.Logf("node2 withdrawn %.0f ms after `weft node drain` returned", took.Seconds()*1000)
	stopped := time.Now()
	r.c.agents[1].stop(t)
	t.Logf("node2 exited %.0f ms after SIGTERM", time.Since(stopped).Seconds()*1000)

	stopped = time.Now()
	r.c.agents[2].stop(t)
	t.Logf("node3 exited %.0f ms after SIGTERM", time.Since(stopped).Seconds()*1000)
	waitVia(t, r.l, time.Second, r.l.Nodes[0])

	d, f := <-dsr, <-fullnat
	w.end()
	for _, n := range r.l.Nodes[1:] {
		withdrew, detached := w.withdrew[n.Name], w.detached[n.Name]
		switch {
		case withdrew.IsZero() || detached.IsZero():
			t.Errorf("%s: route withdrawn at %v, xdp detached at %v; want both seen", n.Name, withdrew, detached)
		case !withdrew.Before(detached):
			t.Errorf("%s stopped forwarding %.0f ms before its route was withdrawn", n.Name, withdrew.Sub(detached).Seconds()*1000)
		default:
			t.Logf("%s: route withdrawn %.0f ms before it stopped forwarding", n.Name, detached.Sub(withdrew).Seconds()*1000)
		}
	}
	if d.reqs == 0 || d.errs != 0 {
		t.Errorf("DSR keep-alive wrk across the drain and two stops: %d requests, %d errors; want no errors", d.reqs, d.errs)
	}
	t.Logf("FullNAT wrk, a new connection per request: %d requests, %d errors (not asserted)", f.reqs, f.errs)
}
