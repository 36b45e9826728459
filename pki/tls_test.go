package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// result is what each side of a handshake saw.
type result struct {
	serverErr  error  // from the server's handshake
	serverRead []byte // application data the server read
	serverName string // NodeName of the server's connection
	serverHas  bool
	clientErr  error // from the client's handshake
	clientProt string
}

// handshake runs a TLS handshake over loopback TCP (a net.Pipe would
// deadlock when both sides write an alert at once), then has the client send
// payload and close. The server reads until EOF.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config, payload []byte) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		conn, err := ln.Accept()
		if err != nil {
			r.serverErr = err
			return
		}
		defer conn.Close()
		conn.SetDeadline(deadline)
		sc := tls.Server(conn, serverCfg)
		if r.serverErr = sc.Handshake(); r.serverErr != nil {
			return
		}
		r.serverRead, r.serverErr = io.ReadAll(sc)
		cs := sc.ConnectionState()
		r.serverName, r.serverHas = NodeName(&cs)
	}()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetDeadline(deadline)
	cc := tls.Client(conn, clientCfg)
	clientErr := cc.Handshake()
	if clientErr == nil {
		clientErr = writeAll(cc, payload)
	} else if _, err := cc.Write(payload); err == nil {
		t.Error("client Write after a failed handshake succeeded")
	}
	prot := cc.ConnectionState().NegotiatedProtocol
	cc.Close()
	r := <-done
	r.clientErr, r.clientProt = clientErr, prot
	return r
}

func writeAll(c *tls.Conn, p []byte) error {
	if _, err := c.Write(p); err != nil {
		return err
	}
	// Read to surface an alert the server sent after the client finished
	// its half of a TLS 1.3 handshake (a rejected client certificate).
	c.CloseWrite()
	_, err := io.ReadAll(c)
	return err
}

type node struct{ cert, key []byte }

func issue(t *testing.T, ca *CA, name string) node {
	t.Helper()
	c, k, err := ca.IssueNode(name, []string{"127.0.0.1", name + ".weft"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return node{c, k}
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c2")
	a, b := issue(t, ca, "node-a"), issue(t, ca, "node-b")
	stranger := issue(t, other, "node-b")

	tests := []struct {
		name       string
		clientAuth tls.ClientAuthType
		client     *node
		wantOK     bool
		wantName   string
	}{
		{"raft: cluster client cert", tls.RequireAndVerifyClientCert, &b, true, "node-b"},
		{"raft: no client cert", tls.RequireAndVerifyClientCert, nil, false, ""},
		{"raft: other cluster's cert", tls.RequireAndVerifyClientCert, &stranger, false, ""},
		{"api: no client cert", tls.VerifyClientCertIfGiven, nil, true, ""},
		{"api: cluster client cert", tls.VerifyClientCertIfGiven, &b, true, "node-b"},
		{"api: other cluster's cert", tls.VerifyClientCertIfGiven, &stranger, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serverCfg, err := ServerTLS(a.cert, a.key, ca.CertPEM, tc.clientAuth)
			if err != nil {
				t.Fatalf("ServerTLS: %v", err)
			}
			var cert, key []byte
			if tc.client != nil {
				cert, key = tc.client.cert, tc.client.key
			}
			clientCfg, err := ClientTLS(ca.CertPEM, cert, key)
			if err != nil {
				t.Fatalf("ClientTLS: %v", err)
			}
			clientCfg.ServerName = "127.0.0.1"
			clientCfg.NextProtos = []string{"h2"}
			if tc.client == &stranger {
				// Go's client withholds a certificate the server's CA list
				// does not name; send it anyway so the server must judge it.
				pair := clientCfg.Certificates[0]
				clientCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
			}

			r := handshake(t, serverCfg, clientCfg, []byte("hello"))
			if !tc.wantOK {
				if r.serverErr == nil {
					t.Errorf("server handshake succeeded, want it to reject the client")
				}
				if len(r.serverRead) != 0 {
					t.Errorf("server read %q from a rejected client, want nothing", r.serverRead)
				}
				return
			}
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("server error %v, client error %v, want none", r.serverErr, r.clientErr)
			}
			if string(r.serverRead) != "hello" {
				t.Errorf("server read %q, want %q", r.serverRead, "hello")
			}
			if r.serverName != tc.wantName || r.serverHas != (tc.wantName != "") {
				t.Errorf("NodeName = %q, %v, want %q, %v", r.serverName, r.serverHas, tc.wantName, tc.wantName != "")
			}
			if r.clientProt != "h2" {
				t.Errorf("negotiated protocol %q, want h2", r.clientProt)
			}
		})
	}
}

