package l7

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"
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
