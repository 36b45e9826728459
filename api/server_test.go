package api

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/pki"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/tokens"
)

// testNode is a one-node cluster: real Raft on loopback, the real handler
// over httptest TLS, and an admin token. opts adjust its Config.
type testNode struct {
	t      *testing.T
	ca     *pki.CA
	raft   *raftfsm.Raft
	srv    *Server
	url    string
	admin  string
	clock  atomic.Int64 // unix nanos; the server's clock for expiry
	closed bool
}

// newTestNode runs a one-node cluster's API, its Config changed by opts.
func newTestNode(t *testing.T, opts ...func(*Config)) *testNode {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueNode("n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raftTLS, err := pki.ServerTLS(certPEM, keyPEM, ca.CertPEM, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	peerTLS, err := pki.ClientTLS(ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	raftTLS.RootCAs = peerTLS.RootCAs
	r, err := raftfsm.Open(raftfsm.Config{ID: "n1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", TLS: raftTLS, Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() }) // after the server's Close, which runs first
	n := &testNode{t: t, ca: ca, raft: r}
	n.clock.Store(time.Now().UnixNano())
	cfg := Config{NodeName: "n1", Replica: r, PeerTLS: peerTLS, Now: func() time.Time { return time.Unix(0, n.clock.Load()) }}
	for _, o := range opts {
		o(&cfg)
	}
	n.srv = New(cfg)
	hs := serveAPI(t, n.srv, certPEM, keyPEM, ca.CertPEM)
	n.url = hs.URL

	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := r.Apply(ctx, raftfsm.InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{
		ClusterId: "test", CaCertPem: string(ca.CertPEM), CaKeyPem: string(ca.KeyPEM),
	}}); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	if _, _, err := r.Apply(ctx, raftfsm.UpsertNodeType, &statev1.UpsertNodeCommand{Node: &weftv1.Node{
		Metadata: &weftv1.Metadata{Name: "n1"},
		Spec:     &weftv1.NodeSpec{Region: "lab", Zone: "a", ApiAddress: "127.0.0.1:" + port, RaftAddress: "127.0.0.1:1"},
	}}); err != nil {
		t.Fatal(err)
	}
	res, err := n.srv.CreateAPIToken(ctx, tokens.RoleAdmin, "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	n.admin = res.Secret
	return n
}

// serveAPI serves srv over httptest TLS with a node certificate until the
// test ends.
func serveAPI(t *testing.T, srv *Server, certPEM, keyPEM, caPEM []byte) *httptest.Server {
	t.Helper()
	apiTLS, err := pki.ServerTLS(certPEM, keyPEM, caPEM, tls.VerifyClientCertIfGiven)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = apiTLS
	hs.EnableHTTP2 = true
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return hs
}

// client returns a client with a token ("" for none).
func (n *testNode) client(token string) *Client {
	n.t.Helper()
	c, err := NewClient(ClientConfig{Addr: n.url, Token: token, CAPEM: n.ca.CertPEM})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(c.Close)
	return c
}

// token creates an API token with a role and returns its secret.
func (n *testNode) token(role tokens.Role, ttl time.Duration) (id, secret string) {
	n.t.Helper()
	res, err := n.srv.CreateAPIToken(context.Background(), role, string(role), ttl)
	if err != nil {
		n.t.Fatal(err)
	}
	return res.Token.GetId(), res.Secret
}

// resources lists every user resource, for "nothing changed" checks.
func (n *testNode) resources() []*weftv1.Resource {
	return n.raft.FSM().State().Resources()
}

func sameResources(a, b []*weftv1.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("got code %v (%v), want %v", got, err, code)
	}
}
