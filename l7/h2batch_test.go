package l7

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tcpPair is a connected loopback TCP pair.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// TestBatchConnLoneWrite: a single small write with nothing after it
// reaches the peer without any further call on the conn.
func TestBatchConnLoneWrite(t *testing.T) {
	a, b := tcpPair(t)
	c := newBatchConn(a, 0)
	for i, msg := range []string{"x", "a second lone write"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(b, got); err != nil {
			t.Fatalf("write %d: the peer got nothing: %v", i, err)
		}
		if string(got) != msg {
			t.Fatalf("write %d: the peer got %q, want %q", i, got, msg)
		}
	}
}

// TestBatchConnCloseFlushes: what is written just before Close reaches
// the peer, then the end of the stream.
func TestBatchConnCloseFlushes(t *testing.T) {
	a, b := tcpPair(t)
	c := newBatchConn(a, 0)
	want := bytes.Repeat([]byte("goaway "), 3*batchLimit/7)
	go func() {
		c.Write(want)
		c.Close()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read: %v (after %d bytes)", err, len(got))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the peer got %d bytes, want the %d written before Close", len(got), len(want))
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// recConn records what is written to it.
type recConn struct {
	net.Conn // nil: only Write and Close are called
	mu       sync.Mutex
	data     []byte
	writes   int
	closed   bool
	err      error // returned by Write once set
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	r.data = append(r.data, p...)
	r.writes++
	return len(p), nil
}

func (r *recConn) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return nil
}

func (r *recConn) SetWriteDeadline(time.Time) error { return nil }

// waitFor polls cond until it holds or 5 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchConnOrder writes chunks of random sizes (some larger than the
// buffer) with random yields between them, from one goroutine as x/net's
// server does: the conn gets every byte once, in order.
func TestBatchConnOrder(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		r := &recConn{}
		c := newBatchConn(r, 0)
		var want []byte
		for i := range 200 {
			n := rng.IntN(2000)
			if rng.IntN(20) == 0 {
				n = rng.IntN(3 * batchLimit)
			}
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(i + j*7)
			}
			want = append(want, p...)
			if m, err := c.Write(p); m != n || err != nil {
				t.Fatalf("seed %d: Write of %d: %d, %v", seed, n, m, err)
			}
			if rng.IntN(4) == 0 {
				runtime.Gosched()
			}
		}
		waitFor(t, "every byte", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.data) >= len(want)
		})
		r.mu.Lock()
		if !bytes.Equal(r.data, want) {
			t.Fatalf("seed %d: the conn got %d bytes that differ from the %d written", seed, len(r.data), len(want))
		}
		r.mu.Unlock()
	}
}

// TestBatchConnCoalesces: writes made without yielding leave in fewer
// writes than were made.
func TestBatchConnCoalesces(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r := &recConn{}
	c := newBatchConn(r, 0)
	const frames = 10
	for range frames {
		c.Write(make([]byte, 100))
	}
	waitFor(t, "every byte", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.data) == frames*100
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writes >= frames {
		t.Fatalf("%d writes of 100 bytes made %d writes to the conn, want fewer", frames, r.writes)
	}
}

// TestBatchConnWriteError: a failed write comes back from a later Write
// and closes the conn.
func TestBatchConnWriteError(t *testing.T) {
	r := &recConn{err: errors.New("broken pipe")}
	c := newBatchConn(r, 0)
	var err error
	waitFor(t, "the write error", func() bool {
		_, err = c.Write([]byte("frame"))
		return err != nil
	})
	if err != r.err {
		t.Fatalf("Write: %v, want %v", err, r.err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		t.Fatal("the conn is open after a failed write")
	}
}
