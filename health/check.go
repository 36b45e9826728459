package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// checkFunc runs one check; nil means success. The context carries the
// check's timeout.
type checkFunc func(ctx context.Context) error

// newCheck builds the check of spec against target.
func newCheck(spec CheckSpec, codes codeRanges, target netip.AddrPort) checkFunc {
	addr := target.String()
	switch spec.Type {
	case HTTP, HTTPS:
		return httpCheck(spec, codes, addr)
	case GRPC:
		return grpcCheck(spec.Service, addr)
	default:
		return tcpCheck(addr)
	}
}

func tcpCheck(addr string) checkFunc {
	var d net.Dialer
	return func(ctx context.Context) error {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func httpCheck(spec CheckSpec, codes codeRanges, addr string) checkFunc {
	scheme := "http"
	if spec.Type == HTTPS {
		scheme = "https"
	}
	url := scheme + "://" + addr + spec.Path
	client := &http.Client{
		Transport: &http.Transport{
			// A fresh connection per check: a kept-alive one would hide a
			// listener that stopped accepting.
			DisableKeepAlives: true,
			// Backends commonly present self-signed certificates: the check
			// is about liveness, not identity.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: spec.Host},
		},
		// A redirect is an answer: judge its status, do not follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if spec.Host != "" {
			req.Host = spec.Host
		}
		req.Header.Set("User-Agent", "weft-health/1")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if !codes.contains(resp.StatusCode) {
			return fmt.Errorf("status %d is not in %s", resp.StatusCode, spec.ExpectedCodes)
		}
		return nil
	}
}

// grpcCheck dials afresh for every check: a long-lived connection would
// reconnect with gRPC's backoff (up to two minutes) and delay the
// verdict that a member is back.
func grpcCheck(service, addr string) checkFunc {
	return func(ctx context.Context) error {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("grpc health status %v", s)
		}
		return nil
	}
}