func TestClientRejectsOtherCluster(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c2")
	impostor := issue(t, other, "node-a")
	serverCfg, err := ServerTLS(impostor.cert, impostor.key, other.CertPEM, tls.VerifyClientCertIfGiven)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := ClientTLS(ca.CertPEM, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	clientCfg.ServerName = "127.0.0.1"
	r := handshake(t, serverCfg, clientCfg, []byte("token"))
	var unknown x509.UnknownAuthorityError
	if !errors.As(r.clientErr, &unknown) {
		t.Errorf("client error = %v, want x509.UnknownAuthorityError", r.clientErr)
	}
	if len(r.serverRead) != 0 {
		t.Errorf("server read %q, want nothing", r.serverRead)
	}
}

func TestServerTLSPresentsCA(t *testing.T) {
	ca := newTestCA(t, "c1")
	a := issue(t, ca, "node-a")
	other := newTestCA(t, "c2")
	// caPEM may hold several CAs (during a rotation); only the signer is sent.
	bundle := append(append([]byte{}, other.CertPEM...), ca.CertPEM...)
	cfg, err := ServerTLS(a.cert, a.key, bundle, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatalf("ServerTLS: %v", err)
	}
	chain := cfg.Certificates[0].Certificate
	if len(chain) != 2 || !bytes.Equal(chain[1], ca.Cert.Raw) {
		t.Errorf("presented chain has %d certificates, want the leaf and the signing CA", len(chain))
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}

	// A certificate PEM that already ends with the CA is not given it twice.
	cfg, err = ServerTLS(append(append([]byte{}, a.cert...), ca.CertPEM...), a.key, ca.CertPEM, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatalf("ServerTLS with chain: %v", err)
	}
	if n := len(cfg.Certificates[0].Certificate); n != 2 {
		t.Errorf("presented chain has %d certificates, want 2", n)
	}

	if _, err := ServerTLS(a.cert, a.key, other.CertPEM, tls.RequireAndVerifyClientCert); err == nil {
		t.Error("ServerTLS with a CA that did not sign the node certificate succeeded, want an error")
	}
}

func TestPinnedClientTLS(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c2")
	a := issue(t, ca, "node-a")
	pin := Pin(ca.Cert)

	// forged presents the real (public) CA certificate after a leaf signed by
	// another CA: the pin matches, the leaf must not verify.
	forgedLeaf := issue(t, other, "node-a")
	forged := append(append([]byte{}, forgedLeaf.cert...), ca.CertPEM...)
	leafOnly, err := tls.X509KeyPair(a.cert, a.key)
	if err != nil {
		t.Fatal(err)
	}

	serverCfg := func(t *testing.T, cert, key []byte) *tls.Config {
		cfg, err := ServerTLS(cert, key, ca.CertPEM, tls.VerifyClientCertIfGiven)
		if err != nil {
			// The forged chain does not pass ServerTLS; build it by hand.
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				t.Fatal(err)
			}
			return &tls.Config{Certificates: []tls.Certificate{pair}}
		}
		return cfg
	}
	tests := []struct {
		name   string
		server *tls.Config
		pin    string
		wantOK bool
	}{
		{"right pin", serverCfg(t, a.cert, a.key), pin, true},
		{"wrong pin", serverCfg(t, a.cert, a.key), Pin(other.Cert), false},
		{"empty pin", serverCfg(t, a.cert, a.key), "", false},
		{"leaf without ca", &tls.Config{Certificates: []tls.Certificate{leafOnly}}, pin, false},
		{"real ca, forged leaf", serverCfg(t, forged, forgedLeaf.key), pin, false},
	}
	for _, tc := range tests {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tc.name+"/"+tls.VersionName(version), func(t *testing.T) {
				srv := tc.server.Clone()
				srv.MaxVersion = version
				r := handshake(t, srv, PinnedClientTLS(tc.pin), []byte("weft1.secret"))
				if tc.wantOK {
					if r.clientErr != nil || r.serverErr != nil {
						t.Fatalf("client error %v, server error %v, want none", r.clientErr, r.serverErr)
					}
					if string(r.serverRead) != "weft1.secret" {
						t.Errorf("server read %q, want the payload", r.serverRead)
					}
					return
				}
				if r.clientErr == nil {
					t.Error("client handshake succeeded, want it to fail")
				}
				// The point of pinning: the token never reaches the server.
				if len(r.serverRead) != 0 {
					t.Errorf("server read %q, want no bytes", r.serverRead)
				}
			})
		}
	}
}

func TestNodeName(t *testing.T) {
	ca := newTestCA(t, "c1")
	b := issue(t, ca, "node-b")
	leaf, err := ParseCertPEM(b.cert)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cs     *tls.ConnectionState
		want   string
		wantOK bool
	}{
		{"nil", nil, "", false},
		{"no client cert", &tls.ConnectionState{}, "", false},
		{"unverified cert", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}, "", false},
		{"verified", &tls.ConnectionState{
			PeerCertificates: []*x509.Certificate{leaf},
			VerifiedChains:   [][]*x509.Certificate{{leaf, ca.Cert}},
		}, "node-b", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := NodeName(tc.cs)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("NodeName = %q, %v, want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestClientTLSErrors(t *testing.T) {
	ca := newTestCA(t, "c1")
	b := issue(t, ca, "node-b")
	if _, err := ClientTLS(nil, nil, nil); err == nil {
		t.Error("ClientTLS without a CA succeeded, want an error")
	}
	if _, err := ClientTLS(ca.CertPEM, b.cert, nil); err == nil {
		t.Error("ClientTLS with a certificate but no key succeeded, want an error")
	}
	if _, err := ClientTLS(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), nil, nil); err == nil {
		t.Error("ClientTLS with a corrupt CA succeeded, want an error")
	}
}
