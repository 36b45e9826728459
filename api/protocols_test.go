package api

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// TestProtocols: one port serves Connect, gRPC, gRPC-Web and plain JSON.
func TestProtocols(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	if _, err := n.client(n.admin).LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: pool("web")})); err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := pki.ClientTLS(n.ca.CertPEM, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}}
	for _, tc := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
		{"connect-json", []connect.ClientOption{connect.WithProtoJSON()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append(tc.opts, connect.WithInterceptors(bearer(n.admin)))
			c := weftv1connect.NewLoadBalancerServiceClient(h2, n.url, opts...)
			res, err := c.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "web"}))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Msg.GetPool().GetMetadata().GetName(); got != "web" {
				t.Errorf("got pool %q, want web", got)
			}
			_, err = weftv1connect.NewLoadBalancerServiceClient(h2, n.url, tc.opts...).
				GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "web"}))
			wantCode(t, err, connect.CodeUnauthenticated)
		})
	}

	t.Run("json over http/1.1", func(t *testing.T) {
		h1 := tlsConfig.Clone()
		h1.NextProtos = []string{"http/1.1"}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: h1}}
		req, _ := http.NewRequest(http.MethodPost, n.url+weftv1connect.LoadBalancerServiceGetPoolProcedure, strings.NewReader(`{"name":"web"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+n.admin)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"name":"web"`) {
			t.Errorf("got %d %s, want 200 with the pool", res.StatusCode, body)
		}
		if res.ProtoMajor != 1 {
			t.Errorf("got HTTP/%d, want HTTP/1.1", res.ProtoMajor)
		}
	})

	t.Run("grpc reflection needs no token", func(t *testing.T) {
		stream := grpcreflect.NewClient(h2, n.url, connect.WithGRPC()).NewStream(ctx)
		defer stream.Close()
		names, err := stream.ListServices()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, protoreflect.FullName(weftv1connect.LoadBalancerServiceName)) {
			t.Errorf("got services %v, want %s among them", names, weftv1connect.LoadBalancerServiceName)
		}
	})

	t.Run("grpc health needs no token", func(t *testing.T) {
		hc := grpchealth.NewClient(h2, n.url, connect.WithGRPC())
		res, err := hc.Check(ctx, &grpchealth.CheckRequest{Service: weftv1connect.LoadBalancerServiceName})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != grpchealth.StatusServing {
			t.Errorf("health status %v, want serving", res.Status)
		}
	})
}
