package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftlb/weft/pki"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/tokens"
)

func TestAuth_Roles(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	_, viewer := n.token(tokens.RoleViewer, 0)
	_, operator := n.token(tokens.RoleOperator, 0)
	write := func(c *Client) error {
		_, err := c.LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: []*weftv1.Resource{asRes(pool("web"))}}))
		return err
	}
	read := func(c *Client) error {
		_, err := c.LB.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{}))
		return err
	}
	createToken := func(c *Client) error {
		_, err := c.Cluster.CreateAPIToken(ctx, connect.NewRequest(&weftv1.CreateAPITokenRequest{Role: "viewer"}))
		return err
	}
	listJoin := func(c *Client) error {
		_, err := c.Cluster.ListJoinTokens(ctx, connect.NewRequest(&weftv1.ListJoinTokensRequest{}))
		return err
	}
	watch := func(c *Client) error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := c.LB.Watch(cctx, connect.NewRequest(&weftv1.WatchRequest{}))
		if err != nil {
			return err
		}
		defer s.Close()
		s.Receive()
		return s.Err()
	}
	cases := []struct {
		name  string
		token string
		call  func(*Client) error
		code  connect.Code // 0: allowed
	}{
		{"no token read", "", read, connect.CodeUnauthenticated},
		{"no token write", "", write, connect.CodeUnauthenticated},
		{"no token watch", "", watch, connect.CodeUnauthenticated},
		{"garbage token", "hello", read, connect.CodeUnauthenticated},
		{"unknown token", "weft_aaaaaaaa_" + strings.Repeat("b", 40), read, connect.CodeUnauthenticated},
		{"wrong secret", flipLast(viewer), read, connect.CodeUnauthenticated},
		{"viewer reads", viewer, read, 0},
		{"viewer watches", viewer, watch, 0},
		{"viewer cannot write", viewer, write, connect.CodePermissionDenied},
		{"operator writes", operator, write, 0},
		{"operator cannot create tokens", operator, createToken, connect.CodePermissionDenied},
		{"operator cannot list join tokens", operator, listJoin, connect.CodePermissionDenied},
		{"admin creates tokens", n.admin, createToken, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(n.client(tc.token))
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			wantCode(t, err, tc.code)
		})
	}
}

func TestAuth_RevokedAndExpiredAPITokens(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	id, secret := n.token(tokens.RoleViewer, 0)
	_, shortLived := n.token(tokens.RoleViewer, time.Minute)
	list := func(tok string) error {
		_, err := n.client(tok).LB.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{}))
		return err
	}
	if err := list(secret); err != nil {
		t.Fatal(err)
	}
	if _, err := n.client(n.admin).Cluster.RevokeAPIToken(ctx, connect.NewRequest(&weftv1.RevokeAPITokenRequest{Id: id})); err != nil {
		t.Fatal(err)
	}
	wantCode(t, list(secret), connect.CodeUnauthenticated)

	if err := list(shortLived); err != nil {
		t.Fatal(err)
	}
	n.clock.Add(int64(2 * time.Minute))
	wantCode(t, list(shortLived), connect.CodeUnauthenticated)
}

