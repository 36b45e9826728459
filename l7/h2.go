package l7

// Weft's HTTP/2 server (RFC 9113), for the h2 and h2c listeners.
//
// One goroutine per connection reads frames with x/net's Framer, which
// checks their syntax and decodes HPACK, and keeps the connection's
// state. Each request runs the proxy's handler in a goroutine of its own,
// which writes its response's frames itself, under the connection's write
// lock, into a batchConn: a burst of frames leaves in one write. Nothing
// is handed between goroutines per frame. (x/net's server passes each
// frame a handler writes through its serve loop, and writes each
// response's HEADERS from a goroutine started for it.)
//
// Locks: wmu (the Framer's write side and the HPACK encoder) is taken
// before mu (the connection's and its streams' state), never after, so a
// stream's reset and its DATA leave in the order they were decided.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// h2MaxFrame is the SETTINGS_MAX_FRAME_SIZE the server advertises:
	// the protocol's initial value.
	h2MaxFrame = 16384
	// h2TableSize is the HPACK dynamic table size the server decodes
	// with, the protocol's initial value.
	h2TableSize = 4096
	// h2MaxStreams is the SETTINGS_MAX_CONCURRENT_STREAMS advertised; a
	// stream past it is refused. It also bounds the handlers a
	// connection runs, reset streams' included, so a client resetting
	// streams as it opens them (CVE-2023-44487) cannot start more.
	h2MaxStreams = 250
	// h2StreamWindow and h2ConnWindow are the receive windows the server
	// gives a stream and the connection: what a client may send ahead of
	// the handlers' reads, so what a connection buffers at most.
	h2StreamWindow = 1 << 20
	h2ConnWindow   = 1 << 20
	// h2Refresh is the least window credit a WINDOW_UPDATE gives back.
	h2Refresh = 16 << 10
	// h2PrefaceTimeout bounds the wait for a client's preface and first
	// SETTINGS frame.
	h2PrefaceTimeout = 10 * time.Second
	// h2GoAwayGrace is how long a connection that sent GOAWAY reads on
	// (and discards) before it closes, so that the client reads the
	// GOAWAY before a reset could take it.
	h2GoAwayGrace = time.Second
	// h2Pending is the most of a response body's end that a stream
	// holds back, so that its DATA frame carries END_STREAM.
	h2Pending = 16 << 10
	// h2MaxWindow is the largest flow-control window (RFC 9113 6.9.1).
	h2MaxWindow = 1<<31 - 1
)

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var (
	errStreamClosed = errors.New("http2: stream closed")
	errBodyClosed   = errors.New("http2: request body closed by handler")
)

// h2Server is the HTTP/2 side of one http.Server: its connections, which
// its Shutdown asks to go away.
type h2Server struct {
	hs      *http.Server
	workers workerPool // the goroutines its streams' handlers run on
	mu      sync.Mutex
	conns   map[*h2Conn]struct{}
	shut    bool
}

// configureHTTP2 makes srv serve HTTP/2 (h2 by ALPN and h2c by prior
// knowledge, as its Protocols say) with an h2Server.
func configureHTTP2(srv *http.Server) error {
	newH2Server(srv)
	return nil
}

// newH2Server is configureHTTP2's server, for tests to look into.
func newH2Server(srv *http.Server) *h2Server {
	s := &h2Server{hs: srv, conns: map[*h2Conn]struct{}{}}
	srv.RegisterOnShutdown(s.shutdown)
	if srv.TLSNextProto == nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	srv.TLSNextProto["h2"] = func(_ *http.Server, c *tls.Conn, h http.Handler) {
		cs := c.ConnectionState()
		// Above the TLS connection, so a burst is one record.
		s.serve(c, h, false, &cs)
	}
	// net/http hands an h2c connection whose preface it has read over as
	// a *tls.Conn around a net.Conn with an UnencryptedNetConn method.
	srv.TLSNextProto["unencrypted_http2"] = func(_ *http.Server, c *tls.Conn, h http.Handler) {
		u, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			c.Close()
			return
		}
		s.serve(u.UnencryptedNetConn(), h, true, nil)
	}
	return s
}

// shutdown sends every connection a GOAWAY: each closes once its streams
// are done, which http.Server.Shutdown waits for.
func (s *h2Server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shut = true
	for c := range s.conns {
		go c.goAway(http2.ErrCodeNo)
	}
}

