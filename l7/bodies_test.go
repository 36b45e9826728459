package l7

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// pattern reads as endless bytes, each its offset mod 251, allocating
// nothing; as a writer it checks that what it gets is the same.
type pattern struct {
	off int64
	bad int64 // 1 + the offset of the first wrong byte
}

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func (p *pattern) Write(b []byte) (int, error) {
	for i, c := range b {
		if c != byte((p.off+int64(i))%251) && p.bad == 0 {
			p.bad = 1 + p.off + int64(i)
		}
	}
	p.off += int64(len(b))
	return len(b), nil
}

// gatedReader is an upload body: its first gate bytes, then a wait for
// open (the member has read them) before the rest.
type gatedReader struct {
	r    io.Reader
	gate int64
	open <-chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.gate > 0 {
		n, err := g.r.Read(p[:min(int64(len(p)), g.gate)])
		g.gate -= int64(n)
		return n, err
	}
	if g.open != nil {
		select {
		case <-g.open:
		case <-time.After(10 * time.Second):
			return 0, fmt.Errorf("the member did not get the first bytes: the proxy holds the body back")
		}
		g.open = nil
	}
	return g.r.Read(p)
}

// TestLargeBodiesStream sends a 64 MiB response and a 64 MiB request body
// through the proxy, HTTP/1.1 (the loops, which splice it, and the
// ReverseProxy) and HTTP/2 over TLS (the direct path, the ReverseProxy),
// checking every byte. Each side holds back its
// rest until the other has seen its first MiB, so a proxy that buffered a
// body would never pass it, and the process may allocate no more than a
// quarter of the body on the way.
func TestLargeBodiesStream(t *testing.T) {
	const size, gate = 64 << 20, 1 << 20
	firstMiB := make(chan chan struct{}, 1)
	b := startBackend(t, "bodies", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open := <-firstMiB
		buf := make([]byte, 64<<10)
		var src pattern
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			sent := 0
			for sent < size {
				if sent == gate {
					w.(http.Flusher).Flush()
					select {
					case <-open:
					case <-time.After(10 * time.Second):
						t.Error("the client did not get the first MiB: the proxy holds the body back")
						return
					}
				}
				b := buf[:min(len(buf), size-sent, gate)]
				src.Read(b)
				n, err := w.Write(b)
				if err != nil {
					return
				}
				sent += n
			}
			return
		}
		var got pattern
		if _, err := io.CopyN(&got, r.Body, gate); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		close(open)
		if _, err := io.CopyBuffer(&got, r.Body, buf); err != nil || got.bad != 0 {
			http.Error(w, fmt.Sprintf("%v, byte %d wrong", err, got.bad-1), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, got.off)
	}))
	plain, tlsAddr := freeAddr(t, "127.0.0.12"), freeAddr(t, "127.0.0.12")
	startProxy(t, Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "bodies.test")},
		Pools:        map[string]Pool{"web": {Members: []Member{b.member()}}},
		Listeners: []Listener{
			{Name: "plain", Addr: plain, DefaultPool: "web"},
			{Name: "tls", Addr: tlsAddr, TLS: true, HTTP2: true, Certificates: []string{"c"}, DefaultPool: "web"},
		},
	})
	h1 := &http.Transport{}
	h2 := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	t.Cleanup(h1.CloseIdleConnections)
	t.Cleanup(h2.CloseIdleConnections)
	for _, tc := range []struct {
		name   string
		tr     *http.Transport
		url    string
		upload bool
	}{
		{"http/1.1 download", h1, "http://" + plain.String() + "/", false},
		{"http/1.1 upload", h1, "http://" + plain.String() + "/", true},
		{"http/2 download", h2, "https://" + tlsAddr.String() + "/", false},
		{"http/2 upload", h2, "https://" + tlsAddr.String() + "/", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := make(chan struct{})
			firstMiB <- open
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			if tc.upload {
				req, _ = http.NewRequestWithContext(ctx, http.MethodPut, tc.url,
					&gatedReader{r: io.LimitReader(&pattern{}, size), gate: gate, open: open})
				req.ContentLength = size
			}
			resp, err := tc.tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tc.upload {
				answer, err := io.ReadAll(resp.Body)
				runtime.ReadMemStats(&after)
				if err != nil || resp.StatusCode != http.StatusOK || string(answer) != strconv.Itoa(size) {
					t.Fatalf("status %d, %q, %v; want 200 and the %d bytes sent", resp.StatusCode, answer, err, size)
				}
			} else {
				var got pattern
				if _, err := io.CopyN(&got, resp.Body, gate); err != nil {
					t.Fatalf("first MiB: %v", err)
				}
				close(open)
				if _, err := io.CopyBuffer(&got, resp.Body, make([]byte, 64<<10)); err != nil {
					t.Fatalf("read body: %v", err)
				}
				runtime.ReadMemStats(&after)
				if got.off != size || got.bad != 0 {
					t.Fatalf("got %d bytes, byte %d wrong; want %d bytes as sent", got.off, got.bad-1, size)
				}
			}
			t.Logf("allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 && !raceEnabled {
				t.Errorf("%d MiB allocated while %d MiB went through: the body was buffered", alloc>>20, size>>20)
			}
		})
	}
}
