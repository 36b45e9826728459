package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/tokens"
)

// wireProtocol is how a raw HTTP request speaks one of the API's protocols.
type wireProtocol struct {
	name        string
	contentType string
	http1       bool // HTTP/1.1 rather than HTTP/2
}

var wireProtocols = []wireProtocol{
	{"grpc", "application/grpc", false},
	{"grpc-web", "application/grpc-web+proto", false},
	{"connect proto", "application/proto", false},
	{"json over http/1.1", "application/json", true},
}

// rawClient returns an HTTP client of the node for p.
func (n *testNode) rawClient(p wireProtocol) *http.Client {
	n.t.Helper()
	tlsConfig, err := pki.ClientTLS(n.ca.CertPEM, nil, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}
	if p.http1 {
		tlsConfig.NextProtos = []string{"http/1.1"}
		tr.ForceAttemptHTTP2 = false
	}
	n.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// rawCall posts body to procedure in protocol p and returns the code of the
// answer, read as each protocol carries it: grpc-status in the trailers (or
// the headers of a trailers-only answer), or the Connect error JSON.
func rawCall(ctx context.Context, hc *http.Client, url string, p wireProtocol, token string, length int64, body io.Reader) (connect.Code, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return 0, "", err
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", p.contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, "", fmt.Errorf("read answer: %w", err)
	}
	if status := res.Trailer.Get("Grpc-Status") + res.Header.Get("Grpc-Status"); status != "" {
		code, err := strconv.Atoi(status)
		return connect.Code(code), res.Trailer.Get("Grpc-Message") + res.Header.Get("Grpc-Message"), err
	}
	var wire struct{ Code, Message string }
	if err := json.Unmarshal(b, &wire); err != nil {
		return 0, "", fmt.Errorf("answer %d %q: %w", res.StatusCode, b, err)
	}
	var code connect.Code
	err = code.UnmarshalText([]byte(wire.Code))
	return code, wire.Message, err
}

// openBody is a request body whose first bytes are sent and whose end never
// comes: a server that waited for it would not answer.
func openBody(t *testing.T) io.Reader {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go pw.Write(make([]byte, 1024))
	return pr
}

// TestAuth_BeforeBody: a call without valid credentials, or by a role that
// may not make it, is refused from its headers, in the caller's protocol,
// while its body is still being sent.
func TestAuth_BeforeBody(t *testing.T) {
	n := newTestNode(t)
	_, viewer := n.token(tokens.RoleViewer, 0)
	cases := []struct {
		name, token, procedure string
		want                   connect.Code
	}{
		{"no token", "", weftv1connect.LoadBalancerServiceApplyProcedure, connect.CodeUnauthenticated},
		{"garbage token", "hello", weftv1connect.LoadBalancerServiceCreatePoolProcedure, connect.CodeUnauthenticated},
		{"viewer writing", viewer, weftv1connect.LoadBalancerServiceApplyProcedure, connect.CodePermissionDenied},
		{"unknown procedure", viewer, "/weft.v1.ClusterService/Nope", connect.CodePermissionDenied},
	}
	for _, p := range wireProtocols {
		hc := n.rawClient(p)
		for _, tc := range cases {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				code, msg, err := rawCall(ctx, hc, n.url+tc.procedure, p, tc.token, -1, openBody(t))
				if err != nil {
					t.Fatalf("got %v, want an answer before the body ends", err)
				}
				if code != tc.want {
					t.Errorf("got %v (%s), want %v", code, msg, tc.want)
				}
			})
		}
	}
}

// TestRequestSizeLimit: a message over the limit is refused with
// ResourceExhausted on every protocol and writes nothing; a declared body
// over it is refused before it is read.
func TestRequestSizeLimit(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	tooBig := pool("big")
	tooBig.Metadata.Labels = map[string]string{"pad": strings.Repeat("a", DefaultMaxRequestBytes)}
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
			c := weftv1connect.NewLoadBalancerServiceClient(h2, n.url, append(tc.opts, connect.WithInterceptors(bearer(n.admin)))...)
			before := n.resources()
			_, _, commitBefore, _ := n.raft.Stats()
			_, err := c.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: tooBig}))
			wantCode(t, err, connect.CodeResourceExhausted)
			t.Logf("over the limit: %v", err)
			if _, _, commitAfter, _ := n.raft.Stats(); commitAfter != commitBefore {
				t.Errorf("commit index went from %d to %d: a refused call wrote to Raft", commitBefore, commitAfter)
			}
			if !sameResources(before, n.resources()) {
				t.Error("state changed by a refused call")
			}
		})
	}

	t.Run("under the limit", func(t *testing.T) {
		p := pool("near")
		p.Metadata.Labels = map[string]string{"pad": strings.Repeat("a", DefaultMaxRequestBytes-1024)}
		if _, err := n.client(n.admin).LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: p})); err != nil {
			t.Fatalf("got %v, want a message under the limit served", err)
		}
	})

	t.Run("declared length over the limit", func(t *testing.T) {
		for _, p := range wireProtocols {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			code, msg, err := rawCall(ctx, n.rawClient(p), n.url+weftv1connect.LoadBalancerServiceCreatePoolProcedure, p, n.admin, 50<<20, openBody(t))
			if err != nil {
				t.Fatalf("%s: got %v, want an answer before the body ends", p.name, err)
			}
			if want := "request body of 52428800 bytes is larger than the limit of 4194304 bytes"; code != connect.CodeResourceExhausted || msg != want {
				t.Errorf("%s: got %v %q, want %v %q", p.name, code, msg, connect.CodeResourceExhausted, want)
			}
		}
	})

	t.Run("configured limit", func(t *testing.T) {
		small := newTestNode(t, func(c *Config) { c.MaxRequestBytes = 1024 })
		p := pool("web")
		p.Metadata.Labels = map[string]string{"pad": strings.Repeat("a", 2048)}
		_, err := small.client(small.admin).LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: p}))
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), "max 1024") {
			t.Errorf("got %v, want the limit of 1024 named", err)
		}
	})
}
