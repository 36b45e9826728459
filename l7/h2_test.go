package l7

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client is a bare HTTP/2 client on an h2c connection: it writes the
// frames a test says and reads back what the server sends.
type h2Client struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

func dialH2C(t *testing.T, addr string) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hc := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	hc.henc = hpack.NewEncoder(&hc.hbuf)
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := hc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return hc
}

// request opens stream id with a GET of path and the fields given.
func (hc *h2Client) request(id uint32, path string, end bool, fields ...hpack.HeaderField) {
	hc.t.Helper()
	hc.hbuf.Reset()
	for _, f := range append([]hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "h2.test"}, {Name: ":path", Value: path}}, fields...) {
		hc.henc.WriteField(f)
	}
	if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hc.hbuf.Bytes(),
		EndStream: end, EndHeaders: true}); err != nil {
		hc.t.Fatal(err)
	}
}

// response reads frames until stream id ends: the fields of its final
// head (past any 1xx) and its body. Frames of other streams are skipped; a RST_STREAM of id
// fails.
func (hc *h2Client) response(id uint32) (map[string][]string, string) {
	hc.t.Helper()
	fields, end := hc.head(id)
	for s := fields[":status"]; !end && len(s) == 1 && len(s[0]) == 3 && s[0][0] == '1'; s = fields[":status"] {
		fields, end = hc.head(id) // interim (1xx)
	}
	var body strings.Builder
	for !end {
		end = hc.data(id, &body)
	}
	return fields, body.String()
}

// next reads frames until one of stream id; a RST_STREAM of it fails.
func (hc *h2Client) next(id uint32) http2.Frame {
	hc.t.Helper()
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			hc.t.Fatalf("stream %d: %v", id, err)
		}
		if f.Header().StreamID != id {
			continue
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			hc.t.Fatalf("stream %d reset: %v", id, r.ErrCode)
		}
		return f
	}
}

// head reads stream id's next header block: its fields, and whether it
// ended the stream.
func (hc *h2Client) head(id uint32) (map[string][]string, bool) {
	hc.t.Helper()
	hc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	next := hc.next(id)
	f, ok := next.(*http2.MetaHeadersFrame)
	if !ok {
		hc.t.Fatalf("stream %d: %v before its head", id, next.Header())
	}
	fields := map[string][]string{}
	for _, hf := range f.Fields {
		fields[hf.Name] = append(fields[hf.Name], hf.Value)
	}
	return fields, f.StreamEnded()
}

// data reads stream id's next DATA (into body) or trailers frame; true
// when it ended the stream.
func (hc *h2Client) data(id uint32, body *strings.Builder) bool {
	hc.t.Helper()
	for {
		switch f := hc.next(id).(type) {
		case *http2.DataFrame:
			body.Write(f.Data())
			return f.StreamEnded()
		case *http2.MetaHeadersFrame:
			return f.StreamEnded()
		}
	}
}

// TestH2RequestHead checks the request a member gets from an HTTP/2
// client: Cookie fields sent apart arrive as one (RFC 9113 8.2.3), the
// Host field becomes the request's host once, and the response comes
// with a Date.
func TestH2RequestHead(t *testing.T) {
	b := startBackend(t, "m", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Echo-Cookie"] = r.Header["Cookie"]
		w.Header().Set("Echo-Host", r.Host)
		io.WriteString(w, "ok")
	}))
	addr := freeAddr(t, "127.0.0.12")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "h2c", Addr: addr, HTTP2: true, DefaultPool: "p"}},
	})
	hc := dialH2C(t, addr.String())
	hc.request(1, "/", true, hpack.HeaderField{Name: "cookie", Value: "a=1"},
		hpack.HeaderField{Name: "cookie", Value: "b=2"}, hpack.HeaderField{Name: "host", Value: "other.test"})
	fields, body := hc.response(1)
	if got := fields["echo-cookie"]; len(got) != 1 || got[0] != "a=1; b=2" {
		t.Errorf("member's Cookie = %q, want one field \"a=1; b=2\"", got)
	}
	if got := fields["echo-host"]; len(got) != 1 || got[0] != "h2.test" {
		t.Errorf("member's Host = %q, want :authority h2.test", got)
	}
	if fields[":status"][0] != "200" || len(fields["date"]) != 1 || body != "ok" {
		t.Errorf("response = %v %q", fields, body)
	}
}

