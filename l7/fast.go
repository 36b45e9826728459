package l7

// The fast HTTP/1.1 loop. Plain-text connections the event loop (loop.go)
// hands over continue here instead of in net/http: requests that the
// direct path can serve (no body, no upgrade, no Expect) are read and
// answered by this loop, which skips net/http's
// per-request background read, deadline resets, context and goroutine. The
// first request it cannot serve, or anything it does not understand (h2c
// preface, a body, a head larger than its buffer, a malformed head), makes
// it hand the connection, unread bytes included, to the listener's
// http.Server, which then owns the connection for the rest of its life and
// answers errors (400, 431) itself.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type fastConn struct {
	c    net.Conn
	busy atomic.Bool
}

var (
	fastReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	fastWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func (s *socket) track(fc *fastConn) bool {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.stopping.Load() {
		return false
	}
	s.fast[fc] = struct{}{}
	return true
}

func (s *socket) untrack(fc *fastConn) {
	s.fmu.Lock()
	delete(s.fast, fc)
	s.fmu.Unlock()
}

// stopFast closes idle connections of the loops and the fast loop; busy
// ones close after their current request.
func (s *socket) stopFast() {
	s.stopping.Store(true)
	for _, l := range s.p.loops {
		l.do(func() { l.stopSocket(s) })
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for fc := range s.fast {
		if !fc.busy.Load() {
			fc.c.Close()
		}
	}
}

// waitFast waits for the connections of the loops and the fast loop to
// finish, until ctx is done.
func (s *socket) waitFast(ctx context.Context) {
	for {
		s.fmu.Lock()
		n := len(s.fast) + int(s.loopConns.Load())
		s.fmu.Unlock()
		if n == 0 || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *socket) closeFast() {
	for _, l := range s.p.loops {
		l.call(func() { l.closeSocket(s) })
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	for fc := range s.fast {
		fc.c.Close()
	}
}

func (s *socket) serveFast(c net.Conn) {
	fc := &fastConn{c: c}
	if !s.track(fc) {
		c.Close()
		return
	}
	defer s.untrack(fc)
	br := fastReaders.Get().(*bufio.Reader)
	bw := fastWriters.Get().(*bufio.Writer)
	br.Reset(c)
	bw.Reset(c)
	defer func() {
		br.Reset(nil)
		bw.Reset(nil)
		fastReaders.Put(br)
		fastWriters.Put(bw)
	}()
	ctx := context.WithValue(s.p.hardCtx, http.LocalAddrContextKey, c.LocalAddr())
	remote := c.RemoteAddr().String()
	w := &fastWriter{bw: bw, h: http.Header{}}
	for {
		// busy is cleared before stopping is checked: stopFast either
		// sees the connection idle and closes it, or this check sees it.
		fc.busy.Store(false)
		if s.stopping.Load() {
			c.Close()
			return
		}
		params := s.gen.Load().params
		c.SetReadDeadline(time.Now().Add(params.idle))
		if _, err := br.Peek(1); err != nil {
			c.Close()
			return
		}
		fc.busy.Store(true)
		if s.stopping.Load() {
			c.Close()
			return
		}
		if !headBuffered(br) {
			c.SetReadDeadline(time.Now().Add(params.header))
		}
		head, bad, err := peekHead(br)
		if err != nil {
			// The header timeout (slowloris) or the client closed its
			// side: net/http answers what came if it is malformed.
			b, _ := br.Peek(br.Buffered())
			bad = endVerdict(b, errors.Is(err, io.EOF))
		}
		if bad != nil {
			c.SetWriteDeadline(time.Now().Add(params.idle))
			io.WriteString(c, bad.resp)
		}
		if err != nil || bad != nil {
			c.Close()
			return
		}
		if head == nil || len(head) > params.maxHeader || !eligibleHead(head) {
			// Not ours: net/http takes the connection, with what is
			// buffered, and its own timeouts and limits.
			buffered, _ := br.Peek(br.Buffered())
			s.handoff(&prefixConn{Conn: c, r: io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), c)})
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		req.RemoteAddr = remote
		req = req.WithContext(ctx)
		w.reset(req)
		if !s.serveOne(w, req) || bw.Flush() != nil || w.closeAfter || req.Close {
			c.Close()
			return
		}
	}
}

// serveOne runs the handler; false means the connection must be dropped
// (the member failed mid-response).
func (s *socket) serveOne(w *fastWriter, r *http.Request) (ok bool) {
	defer func() {
		if e := recover(); e != nil {
			if e != http.ErrAbortHandler {
				s.p.log.Error("l7 handler panic", "err", e)
			}
			ok = false
		}
	}()
	s.p.serve(s.table.Load(), w, r)
	w.finish()
	return true
}

// headBuffered reports whether the next request can be judged from what
// is buffered: a whole head, or one net/http would reject already.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	n, bad := checkRequest(b, false)
	return n > 0 || bad != nil
}

// peekHead reads ahead (without consuming) until checkRequest judges the
// next request: its whole head if valid, or net/http's answer to it.
// Neither means the head is larger than the buffer: net/http's to read.
func peekHead(br *bufio.Reader) ([]byte, *headError, error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if n, bad := checkRequest(b, false); n > 0 || bad != nil {
			return b[:n], bad, nil
		}
		if br.Buffered() >= br.Size() {
			return nil, nil, nil
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, nil, err
		}
	}
}

// eligibleHead checks a valid request head: an HTTP/1.x request line with
// a method other than CONNECT and PRI, and no header announcing a body,
// an upgrade or an expectation.
func eligibleHead(head []byte) bool {
	// net/http also ends lines at a bare LF; this pre-parse splits at CRLF
	// only, so a head with a bare LF (or CR) goes to net/http (found by
	// FuzzRequestHead: "0:\nContent-Length:1" hid a body).
	if !bytes.HasSuffix(head, crlf2) {
		return false
	}
	head = head[:len(head)-2]
	if n := bytes.Count(head, []byte("\r\n")); bytes.Count(head, []byte("\n")) != n || bytes.Count(head, []byte("\r")) != n {
		return false
	}
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return false
	}
	if !bytes.HasSuffix(line, []byte(" HTTP/1.1")) && !bytes.HasSuffix(line, []byte(" HTTP/1.0")) {
		return false
	}
	if bytes.HasPrefix(line, []byte("CONNECT ")) || bytes.HasPrefix(line, []byte("PRI ")) {
		return false
	}
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok || len(name) == 0 {
			return false // malformed: net/http answers 400
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if string(bytes.TrimSpace(value)) != "0" {
				return false
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")),
			bytes.EqualFold(name, []byte("Upgrade")),
			bytes.EqualFold(name, []byte("Expect")):
			return false
		}
	}
	return true
}

