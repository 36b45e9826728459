package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// TestAPI_RequestLimits: four concurrent unauthenticated 50 MB requests over
// gRPC, Connect (protobuf) and JSON (HTTP/1.1) are refused with
// Unauthenticated, and the agent's peak resident memory grows by less than
// 20 MB over them all; an authenticated request over the limit gets
// ResourceExhausted and writes nothing.
func TestAPI_RequestLimits(t *testing.T) {
	c := newCluster(t, 23)
	a := c.newAgent("node1", "a")
	c.initCluster(a)
	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + a.apiAddr()
	clients := func(token string) map[string]weftv1connect.LoadBalancerServiceClient {
		h2TLS, err := pki.ClientTLS(caPEM, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		h1TLS := h2TLS.Clone()
		h1TLS.NextProtos = []string{"http/1.1"}
		h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: h2TLS, ForceAttemptHTTP2: true}}
		h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: h1TLS}}
		t.Cleanup(h2.CloseIdleConnections)
		t.Cleanup(h1.CloseIdleConnections)
		var opts []connect.ClientOption
		if token != "" {
			opts = append(opts, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					req.Header().Set("Authorization", "Bearer "+token)
					return next(ctx, req)
				}
			})))
		}
		return map[string]weftv1connect.LoadBalancerServiceClient{
			"grpc":               weftv1connect.NewLoadBalancerServiceClient(h2, url, append(opts, connect.WithGRPC())...),
			"connect":            weftv1connect.NewLoadBalancerServiceClient(h2, url, opts...),
			"json over http/1.1": weftv1connect.NewLoadBalancerServiceClient(h1, url, append(opts, connect.WithProtoJSON())...),
		}
	}
	create := func(ctx context.Context, lb weftv1connect.LoadBalancerServiceClient, labelBytes int) error {
		p := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: "big", Labels: map[string]string{"pad": strings.Repeat("a", labelBytes)}}}
		_, err := lb.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: p}))
		return err
	}
	anonymous := clients("")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Small refused calls first, so the baseline holds the connections
	// and the code that serve them.
	for name, lb := range anonymous {
		if err := create(ctx, lb, 10); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("%s: small unauthenticated call: got %v, want Unauthenticated", name, err)
		}
	}
	pid := a.cmd.Process.Pid
	before := procStatusKB(t, pid, "VmRSS")
	// Reset VmHWM to the current RSS, so the peak measured is this test's.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the agent's peak RSS: %v", err)
	}
	for name, lb := range anonymous {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = create(ctx, lb, 50<<20) })
		}
		wg.Wait()
		for i, err := range errs {
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s: 50 MB call %d: got %v, want Unauthenticated", name, i, err)
			}
		}
	}
	peak := procStatusKB(t, pid, "VmHWM")
	t.Logf("agent RSS before %d kB, peak over 12 unauthenticated 50 MB calls %d kB", before, peak)
	if grown := peak - before; grown >= 20<<10 {
		t.Errorf("peak RSS grew by %d kB, want less than 20 MB", grown)
	}

	admin := c.client(a)
	list := func() []*weftv1.Pool {
		res, err := admin.LB.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetPools()
	}
	poolsBefore := list()
	for name, lb := range clients(c.adminToken) {
		err := create(ctx, lb, 5<<20)
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("%s: authenticated 5 MB call: got %v, want ResourceExhausted", name, err)
		}
	}
	if after := list(); len(after) != len(poolsBefore) {
		t.Errorf("pools went from %d to %d: a refused call wrote", len(poolsBefore), len(after))
	}
}

// procStatusKB reads a "kB" field of /proc/<pid>/status, such as VmRSS.
func procStatusKB(t *testing.T, pid int, field string) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("%s of %d: %v", field, pid, err)
			}
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
