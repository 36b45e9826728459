package l7

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawMember is a member speaking HTTP/1.1 by hand: serve runs on each
// connection with the connection's reader and its index.
func rawMember(t *testing.T, serve func(c net.Conn, br *bufio.Reader, n int)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c), n)
			}()
		}
	}()
	return mustAddrPort(t, ln.Addr().String())
}

// readHead reads one request head from a member connection.
func readHead(br *bufio.Reader) (*http.Request, error) {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	return r, r.Body.Close()
}

// loopProxy runs a plain listener in front of one member.
func loopProxy(t *testing.T, member netip.AddrPort) string {
	t.Helper()
	addr := freeAddr(t, "127.0.0.11")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: member, Weight: 100, Healthy: true}}}},
		Listeners: []Listener{{Name: "l", Addr: addr, DefaultPool: "p", Timeouts: Timeouts{Response: 2 * time.Second}}},
	})
	return "http://" + addr.String()
}

// TestLoopFramings relays each way a member may end a body, written a
// few bytes at a time, and checks body, trailers and keep-alive.
func TestLoopFramings(t *testing.T) {
	tests := []struct {
		name     string
		response string
		body     string
		trailer  string
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", "hello world", ""},
		{"chunked with extensions and trailer",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
				"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n", "hello world", "42"},
		{"chunked with blank lines in its data",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\na\r\n\r\nb\r\n0\r\n\r\n", "a\r\n\r\nb", ""},
		{"until close (HTTP/1.0)", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world", "hello world", ""},
		{"interim 103 first", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			member := rawMember(t, func(c net.Conn, br *bufio.Reader, _ int) {
				for {
					if _, err := readHead(br); err != nil {
						return
					}
					for i := 0; i < len(tc.response); i += 7 {
						c.Write([]byte(tc.response[i:min(i+7, len(tc.response))]))
						time.Sleep(time.Millisecond)
					}
					if strings.HasPrefix(tc.response, "HTTP/1.0") {
						return
					}
				}
			})
			url := loopProxy(t, member)
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			defer c.CloseIdleConnections()
			for range 3 {
				resp, body := get(t, c, url+"/", nil)
				if body != tc.body || resp.Trailer.Get("X-Sum") != tc.trailer {
					t.Fatalf("got %d %q trailer %q, want %q trailer %q", resp.StatusCode, body, resp.Trailer.Get("X-Sum"), tc.body, tc.trailer)
				}
			}
		})
	}
}

// TestLoopHead checks that a HEAD response's Content-Length is kept and
// no body is read for it, so the next request on the connection works.
func TestLoopHead(t *testing.T) {
	member := rawMember(t, func(c net.Conn, br *bufio.Reader, _ int) {
		for {
			r, err := readHead(br)
			if err != nil {
				return
			}
			if r.Method == http.MethodHead {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")
		}
	})
	url := loopProxy(t, member)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(conn)
	head, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	if err != nil || head.ContentLength != 1000 {
		t.Fatalf("HEAD: %v, Content-Length %d", err, head.ContentLength)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "get" {
		t.Fatalf("GET after HEAD: %q", body)
	}
}

// TestLoopStaleMemberConnection: a kept-alive member connection that the
// member closes instead of answering is retried once on a new one.
func TestLoopStaleMemberConnection(t *testing.T) {
	var seen atomic.Int32
	member := rawMember(t, func(c net.Conn, br *bufio.Reader, n int) {
		for i := 0; ; i++ {
			if _, err := readHead(br); err != nil {
				return
			}
			seen.Add(1)
			if n == 0 && i == 1 {
				return // close the kept-alive connection without a word
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	url := loopProxy(t, member)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	for i := range 3 {
		if resp, body := get(t, c, url+"/", nil); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := seen.Load(); got != 4 {
		t.Fatalf("member saw %d requests, want 4 (one of them retried)", got)
	}
}

// TestLoopFailures: a member that closes before answering on a new
// connection gives 502, one that does not answer in time 504, and
// neither leaks.
func TestLoopFailures(t *testing.T) {
	leakCheck(t)
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	member := rawMember(t, func(c net.Conn, br *bufio.Reader, _ int) {
		r, err := readHead(br)
		if err != nil || r.URL.Path == "/close" {
			return
		}
		<-hang
	})
	url := loopProxy(t, member)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	if resp, _ := get(t, c, url+"/close", nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("member closing: %d, want 502", resp.StatusCode)
	}
	start := time.Now()
	if resp, _ := get(t, c, url+"/hang", nil); resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("member silent: %d, want 504", resp.StatusCode)
	}
	if d := time.Since(start); d < 2*time.Second || d > 4*time.Second {
		t.Fatalf("504 after %v, want the 2s response timeout", d)
	}
}

// TestLoopPipelinedAndSlowClient sends pipelined requests for a large
// body and reads the responses slowly: the loop must stop reading the
// member while the client does not read, and lose nothing.
func TestLoopPipelinedAndSlowClient(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	member := rawMember(t, func(c net.Conn, br *bufio.Reader, _ int) {
		for {
			r, err := readHead(br)
			if err != nil {
				return
			}
			if r.URL.Path == "/big" {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n")
				c.Write(big)
				continue
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsmal\r\n1\r\nl\r\n0\r\n\r\n")
		}
	})
	url := loopProxy(t, member)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: a\r\n\r\nGET /small HTTP/1.1\r\nHost: a\r\n\r\nGET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // let the buffers fill
	br := bufio.NewReader(conn)
	want := sha256.Sum256(big)
	for i, path := range []string{"/big", "/small", "/big"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		switch {
		case path == "/small" && string(body) != "small":
			t.Fatalf("response %d: %q", i, body)
		case path == "/big" && sha256.Sum256(body) != want:
			t.Fatalf("response %d: %d bytes, corrupted", i, len(body))
		}
	}
}

func TestChunkScanner(t *testing.T) {
	body := "5;a=b\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"
	for split := range len(body) {
		var s chunkScanner
		n1, end1, err1 := s.scan([]byte(body[:split]))
		n2, end2, err2 := s.scan([]byte(body[split:] + "NEXT"))
		if err1 != nil || err2 != nil || end1 || !end2 || n1 != split || n2 != len(body)-split {
			t.Fatalf("split at %d: (%d %v %v) (%d %v %v)", split, n1, end1, err1, n2, end2, err2)
		}
	}
	for _, bad := range []string{"x\r\n", "\r\n", "5\r\nhelloXY", "fffffffffffffffff\r\n"} {
		var s chunkScanner
		if _, _, err := s.scan([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzParseRequest checks the loop's request parser against
// http.ReadRequest: what it accepts of the heads checkRequest finds valid
// must parse the same there.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"GET /? HTTP/1.1\r\nHost: a:80\r\nConnection: close\r\nPragma: no-cache\r\n\r\n",
		"DELETE //x HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
		"GET /a<b> HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		n, bad := checkRequest(head, false)
		if n == 0 || bad != nil || !loopHead(head[:n]) {
			return
		}
		head = head[:n]
		var in interner
		var r http.Request
		var u url.URL
		var vals []string
		h := http.Header{}
		if !in.parseRequest(head, &r, &u, h, &vals) {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("accepted what net/http rejects (%v): %q", err, head)
		}
		if r.Method != want.Method || r.Host != want.Host || r.RequestURI != want.RequestURI || r.Close != want.Close ||
			!reflect.DeepEqual(*r.URL, *want.URL) || !reflect.DeepEqual(r.Header, want.Header) {
			t.Fatalf("%q:\n got %s %s %q %+v %v %v\nwant %s %s %q %+v %v %v", head,
				r.Method, r.Host, r.RequestURI, *r.URL, r.Header, r.Close,
				want.Method, want.Host, want.RequestURI, *want.URL, want.Header, want.Close)
		}
	})
}

// FuzzParseResponse checks the loop's response parser against
// http.ReadResponse: what it accepts must parse the same there.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\nServer: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nTrailer: A, b\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 302\r\nLocation: /x\r\nConnection: close\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		end := bytes.Index(head, crlf2)
		if end < 0 {
			return
		}
		head = head[:end+4]
		var in interner
		var resp http.Response
		var vals []string
		h := http.Header{}
		if !in.parseResponse(head, &resp, h, &vals) {
			return
		}
		want, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), &http.Request{Method: http.MethodGet})
		if err != nil {
			t.Fatalf("accepted what net/http rejects (%v): %q", err, head)
		}
		wantTrailer := []string{}
		for k := range want.Trailer {
			wantTrailer = append(wantTrailer, k)
		}
		gotTrailer := []string{}
		for k := range resp.Trailer {
			gotTrailer = append(gotTrailer, k)
		}
		same := resp.StatusCode == want.StatusCode && reflect.DeepEqual(resp.Header, want.Header) &&
			len(gotTrailer) == len(wantTrailer) && resp.Close == want.Close
		if resp.StatusCode == http.StatusOK {
			same = same && resp.ContentLength == want.ContentLength &&
				reflect.DeepEqual(resp.TransferEncoding, want.TransferEncoding)
		}
		if !same {
			t.Fatalf("%q:\n got %d %v cl=%d te=%v close=%v trailer=%v\nwant %d %v cl=%d te=%v close=%v trailer=%v", head,
				resp.StatusCode, resp.Header, resp.ContentLength, resp.TransferEncoding, resp.Close, gotTrailer,
				want.StatusCode, want.Header, want.ContentLength, want.TransferEncoding, want.Close, wantTrailer)
		}
	})
}