func TestJoin_TokenChecks(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	admin := n.client(n.admin).Cluster
	newToken := func(uses uint32, ttl time.Duration) string {
		res, err := admin.CreateJoinToken(ctx, connect.NewRequest(&weftv1.CreateJoinTokenRequest{Uses: uses, Ttl: durationpb.New(ttl)}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetSecret()
	}
	var seq atomic.Int32
	join := func(token string) error {
		i := seq.Add(1)
		name := fmt.Sprintf("j%d", i)
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		key, _, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		csr, err := pki.NewCSR(key, name, []string{ip})
		if err != nil {
			t.Fatal(err)
		}
		// Joiners send no bearer token.
		_, err = n.client("").Cluster.Join(ctx, connect.NewRequest(&weftv1.JoinRequest{
			Token: token, CsrPem: string(csr), Name: name, Region: "lab", Zone: "b",
			RaftAddress: ip + ":7401", ApiAddress: ip + ":7400",
		}))
		return err
	}

	twoUses := newToken(2, time.Hour)
	if err := join(twoUses); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := join(twoUses); err != nil {
		t.Fatalf("second use: %v", err)
	}
	err := join(twoUses)
	wantCode(t, err, connect.CodePermissionDenied)
	t.Logf("used up: %v", err)

	expiring := newToken(1, time.Minute)
	n.clock.Add(int64(2 * time.Minute))
	err = join(expiring)
	wantCode(t, err, connect.CodePermissionDenied)
	t.Logf("expired: %v", err)

	revoked := newToken(1, time.Hour)
	tok, err := tokens.ParseJoin(revoked)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeJoinToken(ctx, connect.NewRequest(&weftv1.RevokeJoinTokenRequest{Id: tok.ID})); err != nil {
		t.Fatal(err)
	}
	wantCode(t, join(revoked), connect.CodePermissionDenied)

	tok, _ = tokens.ParseJoin(newToken(1, time.Hour))
	tok.Secret = strings.Repeat("a", len(tok.Secret))
	wantCode(t, join(tok.String()), connect.CodePermissionDenied)

	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ = tokens.ParseJoin(newToken(1, time.Hour))
	tok.CAPin = pki.Pin(other.Cert)
	wantCode(t, join(tok.String()), connect.CodeUnauthenticated)
}

// TestJoin_WrongPinSendsNothing: a joiner whose token pins another CA stops
// in the TLS handshake, before any request (and so the token) is sent.
func TestJoin_WrongPinSendsNothing(t *testing.T) {
	other, err := pki.NewCA("impostor")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := other.IssueNode("impostor", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := pki.ServerTLS(certPEM, keyPEM, other.CertPEM, tls.VerifyClientCertIfGiven)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { requests.Add(1) }))
	hs.TLS = srvTLS
	hs.StartTLS()
	defer hs.Close()

	real, err := pki.NewCA("real")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokens.NewJoin(pki.Pin(real.Cert))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{Addr: hs.URL, TLS: pki.PinnedClientTLS(tok.CAPin)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Cluster.Join(context.Background(), connect.NewRequest(&weftv1.JoinRequest{Token: tok.String(), Name: "x"}))
	if err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("join against the wrong CA: got %v, want a pin error", err)
	}
	if strings.Contains(err.Error(), tok.Secret) {
		t.Errorf("error reveals the token secret: %v", err)
	}
	if got := requests.Load(); got != 0 {
		t.Errorf("server saw %d requests, want 0", got)
	}
}

// TestSecretsNeverShown: reads never return certificate keys, and neither
// token secrets nor keys reach the log.
func TestSecretsNeverShown(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(prev)
	n := newTestNode(t)
	ctx := context.Background()
	c := n.client(n.admin)
	certPEM, keyPEM := certPair(t, n, "site")
	created, err := c.LB.CreateCertificate(ctx, connect.NewRequest(&weftv1.CreateCertificateRequest{Certificate: cert("site", certPEM, keyPEM)}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.LB.GetCertificate(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "site"}))
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.LB.ListCertificates(ctx, connect.NewRequest(&weftv1.ListRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for what, x := range map[string]*weftv1.Certificate{"create": created.Msg.GetCertificate(), "get": got.Msg.GetCertificate(), "list": list.Msg.GetCertificates()[0]} {
		if x.GetSpec().GetPrivateKeyPem() != "" {
			t.Errorf("%s returned the private key", what)
		}
		if x.GetSpec().GetCertificatePem() == "" || len(x.GetStatus().GetDnsNames()) == 0 {
			t.Errorf("%s lost the certificate or its status: %v", what, x)
		}
	}
	jt, err := c.Cluster.CreateJoinToken(ctx, connect.NewRequest(&weftv1.CreateJoinTokenRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	tokList, err := c.Cluster.ListAPITokens(ctx, connect.NewRequest(&weftv1.ListAPITokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if s := tokList.Msg.String(); strings.Contains(s, strings.Split(n.admin, "_")[2]) {
		t.Errorf("token list shows a secret: %s", s)
	}
	joinTok, _ := tokens.ParseJoin(jt.Msg.GetSecret())
	adminTok, _ := tokens.ParseAPI(n.admin)
	for what, secret := range map[string]string{"admin token": adminTok.Secret, "join token": joinTok.Secret, "private key": "PRIVATE KEY"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log contains the %s", what)
		}
	}
}

// flipLast changes a token's last character, keeping its form.
func flipLast(s string) string {
	last := byte('a')
	if s[len(s)-1] == 'a' {
		last = 'b'
	}
	return s[:len(s)-1] + string(last)
}
