package l7

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/weftlb/weft/l7/internal/osslrsa"
)

func tlsConfig(t *testing.T, name string, certs map[string]tls.Certificate, keys [][32]byte, addr netip.AddrPort) Config {
	t.Helper()
	b := startBackend(t, "b-"+name, nil)
	var names []string
	for n := range certs {
		names = append(names, n)
	}
	return Config{
		Certificates: certs,
		TicketKeys:   keys,
		Pools:        map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "https", Addr: addr, TLS: true, HTTP2: true,
			Certificates: names, DefaultPool: "p"}},
	}
}

func TestSNICertificateChoice(t *testing.T) {
	certs := map[string]tls.Certificate{
		"a-ecdsa": selfSigned(t, false, "a.example.com"),
		"a-rsa":   selfSigned(t, true, "a.example.com"),
		"wild":    selfSigned(t, false, "*.example.net"),
	}
	addr := freeAddr(t, "127.0.0.7")
	startProxy(t, tlsConfig(t, "sni", certs, nil, addr))
	tests := []struct {
		name    string
		sni     string
		tls12   bool
		suites  []uint16
		wantKey string // "ecdsa" or "rsa"
		wantDNS string
	}{
		{name: "exact ecdsa", sni: "a.example.com", wantKey: "ecdsa", wantDNS: "a.example.com"},
		{name: "exact rsa-only client", sni: "a.example.com", tls12: true,
			suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, wantKey: "rsa", wantDNS: "a.example.com"},
		{name: "wildcard", sni: "www.example.net", wantKey: "ecdsa", wantDNS: "*.example.net"},
		{name: "tls 1.2 ecdsa", sni: "a.example.com", tls12: true, wantKey: "ecdsa", wantDNS: "a.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true, CipherSuites: tc.suites}
			if tc.tls12 {
				cfg.MaxVersion = tls.VersionTLS12
			}
			conn, err := tls.Dial("tcp", addr.String(), cfg)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			leaf := conn.ConnectionState().PeerCertificates[0]
			key := "rsa"
			if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); ok {
				key = "ecdsa"
			} else if _, ok := leaf.PublicKey.(*rsa.PublicKey); !ok {
				t.Fatalf("unexpected key type %T", leaf.PublicKey)
			}
			if key != tc.wantKey || leaf.DNSNames[0] != tc.wantDNS {
				t.Errorf("got %s certificate for %v, want %s for %s", key, leaf.DNSNames, tc.wantKey, tc.wantDNS)
			}
			if tc.tls12 && conn.ConnectionState().Version != tls.VersionTLS12 {
				t.Errorf("version = %x, want TLS 1.2", conn.ConnectionState().Version)
			}
		})
	}
}

// resumes dials addr with a client session cache, fetching a ticket first
// when the cache is empty, and reports whether the handshake resumed.
func resumes(t *testing.T, addr netip.AddrPort, cache tls.ClientSessionCache, version uint16) bool {
	t.Helper()
	conn, err := tls.Dial("tcp", addr.String(), &tls.Config{
		ServerName: "a.example.com", InsecureSkipVerify: true, ClientSessionCache: cache,
		MinVersion: version, MaxVersion: version, NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	// TLS 1.3 tickets arrive after the handshake: a request reads them.
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
	io.ReadAll(conn)
	return conn.ConnectionState().DidResume
}

func TestSessionTicketsAcrossInstances(t *testing.T) {
	var k1, k2 [32]byte
	rand.Read(k1[:])
	rand.Read(k2[:])
	certs := map[string]tls.Certificate{"a": selfSigned(t, false, "a.example.com")}
	addr1, addr2 := freeAddr(t, "127.0.0.8"), freeAddr(t, "127.0.0.9")
	startProxy(t, tlsConfig(t, "one", certs, [][32]byte{k1}, addr1))
	p2 := startProxy(t, tlsConfig(t, "two", certs, [][32]byte{k1}, addr2))
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			if resumes(t, addr1, cache, v) {
				t.Fatal("first handshake resumed")
			}
			if !resumes(t, addr2, cache, v) {
				t.Fatal("ticket from instance one did not resume on instance two")
			}
			// Rotate on instance two: k2 issues, k1 still decrypts.
			if err := p2.Apply(context.Background(), tlsConfig(t, "two", certs, [][32]byte{k2, k1}, addr2)); err != nil {
				t.Fatal(err)
			}
			fresh := tls.NewLRUClientSessionCache(4)
			if resumes(t, addr1, fresh, v) {
				t.Fatal("first handshake resumed")
			}
			if !resumes(t, addr2, fresh, v) {
				t.Fatal("ticket under the previous key did not resume after rotation")
			}
			// Put back for the next version.
			if err := p2.Apply(context.Background(), tlsConfig(t, "two", certs, [][32]byte{k1}, addr2)); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A key no longer listed does not resume.
	cache := tls.NewLRUClientSessionCache(4)
	resumes(t, addr1, cache, tls.VersionTLS13)
	if err := p2.Apply(context.Background(), tlsConfig(t, "two", certs, [][32]byte{k2}, addr2)); err != nil {
		t.Fatal(err)
	}
	if resumes(t, addr2, cache, tls.VersionTLS13) {
		t.Error("ticket under a retired key resumed")
	}
}

// TestListenerSwitchesTLS applies one address as plain HTTP, then TLS, then
// plain again: each time new connections are served by the new settings
// (the event loops accept plain text, Go's accept TLS).
func TestListenerSwitchesTLS(t *testing.T) {
	b := startBackend(t, "switch", nil)
	addr := freeAddr(t, "127.0.0.13")
	cfg := Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "switch.test")},
		Pools:        map[string]Pool{"web": {Members: []Member{b.member()}}},
		Listeners:    []Listener{{Name: "l", Addr: addr, DefaultPool: "web"}},
	}
	p := startProxy(t, cfg)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i, useTLS := range []bool{false, true, false, true} {
		cfg.Listeners = []Listener{{Name: "l", Addr: addr, DefaultPool: "web", TLS: useTLS}}
		if useTLS {
			cfg.Listeners[0].Certificates = []string{"c"}
		}
		if err := p.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		scheme, other := "http", "https"
		if useTLS {
			scheme, other = other, scheme
		}
		for range 3 {
			resp, body := get(t, client, scheme+"://"+addr.String()+"/", nil)
			if resp.StatusCode != http.StatusOK || body != "switch" {
				t.Fatalf("step %d (%s): got %d %q", i, scheme, resp.StatusCode, body)
			}
		}
		if resp, err := client.Get(other + "://" + addr.String() + "/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("step %d: %s served on a %s listener", i, other, scheme)
			}
		}
	}
}

