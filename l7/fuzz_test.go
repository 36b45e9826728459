package l7

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzRequestHead checks the loops' judgement of request bytes against
// net/http's server on the same bytes: the same answer, or the same
// valid head, or waiting for more where net/http waits, and then the
// same answer when the header timeout passes or the client closes its
// side. A head the fast loop takes must also carry no body, upgrade or
// expectation.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\n\r\n",
		"GET http://a/b?c HTTP/1.1\r\nHost: a\r\nTrailer: x, y\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	for _, tc := range requestCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 4094 {
			// A loop hands a full buffer to net/http; and netHTTPHead
			// tells net/http's background read by its 1-byte reads, which
			// its request reader makes too with one byte of 4 KiB free.
			return
		}
		n, bad := checkRequest(raw, false)
		want := netHTTPHead(raw, os.ErrDeadlineExceeded)
		switch {
		case want.waited:
			if n != 0 || bad != nil {
				t.Fatalf("%q: got (%d, %v), want a wait as net/http's", raw, n, answerOf(bad))
			}
			if got := answerOf(endVerdict(raw, false)); got != want.answer {
				t.Fatalf("%q at the header timeout: got %q, want %q", raw, got, want.answer)
			}
			if got, want := answerOf(endVerdict(raw, true)), netHTTPHead(raw, io.EOF).answer; got != want {
				t.Fatalf("%q at the client's EOF: got %q, want %q", raw, got, want)
			}
		case want.n > 0:
			if n != want.n || bad != nil {
				t.Fatalf("%q: got (%d, %q), want a valid head of %d bytes", raw, n, answerOf(bad), want.n)
			}
		default:
			if n != 0 || answerOf(bad) != want.answer {
				t.Fatalf("%q: got (%d, %q), want %q", raw, n, answerOf(bad), want.answer)
			}
		}

		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		head, _, err := peekHead(br)
		if err != nil || head == nil || !eligibleHead(head) {
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("eligible head net/http rejects (%v): %q", err, raw)
		}
		if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
			t.Fatalf("accepted a request with a body: %q", raw)
		}
		if req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
			t.Fatalf("accepted an upgrade or expectation: %q", raw)
		}
		if req.Method == "CONNECT" || req.Method == "PRI" {
			t.Fatalf("accepted method %s: %q", req.Method, raw)
		}
	})
}

func answerOf(bad *headError) string {
	if bad == nil {
		return ""
	}
	return bad.resp
}

// serverHead is what net/http's server made of a client's bytes.
type serverHead struct {
	waited bool   // it read all and waited for more
	n      int    // the length of the head it took as valid, or 0
	answer string // what it wrote when it did not run its handler
}

// netHTTPHead serves raw, from a client that then sends nothing more,
// with a real http.Server on a connection that blocks for more bytes as
// a socket does, until released with end (a timeout, or io.EOF for a
// client that closed its side). It reports whether the server waited,
// what it answered, and, when it took the head (running its handler, or
// answering a bad Expect itself), the head's length as http.ReadRequest
// reads it.
func netHTTPHead(raw []byte, end error) serverHead {
	c := &stallConn{data: raw, stalled: make(chan struct{}), released: make(chan struct{}), closed: make(chan struct{})}
	handled := make(chan struct{}, 1)
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(http.ResponseWriter, *http.Request) { handled <- struct{}{} }),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go srv.Serve(&oneConnListener{c: c, done: make(chan struct{})})
	defer srv.Close()
	var sh serverHead
	took := false
	select {
	case <-handled:
		took = true
	case <-c.closed:
	case <-c.stalled:
		select {
		case <-handled:
			// The handler ran before the stall: the server then read
			// on for the rest of the body.
			took = true
		default:
			sh.waited = true
			c.end = end
			close(c.released)
			select {
			case <-handled:
				took = true
			case <-c.closed:
			}
		}
	}
	if !took {
		sh.answer = c.written()
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(sh.answer)), nil)
		took = err == nil && resp.StatusCode == http.StatusExpectationFailed
	}
	if took {
		br := bufio.NewReader(bytes.NewReader(raw))
		if _, err := http.ReadRequest(br); err == nil {
			sh.n = len(raw) - br.Buffered()
		}
	}
	return sh
}

// stallConn is the server's side of a client that sent data and then
// waits: reads beyond data block until released with end, or until the
// connection is closed.
type stallConn struct {
	mu       sync.Mutex
	data     []byte
	out      []byte
	end      error
	stalled  chan struct{} // closed when the server's reader wants more
	released chan struct{}
	closed   chan struct{}
	once     [2]sync.Once
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.data) > 0 {
		n := copy(p, c.data)
		c.data = c.data[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	// net/http's background read, which starts before the handler runs,
	// reads one byte; its request reader reads into 4 KiB.
	if len(p) > 1 {
		c.once[0].Do(func() { close(c.stalled) })
	}
	select {
	case <-c.released:
		return 0, c.end
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, p...)
	return len(p), nil
}

func (c *stallConn) written() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.out)
}

func (c *stallConn) Close() error {
	c.once[1].Do(func() { close(c.closed) })
	return nil
}

func (c *stallConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *stallConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *stallConn) SetDeadline(time.Time) error      { return nil }
func (c *stallConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stallConn) SetWriteDeadline(time.Time) error { return nil }

// oneConnListener accepts c once.
type oneConnListener struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }
