package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/weftlb/weft/deploy/lab"
)

// holdTime is the lab router's BGP hold time (deploy/lab/router.go): the
// bound the issue sets on failover is the hold time + 1 s.
const holdTime = 3 * time.Second

// prober runs deploy/lab/prober in the client's namespace against VIP:port.
type prober struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
}

// startProber starts a prober holding conns connections to VIP:port and
// waits until it is ready (every connection answered once).
func startProber(tb testing.TB, l *lab.Lab, name, port string, conns int, observe time.Duration) *prober {
	tb.Helper()
	p := &prober{name: name, lines: make(chan string, 2), stderr: &syncBuffer{}}
	p.cmd = l.Command(context.Background(), l.Client, proberBin, "-target", labVIP.String()+":"+port,
		"-conns", fmt.Sprint(conns), "-grace", (holdTime + time.Second).String(), "-observe", observe.String(), "-timeout", (observe + 40*time.Second).String())
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	if line := p.next(tb, 30*time.Second); line != "ready" {
		tb.Fatalf("prober %s: first line %q, want ready; stderr: %s", name, line, p.stderr)
	}
	return p
}

func (p *prober) next(tb testing.TB, limit time.Duration) string {
	tb.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			tb.Fatalf("prober %s ended early: %s", p.name, p.stderr)
		}
		return line
	case <-time.After(limit):
		tb.Fatalf("prober %s: no output within %s: %s", p.name, limit, p.stderr)
	}
	return ""
}

// mark tells the prober the event happens now.
func (p *prober) mark(tb testing.TB) {
	if _, err := io.WriteString(p.stdin, "mark\n"); err != nil {
		tb.Fatalf("mark prober %s: %v", p.name, err)
	}
}

// markedProbers starts a DSR (VIP:81) and a FullNAT (VIP:80) prober with
// conns held connections each, waits until both are ready and marks the
// event now.
func markedProbers(tb testing.TB, r *fabricRig, conns int, observe time.Duration) (dsr, fullnat *prober) {
	tb.Helper()
	dsr = startProber(tb, r.l, "dsr", "81", conns, observe)
	fullnat = startProber(tb, r.l, "fullnat", "80", conns, observe)
	dsr.mark(tb)
	fullnat.mark(tb)
	return dsr, fullnat
}

// end ends the prober's observation now (it must be past the grace).
func (p *prober) end(tb testing.TB) {
	if _, err := io.WriteString(p.stdin, "end\n"); err != nil {
		tb.Fatalf("end prober %s: %v", p.name, err)
	}
}

// result waits for the prober's JSON result.
func (p *prober) result(tb testing.TB) lab.ProbeResult {
	tb.Helper()
	line := p.next(tb, 30*time.Second)
	var res lab.ProbeResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		tb.Fatalf("prober %s: %v in %q", p.name, err, line)
	}
	tb.Logf("%s: %d/%d held connections survived (%.1f%%; errors %v, late %d, longest stall %.0f ms); "+
		"new connections: %d/%d failed, recovered %.0f ms after the kill",
		p.name, res.Survived, res.Conns, res.SurvivalPct, res.Errors, res.Late, res.MaxStallMs,
		res.NewFailures, res.NewAttempts, res.RecoveryMs)
	if len(res.Failures) > 0 {
		tb.Logf("%s: first failed connections:\n  %s", p.name, strings.Join(res.Failures, "\n  "))
	}
	return res
}

// nodeLoss SIGKILLs one node while a DSR and a FullNAT prober (conns
// held connections each, plus a stream of new connections) run through
// the VIP, and returns their results and how long the router took to
// drop the node from its route. cut, when set, runs just before the kill
// (to cut the node off first, as when a machine dies).
func nodeLoss(tb testing.TB, r *fabricRig, victim, conns int, cut func()) (dsr, fullnat lab.ProbeResult, withdrawn time.Duration) {
	tb.Helper()
	// Long enough after the grace period to see connections still answered.
	observe := holdTime + 3*time.Second
	pd, pf := markedProbers(tb, r, conns, observe)
	var rest []lab.Host
	for i, n := range r.l.Nodes {
		if i != victim {
			rest = append(rest, n)
		}
	}
	if cut != nil {
		cut()
	}
	r.c.agents[victim].kill()
	withdrawn = waitVia(tb, r.l, holdTime+5*time.Second, rest...)
	tb.Logf("router dropped %s from its route %.0f ms after the kill", r.l.Nodes[victim].Name, withdrawn.Seconds()*1000)
	return pd.result(tb), pf.result(tb), withdrawn
}

