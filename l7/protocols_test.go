package l7

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// protoSetup runs a plain and a TLS listener (both with HTTP/2) in front of
// one backend, plus a gRPC health server behind h2c, and a streaming and
// WebSocket backend.
type protoSetup struct {
	p           *Proxy
	cfg         Config
	plain, tls  string // host:port
	grpcPlain   string
	backendName string
}

func newProtoSetup(t *testing.T) *protoSetup {
	t.Helper()
	b := startBackend(t, "proto-backend", nil)
	ws := startBackend(t, "ws", http.HandlerFunc(wsEcho))
	stream := startBackend(t, "stream", http.HandlerFunc(streamTicks))

	gln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("weft.test", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(gln)
	t.Cleanup(gs.Stop)
	gaddr := mustAddrPort(t, gln.Addr().String())

	plain, tlsAddr, grpcAddr := freeAddr(t, "127.0.0.10"), freeAddr(t, "127.0.0.10"), freeAddr(t, "127.0.0.10")
	cfg := Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "proto.test")},
		Pools: map[string]Pool{
			"web":    {Members: []Member{b.member()}},
			"ws":     {Members: []Member{ws.member()}},
			"stream": {Members: []Member{stream.member()}},
			"grpc":   {Protocol: ProtoH2C, Members: []Member{{Addr: gaddr, Weight: 100, Healthy: true}}},
		},
		Listeners: []Listener{
			{Name: "plain", Addr: plain, HTTP2: true, DefaultPool: "web", Routes: []Route{
				{Name: "ws", PathPrefix: "/ws", Pool: "ws"},
				{Name: "stream", PathPrefix: "/stream", Pool: "stream"},
			}},
			{Name: "tls", Addr: tlsAddr, TLS: true, HTTP2: true, Certificates: []string{"c"}, DefaultPool: "web", Routes: []Route{
				{Name: "stream", PathPrefix: "/stream", Pool: "stream"},
			}},
			{Name: "grpc", Addr: grpcAddr, HTTP2: true, DefaultPool: "grpc"},
		},
	}
	p := startProxy(t, cfg)
	return &protoSetup{p: p, cfg: cfg, plain: plain.String(), tls: tlsAddr.String(), grpcPlain: grpcAddr.String(), backendName: "proto-backend"}
}

func TestCurlClients(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: apt-get install curl")
	}
	s := newProtoSetup(t)
	tests := []struct {
		name    string
		args    []string
		version string
	}{
		{"http1.1", []string{"--http1.1", "http://" + s.plain + "/"}, "1.1"},
		{"http2 over tls (alpn)", []string{"--http2", "-k", "--resolve", "proto.test:" + port(s.tls) + ":127.0.0.10", "https://proto.test:" + port(s.tls) + "/"}, "2"},
		{"http1.1 over tls", []string{"--http1.1", "-k", "https://" + s.tls + "/"}, "1.1"},
		{"h2c prior knowledge", []string{"--http2-prior-knowledge", "http://" + s.plain + "/"}, "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"}, tc.args...)
			out, err := exec.Command("curl", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl %v: %v\n%s", args, err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if want := s.backendName; lines[0] != want {
				t.Errorf("body = %q, want %q", lines[0], want)
			}
			if got, want := lines[len(lines)-1], "200 "+tc.version; got != want {
				t.Errorf("status and version = %q, want %q", got, want)
			}
		})
	}
}

func TestGoHTTP2Clients(t *testing.T) {
	s := newProtoSetup(t)
	h2 := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	tests := []struct {
		name string
		tr   *http.Transport
		url  string
	}{
		{"h2 over tls", h2, "https://" + s.tls + "/"},
		{"h2c", h2c, "http://" + s.plain + "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.tr.CloseIdleConnections()
			resp, body := get(t, &http.Client{Transport: tc.tr, Timeout: 10 * time.Second}, tc.url, nil)
			if resp.ProtoMajor != 2 {
				t.Errorf("client protocol = %s, want HTTP/2", resp.Proto)
			}
			if body != s.backendName {
				t.Errorf("body = %q, want %q", body, s.backendName)
			}
			// The member is spoken to in HTTP/1.1 with X-Forwarded-Proto of the client side.
			if got := resp.Header.Get("Echo-Proto"); got != "HTTP/1.1" {
				t.Errorf("member saw %q, want HTTP/1.1", got)
			}
		})
	}
}

func TestGRPCHealthThroughProxy(t *testing.T) {
	s := newProtoSetup(t)
	conn, err := grpc.NewClient(s.grpcPlain, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "weft.test"})
	if err != nil {
		t.Fatalf("health check through the proxy: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status = %v, want SERVING", resp.Status)
	}
	// Trailers carry gRPC errors: an unknown service must come back as NotFound.
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown service: err = %v, want NotFound from the trailers", err)
	}
}

