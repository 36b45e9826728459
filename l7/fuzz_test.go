package l7

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzEligibleHead checks the fast loop's pre-parse against net/http: a
// head it accepts must parse as a request without a body or an upgrade.
func FuzzEligibleHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		ok, err := fastEligible(br, 4096)
		if err != nil || !ok {
			return
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			// The fast loop closes the connection on such a request;
			// what matters is that nothing it accepts carries a body.
			return
		}
		if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
			t.Fatalf("accepted a request with a body: %q", raw)
		}
		if req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
			t.Fatalf("accepted an upgrade or expectation: %q", raw)
		}
		if req.Method == "CONNECT" || req.Method == "PRI" {
			t.Fatalf("accepted method %s: %q", req.Method, raw)
		}
	})
}
