// Command prober measures what a failover does to a load balancer's
// clients. It holds -conns HTTP/1.1 keep-alive connections to -target, each
// sending a request every -interval, and opens a new connection (one
// request, then close) every -new-every. When all held connections have
// been answered it prints "ready"; a line on stdin marks the event (a node
// killed, say); -observe after the mark, or at a second line, it prints one
// JSON lab.ProbeResult and exits.
// -timeout bounds the whole run whatever happens.
//
// A held connection survives when it never fails, its first answer to a
// request sent after the mark arrives within -grace of the mark, and it was
// answered within -tail before the end. New connections have recovered at the
// first attempt after the mark from which every later attempt succeeded.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

type held struct {
	conn    net.Conn
	br      *bufio.Reader
	err     error
	failAt  time.Time
	resumed time.Time // first answer to a request sent after the mark
	last    time.Time // latest answer
	stall   time.Duration
}

type attempt struct {
	start time.Time
	ok    bool
}

func main() {
	var (
		target   = flag.String("target", "", "host:port to probe")
		conns    = flag.Int("conns", 200, "long-lived connections")
		interval = flag.Duration("interval", 100*time.Millisecond, "time between requests on a connection")
		newEvery = flag.Duration("new-every", 20*time.Millisecond, "time between new connections")
		newLimit = flag.Duration("new-timeout", time.Second, "a new connection must be answered within this")
		grace    = flag.Duration("grace", 4*time.Second, "held connections must be answered again within this after the mark")
		observe  = flag.Duration("observe", 7*time.Second, "how long to watch after the mark")
		tail     = flag.Duration("tail", time.Second, "held connections must have been answered within this before the end")
		timeout  = flag.Duration("timeout", 60*time.Second, "bound on the whole run")
	)
	flag.Parse()
	if *target == "" || *conns < 1 || *observe <= *grace {
		fmt.Fprintln(os.Stderr, "prober: need -target, -conns >= 1 and -observe > -grace")
		os.Exit(2)
	}
	pr, err := run(*target, *conns, *interval, *newEvery, *newLimit, *observe, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prober:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(pr.summarize(*grace, *tail, *newLimit))
}

// probe is a finished run.
type probe struct {
	held      []*held
	attempts  []attempt
	mark, end time.Time
}

func run(target string, n int, interval, newEvery, newLimit, observe, timeout time.Duration) (*probe, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hs := make([]*held, n)
	for i := range hs {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, fmt.Errorf("open held connection %d: %w", i, err)
		}
		defer c.Close()
		hs[i] = &held{conn: c, br: bufio.NewReader(c)}
	}
	// Prove every held connection works before the mark.
	for i, h := range hs {
		h.conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := h.request(target, false); err != nil {
			return nil, fmt.Errorf("first request on held connection %d: %w", i, err)
		}
		h.last = time.Now()
	}

	var (
		mu       sync.Mutex
		mark     time.Time // zero until marked
		attempts []attempt
		wg       sync.WaitGroup
	)
	marked := func() time.Time { mu.Lock(); defer mu.Unlock(); return mark }
	stop := make(chan struct{})
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the connections' requests over the interval.
			next := time.Now().Add(interval * time.Duration(i) / time.Duration(n))
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Until(next)):
				}
				sent := time.Now()
				next = sent.Add(interval)
				// A request may wait out retransmissions, but not the end.
				h.conn.SetDeadline(sent.Add(timeout))
				err := h.request(target, false)
				now := time.Now()
				mu.Lock()
				if err != nil {
					select {
					case <-stop: // closed at the end: not a failure
					default:
						h.err, h.failAt = err, now
					}
					mu.Unlock()
					return
				}
				if !mark.IsZero() && !sent.Before(mark) && h.resumed.IsZero() {
					h.resumed = now
				}
				if !mark.IsZero() && h.last.Before(mark) {
					h.stall = now.Sub(h.last)
				}
				h.last = now
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(newEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := attempt{start: time.Now()}
				a.ok = newConn(ctx, target, newLimit) == nil
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
			}()
		}
	}()

	fmt.Println("ready")
	lines := make(chan struct{})
	go func() {
		in := bufio.NewReader(os.Stdin)
		for {
			if _, err := in.ReadString('\n'); err != nil {
				return
			}
			lines <- struct{}{}
		}
	}()
	select {
	case <-lines:
	case <-ctx.Done():
		return nil, errors.New("no mark on stdin before the timeout")
	}
	mu.Lock()
	mark = time.Now()
	mu.Unlock()
	// A second line ends the observation early (an event of unknown
	// length, such as a rolling restart, is over).
	select {
	case <-time.After(observe):
	case <-lines:
	case <-ctx.Done():
		return nil, errors.New("timeout before the end of the observation")
	}
	end := time.Now()
	close(stop)
	for _, h := range hs {
		h.conn.SetDeadline(time.Now()) // end requests stuck in retransmission
	}
	wg.Wait()
	return &probe{held: hs, attempts: attempts, mark: marked(), end: end}, nil
}

// request sends one GET and reads its answer.
func (h *held) request(target string, close bool) error {
	req := "GET / HTTP/1.1\r\nHost: " + target + "\r\n"
	if close {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(h.conn, req+"\r\n"); err != nil {
		return err
	}
	res, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", res.Status)
	}
	return err
}

// newConn opens a connection, asks once and closes it.
func newConn(ctx context.Context, target string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	return (&held{conn: c, br: bufio.NewReader(c)}).request(target, true)
}

func (p *probe) summarize(grace, tail, newLimit time.Duration) *lab.ProbeResult {
	hs, attempts, mark, end := p.held, p.attempts, p.mark, p.end
	res := &lab.ProbeResult{Conns: len(hs), Errors: map[string]int{}}
	for i, h := range hs {
		switch {
		case h.err != nil:
			res.Errors[kind(h.err)]++
			if len(res.Failures) < 10 {
				res.Failures = append(res.Failures, fmt.Sprintf("conn %d (%s): %v %.0f ms after the mark",
					i, h.conn.LocalAddr(), h.err, h.failAt.Sub(mark).Seconds()*1000))
			}
		case h.resumed.IsZero() || h.resumed.Sub(mark) > grace || end.Sub(h.last) > tail:
			res.Late++
			if len(res.Failures) < 10 {
				resumed := "never"
				if !h.resumed.IsZero() {
					resumed = fmt.Sprintf("%.0f ms after the mark", h.resumed.Sub(mark).Seconds()*1000)
				}
				res.Failures = append(res.Failures, fmt.Sprintf("conn %d (%s): late: resumed %s, last answer %.0f ms after the mark",
					i, h.conn.LocalAddr(), resumed, h.last.Sub(mark).Seconds()*1000))
			}
		default:
			res.Survived++
			res.MaxStallMs = max(res.MaxStallMs, h.stall.Seconds()*1000)
		}
	}
	res.SurvivalPct = 100 * float64(res.Survived) / float64(res.Conns)

	// Attempts that started in the last newLimit may not have finished
	// on their own; they were cut off by the end and are not counted.
	slices.SortFunc(attempts, func(a, b attempt) int { return a.start.Compare(b.start) })
	recovered := mark
	for i, a := range attempts {
		if a.start.Before(mark) || a.start.After(end.Add(-newLimit)) {
			continue
		}
		res.NewAttempts++
		if !a.ok {
			res.NewFailures++
			recovered = end
			if i+1 < len(attempts) {
				recovered = attempts[i+1].start
			}
		}
	}
	res.RecoveryMs = recovered.Sub(mark).Seconds() * 1000
	return res
}

func kind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "reset"):
		return "reset"
	}
	return "other"
}
