// Command labserver is the lab's real server: an HTTP server that answers
// every request with its own name, so a client can see which server a load
// balancer chose. /healthz answers 200 unless the file named by -down
// exists, which lets tests fail a health check without stopping the server.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	var (
		name  = flag.String("name", "", "name to answer with (default: host name)")
		addrs = flag.String("addr", ":80", "listen addresses, comma-separated")
		down  = flag.String("down", "", "while this file exists, /healthz answers 503")
	)
	flag.Parse()
	if *name == "" {
		*name, _ = os.Hostname()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if *down != "" {
			if _, err := os.Stat(*down); err == nil {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Server", *name)
		fmt.Fprintln(w, *name)
	})
	errs := make(chan error)
	for _, addr := range strings.Split(*addrs, ",") {
		srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
		go func() { errs <- srv.ListenAndServe() }()
	}
	log.Fatal(<-errs)
}
