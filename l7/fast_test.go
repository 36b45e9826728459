package l7

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFastLoopHTTP checks HTTP/1.x framing of the client-side paths
// against raw requests: versions, keep-alive, HEAD, bodiless statuses,
// chunked responses and pipelining. HTTP/1.1 stays on the event loop;
// HTTP/1.0 is handed to the fast loop.
func TestFastLoopHTTP(t *testing.T) {
	b := startBackend(t, "fast", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/chunked":
			io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part2")
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	addr := freeAddr(t, "127.0.0.16")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}},
	})
	type want struct {
		status    int
		body      string
		close     bool // connection closed after the response
		chunked   bool
		keepAlive string // Connection header value
	}
	tests := []struct {
		name   string
		method string
		raw    string
		wants  []want
	}{
		{"http/1.1 keep-alive", "GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", []want{{status: 200, body: "hello"}}},
		{"http/1.0 closes", "GET", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", []want{{status: 200, body: "hello", close: true}}},
		{"http/1.0 keep-alive", "GET", "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
			[]want{{status: 200, body: "hello", keepAlive: "keep-alive"}}},
		{"connection close", "GET", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", []want{{status: 200, body: "hello", close: true}}},
		{"head", "HEAD", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", []want{{status: 200}}},
		{"204", "GET", "GET /204 HTTP/1.1\r\nHost: a\r\n\r\n", []want{{status: 204}}},
		{"304", "GET", "GET /304 HTTP/1.1\r\nHost: a\r\n\r\n", []want{{status: 304}}},
		{"chunked", "GET", "GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n", []want{{status: 200, body: "part1,part2", chunked: true}}},
		{"pipelined", "GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n",
			[]want{{status: 200, body: "hello"}, {status: 200, body: "part1,part2", chunked: true}, {status: 204}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.raw)
			br := bufio.NewReader(c)
			for i, w := range tc.wants {
				resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
				if err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("response %d body: %v", i, err)
				}
				if resp.StatusCode != w.status || string(body) != w.body {
					t.Errorf("response %d = %d %q, want %d %q", i, resp.StatusCode, body, w.status, w.body)
				}
				if got := len(resp.TransferEncoding) > 0; got != w.chunked {
					t.Errorf("response %d chunked = %v, want %v", i, got, w.chunked)
				}
				if w.keepAlive != "" && resp.Header.Get("Connection") != w.keepAlive {
					t.Errorf("response %d Connection = %q, want %q", i, resp.Header.Get("Connection"), w.keepAlive)
				}
				if resp.Header.Get("Date") == "" {
					t.Errorf("response %d has no Date", i)
				}
				if tc.method == "HEAD" && resp.ContentLength != 5 {
					t.Errorf("HEAD Content-Length = %d, want the member's 5", resp.ContentLength)
				}
			}
			last := tc.wants[len(tc.wants)-1]
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err = br.ReadByte()
			closed := err == io.EOF
			if closed != last.close {
				t.Errorf("connection closed = %v (%v), want %v", closed, err, last.close)
			}
		})
	}
}

// TestFastLoopHandsOff: a request the loops cannot serve, after one they
// did, moves the connection to net/http without losing bytes.
func TestFastLoopHandsOff(t *testing.T) {
	b := startBackend(t, "b", nil)
	addr := freeAddr(t, "127.0.0.17")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}},
	})
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	for i, method := range []string{"GET", "POST", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "b") {
			t.Errorf("response %d = %d %q, want 200 from b", i, resp.StatusCode, body)
		}
	}
}

func TestIdleTimeoutClosesKeepAlive(t *testing.T) {
	b := startBackend(t, "b", nil)
	addr := freeAddr(t, "127.0.0.19")
	startProxy(t, Config{
		Pools: map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p",
			Timeouts: Timeouts{Idle: 200 * time.Millisecond}}},
	})
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read err = %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %v, want about 200ms", d)
	}
}
