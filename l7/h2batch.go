package l7

// batchConn, under x/net's HTTP/2 server: the writes of a burst of
// frames leave in one system call.

import (
	"net"
	"runtime"
	"sync"
	"time"
)

const (
	// batchLimit bounds the bytes a batchConn holds that its flusher has
	// not taken: a Write past it waits for the flusher, so a client that
	// does not read holds back the server's writes as a plain connection
	// would. With the buffer the flusher writes, a busy connection holds
	// at most twice this.
	batchLimit = 64 << 10
	// batchCloseGrace bounds how long the bytes held at Close may take to
	// leave before the connection is closed without them.
	batchCloseGrace = time.Second
)

// batchBufs holds the buffers of batchConns between bursts, so an idle
// connection holds none.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchLimit); return &b }}

// batchConn buffers what is written to it and writes it to Conn from a
// flusher goroutine, started by the first Write of a burst, which yields
// once (runtime.Gosched) before taking the buffer. x/net's server flushes
// its bufio writer whenever its write queue is empty, which for a small
// response is after each frame (HEADERS, then DATA): a write system call
// per frame, a quarter of the proxy's CPU under h2load. The yield lets
// the goroutines already runnable (the server's loop and the handlers of
// the other streams) add their frames first, so a burst goes out in one
// write (one TLS record) while no byte waits on anything but the
// scheduler: the flusher is runnable from the first Write until the
// buffer is empty.
//
// Write returns before the bytes reach Conn, so a write error comes back
// from a later call; the flusher closes Conn at the first one (as x/net's
// server does when a write fails), so the reader fails too. Close hands
// what is buffered to the flusher, which writes it within
// batchCloseGrace and then closes Conn; Close itself does not wait.
type batchConn struct {
	net.Conn

	mu       sync.Mutex
	cond     sync.Cond // signalled when the flusher takes buf or stops
	buf      *[]byte   // bytes not yet taken by the flusher; nil when none
	flushing bool      // a flusher is running (or about to)
	closed   bool      // Close was called
	err      error     // the first write error
	// flushFn is flush as a func value made once: `go c.flush()` would
	// allocate a closure per burst.
	flushFn func()
	stall   time.Duration
}

// newBatchConn batches writes to c. A write of the flusher's that takes
// no byte for stall (when not 0) fails, which ends the connection: a
// client that stops reading holds nothing for longer.
func newBatchConn(c net.Conn, stall time.Duration) *batchConn {
	b := &batchConn{Conn: c, stall: stall}
	b.cond.L = &b.mu
	b.flushFn = b.flush
	return b
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for c.err == nil && !c.closed && c.buf != nil && len(*c.buf) >= batchLimit {
			c.cond.Wait()
		}
		if c.err != nil {
			return n, c.err
		}
		if c.closed {
			return n, net.ErrClosed
		}
		if c.buf == nil {
			c.buf = batchBufs.Get().(*[]byte)
		}
		m := min(len(p), batchLimit-len(*c.buf))
		*c.buf = append(*c.buf, p[:m]...)
		n += m
		p = p[m:]
		if !c.flushing {
			c.flushing = true
			go c.flushFn()
		}
	}
	return n, nil
}

// flush writes the buffer to Conn until it stays empty.
func (c *batchConn) flush() {
	for {
		runtime.Gosched()
		c.mu.Lock()
		b := c.buf
		if b == nil || c.err != nil {
			c.flushing = false
			closed := c.closed
			c.cond.Broadcast()
			c.mu.Unlock()
			if closed {
				c.Conn.Close()
			}
			return
		}
		c.buf = nil
		c.cond.Broadcast()
		if c.stall > 0 && !c.closed {
			// Under mu, so that Close's grace, set after, wins.
			c.Conn.SetWriteDeadline(time.Now().Add(c.stall))
		}
		c.mu.Unlock()

		_, err := c.Conn.Write(*b)
		*b = (*b)[:0]
		batchBufs.Put(b)
		if err != nil {
			c.mu.Lock()
			c.err = err
			if c.buf != nil {
				*c.buf = (*c.buf)[:0]
				batchBufs.Put(c.buf)
				c.buf = nil
			}
			c.mu.Unlock()
			// The bytes after the failed write cannot follow it: end the
			// connection, as x/net's server does on a write error.
			c.Conn.Close()
		}
	}
}

func (c *batchConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.cond.Broadcast()
	if c.flushing {
		// The flusher closes Conn when the buffer is out.
		c.Conn.SetWriteDeadline(time.Now().Add(batchCloseGrace))
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// closeWait closes c and waits for the flusher to write what c holds
// (within batchCloseGrace) and close Conn: the caller's caller may close
// Conn itself once this returns.
func (c *batchConn) closeWait() {
	c.Close()
	c.mu.Lock()
	for c.flushing {
		c.cond.Wait()
	}
	c.mu.Unlock()
}