// prefixConn replays bytes the fast loop had buffered before handing the
// connection over.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// fastWriter is the fast loop's http.ResponseWriter: HTTP/1.1 framing
// (Content-Length when known, else chunked, or close-delimited for
// HTTP/1.0) onto the connection's buffered writer.
type fastWriter struct {
	bw          *bufio.Writer
	h           http.Header
	req         *http.Request
	status      int
	wroteHeader bool
	headWritten bool
	noBody      bool
	chunked     bool
	closeAfter  bool
	declared    int64 // Content-Length sent, or -1
	written     int64
}

var _ http.Flusher = (*fastWriter)(nil)

func (w *fastWriter) reset(r *http.Request) {
	clear(w.h)
	*w = fastWriter{bw: w.bw, h: w.h, req: r, declared: -1}
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 200 {
		// Interim responses are not relayed on this path.
		return
	}
	w.wroteHeader = true
	w.status = code
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		w.writeHead(false)
	}
	if w.noBody {
		return len(p), nil
	}
	w.written += int64(len(p))
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		var size [16]byte
		w.bw.Write(strconv.AppendInt(size[:0], int64(len(p)), 16))
		w.bw.WriteString("\r\n")
		n, err := w.bw.Write(p)
		w.bw.WriteString("\r\n")
		return n, err
	}
	return w.bw.Write(p)
}

func (w *fastWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		w.writeHead(false)
	}
	w.bw.Flush()
}

// dateCache holds the Date header value, renewed once a second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	unix  int64
	value string
}

func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.unix == sec {
		return d.value
	}
	d := &cachedDate{unix: sec, value: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.value
}

func (w *fastWriter) writeHead(empty bool) {
	w.headWritten = true
	bw, h, code := w.bw, w.h, w.status
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	bw.WriteString("HTTP/1.1 ")
	var num [8]byte
	bw.Write(strconv.AppendInt(num[:0], int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.declared = n
		}
	}
	delete(h, "Transfer-Encoding")
	delete(h, "Connection")
	switch {
	case w.declared >= 0 || w.noBody:
	case empty:
		w.declared = 0
		bw.WriteString("Content-Length: 0\r\n")
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		w.closeAfter = true
	}
	if w.declared < 0 && !w.noBody && !w.chunked && !empty {
		delete(h, "Content-Length")
	}
	keepAlive10 := !w.req.ProtoAtLeast(1, 1) && !w.req.Close &&
		httpHeaderHasToken(w.req.Header["Connection"], "keep-alive")
	switch {
	case w.closeAfter || w.req.Close || (!w.req.ProtoAtLeast(1, 1) && !keepAlive10):
		w.closeAfter = true
		bw.WriteString("Connection: close\r\n")
	case keepAlive10:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate(time.Now()))
		bw.WriteString("\r\n")
	}
	for k, vs := range h {
		if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// finish ends the response: the head if nothing was written, the last
// chunk and trailers if chunked.
func (w *fastWriter) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headWritten {
		w.writeHead(true)
	}
	if w.chunked {
		w.bw.WriteString("0\r\n")
		for k, vs := range w.h {
			if len(k) > len(http.TrailerPrefix) && k[:len(http.TrailerPrefix)] == http.TrailerPrefix {
				for _, v := range vs {
					w.bw.WriteString(k[len(http.TrailerPrefix):])
					w.bw.WriteString(": ")
					w.bw.WriteString(v)
					w.bw.WriteString("\r\n")
				}
			}
		}
		w.bw.WriteString("\r\n")
	}
	if w.declared >= 0 && !w.noBody && w.written != w.declared {
		// A short or long body breaks the framing: the client must not
		// read the next response from it.
		w.closeAfter = true
	}
}

func httpHeaderHasToken(vs []string, token string) bool {
	for _, v := range vs {
		for _, f := range bytes.Split([]byte(v), []byte(",")) {
			if bytes.EqualFold(bytes.TrimSpace(f), []byte(token)) {
				return true
			}
		}
	}
	return false
}
