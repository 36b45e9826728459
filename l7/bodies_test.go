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

// zeros reads as endless zero bytes, allocating nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
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
// through the proxy, HTTP/1.1 (the loops, the ReverseProxy) and HTTP/2
// over TLS (the direct path, the ReverseProxy). Each side holds back its
// rest until the other has seen its first MiB, so a proxy that buffered a
// body would never pass it, and the process may allocate no more than a
// quarter of the body on the way.
func TestLargeBodiesStream(t *testing.T) {
	const size, gate = 64 << 20, 1 << 20
	firstMiB := make(chan chan struct{}, 1)
	b := startBackend(t, "bodies", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		open := <-firstMiB
		buf := make([]byte, 64<<10)
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
				n, err := w.Write(buf[:min(len(buf), size-sent, gate)])
				if err != nil {
					return
				}
				sent += n
			}
			return
		}
		if _, err := io.ReadFull(r.Body, make([]byte, gate)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		close(open)
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r.Body, buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n+gate)
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
					&gatedReader{r: io.LimitReader(zeros{}, size), gate: gate, open: open})
				req.ContentLength = size
			}
			resp, err := tc.tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := resp.Body
			if !tc.upload {
				if _, err := io.ReadFull(body, make([]byte, gate)); err != nil {
					t.Fatalf("first MiB: %v", err)
				}
				close(open)
			}
			n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, body, make([]byte, 64<<10))
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			runtime.ReadMemStats(&after)
			if tc.upload {
				if resp.StatusCode != http.StatusOK || n != int64(len(strconv.Itoa(size))) {
					t.Fatalf("status %d, %d bytes of answer", resp.StatusCode, n)
				}
			} else if n+gate != size {
				t.Fatalf("got %d bytes, want %d", n+gate, size)
			}
			t.Logf("allocated %d KiB", (after.TotalAlloc-before.TotalAlloc)>>10)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
				t.Errorf("%d MiB allocated while %d MiB went through: the body was buffered", alloc>>20, size>>20)
			}
		})
	}
}
