package l7

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h3Config is a sticky https listener with HTTP3 over the backends.
func h3Config(addr netip.AddrPort, cert tls.Certificate, backends ...*backend) Config {
	var members []Member
	for _, b := range backends {
		members = append(members, b.member())
	}
	return Config{
		Certificates: map[string]tls.Certificate{"c": cert},
		CookieKey:    []byte("h3-cookie-key"),
		Pools:        map[string]Pool{"p": {Members: members}},
		Listeners: []Listener{{Name: "h3", Addr: addr, TLS: true, HTTP2: true, HTTP3: true,
			Certificates: []string{"c"}, DefaultPool: "p", Sticky: &Sticky{}}},
	}
}

func clientTLS(cert tls.Certificate, proto string) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return &tls.Config{RootCAs: roots, ServerName: "h3.example.com", NextProtos: []string{proto}}
}

// TestHTTP3ThroughProxy fetches over HTTP/3 through an https listener:
// routing, X-Forwarded-*, the sticky cookie and the health view apply as
// on HTTP/1.1 and HTTP/2, whose responses advertise HTTP/3 with Alt-Svc.
func TestHTTP3ThroughProxy(t *testing.T) {
	leakCheck(t)
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	cert := selfSigned(t, false, "h3.example.com")
	addr := freeAddr(t, "127.0.0.21")
	cfg := h3Config(addr, cert, a, b)
	p := startProxy(t, cfg)
	url := "https://" + addr.String() + "/x"

	h3 := &http3.Transport{TLSClientConfig: clientTLS(cert, http3.NextProtoH3)}
	defer h3.Close()
	client := &http.Client{Transport: h3, Timeout: 5 * time.Second}
	resp, body := get(t, client, url, nil)
	if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" {
		t.Fatalf("got %d %s, want 200 HTTP/3.0", resp.StatusCode, resp.Proto)
	}
	if got := resp.Header.Get("Echo-X-Forwarded-Proto"); got != "https" {
		t.Errorf("member saw X-Forwarded-Proto %q, want https", got)
	}
	if got := resp.Header.Get("Echo-X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("member saw X-Forwarded-For %q, want 127.0.0.1", got)
	}
	var pin map[string]string
	for _, c := range resp.Cookies() {
		if c.Name == DefaultCookieName {
			pin = map[string]string{"Cookie": c.Name + "=" + c.Value}
		}
	}
	if pin == nil {
		t.Fatalf("no sticky cookie in %v", resp.Header["Set-Cookie"])
	}
	for range 4 {
		if _, got := get(t, client, url, pin); got != body {
			t.Fatalf("pinned request went to %s, want %s", got, body)
		}
	}

	// The health view of the next Apply reaches HTTP/3 requests: the pinned
	// member is down, so its client moves.
	down, up := a, b
	if body == "b" {
		down, up = b, a
	}
	cfg = h3Config(addr, cert, a, b)
	for i, m := range cfg.Pools["p"].Members {
		if m.Addr == down.addr {
			cfg.Pools["p"].Members[i].Healthy = false
		}
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, got := get(t, client, url, pin); got != up.name {
		t.Errorf("pinned to a down member: went to %s, want %s", got, up.name)
	}

	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS(cert, "h2"), ForceAttemptHTTP2: true}}
	defer h2.CloseIdleConnections()
	resp, _ = get(t, h2, url, nil)
	want := fmt.Sprintf(`h3=":%d"; ma=86400`, addr.Port())
	if resp.Proto != "HTTP/2.0" || resp.Header.Get("Alt-Svc") != want {
		t.Errorf("%s response: Alt-Svc %q, want %q", resp.Proto, resp.Header.Get("Alt-Svc"), want)
	}

	// Without HTTP3: no Alt-Svc, and the UDP side is gone.
	cfg.Listeners[0].HTTP3 = false
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	resp, _ = get(t, h2, url, nil)
	if v := resp.Header.Values("Alt-Svc"); len(v) > 0 {
		t.Errorf("Alt-Svc %q without HTTP3", v)
	}
	if servesHTTP3(cert, url) {
		t.Error("HTTP/3 request succeeded after HTTP3 was turned off")
	}
}

// servesHTTP3 reports whether a new HTTP/3 connection to url is served
// within 300 ms.
func servesHTTP3(cert tls.Certificate, url string) bool {
	fresh := &http3.Transport{TLSClientConfig: clientTLS(cert, http3.NextProtoH3),
		QUICConfig: &quic.Config{HandshakeIdleTimeout: 300 * time.Millisecond}}
	defer fresh.Close()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := fresh.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// capturingConn records the packets a client sends. It is a whole
// *net.UDPConn, so quic-go writes through WriteMsgUDP (a plain
// net.PacketConn on a new path panics quic-go v0.65 when the old path had
// ECN).
type capturingConn struct {
	*net.UDPConn
	mu   sync.Mutex
	sent [][]byte
}

func (c *capturingConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, append([]byte(nil), b...))
	c.mu.Unlock()
	return c.UDPConn.WriteMsgUDP(b, oob, addr)
}

