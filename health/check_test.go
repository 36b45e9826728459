package health

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Check tests listen on 127.0.68.0/24 (ephemeral ports).

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	return l
}

func addrOf(l net.Listener) netip.AddrPort {
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// statusServer answers with the status code it currently holds and records
// the Host header of the last request.
type statusServer struct {
	code     atomic.Int32
	lastHost atomic.Value
}

func (s *statusServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.lastHost.Store(r.Host)
	if r.URL.Path != "/healthz" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(int(s.code.Load()))
}

func runCheck(t *testing.T, spec CheckSpec, target netip.AddrPort) error {
	t.Helper()
	spec, codes, err := spec.withDefaults()
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout)
	defer cancel()
	return newCheck(spec, codes, target)(ctx)
}

func TestTCPCheck(t *testing.T) {
	l := listen(t, "127.0.68.1:0")
	defer l.Close()
	target := addrOf(l)
	if err := runCheck(t, CheckSpec{Type: TCP}, target); err != nil {
		t.Errorf("listening port: got %v, want success", err)
	}
	l.Close()
	if err := runCheck(t, CheckSpec{Type: TCP}, target); err == nil {
		t.Error("closed port: got success, want an error")
	}
}

func TestHTTPCheck(t *testing.T) {
	srv := &statusServer{}
	ts := httptest.NewUnstartedServer(srv)
	ts.Listener = listen(t, "127.0.68.2:0")
	ts.Start()
	defer ts.Close()
	target := addrOf(ts.Listener)

	tests := []struct {
		name   string
		spec   CheckSpec
		status int
		wantOK bool
	}{
		{"200 in default range", CheckSpec{Type: HTTP, Path: "/healthz"}, 200, true},
		{"302 in default range, not followed", CheckSpec{Type: HTTP, Path: "/healthz"}, 302, true},
		{"503 fails", CheckSpec{Type: HTTP, Path: "/healthz"}, 503, false},
		{"204 in a list", CheckSpec{Type: HTTP, Path: "/healthz", ExpectedCodes: "200,204"}, 204, true},
		{"201 not in a list", CheckSpec{Type: HTTP, Path: "/healthz", ExpectedCodes: "200,204"}, 201, false},
		{"wrong path 404", CheckSpec{Type: HTTP, Path: "/nope"}, 200, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.code.Store(int32(tc.status))
			err := runCheck(t, tc.spec, target)
			if gotOK := err == nil; gotOK != tc.wantOK {
				t.Errorf("status %d: got err %v, want success %v", tc.status, err, tc.wantOK)
			}
		})
	}

	srv.code.Store(200)
	if err := runCheck(t, CheckSpec{Type: HTTP, Path: "/healthz", Host: "app.example"}, target); err != nil {
		t.Fatal(err)
	}
	if got := srv.lastHost.Load(); got != "app.example" {
		t.Errorf("Host header: got %q, want %q", got, "app.example")
	}
}

func TestHTTPSCheck(t *testing.T) {
	srv := &statusServer{}
	srv.code.Store(200)
	ts := httptest.NewUnstartedServer(srv)
	ts.Listener = listen(t, "127.0.68.3:0")
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain-HTTP probe below
	ts.StartTLS()                                   // self-signed: the check does not verify it
	defer ts.Close()
	if err := runCheck(t, CheckSpec{Type: HTTPS, Path: "/healthz"}, addrOf(ts.Listener)); err != nil {
		t.Errorf("https: got %v, want success", err)
	}
	if err := runCheck(t, CheckSpec{Type: HTTP, Path: "/healthz"}, addrOf(ts.Listener)); err == nil {
		t.Error("plain http to a TLS server: got success, want an error")
	}
}

func TestGRPCCheck(t *testing.T) {
	l := listen(t, "127.0.68.4:0")
	s := grpc.NewServer()
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(l)
	defer s.Stop()
	target := addrOf(l)

	tests := []struct {
		name    string
		service string
		set     healthpb.HealthCheckResponse_ServingStatus
		wantErr string
	}{
		{"server serving", "", healthpb.HealthCheckResponse_SERVING, ""},
		{"server not serving", "", healthpb.HealthCheckResponse_NOT_SERVING, "NOT_SERVING"},
		{"named service serving", "weft.Echo", healthpb.HealthCheckResponse_SERVING, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs.SetServingStatus(tc.service, tc.set)
			err := runCheck(t, CheckSpec{Type: GRPC, Service: tc.service}, target)
			if tc.wantErr == "" && err != nil {
				t.Errorf("got %v, want success", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	if err := runCheck(t, CheckSpec{Type: GRPC, Service: "unknown"}, target); err == nil {
		t.Error("unknown service: got success, want an error")
	}
	s.Stop()
	start := time.Now()
	if err := runCheck(t, CheckSpec{Type: GRPC}, target); err == nil {
		t.Error("stopped server: got success, want an error")
	}
	t.Logf("stopped server failed after %v", time.Since(start))
}
