package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane/xdp"
)

// TestLab_XDPRapidChanges: 1,000 changes applied back to back to the XDP
// node, each replacing one of the 10 members of a FullNAT service (VIP:80)
// from 30 (three servers x ports 9000-9009), while clients open a new
// connection per request and keep-alive connections send requests. No
// connection or request fails, and every new connection reaches a member
// of a configuration that was live while it was opened: none goes to a
// member removed before it started (each answer names the server's
// address and port).
func TestLab_XDPRapidChanges(t *testing.T) {
	const ports, members, changes = 10, 10, 1000
	addrs := []string{":8080", ":81"}
	for p := range ports {
		addrs = append(addrs, ":"+strconv.Itoa(9000+p))
	}
	r := newXDPRigOn(t, "weftr", strings.Join(addrs, ","), xdp.Options{ConnTrackSize: 1 << 16})
	var pool []xdp.Backend
	for p := range ports {
		for _, s := range r.l.Servers {
			pool = append(pool, xdp.Backend{Addr: s.Addr, Port: uint16(9000 + p), Weight: 1})
		}
	}
	// Configuration c has members c..c+members-1 of the pool (cyclically).
	memberSet := func(c int) map[string]bool {
		set := map[string]bool{}
		for j := range members {
			b := pool[(c+j)%len(pool)]
			set[netip.AddrPortFrom(b.Addr, b.Port).String()] = true
		}
		return set
	}
	configOf := func(c int) xdp.Config {
		cfg := r.base
		svc := xdp.Service{VIP: labVIP, Port: 80, Proto: xdp.ProtoTCP, Mode: xdp.ModeFullNAT}
		for j := range members {
			svc.Backends = append(svc.Backends, pool[(c+j)%len(pool)])
		}
		cfg.Services = []xdp.Service{svc}
		return cfg
	}
	ctx := context.Background()
	if err := r.d.Apply(ctx, configOf(0)); err != nil {
		t.Fatal(err)
	}

	var applied atomic.Int64
	stop := make(chan struct{})
	type conn struct {
		from, to int64 // configurations that may have been live
		backend  string
		err      error
	}
	var (
		mu       sync.Mutex
		conns    []conn
		keepReqs int
		keepErrs []error
		wg       sync.WaitGroup
		vip      = netip.AddrPortFrom(labVIP, 80).String()
		request  = "GET / HTTP/1.1\r\nHost: " + vip + "\r\n"
		stopped  = func() bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		}
		readReply = func(br *bufio.Reader) (string, error) {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				return "", err
			}
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("status %s", resp.Status)
			}
			return resp.Header.Get("X-Local-Addr"), nil
		}
	)
	inClient := func(fn func() error) {
		wg.Go(func() {
			if err := r.l.Do(r.l.Client, fn); err != nil {
				t.Error(err)
			}
		})
	}
	// New connections, one request each.
	for range 4 {
		inClient(func() error {
			for !stopped() {
				c := conn{from: applied.Load()}
				nc, err := net.DialTimeout("tcp", vip, 2*time.Second)
				if err == nil {
					nc.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err = nc.Write([]byte(request + "Connection: close\r\n\r\n")); err == nil {
						c.backend, err = readReply(bufio.NewReader(nc))
					}
					nc.Close()
				}
				c.to, c.err = applied.Load()+1, err
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
			return nil
		})
	}
	// Keep-alive connections: their flows keep their backend, removed or not.
	for range 8 {
		inClient(func() error {
			nc, err := net.DialTimeout("tcp", vip, 2*time.Second)
			if err != nil {
				mu.Lock()
				keepErrs = append(keepErrs, err)
				mu.Unlock()
				return nil
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			for !stopped() {
				nc.SetDeadline(time.Now().Add(2 * time.Second))
				_, err := nc.Write([]byte(request + "\r\n"))
				if err == nil {
					_, err = readReply(br)
				}
				mu.Lock()
				keepReqs++
				if err != nil {
					keepErrs = append(keepErrs, err)
				}
				mu.Unlock()
				if err != nil {
					return nil
				}
			}
			return nil
		})
	}
	waitFor(t, 10*time.Second, "traffic flowing", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(conns) < 100 || keepReqs < 100 {
			return fmt.Errorf("%d new connections and %d keep-alive requests so far", len(conns), keepReqs)
		}
		return nil
	})
	mu.Lock()
	before := len(conns)
	mu.Unlock()
	took := make([]time.Duration, 0, changes)
	start := time.Now()
	for c := 1; c <= changes; c++ {
		t0 := time.Now()
		if err := r.d.Apply(ctx, configOf(c)); err != nil {
			t.Fatalf("change %d: %v", c, err)
		}
		took = append(took, time.Since(t0))
		applied.Store(int64(c))
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	slices.Sort(took)
	during := len(conns) - before
	t.Logf("%d changes in %v (apply median %v, p99 %v); %d new connections during them, %d in all; %d keep-alive requests",
		changes, elapsed.Round(time.Millisecond), took[len(took)/2], took[len(took)*99/100], during, len(conns), keepReqs)
	if during < changes {
		t.Errorf("%d new connections during %d changes, want at least one per change", during, changes)
	}
	if len(keepErrs) > 0 {
		t.Errorf("%d keep-alive requests failed, want none; first: %v", len(keepErrs), keepErrs[0])
	}
	failed, misrouted := 0, 0
	for _, c := range conns {
		if c.err != nil {
			if failed++; failed <= 5 {
				t.Errorf("new connection (configurations %d..%d): %v", c.from, c.to, c.err)
			}
			continue
		}
		ok := false
		for k := c.from; k <= min(c.to, changes); k++ {
			ok = ok || memberSet(int(k))[c.backend]
		}
		if !ok {
			if misrouted++; misrouted <= 5 {
				t.Errorf("new connection opened while configurations %d..%d were live went to %s, a member of none",
					c.from, c.to, c.backend)
			}
		}
	}
	if failed+misrouted > 0 {
		t.Errorf("%d of %d new connections failed, %d went to a removed member; want none", failed, len(conns), misrouted)
	}
	st, err := r.d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		if s.Port == 80 && s.Drops != (xdp.Drops{}) {
			t.Errorf("service VIP:80 dropped packets: %+v, want none", s.Drops)
		}
	}
}
