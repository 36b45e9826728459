package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// requestTimeout bounds each request. It is longer than Linux's first SYN
// retransmission (1 s), as a real client's connect timeout is: a SYN that
// reaches a killed node in the few milliseconds before the router drops
// the node's route is lost, and the client's resend takes the new route.
// Such requests are counted as slow (slowAfter), not hidden.
const requestTimeout = 3 * time.Second

// slowAfter is the time above which an answered request counts as slow.
const slowAfter = 500 * time.Millisecond

// get sends one HTTP request through the VIP from the client's namespace on
// a new connection (so the router hashes every request afresh) and returns
// the name of the server that answered.
func (d *demo) get(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+vip+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// newHTTPClient returns a client that dials from the lab client's
// namespace, a new connection per request.
func newHTTPClient(l *lab.Lab) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := l.Do(l.Client, func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

type loopOptions struct {
	workers  int
	requests int64         // stop after this many (0: until the context ends)
	pause    time.Duration // between one worker's requests
}

// runLoop sends requests through the VIP from several clients at once and
// records each; a request that hangs on a dead node holds up one worker,
// not the loop.
func runLoop(ctx context.Context, d *demo, rec *recorder, o loopOptions) {
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && (o.requests == 0 || sent.Add(1) <= o.requests) {
				at := rec.since()
				// Not ctx: stopping the loop must not fail a request in flight.
				server, err := d.get(context.Background())
				rec.add(at, rec.since()-at, server, err)
				time.Sleep(o.pause)
			}
		}()
	}
	wg.Wait()
}

// recorder collects request results and events on one clock.
type recorder struct {
	mu      sync.Mutex
	start   time.Time
	results []result
	events  []event
}

type result struct {
	at     time.Duration // when the request started
	took   time.Duration
	server string
	err    error
}

type event struct {
	at   time.Duration
	what string
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) since() time.Duration { return time.Since(r.start) }

func (r *recorder) add(at, took time.Duration, server string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, result{at, took, server, err})
}

func (r *recorder) event(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{r.since(), what})
}

// totals counts the requests that started in [from, to): answered (slow
// ones among them) and failed.
func (r *recorder) totals(from, to time.Duration) (ok, slow, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, res := range r.results {
		if res.at < from || res.at >= to {
			continue
		}
		switch {
		case res.err != nil:
			failed++
		case res.took > slowAfter:
			ok++
			slow++
		default:
			ok++
		}
	}
	return ok, slow, failed
}

// failedStarted returns the failed requests that started in [from, to].
func (r *recorder) failedStarted(from, to time.Duration) []result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var failed []result
	for _, res := range r.results {
		if res.err != nil && res.at >= from && res.at <= to {
			failed = append(failed, res)
		}
	}
	return failed
}

// perServer prints the answers per server of the requests that started in
// [from, to), with a bar each.
func (r *recorder) perServer(from, to time.Duration) string {
	r.mu.Lock()
	counts := map[string]int{}
	for _, res := range r.results {
		if res.err == nil && res.at >= from && res.at < to {
			counts[res.server]++
		}
	}
	r.mu.Unlock()
	names := make([]string, 0, len(counts))
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	most := 1
	for _, c := range counts {
		most = max(most, c)
	}
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "    %-8s %4d %s\n", n, counts[n], strings.Repeat("#", counts[n]*40/most))
	}
	return b.String()
}

// timeline prints, per second, the answered and failed requests that
// started in it, and what happened in it.
func (r *recorder) timeline() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var end time.Duration
	for _, res := range r.results {
		end = max(end, res.at)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    %-8s %8s %6s %6s   %s\n", "second", "answered", "slow", "failed", "what happened")
	for s := time.Duration(0); s <= end; s += time.Second {
		ok, slow, failed := 0, 0, 0
		for _, res := range r.results {
			if res.at >= s && res.at < s+time.Second {
				switch {
				case res.err != nil:
					failed++
				case res.took > slowAfter:
					ok++
					slow++
				default:
					ok++
				}
			}
		}
		var what []string
		for _, e := range r.events {
			if e.at >= s && e.at < s+time.Second {
				what = append(what, fmt.Sprintf("%.2fs %s", e.at.Seconds(), e.what))
			}
		}
		fmt.Fprintf(&b, "    %-8s %8d %6d %6d   %s\n", fmt.Sprintf("%d-%d", s/time.Second, s/time.Second+1), ok, slow, failed, strings.Join(what, "; "))
	}
	return b.String()
}

// errorSample returns up to three distinct request errors.
func (r *recorder) errorSample() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var seen []string
	for _, res := range r.results {
		if res.err != nil && !slices.Contains(seen, res.err.Error()) && len(seen) < 3 {
			seen = append(seen, res.err.Error())
		}
	}
	return indent(strings.Join(seen, "\n"))
}

// routeVia returns the names of the nodes the router's route to the VIP
// goes through, sorted.
func (d *demo) routeVia() ([]string, error) {
	hosts, err := d.l.RouteVia(context.Background(), netip.MustParseAddr(vip))
	var via []string
	for _, h := range hosts {
		via = append(via, h.Name)
	}
	return via, err
}

// waitRoute waits until the router's route to the VIP goes via exactly the
// given nodes.
func (d *demo) waitRoute(limit time.Duration, nodes ...lab.Host) error {
	var want []string
	for _, n := range nodes {
		want = append(want, n.Name)
	}
	slices.Sort(want)
	return waitFor(limit, fmt.Sprintf("router's route to %s via %v", vip, want), func() error {
		got, err := d.routeVia()
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("route via %v", got)
		}
		return nil
	})
}

// watchRoute records every change of the router's route to the VIP until
// ctx ends.
func (d *demo) watchRoute(ctx context.Context, rec *recorder) {
	last := []string{"?"}
	for ctx.Err() == nil {
		via, err := d.routeVia()
		if err == nil && !slices.Equal(via, last) {
			what := "router: route via " + strings.Join(via, " ")
			if len(via) == 0 {
				what = "router: no route"
			}
			rec.event(what)
			last = via
		}
		time.Sleep(20 * time.Millisecond)
	}
}