// TestH2BodyNotHeldBack has a member send the first half of a body with
// a Content-Length and wait for the client to see it: the proxy must not
// hold those bytes back for the rest (only the body's end waits, to carry
// END_STREAM).
func TestH2BodyNotHeldBack(t *testing.T) {
	seen := make(chan struct{})
	b := startBackend(t, "m", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "world")
	}))
	addr := freeAddr(t, "127.0.0.12")
	startProxy(t, Config{
		Pools:     map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "h2c", Addr: addr, HTTP2: true, DefaultPool: "p"}},
	})
	hc := dialH2C(t, addr.String())
	hc.request(1, "/", true)
	if f, end := hc.head(1); end || f[":status"][0] != "200" {
		t.Fatalf("head %v, end %v", f, end)
	}
	var body strings.Builder
	hc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if end := hc.data(1, &body); end || body.String() != "hello" {
		t.Fatalf("first DATA %q (end %v), want \"hello\" before the rest is sent", body.String(), end)
	}
	close(seen)
	if end := hc.data(1, &body); !end || body.String() != "helloworld" {
		t.Errorf("body %q (end %v), want \"helloworld\" ending the stream", body.String(), end)
	}
}

// TestH2StalledClient opens a window of 2^31-1 bytes, asks for an endless
// body and reads nothing: once the server's writes take no byte for the
// listener's idle timeout the connection ends, and with it the member's
// request.
func TestH2StalledClient(t *testing.T) {
	done := make(chan struct{})
	b := startBackend(t, "m", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		buf := make([]byte, 64<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	addr := freeAddr(t, "127.0.0.12")
	startProxy(t, Config{
		Pools: map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "h2c", Addr: addr, HTTP2: true, DefaultPool: "p",
			Timeouts: Timeouts{Idle: 300 * time.Millisecond}}},
	})
	hc := dialH2C(t, addr.String())
	if err := hc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2MaxWindow}); err != nil {
		t.Fatal(err)
	}
	if err := hc.fr.WriteWindowUpdate(0, h2MaxWindow-65535); err != nil {
		t.Fatal(err)
	}
	hc.request(1, "/", true)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the member still sends 10s after the client stopped reading")
	}
}

// startH2Server serves h on h2c with the HTTP/2 server alone (no proxy
// in front) and returns its address.
func startH2Server(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Protocols: new(http.Protocols), Handler: h}
	srv.Protocols.SetUnencryptedHTTP2(true)
	if err := configureHTTP2(srv); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestH2ExpectContinue sends a request with Expect: 100-continue and
// holds its body back until the server's 100 comes, which the server
// sends when the handler reads the body.
func TestH2ExpectContinue(t *testing.T) {
	addr := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	hc := dialH2C(t, addr)
	hc.hbuf.Reset()
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "h2.test"}, {Name: ":path", Value: "/"}, {Name: "expect", Value: "100-continue"},
		{Name: "content-length", Value: "4"}} {
		hc.henc.WriteField(f)
	}
	if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hc.hbuf.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	interim, _ := hc.head(1)
	if s := interim[":status"]; len(s) != 1 || s[0] != "100" {
		t.Fatalf("first head %v, want :status 100", interim)
	}
	if err := hc.fr.WriteData(1, true, []byte("data")); err != nil {
		t.Fatal(err)
	}
	fields, body := hc.response(1)
	if fields[":status"][0] != "200" || body != "data" {
		t.Errorf("response = %v %q", fields, body)
	}
}

// TestH2ResetFlood opens streams and resets each at once (the "rapid
// reset" of CVE-2023-44487) on a server whose handler holds each request
// whatever its context says: the server never runs more handlers than
// the streams a connection may have open, refuses the streams past that,
// and serves the connection again once the handlers return.
func TestH2ResetFlood(t *testing.T) {
	var now, peak atomic.Int64
	release := make(chan struct{})
	addr := startH2Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	hc := dialH2C(t, addr)
	// The server's frames are read as they come, so its writes never
	// wait on this client.
	var refused atomic.Int64
	last := make(chan http2.Frame, 1)
	go func() {
		defer close(last)
		for {
			f, err := hc.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if f.ErrCode == http2.ErrCodeRefusedStream {
					refused.Add(1)
				}
			case *http2.MetaHeadersFrame:
				if f.StreamID == 4001 {
					last <- f
				}
			}
		}
	}()
	const streams = 2000
	for i := range streams {
		id := uint32(2*i + 1)
		hc.request(id, "/hold", true)
		if err := hc.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for now.Load() < h2MaxStreams && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // for any handler past the limit to start
	if p := peak.Load(); p != h2MaxStreams {
		t.Errorf("%d handlers ran at once, want %d (the limit)", p, h2MaxStreams)
	}
	close(release)
	for now.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	hc.request(4001, "/", true)
	select {
	case f, ok := <-last:
		if !ok {
			t.Fatal("the connection ended after the flood")
		}
		if s := f.(*http2.MetaHeadersFrame).PseudoValue("status"); s != "200" {
			t.Errorf("after the flood: status %s, want 200", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no response after the flood")
	}
	if n := refused.Load(); n < streams-h2MaxStreams {
		t.Errorf("%d streams refused, want at least %d", n, streams-h2MaxStreams)
	}
}

// TestH2IdleGoAway leaves a connection idle past the listener's idle
// timeout: the server sends GOAWAY (NO_ERROR, naming the last stream it
// took) and closes.
func TestH2IdleGoAway(t *testing.T) {
	b := startBackend(t, "m", nil)
	addr := freeAddr(t, "127.0.0.12")
	startProxy(t, Config{
		Pools: map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{{Name: "h2c", Addr: addr, HTTP2: true, DefaultPool: "p",
			Timeouts: Timeouts{Idle: 200 * time.Millisecond}}},
	})
	hc := dialH2C(t, addr.String())
	hc.request(1, "/", true)
	hc.response(1)
	start := time.Now()
	hc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var away *http2.GoAwayFrame
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			if away == nil {
				t.Fatalf("closed without GOAWAY: %v", err)
			}
			if !errors.Is(err, io.EOF) {
				t.Errorf("after GOAWAY: %v, want EOF", err)
			}
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			away = g
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Errorf("GOAWAY after %v, before the idle timeout", d)
			}
		}
	}
	if away.ErrCode != http2.ErrCodeNo || away.LastStreamID != 1 {
		t.Errorf("GOAWAY %v last stream %d, want NO_ERROR and 1", away.ErrCode, away.LastStreamID)
	}
}