func (s *h2Server) serve(nc net.Conn, h http.Handler, sawPreface bool, cs *tls.ConnectionState) {
	// net/http passes its per-connection base context through an
	// unadvertised method of h, as in x/net's own TLSNextProto.
	ctx := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		ctx = bc.BaseContext()
	}
	maxHeader := s.hs.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	c := &h2Conn{
		s: s, h: h, nc: nc, bc: newBatchConn(nc, s.hs.IdleTimeout), ctx: ctx, tls: cs,
		remote:    nc.RemoteAddr().String(),
		maxHeader: uint32(maxHeader) + 32*10, // RFC 7541 4.1's 32 per field, for ten
		streams:   map[uint32]*h2Stream{},
		sendWin:   65535, peerWin: 65535, peerFrame: 16384,
		recvWin: h2ConnWindow, unacked: 1,
		canon: map[string]string{},
	}
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(c.bc, nc)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(h2MaxFrame)
	c.fr.MaxHeaderListSize = c.maxHeader
	c.fr.ReadMetaHeaders = hpack.NewDecoder(h2TableSize, nil)

	c.run(sawPreface)
}

// track adds c to the connections a shutdown reaches; false when the
// server is shutting down already.
func (s *h2Server) track(c *h2Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *h2Server) untrack(c *h2Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// h2Conn is one client connection.
type h2Conn struct {
	s      *h2Server
	h      http.Handler
	nc     net.Conn // reads; SetReadDeadline
	bc     *batchConn
	fr     *http2.Framer
	ctx    context.Context
	tls    *tls.ConnectionState // nil for h2c
	remote string
	// maxHeader is SETTINGS_MAX_HEADER_LIST_SIZE: a longer header list
	// gets a 431.
	maxHeader uint32
	// canon caches the canonical forms of header names outside
	// commonCanonical; the reader's only.
	canon map[string]string

	wmu  sync.Mutex
	hbuf bytes.Buffer
	henc *hpack.Encoder

	mu        sync.Mutex
	streams   map[uint32]*h2Stream // open and half-closed streams
	maxID     uint32               // the highest stream id the client used
	handlers  int                  // handler goroutines running
	sendWin   int64                // the connection's send window
	peerWin   int64                // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame int                  // the client's SETTINGS_MAX_FRAME_SIZE
	recvWin   int64                // what the client may still send
	recvDebt  int                  // bytes taken from recvWin not yet given back
	unacked   int                  // our SETTINGS frames not yet acknowledged
	// goingAway is set once a GOAWAY is sent: streams past maxID are
	// ignored, and the connection closes when none is left.
	goingAway bool
	closed    bool // the reader stopped: writers give up
}

// h2Stream is one request: its state, its body as the handler reads it,
// and the handler's http.ResponseWriter.
type h2Stream struct {
	c      *h2Conn
	id     uint32
	cancel context.CancelFunc
	cond   sync.Cond // on c.mu: body data, window, reset

	// Under c.mu.
	sendWin    int64 // the stream's send window
	recvWin    int64 // what the client may still send on it
	recvDebt   int   // bytes read from it not yet given back
	remoteDone bool  // END_STREAM received
	reset      bool  // RST_STREAM sent or received
	declLen    int64 // the request's Content-Length, -1 if none
	gotLen     int64
	body       h2Body
	reqTrailer http.Header // Request.Trailer: the declared trailers
	trailerIn  http.Header // the declared trailers received, for Read to copy at io.EOF
	gotTrailer bool

	// The handler's: its response.
	header        http.Header
	status        int
	wroteHeader   bool
	headSent      bool
	ended         bool // END_STREAM sent
	head          bool
	bodyOK        bool
	needsContinue bool
	trailers      []string // names declared in the response's Trailer
	respLen       int64    // the response's Content-Length, -1 if none
	written       int64    // body bytes the handler wrote
	pending       *[]byte  // the body's last bytes, held back; from h2Bufs
}

// h2Bufs holds streams' pending buffers between responses.
var h2Bufs = sync.Pool{New: func() any { b := make([]byte, 0, h2Pending); return &b }}

// run reads and processes the connection's frames until it ends, then
// closes it.
func (c *h2Conn) run(sawPreface bool) {
	defer c.close()
	c.nc.SetReadDeadline(time.Now().Add(c.prefaceTimeout()))
	if !sawPreface {
		var p [len(h2Preface)]byte
		if _, err := io.ReadFull(c.nc, p[:]); err != nil || string(p[:]) != h2Preface {
			return
		}
	}
	c.wmu.Lock()
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: h2MaxFrame},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: h2MaxStreams},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.maxHeader},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
	)
	c.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	c.wmu.Unlock()
	// Tracked once its SETTINGS are out, so a shutdown's GOAWAY comes
	// after them.
	if c.s.track(c) {
		defer c.s.untrack(c)
	} else {
		c.goAway(http2.ErrCodeNo)
	}
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &se):
				c.noteStream(se.StreamID)
				c.resetStream(se.StreamID, se.Code)
				continue
			case errors.As(err, &ce):
				c.fail(http2.ErrCode(ce))
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.fail(http2.ErrCodeFrameSize)
			case deadlineHit(err) && !c.draining():
				// Idle with no stream, or shutting down and done.
				c.goAway(http2.ErrCodeNo)
				continue
			default:
				return
			}
			c.drain()
			return
		}
		if first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.fail(http2.ErrCodeProtocol)
				c.drain()
				return
			}
			first = false
			c.mu.Lock()
			c.idleLocked()
			c.mu.Unlock()
		}
		if err := c.process(f); err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			c.fail(http2.ErrCode(err.(http2.ConnectionError)))
			c.drain()
			return
		}
	}
}

