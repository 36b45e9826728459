package l7

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAbuse sends what clients should not, and checks the answer and that
// nothing leaks.
func TestAbuse(t *testing.T) {
	reset := startBackend(t, "reset", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if r.URL.Path == "/mid" {
			// Headers promise 1000 bytes; the connection resets after 5.
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello")
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	slow := startBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	ok := startBackend(t, "ok", nil)
	addr := freeAddr(t, "127.0.0.11")
	leakCheck(t)
	p := New(Options{DrainTimeout: time.Second})
	cfg := Config{
		Pools: map[string]Pool{
			"reset": {Members: []Member{reset.member()}},
			"slow":  {Members: []Member{slow.member()}},
			"ok":    {Members: []Member{ok.member()}},
		},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "ok",
			Timeouts: Timeouts{Header: 300 * time.Millisecond, Response: 300 * time.Millisecond},
			Limits:   Limits{MaxHeaderBytes: 4096, MaxBodyBytes: 1000},
			Routes: []Route{
				{Name: "reset", PathPrefix: "/reset", Pool: "reset"},
				{Name: "mid", PathPrefix: "/mid", Pool: "reset"},
				{Name: "slow", PathPrefix: "/slow", Pool: "slow"},
			}}},
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	raw := func(t *testing.T, req string) (string, time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		io.WriteString(c, req)
		out, _ := io.ReadAll(c)
		return string(out), time.Since(start)
	}
	statusOf := func(out string) string {
		line, _, _ := strings.Cut(out, "\r\n")
		return line
	}

	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		req := "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + strings.Repeat("a", 200)
		var closedAt time.Duration
		for i := 0; i < len(req); i++ {
			if _, err := c.Write([]byte{req[i]}); err != nil {
				closedAt = time.Since(start)
				break
			}
			time.Sleep(20 * time.Millisecond)
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err == io.EOF || (err != nil && !isTimeout(err)) {
				closedAt = time.Since(start)
				break
			}
		}
		if closedAt == 0 || closedAt > 2*time.Second {
			t.Errorf("trickling client closed after %v, want about the 300ms header timeout", closedAt)
		}
	})
	t.Run("oversized headers get 431", func(t *testing.T) {
		out, _ := raw(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("b", 10000)+"\r\n\r\n")
		if got := statusOf(out); !strings.Contains(got, "431") {
			t.Errorf("status line = %q, want 431", got)
		}
	})
	t.Run("malformed request gets 400", func(t *testing.T) {
		out, _ := raw(t, "GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
		if got := statusOf(out); !strings.Contains(got, "400") {
			t.Errorf("status line = %q, want 400", got)
		}
	})
	t.Run("body over the limit gets 413", func(t *testing.T) {
		out, _ := raw(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n"+strings.Repeat("x", 5000))
		if got := statusOf(out); !strings.Contains(got, "413") {
			t.Errorf("status line = %q, want 413", got)
		}
		out, _ = raw(t, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1388\r\n"+strings.Repeat("x", 5000)+"\r\n0\r\n\r\n")
		if got := statusOf(out); !strings.Contains(got, "413") {
			t.Errorf("chunked: status line = %q, want 413", got)
		}
	})
	t.Run("member resets before the response gets 502", func(t *testing.T) {
		out, _ := raw(t, "GET /reset HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if got := statusOf(out); !strings.Contains(got, "502") {
			t.Errorf("status line = %q, want 502", got)
		}
	})
	t.Run("member resets mid-response closes the client", func(t *testing.T) {
		out, _ := raw(t, "GET /mid HTTP/1.1\r\nHost: a\r\n\r\n")
		// Either the proxy had not flushed the headers (the client sees a
		// close), or it had (a truncated 200, then a close), or the reset
		// beat the headers (502); never a complete body.
		status, rest, _ := strings.Cut(out, "\r\n")
		switch {
		case out == "":
		case strings.Contains(status, "502"):
		case strings.Contains(status, "200"):
			if _, body, _ := strings.Cut(rest, "\r\n\r\n"); len(body) >= 1000 {
				t.Errorf("client got a full body of %d bytes from a reset member", len(body))
			}
		default:
			t.Errorf("got %q, want a close, a truncated 200 or a 502", status)
		}
	})
	t.Run("slow member gets 504", func(t *testing.T) {
		out, d := raw(t, "GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if got := statusOf(out); !strings.Contains(got, "504") {
			t.Errorf("status line = %q, want 504", got)
		}
		if d > 2*time.Second {
			t.Errorf("504 after %v, want about the 300ms response timeout", d)
		}
	})
	t.Run("normal request still works", func(t *testing.T) {
		out, _ := raw(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if got := statusOf(out); !strings.Contains(got, "200") {
			t.Errorf("status line = %q, want 200", got)
		}
	})
	p.Close()
	reset.srv.Close()
	slow.srv.Close()
	ok.srv.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestProxyProtocolV2(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	headers := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		h := make([]byte, 16+12)
		io.ReadFull(r, h)
		headers <- h
		if _, err := http.ReadRequest(r); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		}
	}()
	addr := freeAddr(t, "127.0.0.12")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {ProxyProtocol: true, Members: []Member{{Addr: mustAddrPort(t, ln.Addr().String()), Weight: 1, Healthy: true}}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}},
	})
	c, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	var h []byte
	select {
	case h = <-headers:
	case <-time.After(5 * time.Second):
		t.Fatal("member got no connection")
	}
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	want := proxyHeaderV2(netip.AddrPortFrom(client.Addr().Unmap(), client.Port()), addr)
	if !bytes.Equal(h, want) {
		t.Errorf("PROXY header = %x, want %x", h, want)
	}
}

func TestStats(t *testing.T) {
	b := startBackend(t, "b", nil)
	addr := freeAddr(t, "127.0.0.13")
	p := startProxy(t, Config{
		Pools: map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p",
			Routes: []Route{{Name: "api", PathPrefix: "/api", Pool: "p"}}}},
	})
	client := noRedirectClient()
	for _, path := range []string{"/api/1", "/api/2", "/other"} {
		get(t, client, "http://"+addr.String()+path, nil)
	}
	st := p.Stats()
	if len(st.Listeners) != 1 || st.Listeners[0].Requests != 3 || st.Listeners[0].Status[2] != 3 {
		t.Errorf("listener stats = %+v, want 3 requests, 3 2xx", st.Listeners)
	}
	routes := map[string]uint64{}
	for _, r := range st.Routes {
		routes[r.Route] = r.Requests
	}
	if routes["api"] != 2 || routes["default"] != 1 {
		t.Errorf("route requests = %v, want api:2 default:1", routes)
	}
	if len(st.Members) != 1 || st.Members[0].Requests != 3 {
		t.Errorf("member stats = %+v, want 3 requests", st.Members)
	}
	var n uint64
	for _, c := range st.Members[0].Latency {
		n += c
	}
	if n != 3 {
		t.Errorf("latency histogram holds %d requests, want 3", n)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestCloseDrains(t *testing.T) {
	release := make(chan struct{})
	b := startBackend(t, "b", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "done")
	}))
	addr := freeAddr(t, "127.0.0.14")
	p := New(Options{DrainTimeout: 5 * time.Second})
	if err := p.Apply(context.Background(), Config{
		Pools:     map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}},
	}); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr.String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(body)
	}()
	eventually(t, 5*time.Second, "request in flight", func() bool {
		st := p.Stats()
		return len(st.Members) == 1 && st.Members[0].InFlight == 1
	})
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	eventually(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", addr.String(), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request during Close got %q, want done", body)
	}
	<-closed
}