// FuzzH2Conn feeds a preface and arbitrary frames to the HTTP/2 server,
// whose handler reads the body and answers with a body and a trailer:
// the connection must end (the client closing, or the server on an
// error) without a panic, a handler left running or a hang.
func FuzzH2Conn(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, hf := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "a"}, {Name: ":path", Value: "/"}, {Name: "content-length", Value: "4"}} {
		enc.WriteField(hf)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte("data"))
	fr.WriteWindowUpdate(0, 1000)
	fr.WriteWindowUpdate(1, 1000)
	fr.WritePing(false, [8]byte{1})
	fr.WriteRSTStream(1, http2.ErrCodeCancel)
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, frames []byte) {
		var running atomic.Int64
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			running.Add(1)
			defer running.Add(-1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Trailer", "X-T")
			io.WriteString(w, "answer")
			w.Header().Set("X-T", "1")
		})
		s := &h2Server{hs: &http.Server{}, conns: map[*h2Conn]struct{}{}}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serve(server, h, false, nil)
		}()
		go io.Copy(io.Discard, client)
		client.Write(append([]byte(http2.ClientPreface), frames...))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end")
		}
		deadline := time.Now().Add(5 * time.Second)
		for running.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := running.Load(); n > 0 {
			t.Fatalf("%d handlers still running after the connection ended", n)
		}
	})
}

// TestH2WorkersReused serves two rounds of five requests held until all
// five are in their handlers: the second round runs on the five
// goroutines the first parked, and a clean past their idle time ends them.
func TestH2WorkersReused(t *testing.T) {
	const n = 5
	var in atomic.Int64
	gate := make(chan struct{})
	srv := &http.Server{Protocols: new(http.Protocols), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if in.Add(1) == n {
			close(gate)
		}
		<-gate
		io.WriteString(w, "ok")
	})}
	srv.Protocols.SetUnencryptedHTTP2(true)
	s := newH2Server(srv)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	hc := dialH2C(t, ln.Addr().String())
	idle := func() int {
		s.workers.mu.Lock()
		defer s.workers.mu.Unlock()
		return len(s.workers.idle)
	}
	waitIdle := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); idle() != want && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if got := idle(); got != want {
			t.Fatalf("%d workers parked, want %d", got, want)
		}
	}
	id := uint32(1)
	for round := range 2 {
		in.Store(0)
		if round > 0 {
			gate = make(chan struct{})
		}
		first := id
		for range n {
			hc.request(id, "/", true)
			id += 2
		}
		// The answers come in any order.
		hc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for ended := 0; ended < n; {
			f, err := hc.fr.ReadFrame()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if f.Header().StreamID >= first && f.Header().Flags.Has(http2.FlagDataEndStream) {
				ended++
			}
		}
		waitIdle(n) // a second round on new goroutines would leave 2n
	}
	g := runtime.NumGoroutine()
	s.workers.mu.Lock()
	for _, w := range s.workers.idle {
		w.parked = w.parked.Add(-workerIdle)
	}
	s.workers.mu.Unlock()
	s.workers.clean()
	waitIdle(0)
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > g-n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > g-n {
		t.Errorf("%d goroutines after the clean, want at most %d", got, g-n)
	}
}
