package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/weftlb/weft/pki"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// ClientConfig says how to reach and authenticate to a node's API.
type ClientConfig struct {
	// Addr is host:port or an https:// URL.
	Addr string
	// Token is an API token, sent as a bearer token.
	Token string
	// CAFile or CAPEM is the cluster CA the server certificate must chain
	// to; CAPEM wins when both are set.
	CAFile string
	CAPEM  []byte
	// TLS replaces the TLS configuration built from the CA (joiners use a
	// pinned one; nodes add their certificate).
	TLS *tls.Config
	// Dial, when set, opens the client's TCP connections (tests use it to
	// reach nodes in another network namespace).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client holds Connect clients for the services of one node.
type Client struct {
	LB      weftv1connect.LoadBalancerServiceClient
	Cluster weftv1connect.ClusterServiceClient
	Stats   weftv1connect.StatsServiceClient
	URL     string
	http    *http.Client
}

// NewClient returns a client for cfg.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("api address: empty (set --addr or WEFT_ADDR)")
	}
	tlsConfig := cfg.TLS
	if tlsConfig == nil {
		caPEM := cfg.CAPEM
		if caPEM == nil {
			if cfg.CAFile == "" {
				return nil, fmt.Errorf("cluster ca: none given (set --ca-file or WEFT_CA_FILE)")
			}
			b, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read ca file: %w", err)
			}
			caPEM = b
		}
		c, err := pki.ClientTLS(caPEM, nil, nil)
		if err != nil {
			return nil, err
		}
		tlsConfig = c
	}
	url := cfg.Addr
	if !strings.HasPrefix(url, "https://") {
		url = "https://" + url
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsConfig,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
		TLSHandshakeTimeout: 10 * time.Second,
		DialContext:         cfg.Dial,
	}}
	var opts []connect.ClientOption
	if cfg.Token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(cfg.Token)))
	}
	return &Client{
		LB:      weftv1connect.NewLoadBalancerServiceClient(hc, url, opts...),
		Cluster: weftv1connect.NewClusterServiceClient(hc, url, opts...),
		Stats:   weftv1connect.NewStatsServiceClient(hc, url, opts...),
		URL:     url,
		http:    hc,
	}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// bearer adds the API token to every call.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
