package l7

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirectPathStaleConnection: a member that closes a kept-alive
// connection right after answering must not cost the next request a 502.
func TestDirectPathStaleConnection(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				// Promises keep-alive, then closes anyway.
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	addr := freeAddr(t, "127.0.0.15")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: mustAddrPort(t, ln.Addr().String()), Weight: 1, Healthy: true}}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}},
	})
	client := noRedirectClient()
	for i := range 5 {
		resp, body := get(t, client, "http://"+addr.String()+"/", nil)
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: got %d %q, want 200 ok", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n < 5 {
		t.Errorf("member saw %d connections for 5 requests, want 5 or more (each one closed)", n)
	}
}

func TestDirectEligibility(t *testing.T) {
	up := &upstream{}
	rt := &route{up: up}
	tests := []struct {
		name string
		req  func() *http.Request
		want bool
	}{
		{"plain GET", func() *http.Request { r, _ := http.NewRequest("GET", "http://a/", nil); r.Body = http.NoBody; return r }, true},
		{"websocket upgrade", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a/", nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}, false},
		{"with body", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a/", http.NoBody)
			r.ContentLength = 5
			return r
		}, false},
		{"HTTP/2 GET ending its stream with the headers", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a/", io.NopCloser(strings.NewReader("")))
			r.ProtoMajor, r.ContentLength = 2, 0
			return r
		}, true},
		{"HTTP/2 POST with a body of unknown length", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a/", io.NopCloser(strings.NewReader("x")))
			r.ProtoMajor, r.ContentLength = 2, -1
			return r
		}, false},
		{"HTTP/1.1 chunked body", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://a/", io.NopCloser(strings.NewReader("x")))
			r.ContentLength = -1
			return r
		}, false},
		{"expect continue", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://a/", nil)
			r.Header.Set("Expect", "100-continue")
			return r
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := direct(tc.req(), rt); got != tc.want {
				t.Errorf("direct = %v, want %v", got, tc.want)
			}
		})
	}
	up.key.protocol = ProtoH2C
	r, _ := http.NewRequest("GET", "http://a/", nil)
	if direct(r, rt) {
		t.Error("h2c pool took the HTTP/1.1 direct path")
	}
}

// TestDirectPathResponseHeads sends HTTP/2 requests (the direct path's
// biggest client) to a member answering with canned heads: those
// parseHead reads (Content-Length bodies) and those it leaves to
// http.ReadResponse must reach the client alike, a body cut short must
// never pass for a whole one, and a connection the response ends must not
// be used again.
func TestDirectPathResponseHeads(t *testing.T) {
	answers := map[string]string{
		"/cl":       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
		"/cl-plain": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"/empty":    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
		"/http10":   "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/close":    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
		"/chunked":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"/bare-lf":  "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
		"/204":      "HTTP/1.1 204 No Content\r\n\r\n",
		"/short":    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal",
		"/big-head": "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 8000) + "\r\nContent-Length: 2\r\n\r\nok",
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var reused atomic.Int32 // requests on a connection a response ended
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				ended := false
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if ended {
						reused.Add(1)
					}
					a := answers[r.URL.Path]
					io.WriteString(c, a)
					switch r.URL.Path {
					case "/short", "/close":
						return
					case "/http10":
						ended = true // and left open: the proxy must close it
					}
				}
			}()
		}
	}()
	addr := freeAddr(t, "127.0.0.15")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: mustAddrPort(t, ln.Addr().String()), Weight: 1, Healthy: true}}}},
		Listeners: []Listener{{Name: "web", Addr: addr, HTTP2: true, DefaultPool: "p"}},
	})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, tc := range []struct {
		path   string
		status int
		body   string
		xa     []string
	}{
		{"/cl", 200, "hello", []string{"1", "2"}},
		{"/http10", 200, "ok", nil},
		{"/cl", 200, "hello", []string{"1", "2"}},
		// The same length on the same member connection: the header map
		// the connection reuses keeps nothing of the response before.
		{"/cl-plain", 200, "hello", nil},
		{"/cl", 200, "hello", []string{"1", "2"}},
		{"/empty", 404, "", nil},
		{"/close", 200, "ok", nil},
		{"/chunked", 200, "ok", nil},
		{"/bare-lf", 200, "ok", nil},
		{"/204", 204, "", nil},
		{"/big-head", 200, "ok", nil},
		{"/http10", 200, "ok", nil},
		{"/cl", 200, "hello", []string{"1", "2"}},
	} {
		resp, err := client.Get("http://" + addr.String() + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.status || string(body) != tc.body || !slices.Equal(resp.Header["X-A"], tc.xa) {
			t.Errorf("GET %s: %d %q X-A %q (%v), want %d %q X-A %q", tc.path, resp.StatusCode, body, resp.Header["X-A"], err, tc.status, tc.body, tc.xa)
		}
	}
	resp, err := client.Get("http://" + addr.String() + "/short")
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Errorf("GET /short: a whole body %q from a member that sent 3 of its 10 bytes", body)
		}
	}
	if n := reused.Load(); n > 0 {
		t.Errorf("%d requests went on member connections an HTTP/1.0 response had ended", n)
	}
}

// TestCLBody: a Content-Length body reads to its length and no further,
// and one cut short fails rather than ending.
func TestCLBody(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int64
		want    string
		wantErr error
	}{
		{"hello, and the next response", 5, "hello", nil},
		{"hal", 10, "hal", io.ErrUnexpectedEOF},
		{"", 1, "", io.ErrUnexpectedEOF},
	} {
		b := &clBody{br: bufio.NewReaderSize(strings.NewReader(tc.in), 16), n: tc.n}
		got, err := io.ReadAll(b)
		if string(got) != tc.want || err != tc.wantErr {
			t.Errorf("%q with Content-Length %d: read %q, %v; want %q, %v", tc.in, tc.n, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestDirectPathClientLeaves checks that a client leaving cuts the direct
// path's wait for a member that does not answer: the proxy closes the
// member connection long before the response timeout.
func TestDirectPathClientLeaves(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got, closed := make(chan struct{}, 1), make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		got <- struct{}{}
		io.Copy(io.Discard, br) // never answer; returns when the proxy closes
		closed <- struct{}{}
	}()
	addr := freeAddr(t, "127.0.0.1")
	startProxy(t, Config{
		Listeners: []Listener{{Name: "h2c", Addr: addr, HTTP2: true, DefaultPool: "p"}},
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: mustAddrPort(t, ln.Addr().String()), Weight: 100, Healthy: true}}}},
	})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr.String()+"/", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the member got no request")
	}
	cancel() // the client resets its stream
	if err := <-errc; err == nil {
		t.Fatal("request succeeded after its cancellation")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy still waits on the member 5s after the client left")
	}
}