func (c *h2Conn) prefaceTimeout() time.Duration {
	if t := c.s.hs.ReadHeaderTimeout; t > 0 && t < h2PrefaceTimeout {
		return t
	}
	return h2PrefaceTimeout
}

// deadlineHit reports a read that the connection's deadline ended.
func deadlineHit(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// draining reports whether the connection only waits out its GOAWAY.
func (c *h2Conn) draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goingAway && len(c.streams) == 0
}

// drain reads and discards the client's frames for h2GoAwayGrace after a
// GOAWAY, so the client reads it before the connection closes.
func (c *h2Conn) drain() {
	c.nc.SetReadDeadline(time.Now().Add(h2GoAwayGrace))
	io.Copy(io.Discard, c.nc)
}

// close ends the connection: streams still running are cancelled and
// their writes fail.
func (c *h2Conn) close() {
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		st.body.fail(errStreamClosed)
		st.cancel()
		st.cond.Broadcast()
	}
	c.mu.Unlock()
	c.bc.closeWait()
}

// fail sends the GOAWAY of a connection error.
func (c *h2Conn) fail(code http2.ErrCode) {
	c.wmu.Lock()
	c.mu.Lock()
	c.goingAway = true
	last := c.maxID
	c.mu.Unlock()
	c.fr.WriteGoAway(last, code, nil)
	c.wmu.Unlock()
}

// goAway starts a graceful close: a GOAWAY naming the last stream taken,
// then the connection closes when its streams are done.
func (c *h2Conn) goAway(code http2.ErrCode) {
	c.wmu.Lock()
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		c.wmu.Unlock()
		return
	}
	c.goingAway = true
	last := c.maxID
	c.idleLocked()
	c.mu.Unlock()
	c.fr.WriteGoAway(last, code, nil)
	c.wmu.Unlock()
}

// idleLocked sets the read deadline of a connection without streams: the
// server's idle timeout, or the GOAWAY grace when going away. With
// streams open, reads wait as long as they take.
func (c *h2Conn) idleLocked() {
	switch {
	case len(c.streams) > 0:
		c.nc.SetReadDeadline(time.Time{})
	case c.goingAway:
		c.nc.SetReadDeadline(time.Now().Add(h2GoAwayGrace))
	case c.s.hs.IdleTimeout > 0:
		c.nc.SetReadDeadline(time.Now().Add(c.s.hs.IdleTimeout))
	default:
		c.nc.SetReadDeadline(time.Time{})
	}
}

// noteStream records a client stream id the Framer rejected the HEADERS
// of: the stream is closed, not idle, from then on.
func (c *h2Conn) noteStream(id uint32) {
	c.mu.Lock()
	if id%2 == 1 && id > c.maxID {
		c.maxID = id
	}
	c.mu.Unlock()
}

