package l7

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Streams is the streams BenchmarkProxyH2 keeps in flight on its
// connection, h2load's -m of the h2 row of deploy/bench/l7.
const h2Streams = 10

// BenchmarkProxyH2 measures one proxied HTTP/2 request over TLS, h2Streams
// at a time on one connection, to an HTTP/1.1 member (the direct path): ns
// and allocations per request. The client is a bare framer that decodes
// nothing but frame headers, so that the allocations are the proxy's.
func BenchmarkProxyH2(b *testing.B) {
	addr := freeAddr(b, "127.0.0.1")
	startProxy(b, Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(b, false, "bench.test")},
		Listeners: []Listener{{Name: "bench", Addr: addr, TLS: true, HTTP2: true, Certificates: []string{"c"},
			DefaultPool: "p"}},
		Pools: map[string]Pool{"p": {Members: []Member{{Addr: rawBackend(b), Weight: 100, Healthy: true}}}},
	})
	c, err := tls.Dial("tcp4", addr.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		b.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		b.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.SetReuseFrames()
	if err := fr.WriteSettings(); err != nil {
		b.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "bench.test"}, {Name: ":path", Value: "/index.html"},
		{Name: "user-agent", Value: "bench"}, {Name: "accept", Value: "*/*"},
	} {
		enc.WriteField(f)
	}
	first := bytes.Clone(block.Bytes())
	// Later blocks name the same fields from the server's dynamic table.
	block.Reset()
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "bench.test"}, {Name: ":path", Value: "/index.html"},
		{Name: "user-agent", Value: "bench"}, {Name: "accept", Value: "*/*"},
	} {
		enc.WriteField(f)
	}
	next := block.Bytes()
	stream := uint32(1)
	send := func(n int) {
		for range n {
			frag := next
			if stream == 1 {
				frag = first
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: frag,
				EndStream: true, EndHeaders: true}); err != nil {
				b.Fatal(err)
			}
			stream += 2
		}
	}
	unacked := 0 // DATA bytes not yet given back to the connection's window
	recv := func(n int) {
		for done := 0; done < n; {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := fr.WriteSettingsAck(); err != nil {
						b.Fatal(err)
					}
				}
			case *http2.PingFrame:
				if !f.IsAck() {
					fr.WritePing(true, f.Data)
				}
			case *http2.RSTStreamFrame:
				b.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
			case *http2.GoAwayFrame:
				b.Fatalf("GOAWAY: %v", f.ErrCode)
			case *http2.HeadersFrame:
				if f.StreamEnded() {
					b.Fatalf("stream %d: response without a body", f.StreamID)
				}
			case *http2.DataFrame:
				if len(f.Data()) > 0 && !bytes.HasPrefix(f.Data(), []byte("hello")) {
					b.Fatalf("stream %d: body %q", f.StreamID, f.Data())
				}
				unacked += int(f.Length)
				if f.StreamEnded() {
					done++
				}
			}
		}
		if unacked > 1<<14 {
			if err := fr.WriteWindowUpdate(0, uint32(unacked)); err != nil {
				b.Fatal(err)
			}
			unacked = 0
		}
	}
	send(h2Streams)
	recv(h2Streams) // the first exchange sets up the member connection
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += h2Streams {
		n := min(h2Streams, b.N-i)
		send(n)
		recv(n)
	}
}
