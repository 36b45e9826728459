package l7

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// requestCase is bytes a client sends for a request, and then either
// waits or closes its side.
type requestCase struct {
	name       string
	raw        string
	closeWrite bool
}

// requestCases are malformed requests, requests only net/http's lenient
// rules make valid, and requests cut short. They also seed
// FuzzRequestHead.
var requestCases = []requestCase{
	// The request line.
	{name: "garbage line and blank line", raw: "GARBAGE\r\n\r\n"},
	{name: "garbage line alone", raw: "GARBAGE\r\n"},
	{name: "blank line first", raw: "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "no version", raw: "GET /\r\nHost: a\r\n\r\n"},
	{name: "two spaces", raw: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "tabs between parts", raw: "GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "invalid method token", raw: "G(T / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "empty method", raw: " / HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "bad escape in target", raw: "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "control byte in target", raw: "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "relative target", raw: "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "bad absolute target", raw: "GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "bad CONNECT authority", raw: "CONNECT [::1 HTTP/1.1\r\nHost: a\r\n\r\n"},
	{name: "version with two digits", raw: "GET / HTTP/1.10\r\nHost: a\r\n\r\n"},
	{name: "lowercase version", raw: "GET / http/1.1\r\nHost: a\r\n\r\n"},
	{name: "HTTP/2.0 request line", raw: "GET / HTTP/2.0\r\nHost: a\r\n\r\n"},
	{name: "HTTP/0.9 request line", raw: "GET / HTTP/0.9\r\nHost: a\r\n\r\n"},
	// The fields.
	{name: "no Host in HTTP/1.1", raw: "GET / HTTP/1.1\r\n\r\n"},
	{name: "two Host fields", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	{name: "malformed Host", raw: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
	{name: "folded Host", raw: "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"},
	{name: "space in a field name", raw: "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"},
	{name: "space before the colon", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A : x\r\n\r\n"},
	{name: "Host with a space before the colon", raw: "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
	{name: "field without colon", raw: "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n"},
	{name: "empty field name", raw: "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n"},
	{name: "separator in a field name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX<Y: x\r\n\r\n"},
	{name: "folding before any field", raw: "GET / HTTP/1.1\r\n folded\r\nHost: a\r\n\r\n"},
	{name: "NUL in a value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"},
	{name: "control byte in a value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"},
	{name: "bare CR in a value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"},
	{name: "DEL in a value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n"},
	{name: "control byte in a continuation", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\x02\r\n\r\n"},
	// Framing.
	{name: "two different Content-Lengths", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
	{name: "Content-Length not a number", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"},
	{name: "negative Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
	{name: "empty Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"},
	{name: "Content-Length list", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx"},
	{name: "unknown Transfer-Encoding", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"},
	{name: "Transfer-Encoding list", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
	{name: "two Transfer-Encoding fields", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{name: "chunked and a bad Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n0\r\n\r\n"},
	{name: "Trailer naming Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n"},
	{name: "unknown expectation", raw: "GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"},
	// Valid for net/http, so valid here: served.
	{name: "bare LF line ends", raw: "GET / HTTP/1.1\nHost: a\nConnection: close\n\n"},
	{name: "mixed line ends", raw: "GET / HTTP/1.1\r\nHost: a\nConnection: close\r\n\n"},
	{name: "obsolete line folding", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n\tb\r\nConnection: close\r\n\r\n"},
	{name: "equal Content-Lengths", raw: "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
	{name: "chunked over Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0\r\n\r\n"},
	{name: "Transfer-Encoding ignored in HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n"},
	{name: "HTTP/1.0 without Host", raw: "GET / HTTP/1.0\r\n\r\n"},
	{name: "HTTP/1.2", raw: "GET / HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n"},
	{name: "empty Host", raw: "GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n"},
	{name: "lowercase method", raw: "get / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"},
	// Cut short: answered at the header timeout, or when the client
	// closes its side.
	{name: "head cut short", raw: "GET / HTTP/1.1\r\nHost: a\r\n"},
	{name: "request line cut short", raw: "GET / HT"},
	{name: "bad field, then silence", raw: "GET / HTTP/1.1\r\nHost: a\r\nX<Y: x\r\n"},
	{name: "continuation cut short", raw: "GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n "},
	{name: "head cut short, then EOF", raw: "GET / HTTP/1.1\r\nHost: a\r\n", closeWrite: true},
	{name: "request line cut short, then EOF", raw: "GET / HT", closeWrite: true},
	{name: "nothing, then EOF", raw: "", closeWrite: true},
}

// headerTimeout is both servers' header timeout in TestRequestsAsNetHTTP.
const headerTimeout = 500 * time.Millisecond

// TestRequestsAsNetHTTP sends each of requestCases over a raw socket to
// a plain net/http server and to plain listeners of the proxy (with and
// without h2c), as the first request of a connection (the event loop),
// after a kept-alive HTTP/1.1 request (the loop again) and after a
// kept-alive HTTP/1.0 one (the fast loop), and checks that the proxy
// answers as net/http did: the same statuses and error bodies, at the
// same time (within 100 ms, plus a tick of the loop's deadline checks
// where net/http waited for its header timeout), the connection closed
// alike, and the member reached exactly when net/http's handler was.
func TestRequestsAsNetHTTP(t *testing.T) {
	prefixes := []struct{ name, raw string }{
		{"first request", ""},
		{"after HTTP/1.1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"after HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"},
	}
	type target struct {
		name string
		addr netip.AddrPort
		hits *atomic.Int64
	}
	var refs []target
	for range prefixes {
		hits := new(atomic.Int64)
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: headerTimeout, Handler: countingHandler(hits)}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		refs = append(refs, target{"net/http", mustAddrPort(t, ln.Addr().String()), hits})
	}
	cfg := Config{Pools: map[string]Pool{}}
	var weft [][]target // by prefix
	for i := range prefixes {
		var ts []target
		for _, l := range []struct {
			name string
			h2c  bool
		}{{"weft", false}, {"weft h2c", true}} {
			hits := new(atomic.Int64)
			name := fmt.Sprintf("%s %d", l.name, i)
			cfg.Pools[name] = Pool{Members: []Member{startBackend(t, name, countingHandler(hits)).member()}}
			addr := freeAddr(t, "127.0.0.20")
			cfg.Listeners = append(cfg.Listeners, Listener{Name: name, Addr: addr, DefaultPool: name, HTTP2: l.h2c,
				Timeouts: Timeouts{Header: headerTimeout}})
			ts = append(ts, target{l.name, addr, hits})
		}
		weft = append(weft, ts)
	}
	startProxy(t, cfg)

	ran, rejected := 0, 0
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			ran++
			results := make([][]exchange, len(prefixes))
			var wg sync.WaitGroup
			for i, p := range prefixes {
				results[i] = make([]exchange, 1+len(weft[i]))
				for j, tg := range append([]target{refs[i]}, weft[i]...) {
					wg.Go(func() { results[i][j] = exchangeRaw(t, tg.addr, p.raw+tc.raw, tc.closeWrite, tg.hits) })
				}
			}
			wg.Wait()
			for i, p := range prefixes {
				want := results[i][0]
				if i == 0 && want.hits == 0 && len(want.answers) > 0 && want.answers[0].status >= 400 {
					rejected++
				}
				for j, got := range results[i][1:] {
					name := p.name + ", " + weft[i][j].name
					if !slices.Equal(got.answers, want.answers) || got.closed != want.closed {
						t.Errorf("%s: got %v closed=%v, want net/http's %v closed=%v", name, got.answers, got.closed, want.answers, want.closed)
					}
					if got.hits != want.hits {
						t.Errorf("%s: the member got %d requests, net/http's handler %d", name, got.hits, want.hits)
					}
					margin := 100 * time.Millisecond
					if want.took >= headerTimeout {
						margin += loopTick
					}
					if d := got.took - want.took; d > margin || d < -margin {
						t.Errorf("%s: answered after %v, net/http after %v", name, got.took, want.took)
					}
				}
			}
		})
	}
	t.Logf("net/http rejected %d of the %d cases without reaching its handler", rejected, len(requestCases))
	if ran == len(requestCases) && rejected < 20 {
		t.Errorf("net/http rejected %d of the cases without reaching its handler, want at least 20", rejected)
	}
}

func countingHandler(hits *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
}

// answer is a response as the comparison sees it: the status, and the
// body of an error, which net/http's server words itself.
type answer struct {
	status int
	body   string
}

func (a answer) String() string { return fmt.Sprintf("%d %q", a.status, a.body) }

// exchange is what a raw client saw.
type exchange struct {
	answers []answer
	closed  bool          // the server closed the connection
	took    time.Duration // until it did, or until the last byte came
	hits    int64         // requests that reached the handler
}

// exchangeRaw sends raw to addr (then closes its side if closeWrite),
// reads until the server closes or 5 s pass, and counts what reached the
// handler meanwhile.
func exchangeRaw(t *testing.T, addr netip.AddrPort, raw string, closeWrite bool, hits *atomic.Int64) exchange {
	before := hits.Load()
	c, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(addr))
	if err != nil {
		t.Errorf("dial %s: %v", addr, err)
		return exchange{}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Errorf("write to %s: %v", addr, err)
	}
	if closeWrite {
		c.CloseWrite()
	}
	var out []byte
	var x exchange
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		x.took = time.Since(start)
		if err != nil {
			x.closed = !isTimeout(err)
			break
		}
	}
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		if _, err := br.Peek(1); err != nil {
			break
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			x.answers = append(x.answers, answer{body: "unreadable: " + err.Error()})
			break
		}
		body, _ := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode}
		if resp.StatusCode >= 400 {
			a.body = strings.TrimSpace(string(body))
		}
		x.answers = append(x.answers, a)
	}
	x.hits = hits.Load() - before
	return x
}
