package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/dataplane/topflows"
	"github.com/weftlb/weft/deploy/lab"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// listenerStats finds a listener's counters in an answer.
func listenerStats(s *weftv1.GetStatsResponse, lb, listener string) *weftv1.ListenerStats {
	for _, l := range s.GetLoadBalancers() {
		for _, ln := range l.GetListeners() {
			if l.GetName() == lb && ln.GetName() == listener {
				return ln
			}
		}
	}
	return nil
}

// backendSum adds up a counter of a listener's backends.
func backendSum(l *weftv1.ListenerStats, get func(*weftv1.TrafficCounters) uint64) uint64 {
	var n uint64
	for _, b := range l.GetBackends() {
		n += get(b.GetTraffic())
	}
	return n
}

// TestLab_Stats: three XDP nodes behind ECMP with flow sync. The
// StatsService, asked on one node, counts exactly the new flows the client
// opened through FullNAT and DSR (per listener and over the backends),
// their packets, and the connections held open, each once although flow
// sync keeps copies on two nodes; `weft top` shows packet rates during wrk
// traffic and none after. Every line the agents logged is JSON.
func TestLab_Stats(t *testing.T) {
	r := newFabricRig(t, "wefts", 500*time.Millisecond, 0, 1, 2)
	ctx := context.Background()
	stats := func() *weftv1.GetStatsResponse {
		t.Helper()
		res, err := r.api[0].Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if n := res.Msg.GetNodes(); len(n) != 3 || len(res.Msg.GetMissing()) != 0 {
			t.Fatalf("stats summed over %v, missing %v; want the three nodes", n, res.Msg.GetMissing())
		}
		return res.Msg
	}
	newFlows := func(c *weftv1.TrafficCounters) uint64 { return c.GetNewFlows() }
	active := func(c *weftv1.TrafficCounters) uint64 { return c.GetActiveFlows() }

	const n = 200
	before := stats()
	for range n {
		for _, port := range []string{"80", "81"} {
			if body, err := r.get(port, 2*time.Second); err != nil {
				t.Fatalf("VIP:%s: %q %v", port, body, err)
			}
		}
	}
	after := stats()
	for _, name := range []string{"tcp-80", "tcp-81"} {
		b, a := listenerStats(before, "web", name), listenerStats(after, "web", name)
		if got := a.GetTraffic().GetNewFlows() - b.GetTraffic().GetNewFlows(); got != n {
			t.Errorf("%s: %d new flows counted, %d connections opened", name, got, n)
		}
		if got := backendSum(a, newFlows) - backendSum(b, newFlows); got != n {
			t.Errorf("%s: %d new flows counted over the backends, %d connections opened", name, got, n)
		}
		// A connection's client sends at least SYN, ACK, request and FIN.
		if got := a.GetTraffic().GetPackets() - b.GetTraffic().GetPackets(); got < 4*n {
			t.Errorf("%s: %d packets counted for %d connections, want at least %d", name, got, n, 4*n)
		}
		if a.GetTraffic().GetBytes() <= b.GetTraffic().GetBytes() {
			t.Errorf("%s: no bytes counted", name)
		}
	}

	// The new flows sampled (one in 16 by default: about 25 of these 400)
	// name the lab client as the VIP's top client, and its /24 as the top
	// prefix, none refused by a rate; weft top --lb shows them too.
	checkTop := func(lb interface {
		GetTopClients() []*weftv1.TopSource
		GetTopPrefixes() []*weftv1.TopSource
	}) {
		t.Helper()
		c, p := lb.GetTopClients(), lb.GetTopPrefixes()
		if len(c) == 0 || c[0].GetSource() != lab.ClientAddr.String() || c[0].GetNewFlows() <= 0 || c[0].GetLimited() != 0 {
			t.Errorf("top clients %v, want %v first, with new flows and none limited", c, lab.ClientAddr)
		}
		if want := topflows.PrefixOf(lab.ClientAddr).String(); len(p) == 0 || p[0].GetSource() != want || p[0].GetNewFlows() <= 0 {
			t.Errorf("top prefixes %v, want %s first", p, want)
		}
	}
	for _, lb := range after.GetLoadBalancers() {
		if lb.GetName() == "web" {
			checkTop(lb)
		}
	}
	checkTop(topSamples(t, r.c, r.c.agents[1], 1, "--lb", "web")[0].GetLoadBalancers()[0])

	// Connections held open count once each, on the listener and over the
	// backends, and not once they are closed.
	const held = 20
	var conns []net.Conn
	for range held {
		for _, port := range []string{"80", "81"} {
			c, err := r.c.dial(ctx, "tcp", net.JoinHostPort(labVIP.String(), port))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
	}
	openFlows := func(want uint64) func() error {
		return func() error {
			s := stats()
			for _, name := range []string{"tcp-80", "tcp-81"} {
				l := listenerStats(s, "web", name)
				if got, sum := l.GetTraffic().GetActiveFlows(), backendSum(l, active); got != want || sum != want {
					return fmt.Errorf("%s: %d open flows, %d over the backends; want %d", name, got, sum, want)
				}
			}
			return nil
		}
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("%d open flows per listener", held), openFlows(held))
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 5*time.Second, "no open flows", openFlows(0))

	// weft top during wrk traffic and after.
	done := make(chan int)
	go func() { reqs, _ := r.wrk("80", 4); done <- reqs }()
	time.Sleep(time.Second)
	for i, s := range topSamples(t, r.c, r.c.agents[1], 2) {
		l := listenerRates(s, "web", "tcp-80")
		if l.GetRates().GetPackets() <= 0 || l.GetRates().GetBits() <= 0 || l.GetRates().GetActiveFlows() == 0 {
			t.Errorf("weft top sample %d during wrk: tcp-80 %v, want packets, bits and open flows", i, l.GetRates())
		}
	}
	if reqs := <-done; reqs == 0 {
		t.Fatal("wrk sent no requests")
	}
	waitFor(t, 10*time.Second, "weft top showing no traffic", func() error {
		l := listenerRates(topSamples(t, r.c, r.c.agents[2], 1)[0], "web", "tcp-80")
		if l.GetRates().GetPackets() != 0 || l.GetRates().GetNewFlows() != 0 {
			return fmt.Errorf("tcp-80 %v", l.GetRates())
		}
		return nil
	})
	// Raft, gossip, BGP and flow sync log through slog too.
	for _, a := range r.c.agents {
		checkJSONLog(t, a)
	}
}
