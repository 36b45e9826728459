// Command l7bench serves a fixed l7 Config in front of one backend, for
// deploy/bench/l7/run.sh: an HTTP/1.1 listener and HTTPS listeners with
// HTTP/2 (-https with -cert, -https-rsa with -cert-rsa), all proxying to
// -backend, and /sink/ to -sink when set.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/weftlb/weft/l7"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "l7bench:", err)
		os.Exit(1)
	}
}

func run() error {
	httpAddr := flag.String("http", "127.0.0.1:18084", "HTTP/1.1 (and h2c) listener")
	httpsAddr := flag.String("https", "127.0.0.1:18446", "HTTPS listener with HTTP/2")
	backend := flag.String("backend", "127.0.0.1:18000", "backend address:port")
	certFile := flag.String("cert", "", "PEM certificate for -https")
	keyFile := flag.String("key", "", "PEM key for -https")
	rsaAddr := flag.String("https-rsa", "127.0.0.1:18454", "HTTPS listener with -cert-rsa")
	rsaCert := flag.String("cert-rsa", "", "PEM certificate for -https-rsa")
	rsaKey := flag.String("key-rsa", "", "PEM key for -https-rsa")
	sink := flag.String("sink", "", "backend address:port for paths under /sink/")
	procs := flag.Int("procs", 1, "GOMAXPROCS")
	gcPercent := flag.Int("gc", 100, "GOGC percentage")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until SIGTERM")
	flag.Parse()

	// Set explicitly: the bench pins the proxy to one core, and the Go
	// runtime must not run more Ps than it has cores.
	runtime.GOMAXPROCS(*procs)
	debug.SetGCPercent(*gcPercent)

	b, err := netip.ParseAddrPort(*backend)
	if err != nil {
		return fmt.Errorf("parse -backend: %w", err)
	}
	ha, err := netip.ParseAddrPort(*httpAddr)
	if err != nil {
		return fmt.Errorf("parse -http: %w", err)
	}
	routes := []l7.Route{{Name: "all", PathPrefix: "/", Pool: "bench"}}
	cfg := l7.Config{
		Pools:        map[string]l7.Pool{"bench": {Members: []l7.Member{{Addr: b, Weight: 100, Healthy: true}}}},
		Certificates: map[string]tls.Certificate{},
	}
	if *sink != "" {
		sa, err := netip.ParseAddrPort(*sink)
		if err != nil {
			return fmt.Errorf("parse -sink: %w", err)
		}
		cfg.Pools["sink"] = l7.Pool{Members: []l7.Member{{Addr: sa, Weight: 100, Healthy: true}}}
		routes = append([]l7.Route{{Name: "sink", PathPrefix: "/sink/", Pool: "sink"}}, routes...)
	}
	cfg.Listeners = []l7.Listener{{Name: "http", Addr: ha, HTTP2: true, DefaultPool: "bench", Routes: routes}}
	for _, l := range []struct{ name, addr, cert, key string }{
		{"https", *httpsAddr, *certFile, *keyFile},
		{"https-rsa", *rsaAddr, *rsaCert, *rsaKey},
	} {
		if l.cert == "" {
			continue
		}
		cert, err := tls.LoadX509KeyPair(l.cert, l.key)
		if err != nil {
			return fmt.Errorf("load certificate of -%s: %w", l.name, err)
		}
		sa, err := netip.ParseAddrPort(l.addr)
		if err != nil {
			return fmt.Errorf("parse -%s: %w", l.name, err)
		}
		cfg.Certificates[l.name] = cert
		cfg.Listeners = append(cfg.Listeners, l7.Listener{Name: l.name, Addr: sa, TLS: true, HTTP2: true,
			Certificates: []string{l.name}, DefaultPool: "bench", Routes: routes})
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("create profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	p := l7.New(l7.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err := p.Apply(context.Background(), cfg); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return p.Close()
}
