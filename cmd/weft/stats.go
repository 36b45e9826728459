package main

// Live rates from the StatsService: `weft top` and the rates section of
// `weft describe lb`. The API serves counters summed over the nodes; the
// rates are the differences of two answers over the time between them.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// defaultRateInterval is the time between the two samples rates come from.
const defaultRateInterval = time.Second

// clearScreen moves the cursor home and clears the terminal, as top does
// between refreshes.
const clearScreen = "\x1b[H\x1b[2J"

func newTopCmd(cf *clientFlags) *cobra.Command {
	var (
		lbs        []string
		interval   time.Duration
		iterations int
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show the live rates of every load balancer, refreshed like top",
		Long: `Show the live rates of every load balancer (or those named by --lb), per listener and
per backend, refreshed every --interval: packets, bits, new flows and requests per second, open
flows, the share of requests answered 5xx or not at all, and each member's health. Counters are
summed over every node that answers; the nodes that did not are named. With --lb, the clients
and source prefixes (IPv4 /24, IPv6 /48) opening the most new flows to each VIP follow, from
the new flows the XDP program samples (weft agent --sample-new-flows), "limited" those refused
by the listener's newFlowRate.

On a terminal each refresh clears the screen; -o json writes one JSON document (a StatsSample)
per refresh instead. --iterations bounds the refreshes (0: until interrupted).

  weft top
  weft top --lb web --interval 5s
  weft top -o json --iterations 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond {
				return fmt.Errorf("--interval: %s is too short (at least 100ms)", interval)
			}
			if iterations < 0 {
				return fmt.Errorf("--iterations: %d is negative", iterations)
			}
			switch cf.output {
			case outTable, outWide, outJSON, outYAML, "":
			default:
				return fmt.Errorf("-o: %q is not table, wide, json or yaml", cf.output)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return top(cmd.Context(), cmd.OutOrStdout(), c, lbs, interval, iterations, cf.output)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&lbs, "lb", nil, "show only this load balancer (repeatable)")
	f.DurationVar(&interval, "interval", defaultRateInterval, "time between refreshes")
	f.IntVar(&iterations, "iterations", 0, "stop after this many refreshes (0: never)")
	cmd.RegisterFlagCompletionFunc("lb", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return completeNames(cmd, cf, toComplete, resourceNames(raftfsm.KindLoadBalancer))
	})
	return cmd
}

// top prints the rates over each interval until ctx ends or iterations
// refreshes were printed.
func top(ctx context.Context, w io.Writer, c *api.Client, lbs []string, interval time.Duration, iterations int, format string) error {
	prev, err := getStats(ctx, c, lbs)
	if err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; iterations == 0 || i < iterations; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := getStats(ctx, c, lbs)
		if err != nil {
			return err
		}
		s := sampleOf(prev, cur)
		prev = cur
		switch format {
		case outJSON:
			err = manifest.JSON(w, s)
		case outYAML:
			if _, err = io.WriteString(w, "---\n"); err == nil {
				err = manifest.YAML(w, s)
			}
		default:
			if isTerminal(w) {
				io.WriteString(w, clearScreen)
			} else if i > 0 {
				io.WriteString(w, "\n")
			}
			err = printSample(w, s, true, len(lbs) > 0, format == outWide)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// describeRates prints the rates of one load balancer over interval as
// YAML comments, so that what describe prints can still be applied. When
// the nodes counted changed over the interval it measures once more.
func describeRates(ctx context.Context, w io.Writer, c *api.Client, name string, interval time.Duration) error {
	prev, err := getStats(ctx, c, []string{name})
	if err != nil {
		return err
	}
	var s *weftv1.StatsSample
	for range 2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		cur, err := getStats(ctx, c, []string{name})
		if err != nil {
			return err
		}
		if s = sampleOf(prev, cur); !s.GetNodesChanged() {
			break
		}
		prev = cur
	}
	var b bytes.Buffer
	if err := printSample(&b, s, false, true, false); err != nil {
		return err
	}
	return writeComment(w, b.String())
}

// writeComment writes text as YAML comment lines.
func writeComment(w io.Writer, text string) error {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		b.WriteString(strings.TrimRight("# "+line, " "))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func getStats(ctx context.Context, c *api.Client, lbs []string) (*weftv1.GetStatsResponse, error) {
	res, err := c.Stats.GetStats(ctx, connect.NewRequest(&weftv1.GetStatsRequest{LoadBalancers: lbs}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

// sampleOf computes the rates between two answers. When they summed
// different nodes it gives none: a node's counters entering or leaving the
// sums are not traffic. A counter that went down all the same (a node
// restarted) counts as no traffic rather than as a negative rate.
func sampleOf(prev, cur *weftv1.GetStatsResponse) *weftv1.StatsSample {
	dt := cur.GetTime().AsTime().Sub(prev.GetTime().AsTime()).Seconds()
	s := &weftv1.StatsSample{Time: cur.GetTime(), IntervalSeconds: dt, Nodes: cur.GetNodes(), Missing: cur.GetMissing(),
		NodesChanged: !slices.Equal(prev.GetNodes(), cur.GetNodes())}
	if cur.GetTime() == nil {
		s.Time = timestamppb.Now()
	}
	type bkey struct {
		lb, listener, pool, addr string
		port                     uint32
	}
	before := map[[2]string]*weftv1.ListenerStats{}
	beforeB := map[bkey]*weftv1.BackendStats{}
	for _, lb := range prev.GetLoadBalancers() {
		for _, l := range lb.GetListeners() {
			before[[2]string{lb.GetName(), l.GetName()}] = l
			for _, b := range l.GetBackends() {
				beforeB[bkey{lb.GetName(), l.GetName(), b.GetPool(), b.GetAddress(), b.GetPort()}] = b
			}
		}
	}
	for _, lb := range cur.GetLoadBalancers() {
		lr := &weftv1.LoadBalancerRates{Name: lb.GetName(), Vip: lb.GetVip(), TopClients: lb.GetTopClients(), TopPrefixes: lb.GetTopPrefixes()}
		for _, l := range lb.GetListeners() {
			p := before[[2]string{lb.GetName(), l.GetName()}]
			r := &weftv1.ListenerRates{Name: l.GetName(), Protocol: l.GetProtocol(), Port: l.GetPort(),
				Rates: ratesOf(p.GetTraffic(), l.GetTraffic(), p.GetRequests(), l.GetRequests(), dt, p != nil && !s.NodesChanged)}
			for _, b := range l.GetBackends() {
				pb := beforeB[bkey{lb.GetName(), l.GetName(), b.GetPool(), b.GetAddress(), b.GetPort()}]
				r.Backends = append(r.Backends, &weftv1.BackendRates{Pool: b.GetPool(), Address: b.GetAddress(), Port: b.GetPort(),
					Health: b.GetHealth(), Drain: b.GetDrain(),
					Rates: ratesOf(pb.GetTraffic(), b.GetTraffic(), pb.GetRequests(), b.GetRequests(), dt, pb != nil && !s.NodesChanged)})
			}
			lr.Listeners = append(lr.Listeners, r)
		}
		s.LoadBalancers = append(s.LoadBalancers, lr)
	}
	return s
}

// ratesOf is the rates from counters a to b over dt seconds; without a
// first sample (seen false) only the open flows are known.
func ratesOf(a, b *weftv1.TrafficCounters, ra, rb *weftv1.RequestCounters, dt float64, seen bool) *weftv1.Rates {
	r := &weftv1.Rates{ActiveFlows: b.GetActiveFlows()}
	if !seen || dt <= 0 {
		return r
	}
	per := func(x, y uint64) float64 {
		if y < x {
			return 0
		}
		return float64(y-x) / dt
	}
	r.Packets = per(a.GetPackets(), b.GetPackets())
	r.Bits = 8 * per(a.GetBytes(), b.GetBytes())
	r.NewFlows = per(a.GetNewFlows(), b.GetNewFlows())
	r.Drops = per(a.GetDrops(), b.GetDrops())
	r.Requests = per(ra.GetRequests(), rb.GetRequests())
	if r.Requests > 0 {
		errs := per(ra.GetStatus_5Xx(), rb.GetStatus_5Xx()) + per(ra.GetNoStatus(), rb.GetNoStatus())
		r.ErrorRatio = min(errs/r.Requests, 1)
	}
	return r
}

// printSample shows a sample as a table: a row per listener, then one per
// backend under it. withLB adds the load balancer column (top); withTop
// adds each load balancer's top clients and source prefixes.
func printSample(w io.Writer, s *weftv1.StatsSample, withLB, withTop, wide bool) error {
	fmt.Fprintf(w, "rates over %.1fs, summed over %s", s.GetIntervalSeconds(), orNone(s.GetNodes()))
	if len(s.GetMissing()) > 0 {
		var m []string
		for _, n := range s.GetMissing() {
			m = append(m, n.GetNode()+" ("+n.GetReason()+")")
		}
		fmt.Fprintf(w, "; not counted: %s", strings.Join(m, ", "))
	}
	fmt.Fprintln(w)
	if s.GetNodesChanged() {
		fmt.Fprintln(w, "the nodes counted changed over the interval: no rates until the next refresh, only open flows")
	}
	t := table{columns: cols([]string{"listener", "backend", "health", "pps", "bps", "new/s", "active", "drops/s", "req/s", "err%"},
		"drain")}
	if withLB {
		t.columns = append([]column{{name: "lb"}}, t.columns...)
		t.columns = append(t.columns, column{name: "vip", wide: true})
	}
	for _, lb := range s.GetLoadBalancers() {
		for _, l := range lb.GetListeners() {
			up := 0
			for _, b := range l.GetBackends() {
				if b.GetHealth() == api.HealthUp {
					up++
				}
			}
			rows := [][]string{append([]string{l.GetName(), "", fmt.Sprintf("%d/%d up", up, len(l.GetBackends()))},
				append(rateCells(l.GetProtocol(), l.GetRates()), "")...)}
			for _, b := range l.GetBackends() {
				member := b.GetPool() + "/" + net.JoinHostPort(b.GetAddress(), strconv.Itoa(int(b.GetPort())))
				rows = append(rows, append([]string{"", member, b.GetHealth()},
					append(rateCells(l.GetProtocol(), b.GetRates()), strconv.FormatBool(b.GetDrain()))...))
			}
			for _, r := range rows {
				if withLB {
					r = append(append([]string{lb.GetName()}, r...), lb.GetVip())
				}
				t.rows = append(t.rows, r)
			}
		}
	}
	if err := t.write(w, wide); err != nil || !withTop {
		return err
	}
	for _, lb := range s.GetLoadBalancers() {
		if len(lb.GetTopClients()) == 0 {
			continue
		}
		for _, part := range []struct {
			title, column string
			sources       []*weftv1.TopSource
		}{
			{"clients", "client", lb.GetTopClients()},
			{"source prefixes", "prefix", lb.GetTopPrefixes()},
		} {
			fmt.Fprintf(w, "\ntop %s of %s (%s) by new flows, sampled over the last 10-20s:\n", part.title, lb.GetName(), lb.GetVip())
			t := table{columns: cols([]string{part.column, "new/s", "limited/s"})}
			for _, x := range part.sources {
				t.rows = append(t.rows, []string{x.GetSource(), si(x.GetNewFlows()), si(x.GetLimited())})
			}
			if err := t.write(w, wide); err != nil {
				return err
			}
		}
	}
	return nil
}

// rateCells are a row's rate columns: L4 ones for tcp and udp listeners,
// request ones for http and https listeners, "-" for the others.
func rateCells(protocol string, r *weftv1.Rates) []string {
	if protocol == "http" || protocol == "https" {
		errPct := fmt.Sprintf("%.1f", 100*r.GetErrorRatio())
		return []string{"-", "-", "-", "-", "-", si(r.GetRequests()), errPct}
	}
	return []string{si(r.GetPackets()), si(r.GetBits()), si(r.GetNewFlows()), strconv.FormatUint(r.GetActiveFlows(), 10),
		si(r.GetDrops()), "-", "-"}
}

// si writes a rate with an SI prefix: 0, 0.5, 12, 340, 1.2k, 9.8M.
func si(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	const prefixes = "kMGTP"
	i := -1
	for v >= 1000 && i < len(prefixes)-1 {
		v /= 1000
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + prefixes[i:i+1]
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no node"
	}
	return strings.Join(s, ", ")
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
