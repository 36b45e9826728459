// Command sink is the large-body backend of deploy/bench/l7/run.sh:
// GET /sink/bytes/N answers N bytes (with Content-Length), and a request
// with a body to any other path is read to its end and answered with the
// number of bytes read, 256 KiB a system call at most either way.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18001", "listen address")
	flag.Parse()
	zeros := make([]byte, 256<<10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, ok := strings.CutPrefix(r.URL.Path, "/sink/bytes/"); ok && r.Method == http.MethodGet {
			size, err := strconv.ParseInt(n, 10, 64)
			if err != nil || size < 0 {
				http.Error(w, "bad size "+strconv.Quote(n), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Length", n)
			for size > 0 {
				k, err := w.Write(zeros[:min(size, int64(len(zeros)))])
				if err != nil {
					return
				}
				size -= int64(k)
			}
			return
		}
		// Wrapped so that CopyBuffer reads with buf, not io.Discard's
		// 8 KiB ReadFrom.
		n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r.Body, make([]byte, 256<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, n)
	})
	if err := http.ListenAndServe(*addr, h); err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
}
