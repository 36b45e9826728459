package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
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