// TestConfigChangeKeepsStreams runs a WebSocket and a long HTTP/2 stream
// across Applies that keep their routes, including one that restarts the
// listener's server generation.
func TestConfigChangeKeepsStreams(t *testing.T) {
	s := newProtoSetup(t)
	ws := dialWS(t, s.plain, "/ws")
	defer ws.Close()
	wsEchoOnce(t, ws, "before")

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.tls+"/stream", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("stream protocol = %s, want HTTP/2", resp.Proto)
	}
	lines := bufio.NewScanner(resp.Body)
	tick := func(what string) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("%s: stream ended: %v", what, lines.Err())
		}
	}
	tick("before")

	changes := []func(c *Config){
		func(c *Config) {
			c.Listeners[0].Routes = append(c.Listeners[0].Routes, Route{Name: "new", PathPrefix: "/new", Pool: "web"})
		},
		func(c *Config) {
			c.Listeners[0].Timeouts.Idle = 30 * time.Second
			c.Listeners[1].Timeouts.Idle = 30 * time.Second
		},
		func(c *Config) { c.Pools["web"] = Pool{Algorithm: LeastRequest, Members: c.Pools["web"].Members} },
	}
	cfg := s.cfg
	for i, change := range changes {
		cfg.Listeners = append([]Listener(nil), cfg.Listeners...)
		pools := map[string]Pool{}
		for k, v := range cfg.Pools {
			pools[k] = v
		}
		cfg.Pools = pools
		change(&cfg)
		if err := s.p.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		wsEchoOnce(t, ws, fmt.Sprint("after change ", i))
		tick(fmt.Sprint("after change ", i))
	}
	// New connections work on the new generation.
	resp2, body := get(t, noRedirectClient(), "http://"+s.plain+"/", nil)
	if resp2.StatusCode != 200 || body != s.backendName {
		t.Errorf("after changes got %d %q", resp2.StatusCode, body)
	}
}

func TestWebSocketEcho(t *testing.T) {
	s := newProtoSetup(t)
	c := dialWS(t, s.plain, "/ws")
	defer c.Close()
	for _, msg := range []string{"hello", "weft", strings.Repeat("x", 100)} {
		wsEchoOnce(t, c, msg)
	}
}

func streamTicks(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	for i := 0; ; i++ {
		if _, err := fmt.Fprintf(w, "tick %d\n", i); err != nil {
			return
		}
		rc.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wsEcho is a minimal WebSocket echo server (RFC 6455 handshake, short
// frames): enough to show the proxy passes the upgrade and the frames.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want websocket", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		wsAccept(r.Header.Get("Sec-WebSocket-Key")))
	rw.Flush()
	for {
		payload, err := readFrame(rw.Reader)
		if err != nil {
			return
		}
		if err := writeFrame(conn, payload, false); err != nil {
			return
		}
	}
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

type wsConn struct {
	net.Conn
	r *bufio.Reader
}

func dialWS(t *testing.T, addr, path string) *wsConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, key)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("websocket handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("handshake = %d accept %q, want 101 with %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"), wsAccept(key))
	}
	return &wsConn{Conn: c, r: r}
}

func wsEchoOnce(t *testing.T, c *wsConn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeFrame(c, []byte(msg), true); err != nil {
		t.Fatalf("websocket write %q: %v", msg, err)
	}
	got, err := readFrame(c.r)
	if err != nil {
		t.Fatalf("websocket read after %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// writeFrame writes one final text frame of under 126 bytes.
func writeFrame(w io.Writer, payload []byte, mask bool) error {
	b := []byte{0x81, byte(len(payload))}
	if mask {
		m := [4]byte{1, 2, 3, 4}
		b[1] |= 0x80
		b = append(b, m[:]...)
		for i, c := range payload {
			b = append(b, c^m[i%4])
		}
	} else {
		b = append(b, payload...)
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7f)
	if n >= 126 {
		return nil, fmt.Errorf("frame of %d bytes is beyond this test codec", n)
	}
	var m [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, m[:]); err != nil {
			return nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	if masked {
		for i := range p {
			p[i] ^= m[i%4]
		}
	}
	return p, nil
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// TestUpstreamHTTP2 covers HTTP/2 to members: over TLS (ALPN) and h2c.
func TestUpstreamHTTP2(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	tlsLn, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{selfSigned(t, false, "member.test")},
		NextProtos:   []string{"h2", "http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: echo}
	go srv.Serve(tlsLn)
	t.Cleanup(func() { srv.Close() })
	h2c := startBackend(t, "h2c", echo)

	addr := freeAddr(t, "127.0.0.18")
	startProxy(t, Config{
		Pools: map[string]Pool{
			"tls": {Protocol: ProtoH2, TLSInsecure: true, Members: []Member{{Addr: mustAddrPort(t, tlsLn.Addr().String()), Weight: 1, Healthy: true}}},
			"h2c": {Protocol: ProtoH2C, Members: []Member{h2c.member()}},
		},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "tls",
			Routes: []Route{{Name: "h2c", PathPrefix: "/h2c", Pool: "h2c"}}}},
	})
	for _, path := range []string{"/", "/h2c"} {
		resp, body := get(t, noRedirectClient(), "http://"+addr.String()+path, nil)
		if resp.StatusCode != 200 || body != "HTTP/2.0" {
			t.Errorf("%s: member saw %d %q, want 200 HTTP/2.0", path, resp.StatusCode, body)
		}
	}
}
