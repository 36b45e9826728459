package l7

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// rawBackend answers every request on a kept-alive connection with a fixed
// small response, allocating next to nothing, so that a benchmark's
// allocations are the proxy's.
func rawBackend(b *testing.B) netip.AddrPort {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\nhello from the backend\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for { // skip the request head: no request here has a body
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// BenchmarkProxyKeepAlive measures one proxied HTTP/1.1 request on a
// kept-alive client connection (the fast path), the workload of the
// keep-alive row of deploy/bench/l7: ns and allocations per request,
// client and backend included (both allocate next to nothing).
func BenchmarkProxyKeepAlive(b *testing.B) { proxyKeepAlive(b, false) }

// BenchmarkProxyScraped is BenchmarkProxyKeepAlive without ("idle") and
// with ("scraped") a Stats call every second, as the metrics endpoint
// makes when scraped; make bench prints the ratio. Run it with a
// benchtime of seconds, so that scrapes happen.
func BenchmarkProxyScraped(b *testing.B) {
	b.Run("idle", func(b *testing.B) { proxyKeepAlive(b, false) })
	b.Run("scraped", func(b *testing.B) { proxyKeepAlive(b, true) })
}

func proxyKeepAlive(b *testing.B, scraped bool) {
	addr := freeAddr(b, "127.0.0.1")
	p := startProxy(b, Config{
		Listeners: []Listener{{Name: "bench", Addr: addr, DefaultPool: "p"}},
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: rawBackend(b), Weight: 100, Healthy: true}}}},
	})
	var scrape func()
	if scraped {
		scrape = func() { p.Stats() }
	}
	keepAlive(b, addr, scrape)
}

// BenchmarkProxyAccessLog is BenchmarkProxyKeepAlive with every request
// written to an access log (io.Discard): what logging adds per request.
func BenchmarkProxyAccessLog(b *testing.B) {
	addr := freeAddr(b, "127.0.0.1")
	p := New(Options{AccessLog: io.Discard})
	b.Cleanup(func() { p.Close() })
	err := p.Apply(context.Background(), Config{
		Listeners: []Listener{{Name: "bench", Addr: addr, DefaultPool: "p", AccessLog: &AccessLog{SampleRate: 1}}},
		Pools:     map[string]Pool{"p": {Members: []Member{{Addr: rawBackend(b), Weight: 100, Healthy: true}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	keepAlive(b, addr, nil)
}

// keepAlive sends b.N requests to addr on one connection, and calls
// scrape, if not nil, every second meanwhile.
func keepAlive(b *testing.B, addr netip.AddrPort, scrape func()) {
	c, err := net.Dial("tcp4", addr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /index.html HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	if scrape != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					scrape()
				}
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}

// readResponse reads one response with a Content-Length body.
func readResponse(br *bufio.Reader) error {
	n := -1
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("status %q", status)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return err
			}
		}
	}
	if n < 0 {
		return fmt.Errorf("no Content-Length")
	}
	_, err = br.Discard(n)
	return err
}