func (c *h2Conn) process(f http2.Frame) error {
	c.mu.Lock()
	ignore := c.goingAway && f.Header().StreamID > c.maxID
	c.mu.Unlock()
	if ignore {
		// A stream the GOAWAY did not take; its DATA still counts
		// against the connection's window.
		if d, ok := f.(*http2.DataFrame); ok {
			return c.discard(d.Length)
		}
		return nil
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.wmu.Lock()
		c.fr.WritePing(true, f.Data)
		c.wmu.Unlock()
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	case *http2.GoAwayFrame:
		c.goAway(http2.ErrCodeNo)
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (c *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.unacked--; c.unacked < 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	if f.NumSettings() > 100 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// Settings named twice are processed in order (RFC 9113 6.5.3).
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
			c.wmu.Unlock()
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			defer c.mu.Unlock()
			delta := int64(s.Val) - c.peerWin
			c.peerWin = int64(s.Val)
			for _, st := range c.streams {
				if st.sendWin += delta; st.sendWin > h2MaxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				st.cond.Broadcast()
			}
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerFrame = int(s.Val)
			c.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.fr.WriteSettingsAck()
	c.wmu.Unlock()
	return nil
}

func (c *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.sendWin += inc; c.sendWin > h2MaxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		for _, st := range c.streams {
			st.cond.Broadcast()
		}
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.maxID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle
		}
		return nil // closed: allowed (RFC 9113 5.1)
	}
	if st.sendWin += inc; st.sendWin > h2MaxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	st.cond.Broadcast()
	return nil
}

func (c *h2Conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	st := c.streams[f.StreamID]
	if st == nil {
		idle := f.StreamID > c.maxID
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.reset = true
	c.closeLocked(st, errStreamClosed)
	c.mu.Unlock()
	c.refund(nil, 0)
	return nil
}

// resetStream sends RST_STREAM for a stream and closes it.
func (c *h2Conn) resetStream(id uint32, code http2.ErrCode) {
	c.wmu.Lock()
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		st.reset = true
		c.closeLocked(st, errStreamClosed)
	}
	c.mu.Unlock()
	c.fr.WriteRSTStream(id, code)
	c.wmu.Unlock()
	c.refund(nil, 0)
}

// closeLocked removes a stream: its handler's body reads and writes fail
// and its context is cancelled. What its body held back is given back to
// the connection's window.
func (c *h2Conn) closeLocked(st *h2Stream, err error) {
	if c.streams[st.id] != st {
		return
	}
	delete(c.streams, st.id)
	c.recvDebt += st.body.fail(err)
	st.cancel()
	st.cond.Broadcast()
	if len(c.streams) == 0 {
		c.idleLocked()
	}
}

// discard takes n bytes of DATA nobody reads from the connection's window
// and gives them back.
func (c *h2Conn) discard(n uint32) error {
	c.mu.Lock()
	if int64(n) > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= int64(n)
	c.recvDebt += int(n)
	c.mu.Unlock()
	c.refund(nil, 0)
	return nil
}

// refund adds n bytes to st's debt (st may be nil) and sends the
// WINDOW_UPDATEs due: the connection's and the stream's once their debts
// reach h2Refresh. A debt below it never stalls a client: the windows are
// far larger.
func (c *h2Conn) refund(st *h2Stream, n int) {
	c.mu.Lock()
	conn := 0
	if c.recvDebt >= h2Refresh {
		conn = c.recvDebt
		c.recvDebt = 0
		c.recvWin += int64(conn)
	}
	if st != nil {
		st.recvDebt += n
		n = 0
		if st.recvDebt >= h2Refresh && !st.reset && !st.remoteDone {
			n = st.recvDebt
			st.recvDebt = 0
			st.recvWin += int64(n)
		}
	}
	c.mu.Unlock()
	if conn == 0 && n == 0 {
		return
	}
	c.wmu.Lock()
	if conn > 0 {
		c.fr.WriteWindowUpdate(0, uint32(conn))
	}
	if n > 0 {
		c.fr.WriteWindowUpdate(st.id, uint32(n))
	}
	c.wmu.Unlock()
}