// isolate drops (or, with on false, passes again) every frame node i
// sends, with the XDP program on its switch port, as if the machine had
// died: the router hears nothing more from it, not even the FIN of its
// BGP session. The port stays up, so the switch keeps the node's MAC and
// does not flood frames for it to the other nodes.
func (r *fabricRig) isolate(i int, on bool) {
	r.t.Helper()
	action := int32(2) // XDP_PASS
	if on {
		action = 1 // XDP_DROP
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "weft_lab_isolate", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, action), asm.Return()}})
	if err != nil {
		r.t.Fatalf("load xdp program: %v", err)
	}
	defer prog.Close()
	lk, ok := r.ports[i].(link.Link)
	if !ok {
		r.t.Fatalf("switch port of %s: %T is not an XDP link", r.l.Nodes[i].Name, r.ports[i])
	}
	if err := lk.Update(prog); err != nil {
		r.t.Fatalf("isolate %s: %v", r.l.Nodes[i].Name, err)
	}
}

// restore restarts a killed node, lets it send again, and waits until
// the router's route goes via all three nodes and new connections work.
func (r *fabricRig) restore(victim int) {
	r.t.Helper()
	r.isolate(victim, false)
	if !r.c.agents[victim].running() {
		r.c.restart(r.c.agents[victim])
	}
	waitVia(r.t, r.l, 20*time.Second, r.l.Nodes...)
	r.waitServing("80", "81")
}

// on points the rig at a subtest or sub-benchmark; the returned function
// points it back.
func (r *fabricRig) on(tb testing.TB) func() {
	was := r.t
	r.t, r.c.t = tb, tb
	return func() { r.t, r.c.t = was, was }
}

// TestLab_NodeLoss: three XDP nodes behind the bird2 router's ECMP route;
// 200 long-lived connections in DSR mode and 200 in FullNAT mode, each
// asking every 100 ms, and a stream of new connections run through the VIP
// while a node is lost: SIGKILLed ("kill": the kernel still closes its BGP
// session, so the router withdraws at once), or cut off and then killed
// ("host", as when a machine dies: the router waits for the BGP hold time).
//
// Every held connection survives, in both modes: the nodes ECMP moves them
// to hold copies of their flows (flow sync) or hand their packets to the
// node that does, and a FullNAT flow's replies reach the node that took
// its lost node's local address over. New connections succeed again within
// the hold time + 1 s in both modes and both losses.
func TestLab_NodeLoss(t *testing.T) {
	r := newFabricRig(t, "weftn", 500*time.Millisecond, 0, 1, 2)
	limit := float64((holdTime + time.Second).Milliseconds())
	recovered := func(t *testing.T, dsr, fullnat lab.ProbeResult) {
		for _, res := range []struct {
			mode string
			lab.ProbeResult
		}{{"DSR", dsr}, {"FullNAT", fullnat}} {
			if res.RecoveryMs > limit {
				t.Errorf("%s: new connections succeeded again %.0f ms after the loss, want within %.0f ms", res.mode, res.RecoveryMs, limit)
			}
		}
	}
	t.Run("kill", func(t *testing.T) {
		defer r.on(t)()
		dsr, fullnat, _ := nodeLoss(t, r, 1, 200, nil)
		requireAllSurvived(t, "loss of a node", dsr, fullnat)
		recovered(t, dsr, fullnat)
	})
	t.Run("host", func(t *testing.T) {
		defer r.on(t)()
		r.restore(1)
		dsr, fullnat, _ := nodeLoss(t, r, 1, 200, func() { r.isolate(1, true) })
		requireAllSurvived(t, "loss of a host", dsr, fullnat)
		recovered(t, dsr, fullnat)
	})
}
