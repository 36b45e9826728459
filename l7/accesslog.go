package l7

// Access logs: one JSON line per sampled request of a listener whose
// Listener.AccessLog is set, written to Options.AccessLog through a buffer
// flushed every second. A listener without one pays a nil check per
// request; a logged request formats its line into a pooled buffer (no
// allocation) and copies it into the shared buffer under a lock.

import (
	"bufio"
	"crypto/tls"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLogFlush is how often buffered lines are written out, at the
// latest.
const accessLogFlush = time.Second

// accessLogBuffer is the size of the shared buffer; a full one is written
// out at once.
const accessLogBuffer = 64 << 10

// accessLog is the destination of a Proxy's access log lines.
type accessLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	out  io.Writer
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
}

func newAccessLog(out io.Writer, log *slog.Logger) *accessLog {
	a := &accessLog{w: bufio.NewWriterSize(out, accessLogBuffer), out: out, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go a.flushEvery(accessLogFlush)
	return a
}

func (a *accessLog) flushEvery(d time.Duration) {
	defer close(a.done)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			a.flush()
			return
		case <-t.C:
			a.flush()
		}
	}
}

// write adds one line (with its newline) to the buffer.
func (a *accessLog) write(line []byte) {
	a.mu.Lock()
	a.w.Write(line) // a failed write is reported by the next flush
	a.mu.Unlock()
}

// flush writes out what is buffered. After a failed write the buffer is
// dropped and started afresh, so a destination that recovers (a full disk
// freed) gets lines again.
func (a *accessLog) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.w.Flush(); err != nil {
		a.log.Warn("l7 access log: lines lost", "err", err)
		a.w.Reset(a.out)
	}
}

// close writes out what is buffered and stops the flushes.
func (a *accessLog) close() {
	close(a.stop)
	<-a.done
}

// sampler decides which requests of a listener are logged.
type sampler struct {
	// threshold: a request is logged when a random uint64 is below it;
	// every request when all.
	threshold uint64
	all       bool
}

// newSampler logs the share rate (0..1) of requests; nil logs none.
func newSampler(rate float64) *sampler {
	switch {
	case !(rate > 0):
		return nil
	case rate >= 1:
		return &sampler{all: true}
	}
	return &sampler{threshold: uint64(rate * math.MaxUint64)}
}

func (s *sampler) sample() bool { return s.all || rand.Uint64() < s.threshold }

// linePool recycles the buffers lines are formatted in.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// logRequest writes the access log line of a finished request.
func (p *Proxy) logRequest(rs *reqState, r *http.Request, end time.Time, d time.Duration) {
	bp := linePool.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = end.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","listener":`...)
	b = appendJSONString(b, rs.t.name)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, rs.rt.name)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, r.RemoteAddr)
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, r.Proto)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, r.Host)
	b = append(b, `,"path":`...)
	path := ""
	if r.URL != nil {
		path = r.URL.Path
	}
	b = appendJSONString(b, path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(rs.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, rs.bytes+rs.cw.n, 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendFloat(b, d.Seconds(), 'f', -1, 64)
	b = append(b, `,"upstream":`...)
	upstream := ""
	if rs.member != nil {
		upstream = rs.member.hostport
	}
	b = appendJSONString(b, upstream)
	b = append(b, `,"upstream_time":`...)
	b = strconv.AppendFloat(b, rs.upstreamTime.Seconds(), 'f', -1, 64)
	b = append(b, `,"tls_version":`...)
	version, resumed := "", false
	if r.TLS != nil {
		version, resumed = tls.VersionName(r.TLS.Version), r.TLS.DidResume
	}
	b = appendJSONString(b, version)
	b = append(b, `,"tls_resumed":`...)
	b = strconv.AppendBool(b, resumed)
	b = append(b, "}\n"...)
	p.access.write(b)
	*bp = b
	linePool.Put(bp)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json does (without its HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// countingWriter counts the body bytes of a logged request on the paths
// that write through an http.ResponseWriter. Unwrap lets
// http.ResponseController (flushes, the hijack of an upgrade) reach the
// writer underneath.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

var _ http.Flusher = (*countingWriter)(nil)