func (c *h2Conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	c.mu.Lock()
	st := c.streams[id]
	if st == nil || st.remoteDone {
		idle := st == nil && id > c.maxID
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if err := c.discard(f.Length); err != nil {
			return err
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	n := int64(f.Length)
	if n > c.recvWin {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	if n > st.recvWin {
		c.mu.Unlock()
		if err := c.discard(f.Length); err != nil {
			return err
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	c.recvWin -= n
	st.recvWin -= n
	data := f.Data()
	st.gotLen += int64(len(data))
	if st.declLen >= 0 && st.gotLen > st.declLen {
		// More than its Content-Length: malformed (RFC 9113 8.1.1).
		c.recvDebt += int(n)
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	// Padding is never read: give it back now. Data the handler will not
	// read goes back to the connection's window; the stream ends anyway.
	pad := int(n) - len(data)
	if st.body.closed {
		c.recvDebt += int(n)
		pad = 0
	} else {
		st.body.buf = append(st.body.buf, data...)
		c.recvDebt += pad
		st.cond.Broadcast()
	}
	var err error
	if f.StreamEnded() {
		err = c.endRemoteLocked(st)
	}
	c.mu.Unlock()
	c.refund(st, pad)
	return err
}

// endRemoteLocked ends a stream's request: its body reads io.EOF after
// what it holds, unless its length is not what its Content-Length said.
func (c *h2Conn) endRemoteLocked(st *h2Stream) error {
	st.remoteDone = true
	if st.declLen >= 0 && st.gotLen != st.declLen {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	if st.body.err == nil {
		st.body.err = io.EOF
	}
	st.cond.Broadcast()
	return nil
}

// connHeaders are the connection-specific fields an HTTP/2 message must
// not carry (RFC 9113 8.2.2), by lower-case name.
var connHeaders = map[string]bool{"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true}

func (c *h2Conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 != 1 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		defer c.mu.Unlock()
		return c.trailersLocked(st, f)
	}
	if id <= c.maxID {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.maxID = id
	var refused bool
	switch {
	case len(c.streams) >= h2MaxStreams && c.unacked == 0:
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	case len(c.streams) >= h2MaxStreams || c.handlers >= h2MaxStreams:
		refused = true
	}
	c.mu.Unlock()
	if refused {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	st, r, err := c.newStream(f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		st.cancel()
		return nil
	}
	st.sendWin = c.peerWin
	c.streams[id] = st
	c.handlers++
	if len(c.streams) == 1 {
		c.idleLocked()
	}
	c.mu.Unlock()
	c.s.workers.run(h2Job{c: c, st: st, r: r, truncated: f.Truncated})
	return nil
}

// trailersLocked takes a HEADERS frame on an open stream: the request's
// trailers, which must end it.
func (c *h2Conn) trailersLocked(st *h2Stream, f *http2.MetaHeadersFrame) error {
	switch {
	case st.remoteDone:
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeStreamClosed}
	case st.gotTrailer:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case !f.StreamEnded() || len(f.PseudoFields()) > 0:
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	st.gotTrailer = true
	for _, hf := range f.RegularFields() {
		k := c.canonical(hf.Name)
		if !httpguts.ValidTrailerHeader(k) {
			return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
		}
		if _, ok := st.reqTrailer[k]; ok {
			if st.trailerIn == nil {
				st.trailerIn = http.Header{}
			}
			st.trailerIn[k] = append(st.trailerIn[k], hf.Value)
		}
	}
	return c.endRemoteLocked(st)
}

// newStream makes a stream and its request from a HEADERS frame that
// opens one. A malformed request is a stream error of type
// PROTOCOL_ERROR (RFC 9113 8.1.1).
func (c *h2Conn) newStream(f *http2.MetaHeadersFrame) (*h2Stream, *http.Request, error) {
	bad := http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
	var method, scheme, authority, path string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		default: // :protocol (no extended CONNECT here) and :status
			return nil, nil, bad
		}
	}
	connect := method == "CONNECT"
	switch {
	case connect && (path != "" || scheme != "" || authority == ""):
		return nil, nil, bad
	case !connect && (method == "" || path == "" || (scheme != "https" && scheme != "http")):
		return nil, nil, bad
	}
	fields := f.RegularFields()
	header := make(http.Header, len(fields))
	// One array holds every field's value; a name seen twice appends
	// past its cap and so copies.
	vals := make([]string, len(fields))
	var cookies []string
	for i, hf := range fields {
		if connHeaders[hf.Name] || hf.Name == "te" && hf.Value != "trailers" {
			return nil, nil, bad
		}
		if hf.Name == "cookie" {
			// Cookie fields may come split (RFC 9113 8.2.3); an
			// HTTP/1.1 member takes one.
			cookies = append(cookies, hf.Value)
			continue
		}
		k := c.canonical(hf.Name)
		if prior, ok := header[k]; ok {
			header[k] = append(prior, hf.Value)
			continue
		}
		vals[i] = hf.Value
		header[k] = vals[i : i+1 : i+1]
	}
	if len(cookies) > 0 {
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	// As net/http's HTTP/1 server does, the Host field moves to
	// Request.Host (:authority comes first).
	if authority == "" {
		authority = header.Get("Host")
	}
	delete(header, "Host")
	r := &http.Request{
		Method: method, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: header, Host: authority, RemoteAddr: c.remote, RequestURI: path,
	}
	if scheme == "https" {
		r.TLS = c.tls
	}
	if connect {
		r.URL = &url.URL{Host: authority}
		r.RequestURI = authority
	} else {
		u, err := url.ParseRequestURI(path)
		if err != nil {
			return nil, nil, bad
		}
		r.URL = u
	}
	st := &h2Stream{c: c, id: f.StreamID, recvWin: h2StreamWindow, declLen: -1, header: make(http.Header),
		head: method == http.MethodHead}
	st.cond.L = &c.mu
	st.body.st = st
	if vs := header["Content-Length"]; len(vs) > 0 {
		n, err := strconv.ParseUint(vs[0], 10, 63)
		if err != nil || len(vs) > 1 && slicesDiffer(vs) {
			return nil, nil, bad
		}
		st.declLen = int64(n)
	}
	if f.StreamEnded() {
		if st.declLen > 0 {
			return nil, nil, bad
		}
		st.remoteDone = true
		st.body.err = io.EOF
		r.Body = http.NoBody
	} else {
		r.ContentLength = st.declLen
		r.Body = &st.body
		st.needsContinue = httpguts.HeaderValuesContainsToken(header["Expect"], "100-continue")
		for _, v := range header["Trailer"] {
			for _, k := range strings.Split(v, ",") {
				if k = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(k)); httpguts.ValidTrailerHeader(k) {
					if st.reqTrailer == nil {
						st.reqTrailer = http.Header{}
					}
					st.reqTrailer[k] = nil
				}
			}
		}
		r.Trailer = st.reqTrailer
	}
	ctx, cancel := context.WithCancel(c.ctx)
	st.cancel = cancel
	return st, r.WithContext(ctx), nil
}

// slicesDiffer reports whether vs holds two different values.
func slicesDiffer(vs []string) bool {
	for _, v := range vs[1:] {
		if v != vs[0] {
			return true
		}
	}
	return false
}

// canonical is the canonical form of a lower-case header name.
func (c *h2Conn) canonical(name string) string {
	if k, ok := commonCanonical[name]; ok {
		return k
	}
	if k, ok := c.canon[name]; ok {
		return k
	}
	k := textproto.CanonicalMIMEHeaderKey(name)
	if len(c.canon) < 64 {
		c.canon[name] = k
	}
	return k
}

// commonCanonical and commonLower map common header names between their
// HTTP/2 (lower-case) and canonical forms, so that neither allocates.
var commonCanonical, commonLower = func() (map[string]string, map[string]string) {
	names := []string{"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Age", "Access-Control-Allow-Origin", "Allow", "Alt-Svc", "Authorization", "Cache-Control",
		"Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag", "Expect",
		"Expires", "From", "Grpc-Encoding", "Grpc-Accept-Encoding", "Grpc-Message", "Grpc-Status",
		"Grpc-Timeout", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin",
		"Priority", "Proxy-Authenticate", "Proxy-Authorization", "Range", "Referer", "Refresh",
		"Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Te", "Trailer",
		"User-Agent", "Vary", "Via", "Www-Authenticate", "X-Forwarded-For", "X-Forwarded-Host",
		"X-Forwarded-Proto", "X-Request-Id"}
	canon, lower := map[string]string{}, map[string]string{}
	for _, k := range names {
		canon[strings.ToLower(k)] = k
		lower[k] = strings.ToLower(k)
	}
	return canon, lower
}()

// lowerName is a header name as HTTP/2 sends it.
func lowerName(k string) string {
	if l, ok := commonLower[k]; ok {
		return l
	}
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// runHandler serves a stream's request and ends its response.
func (c *h2Conn) runHandler(st *h2Stream, r *http.Request, truncated bool) {
	defer c.handlerDone(st)
	defer func() {
		if e := recover(); e != nil {
			if e != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				if l := c.s.hs.ErrorLog; l != nil {
					l.Printf("http2: panic serving %s: %v\n%s", c.remote, e, buf)
				}
			}
			c.resetStream(st.id, http2.ErrCodeInternal)
		}
	}()
	if truncated {
		http.Error(st, "request header fields too large", http.StatusRequestHeaderFieldsTooLarge)
	} else {
		c.h.ServeHTTP(st, r)
	}
	st.finish()
}

// handlerDone accounts for a finished handler; a stream the client still
// sends on is reset with NO_ERROR (RFC 9113 8.1), its response complete.
func (c *h2Conn) handlerDone(st *h2Stream) {
	if st.pending != nil {
		*st.pending = (*st.pending)[:0]
		h2Bufs.Put(st.pending)
		st.pending = nil
	}
	c.mu.Lock()
	c.handlers--
	open := c.streams[st.id] == st
	resetOpen := open && !st.remoteDone
	if open && !resetOpen {
		c.closeLocked(st, errStreamClosed)
	}
	c.mu.Unlock()
	if resetOpen {
		c.resetStream(st.id, http2.ErrCodeNo)
	} else {
		c.refund(nil, 0)
	}
	st.cancel()
}

// h2Body is a request's body as its handler reads it.
type h2Body struct {
	st *h2Stream
	// Under c.mu.
	buf    []byte // received, not yet read
	off    int    // buf[off:] is unread
	err    error  // what Read returns once buf is read: io.EOF or why not
	closed bool   // the handler closed it
}

func (b *h2Body) Read(p []byte) (int, error) {
	st := b.st
	c := st.c
	if st.needsContinue {
		// Read may run in another goroutine than the handler (a
		// transport's), so the 100 carries no field of the handler's.
		st.needsContinue = false
		st.writeHead(http.StatusContinue, nil, false)
	}
	c.mu.Lock()
	for b.off == len(b.buf) && b.err == nil {
		st.cond.Wait()
	}
	if b.off == len(b.buf) {
		err := b.err
		if err == io.EOF && st.trailerIn != nil {
			// In the reading goroutine: Request.Trailer is read after
			// io.EOF, and the handler's before the body is.
			for k, vs := range st.trailerIn {
				st.reqTrailer[k] = vs
			}
			st.trailerIn = nil
		}
		c.mu.Unlock()
		return 0, err
	}
	n := copy(p, b.buf[b.off:])
	if b.off += n; b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	c.recvDebt += n
	c.mu.Unlock()
	c.refund(st, n)
	return n, nil
}

func (b *h2Body) Close() error {
	c := b.st.c
	c.mu.Lock()
	b.closed = true
	c.recvDebt += b.fail(errBodyClosed)
	c.mu.Unlock()
	c.refund(nil, 0)
	return nil
}

// fail ends the body with err unless it has ended, drops what it holds
// and returns how many bytes that was. Under c.mu.
func (b *h2Body) fail(err error) int {
	n := len(b.buf) - b.off
	b.buf, b.off = nil, 0
	if b.err == nil || b.err == io.EOF && n > 0 {
		b.err = err
	}
	return n
}

// The stream is its handler's http.ResponseWriter.

func (st *h2Stream) Header() http.Header { return st.header }

func (st *h2Stream) WriteHeader(code int) {
	if st.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		st.writeHead(code, st.header, false) // 1xx: interim, more follow
		return
	}
	st.wroteHeader = true
	st.status = code
	st.bodyOK = !st.head && bodyAllowed(code)
	st.respLen = -1
	if v := st.header["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			st.respLen = n
		}
	}
	for _, v := range st.header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				st.trailers = append(st.trailers, http.CanonicalHeaderKey(k))
			}
		}
	}
}

// sendHead sends the response head once, with END_STREAM when end is
// set. It waits for the body's first bytes, or the handler's end, so that
// a response without a body (gRPC's Trailers-Only) is one HEADERS frame
// that ends the stream.
func (st *h2Stream) sendHead(end bool) {
	if !st.headSent {
		st.headSent = true
		st.writeHead(st.status, st.header, end)
	}
}

// bodyAllowed reports whether a status may carry a body (RFC 9110 6.4.1).
func bodyAllowed(code int) bool {
	return code != http.StatusNoContent && code != http.StatusNotModified
}

func (st *h2Stream) Write(p []byte) (int, error) {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if !st.bodyOK {
		if st.head {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if st.ended {
		return 0, errStreamClosed
	}
	st.written += int64(len(p))
	if st.written == st.respLen && len(p) <= h2Pending && st.pending == nil {
		// The body's last bytes, as its Content-Length says: held for
		// finish, so that their DATA frame ends the stream. Nothing
		// else is held: a handler may wait after any other write.
		st.pending = h2Bufs.Get().(*[]byte)
		*st.pending = append(*st.pending, p...)
		return len(p), nil
	}
	if err := st.flushPending(false); err != nil {
		return 0, err
	}
	if err := st.c.writeData(st, p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (st *h2Stream) Flush() { st.FlushError() }

// FlushError sends the response head and what the body holds back; the
// connection's batchConn writes them soon after.
func (st *h2Stream) FlushError() error {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.ended {
		return nil
	}
	return st.flushPending(false)
}

func (st *h2Stream) flushPending(end bool) error {
	var p []byte
	if st.pending != nil {
		p = *st.pending
		*st.pending = p[:0]
	}
	if !st.headSent {
		st.sendHead(end && len(p) == 0)
		if st.ended {
			return nil
		}
	}
	if len(p) == 0 && !end {
		return nil
	}
	return st.c.writeData(st, p, end)
}

// finish ends the response of a handler that returned: the head if it
// is not sent, what the body holds back, and the trailers.
func (st *h2Stream) finish() {
	if !st.wroteHeader {
		st.WriteHeader(http.StatusOK)
	}
	if st.ended {
		return
	}
	tr := st.trailerFields()
	if len(tr) == 0 {
		st.flushPending(true)
		return
	}
	if st.flushPending(false) == nil {
		st.writeHead(0, tr, true)
	}
}

// trailerFields are the response's trailers: the declared names' values
// and the fields named with http.TrailerPrefix.
func (st *h2Stream) trailerFields() http.Header {
	var tr http.Header
	for _, k := range st.trailers {
		if vs, ok := st.header[k]; ok {
			if tr == nil {
				tr = http.Header{}
			}
			tr[k] = vs
		}
	}
	for k, vs := range st.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			if tr == nil {
				tr = http.Header{}
			}
			tr[http.CanonicalHeaderKey(name)] = vs
		}
	}
	return tr
}

// statusText holds :status values, so that none allocates.
var statusText = func() (s [1000]string) {
	for i := 100; i < len(s); i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// writeHead sends a header block on st: a response head with :status
// code (and a Date when h has none), or trailers when code is 0.
func (st *h2Stream) writeHead(code int, h http.Header, end bool) {
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	gone := st.reset || c.closed
	frameMax := c.peerFrame
	c.mu.Unlock()
	if gone {
		return
	}
	c.hbuf.Reset()
	if code != 0 {
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText[code]})
		if _, ok := h["Date"]; !ok && code >= 200 {
			c.henc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate(time.Now())})
		}
	}
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || code != 0 && slices.Contains(st.trailers, k) {
			continue
		}
		name := lowerName(k)
		if connHeaders[name] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			if name == "te" && v != "trailers" || !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
		}
	}
	block := c.hbuf.Bytes()
	frag := block[:min(len(block), frameMax)]
	block = block[len(frag):]
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: frag,
		EndStream: end, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		frag = block[:min(len(block), frameMax)]
		block = block[len(frag):]
		c.fr.WriteContinuation(st.id, len(block) == 0, frag)
	}
	if end {
		st.ended = true
	}
}

