package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// TestAgent_DistributedHealth: three nodes (zones a, a, b) find each other
// over gossip from the committed node list; each pool member is probed by
// two of them, in different zones, not by all; the verdicts spread by
// gossip so every node holds the same view and forwards alike; a failed
// member is out on every node within interval x fall + 1 s (plus gossip);
// when a checker node dies, the survivors take its members over without
// the view flapping. All three nodes serve the VIP on loopback (the
// userspace dataplane binds it with SO_REUSEPORT, so the kernel spreads
// connections over the three like ECMP would).
func TestAgent_DistributedHealth(t *testing.T) {
	c := threeNodes(t, 18, "--dataplane", "userspace")
	names := []string{"alpha", "beta", "gamma"}
	lns := make([]net.Listener, len(names))
	var members []string
	for i, n := range names {
		lns[i] = nameServer(t, n)
		host, port, _ := net.SplitHostPort(lns[i].Addr().String())
		members = append(members, fmt.Sprintf("{address: %s, port: %s}", host, port))
	}
	manifest := fmt.Sprintf(`kind: Pool
metadata: {name: names}
spec:
  members: [%s]
  healthCheck: {type: tcp, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
---
kind: LoadBalancer
metadata: {name: names}
spec:
  vip: 127.0.18.100
  listeners: [{port: 9000, protocol: tcp, pool: names}]
`, strings.Join(members, ", "))
	if _, err := c.weft(c.agents[0], manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	addrOf := func(i int) string { return lns[i].Addr().String() }

	// views reads every running node's health view and gossip membership.
	type nodeView struct {
		up       map[string]bool     // member -> up
		checkers map[string][]string // member -> checkers
		probing  map[string]bool     // members this node probes
		alive    []string
	}
	views := func(nodes []*agent) (map[string]nodeView, error) {
		out := map[string]nodeView{}
		for _, a := range nodes {
			st, err := status(context.Background(), c.client(a))
			if err != nil {
				return nil, err
			}
			v := nodeView{up: map[string]bool{}, checkers: map[string][]string{}, probing: map[string]bool{}}
			for _, m := range st.GetMembers() {
				key := net.JoinHostPort(m.GetAddress(), fmt.Sprint(m.GetPort()))
				v.up[key], v.checkers[key] = m.GetUp(), m.GetCheckers()
				if m.GetProbe() != "" {
					v.probing[key] = true
				}
			}
			for _, g := range st.GetGossip() {
				if g.GetState() == "alive" {
					v.alive = append(v.alive, g.GetName())
				}
			}
			out[a.name] = v
		}
		return out, nil
	}
	// agreed waits until the given nodes see exactly each other alive,
	// agree on checkers (two per member, from distinct zones when the
	// nodes span two) and on the view wantUp, and each member is probed by
	// exactly its two checkers.
	agreed := func(limit time.Duration, nodes []*agent, wantUp map[string]bool) time.Duration {
		t.Helper()
		var want []string
		zones := map[string]string{}
		for _, a := range nodes {
			want = append(want, a.name)
			zones[a.name] = a.zone
		}
		start := time.Now()
		waitFor(t, limit, fmt.Sprintf("nodes %v agree on %v", want, wantUp), func() error {
			vs, err := views(nodes)
			if err != nil {
				return err
			}
			first := vs[nodes[0].name]
			probes := map[string]int{}
			for name, v := range vs {
				if slices.Sort(v.alive); !slices.Equal(v.alive, want) {
					return fmt.Errorf("%s sees %v alive", name, v.alive)
				}
				for m, up := range wantUp {
					if v.up[m] != up {
						return fmt.Errorf("%s sees %s up=%v", name, m, v.up[m])
					}
					if !slices.Equal(v.checkers[m], first.checkers[m]) {
						return fmt.Errorf("%s has checkers %v for %s, %s has %v", name, v.checkers[m], m, nodes[0].name, first.checkers[m])
					}
					if v.probing[m] {
						probes[m]++
					}
				}
			}
			for m := range wantUp {
				cs := first.checkers[m]
				if len(cs) != 2 || (len(nodes) == 3 && zones[cs[0]] == zones[cs[1]]) {
					return fmt.Errorf("checkers of %s are %v, want two in zones a and b", m, cs)
				}
				if probes[m] != 2 {
					return fmt.Errorf("%s is probed by %d nodes, want 2", m, probes[m])
				}
			}
			return nil
		})
		return time.Since(start)
	}
	// reaches waits until 30 new connections in a row through the VIP reach
	// exactly want.
	reaches := func(limit time.Duration, want ...string) {
		t.Helper()
		waitFor(t, limit, fmt.Sprintf("new flows reach only %v", want), func() error {
			got := map[string]bool{}
			for i := 0; i < 30; i++ {
				conn, err := net.DialTimeout("tcp", "127.0.18.100:9000", time.Second)
				if err != nil {
					return err
				}
				conn.SetDeadline(time.Now().Add(2 * time.Second))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				conn.Close()
				got[strings.TrimSpace(line)] = true
			}
			for g := range got {
				if !slices.Contains(want, g) {
					return fmt.Errorf("reached %v", got)
				}
			}
			return nil
		})
	}

	allUp := map[string]bool{addrOf(0): true, addrOf(1): true, addrOf(2): true}
	took := agreed(15*time.Second, c.agents, allUp)
	t.Logf("gossip formed and every member probed by two nodes %.0f ms after apply", took.Seconds()*1000)
	reaches(5*time.Second, names...)
	// Gossip also tells each node how far the others have applied the
	// state: at least the index of the write above. A metadata update
	// spreads in two or three gossip rounds (100 ms each; 3-550 ms in 45
	// runs, the slowest waiting out metaEvery). Push-pull (every 10 s) is
	// only the repair path: an update that needs it was lost, as
	// memberlist's queue used to lose one in about eight runs
	// (third_party/memberlist/WEFT.md).
	pools, err := c.client(c.agents[0]).LB.ListPools(context.Background(), connect.NewRequest(&weftv1.ListRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "every node's applied index in gossip", func() error {
		st, err := status(context.Background(), c.client(c.agents[0]))
		if err != nil {
			return err
		}
		for i, g := range st.GetGossip() {
			if g.GetAppliedIndex() < pools.Msg.GetIndex() {
				own, err := status(context.Background(), c.client(c.agents[i]))
				return fmt.Errorf("%s applied %d, want %d (its own status: %v %v)", g.GetName(), g.GetAppliedIndex(), pools.Msg.GetIndex(), own.GetGossip(), err)
			}
		}
		return nil
	})

	// A member fails: every node drops it within interval 1 s x fall 2
	// + 1 s (typically 1.3-2 s here), plus two seconds of slack for gossip
	// and the Status polling on a loaded CI machine.
	lns[0].Close()
	alphaDown := map[string]bool{addrOf(0): false, addrOf(1): true, addrOf(2): true}
	took = agreed(5*time.Second, c.agents, alphaDown)
	t.Logf("failed member down on every node %.0f ms after its server stopped", took.Seconds()*1000)
	reaches(2*time.Second, "beta", "gamma")

	// A checker node dies (zone b's only node checks every member): the
	// others detect it over gossip and take its members over; the view
	// must not flap meanwhile.
	c.agents[2].kill()
	survivors := c.agents[:2]
	deadline := time.Now().Add(15 * time.Second)
	start := time.Now()
	for {
		vs, err := views(survivors)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range vs {
			for m, up := range alphaDown {
				if v.up[m] != up {
					t.Fatalf("%s saw %s up=%v while checkers moved", name, m, v.up[m])
				}
			}
		}
		if err := func() error {
			for _, v := range vs {
				if slices.Contains(v.alive, "node3") {
					return fmt.Errorf("node3 still alive")
				}
			}
			return nil
		}(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node3 still seen alive 15 s after SIGKILL")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("node3 seen dead by the others %.0f ms after SIGKILL", time.Since(start).Seconds()*1000)
	agreed(10*time.Second, survivors, alphaDown)
	reaches(2*time.Second, "beta", "gamma")

	// The member returns: up again on both survivors after rise.
	ln, err := net.Listen("tcp", addrOf(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveName(ln, "alpha")
	agreed(5*time.Second, survivors, allUp)
	reaches(2*time.Second, names...)

	if out, err := c.weft(c.agents[0], "", "status"); err != nil || !strings.Contains(out, "health view:") || !strings.Contains(out, "gossip members:") {
		t.Errorf("status does not show gossip and health: %v\n%s", err, out)
	}
}
