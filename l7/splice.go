package l7

// Long response bodies on the loops move from the member's socket to the
// client's through a pipe with splice(2): the bytes never enter user
// space, which saves both copies of a read and a write.

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// spliceMin is the shortest body left to relay that is spliced: below
	// it the pipe's two system calls per step save nothing.
	spliceMin = 256 << 10
	// pipeSize is the pipe's capacity (F_SETPIPE_SZ; the default is
	// 64 KiB): one step moves up to this much.
	pipeSize = 256 << 10
	// maxPipes bounds the empty pipes a loop keeps for reuse.
	maxPipes = 16
)

// bodyPipe is a pipe a body is spliced through; n bytes are in it.
type bodyPipe struct {
	r, w int
	n    int
}

// pipe returns an empty pipe, a kept one if the loop has one.
func (l *loop) pipe() (*bodyPipe, error) {
	if n := len(l.pipes); n > 0 {
		p := l.pipes[n-1]
		l.pipes = l.pipes[:n-1]
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	// A smaller pipe (the limit is /proc/sys/fs/pipe-max-size) still works.
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	return &bodyPipe{r: fds[0], w: fds[1]}, nil
}

// putPipe keeps an empty pipe for reuse and closes any other.
func (l *loop) putPipe(p *bodyPipe) {
	if p.n == 0 && len(l.pipes) < maxPipes {
		l.pipes = append(l.pipes, p)
		return
	}
	p.close()
}

func (p *bodyPipe) close() {
	rawClose(p.r)
	rawClose(p.w)
}

// startSplice moves the rest of a Content-Length body relayed as it is
// onto the splice path, when it is long enough and a pipe can be had.
func (c *lconn) startSplice() {
	if c.frame != frameLength || c.w.chunked || c.remaining < spliceMin || c.pipe != nil {
		return
	}
	p, err := c.l.pipe()
	if err != nil {
		c.l.p.log.Debug("l7 pipe", "err", err)
		return
	}
	c.pipe = p
}

// spliceBody relays body bytes through the pipe as far as the sockets'
// readiness allows: the pipe drains to the client before more is taken
// from the member. False means waiting.
func (c *lconn) spliceBody() bool {
	u, p := c.up, c.pipe
	for {
		if p.n > 0 {
			if !c.writable {
				return false
			}
			n, err := rawSplice(p.r, c.fd, p.n)
			switch {
			case err == unix.EAGAIN:
				c.writable = false
				return false
			case err != nil:
				c.abort()
				return false
			}
			p.n -= n
			continue
		}
		if c.remaining == 0 {
			return c.finish()
		}
		if !u.readable {
			return false
		}
		n, err := rawSplice(u.fd, p.w, int(min(c.remaining, pipeSize)))
		if none, more := c.noBytes(n, err); none {
			return more
		}
		p.n += n
		c.remaining -= int64(n)
		c.deadline = time.Now().Add(c.rs.t.timeouts.Response)
	}
}

// dropPipe gives the connection's pipe back to the loop.
func (c *lconn) dropPipe() {
	if c.pipe != nil {
		c.l.putPipe(c.pipe)
		c.pipe = nil
	}
}

func rawSplice(from, to, n int) (int, error) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n),
		unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