// writeData sends p as DATA frames on st as its window and the
// connection's allow, the last with END_STREAM when end is set.
func (c *h2Conn) writeData(st *h2Stream, p []byte, end bool) error {
	for {
		c.mu.Lock()
		for len(p) > 0 && !st.reset && !c.closed && (st.sendWin <= 0 || c.sendWin <= 0) {
			st.cond.Wait()
		}
		c.mu.Unlock()
		c.wmu.Lock()
		c.mu.Lock()
		if st.reset || c.closed {
			c.mu.Unlock()
			c.wmu.Unlock()
			return errStreamClosed
		}
		n := min(int64(len(p)), st.sendWin, c.sendWin, int64(c.peerFrame))
		if n < 0 {
			n = 0 // a window the client's SETTINGS made negative
		}
		if n == 0 && len(p) > 0 {
			c.mu.Unlock()
			c.wmu.Unlock()
			continue // the window shrank between the two locks
		}
		st.sendWin -= n
		c.sendWin -= n
		c.mu.Unlock()
		last := end && int(n) == len(p)
		err := c.fr.WriteData(st.id, last, p[:n])
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		if last {
			st.ended = true
		}
		if p = p[n:]; len(p) == 0 {
			return nil
		}
	}
}

var (
	_ http.ResponseWriter = (*h2Stream)(nil)
	_ http.Flusher        = (*h2Stream)(nil)
)