func udpConn(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHTTP3ConnectionMigration moves a client's QUIC connection to another
// address and port: requests go on on the same connection, the member sees
// the new client address, and the packets on the new path carry the
// connection IDs the proxy issued, with its server id where quiccid.go puts
// it.
func TestHTTP3ConnectionMigration(t *testing.T) {
	a := startBackend(t, "a", nil)
	cert := selfSigned(t, false, "h3.example.com")
	addr := freeAddr(t, "127.0.0.22")
	const serverID = 0x2a17
	var mu sync.Mutex
	var log bytes.Buffer
	p := New(Options{DrainTimeout: 2 * time.Second, QUICServerID: serverID, AccessLog: &lockedWriter{mu: &mu, w: &log}})
	defer p.Close()
	cfg := h3Config(addr, cert, a)
	cfg.Listeners[0].AccessLog = &AccessLog{SampleRate: 1}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}

	tr1 := &quic.Transport{Conn: udpConn(t, "127.0.0.1")}
	defer tr1.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := tr1.Dial(ctx, net.UDPAddrFromAddrPort(addr), clientTLS(cert, http3.NextProtoH3), &quic.Config{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.CloseWithError(0, "")
	cc := &http.Client{Transport: (&http3.Transport{}).NewClientConn(conn), Timeout: 5 * time.Second}
	url := "https://" + addr.String() + "/"
	if resp, _ := get(t, cc, url, nil); resp.Header.Get("Echo-X-Forwarded-For") != "127.0.0.1" {
		t.Fatalf("before migration the member saw %q, want 127.0.0.1", resp.Header.Get("Echo-X-Forwarded-For"))
	}

	moved := &capturingConn{UDPConn: udpConn(t, "127.0.0.23")}
	tr2 := &quic.Transport{Conn: moved}
	defer tr2.Close()
	path, err := conn.AddPath(tr2)
	if err != nil {
		t.Fatalf("add path: %v", err)
	}
	if err := path.Probe(ctx); err != nil {
		t.Fatalf("probe new path: %v", err)
	}
	if err := path.Switch(); err != nil {
		t.Fatalf("switch path: %v", err)
	}
	for i := range 3 {
		resp, _ := get(t, cc, url, nil)
		if got := resp.Header.Get("Echo-X-Forwarded-For"); got != "127.0.0.23" {
			t.Errorf("request %d after migration: member saw %q, want 127.0.0.23", i, got)
		}
	}
	if err := conn.Context().Err(); err != nil {
		t.Fatalf("connection ended: %v", context.Cause(conn.Context()))
	}

	moved.mu.Lock()
	short := 0
	for _, b := range moved.sent {
		if len(b) < 1+quicCIDLen || b[0]&0x80 != 0 {
			continue // a long header: none after the handshake
		}
		short++
		if v, id := b[1]>>6, binary.BigEndian.Uint16(b[2:4]); v != quicCIDVersion || id != serverID {
			t.Errorf("packet to %x: version %b server id %#x, want %b and %#x", b[1:1+quicCIDLen], v, id, quicCIDVersion, serverID)
		}
	}
	moved.mu.Unlock()
	if short == 0 {
		t.Error("no short-header packet sent on the new path")
	}

	// The access log (written out by Close) names the client's new
	// address, on HTTP/3 and TLS 1.3.
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if n := bytes.Count(log.Bytes(), []byte(`"client":"127.0.0.23:`)); n != 3 {
		t.Errorf("access log: %d lines from 127.0.0.23, want 3:\n%s", n, log.Bytes())
	}
	for _, want := range []string{`"proto":"HTTP/3.0"`, `"tls_version":"TLS 1.3"`} {
		if n := bytes.Count(log.Bytes(), []byte(want)); n != 4 {
			t.Errorf("access log: %d lines with %s, want 4:\n%s", n, want, log.Bytes())
		}
	}
}

// TestHTTP3PortTaken: an Apply whose HTTP/3 port is taken fails and binds
// nothing, the TCP side included.
func TestHTTP3PortTaken(t *testing.T) {
	a, b := startBackend(t, "a", nil), startBackend(t, "b", nil)
	taken := udpConn(t, "127.0.0.24")
	addr := taken.LocalAddr().(*net.UDPAddr).AddrPort()
	p := New(Options{})
	defer p.Close()
	err := p.Apply(context.Background(), h3Config(addr, selfSigned(t, false, "h3.example.com"), a, b))
	if err == nil || !strings.Contains(err.Error(), `listener "h3": http3: listen on udp`) {
		t.Fatalf("Apply: %v, want the taken UDP port named", err)
	}
	if len(p.sockets) != 0 {
		t.Errorf("failed Apply bound %d sockets, want 0", len(p.sockets))
	}
}

// TestHTTP3DrainsWhenTurnedOff: a request in flight when HTTP3 is turned
// off gets its whole answer; new connections are refused meanwhile.
func TestHTTP3DrainsWhenTurnedOff(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "late")
	}))
	cert := selfSigned(t, false, "h3.example.com")
	addr := freeAddr(t, "127.0.0.25")
	cfg := h3Config(addr, cert, slow)
	p := startProxy(t, cfg)
	h3 := &http3.Transport{TLSClientConfig: clientTLS(cert, http3.NextProtoH3)}
	defer h3.Close()
	url := "https://" + addr.String() + "/"
	done := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: h3, Timeout: 5 * time.Second}).Get(url)
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- fmt.Sprintf("%d %s %v", resp.StatusCode, b, err)
	}()
	<-entered
	cfg.Listeners[0].HTTP3 = false
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if servesHTTP3(cert, url) {
		t.Error("a new HTTP/3 connection was served while HTTP3 drained")
	}
	close(release)
	if got := <-done; got != "200 late <nil>" {
		t.Errorf("request in flight when HTTP3 was turned off: %s, want 200 late", got)
	}
}