// TestRSAHandshakesSignWithLibcrypto: full TLS 1.3 and 1.2 handshakes on a
// listener with only an RSA certificate are signed by libcrypto's signer
// (osslrsa), one signature each, and verify (the client checks the
// signature whatever InsecureSkipVerify says); the signer is made once per
// key and kept while a certificate holds the key. Skipped where libcrypto is
// not usable, except in CI, where it fails.
func TestRSAHandshakesSignWithLibcrypto(t *testing.T) {
	if _, err := osslrsa.Load(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("libcrypto is not usable in CI: %v", err)
		}
		t.Skipf("libcrypto is not usable: %v", err)
	}
	cert := selfSigned(t, true, "a.example.com")
	key := cert.PrivateKey.(*rsa.PrivateKey)
	certs := map[string]tls.Certificate{"rsa": cert}
	addr := freeAddr(t, "127.0.0.26")
	cfg := tlsConfig(t, "rsa", certs, nil, addr)
	p := startProxy(t, cfg)
	s, ok := p.signers[key].(*osslrsa.Signer)
	if !ok {
		t.Fatalf("the RSA key signs with %T, want *osslrsa.Signer", p.signers[key])
	}
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			before := s.Signatures()
			conn, err := tls.Dial("tcp", addr.String(), &tls.Config{ServerName: "a.example.com",
				InsecureSkipVerify: true, MinVersion: v, MaxVersion: v, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()
			st := conn.ConnectionState()
			if st.Version != v || st.DidResume {
				t.Errorf("version %s, resumed %v; want %s, a full handshake", tls.VersionName(st.Version), st.DidResume, tls.VersionName(v))
			}
			if _, ok := st.PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
				t.Fatalf("served a %T certificate, want RSA", st.PeerCertificates[0].PublicKey)
			}
			if n := s.Signatures() - before; n != 1 {
				t.Errorf("libcrypto made %d signatures for the handshake, want 1", n)
			}
			io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("request over the connection: %v, %v", resp, err)
			}
		})
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if p.signers[key] != crypto.Signer(s) {
		t.Error("a second Apply of the same certificate made a new signer")
	}
}

// TestRSAKeyLibcryptoRefuses: an RSA key libcrypto does not sign with (six
// primes: OpenSSL 3 imports the key but its signature fails, which
// osslrsa.New's self-check finds) is kept as Go's key, and its handshakes
// work.
func TestRSAKeyLibcryptoRefuses(t *testing.T) {
	k, err := rsa.GenerateMultiPrimeKey(rand.Reader, 6, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert := certFor(t, k, &k.PublicKey, "a.example.com")
	addr := freeAddr(t, "127.0.0.26")
	p := startProxy(t, tlsConfig(t, "rsa6", map[string]tls.Certificate{"rsa6": cert}, nil, addr))
	if got := p.signers[k]; got != crypto.Signer(k) {
		t.Errorf("the 6-prime key signs with %T, want Go's *rsa.PrivateKey", got)
	}
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		conn, err := tls.Dial("tcp", addr.String(), &tls.Config{ServerName: "a.example.com",
			InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("%s: dial: %v", tls.VersionName(v), err)
		}
		conn.Close()
	}
}
