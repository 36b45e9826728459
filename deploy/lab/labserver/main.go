// Command labserver is the lab's real server: an HTTP server that answers
// every request with its own name, so a client can see which server a load
// balancer chose. /healthz answers 200 unless the file named by -down
// exists, which lets tests fail a health check without stopping the server.
// Every answer names the address it came in on (X-Local-Addr), so a test
// sees which of a server's ports a load balancer chose.
// With -echo-headers it also returns each request header as a response
// header X-Echo-<name>, so a test sees what a proxy forwarded; with -stream,
// /stream?lines=N&every=D answers N lines, one every D, flushed as written,
// so a test holds a request open. With -udp it also answers each UDP
// datagram on those addresses with its name and the datagram's size, so a
// test sees that a large (fragmented) datagram arrived whole; a datagram
// "size N" is answered with N bytes (padded with dots), so a test gets a
// large answer to a small question.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		name  = flag.String("name", "", "name to answer with (default: host name)")
		addrs = flag.String("addr", ":80", "listen addresses, comma-separated")
		down  = flag.String("down", "", "while this file exists, /healthz answers 503")
		echo  = flag.Bool("echo-headers", false, "return each request header as a response header X-Echo-<name>")
		slow  = flag.Bool("stream", false, "serve /stream?lines=N&every=D: N lines, one every D")
		udp   = flag.String("udp", "", "UDP listen addresses, comma-separated: each datagram is answered with \"<name> <bytes>\"")
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
		if *echo {
			for k, vs := range r.Header {
				w.Header()["X-Echo-"+k] = vs
			}
		}
		w.Header().Set("X-Server", *name)
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			w.Header().Set("X-Local-Addr", a.String())
		}
		fmt.Fprintln(w, *name)
	})
	if *slow {
		mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
			lines, _ := strconv.Atoi(r.URL.Query().Get("lines"))
			every, _ := time.ParseDuration(r.URL.Query().Get("every"))
			w.Header().Set("X-Server", *name)
			rc := http.NewResponseController(w)
			for i := 1; i <= lines; i++ {
				if i > 1 {
					time.Sleep(every)
				}
				fmt.Fprintf(w, "%s %d\n", *name, i)
				if err := rc.Flush(); err != nil {
					return
				}
			}
		})
	}
	errs := make(chan error)
	for _, addr := range strings.Split(*udp, ",") {
		if addr != "" {
			go func() { errs <- answerUDP(addr, *name) }()
		}
	}
	for _, addr := range strings.Split(*addrs, ",") {
		srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
		go func() { errs <- srv.ListenAndServe() }()
	}
	log.Fatal(<-errs)
}

// answerUDP answers every datagram on addr with name and its size.
func answerUDP(addr, name string) error {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return err
		}
		answer := fmt.Appendf(nil, "%s %d", name, n)
		var size int
		if _, err := fmt.Sscanf(string(buf[:n]), "size %d", &size); err == nil && size > len(answer) && size <= len(buf) {
			answer = append(answer, strings.Repeat(".", size-len(answer))...)
		}
		if _, err := conn.WriteTo(answer, from); err != nil {
			log.Printf("answer %v: %v", from, err)
		}
	}
}
