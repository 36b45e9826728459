// Command tlsload measures new TLS connections per second for
// deploy/bench/l7/run.sh: -c workers each connect, handshake, send one
// HTTP/1.1 request with Connection: close, read the response to its end
// and close, for -d. With -resume they share a session cache, so every
// connection after a worker's first resumes its session (tickets); it
// prints the connections per second, and the share resumed.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tlsload:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:18444", "host:port")
	sni := flag.String("sni", "bench.test", "server name")
	conns := flag.Int("c", 16, "concurrent connections")
	dur := flag.Duration("d", 5*time.Second, "duration")
	version := flag.String("tls", "1.3", "TLS version: 1.2 or 1.3")
	resume := flag.Bool("resume", false, "resume sessions (tickets)")
	flag.Parse()
	cfg := &tls.Config{
		ServerName:         *sni,
		InsecureSkipVerify: true, //nolint:gosec // self-signed bench certificate
		// What nginx's OpenSSL offers too: Go would otherwise agree on
		// X25519MLKEM768 with Weft and X25519 with the others.
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	}
	switch *version {
	case "1.2":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	case "1.3":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	default:
		return fmt.Errorf("-tls %q: want 1.2 or 1.3", *version)
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + *sni + "\r\nConnection: close\r\n\r\n")
	var done, resumed atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		wg.Go(func() {
			// A worker's own cache entry: workers do not share tickets
			// (a TLS 1.3 ticket is for one resumption).
			c := cfg.Clone()
			if *resume {
				c.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			for time.Now().Before(deadline) {
				r, err := once(*addr, c, req)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				done.Add(1)
				if r {
					resumed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return *e
	}
	n := done.Load()
	fmt.Printf("connections %d in %.2fs: %.0f conn/s, %.1f%% resumed\n", n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), 100*float64(resumed.Load())/float64(max(n, 1)))
	return nil
}

// once makes one connection with one request and reports whether it
// resumed a session.
func once(addr string, cfg *tls.Config, req []byte) (bool, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return false, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	return c.ConnectionState().DidResume, nil
}
