// Command l7bench serves a fixed l7 Config in front of one backend, for
// deploy/bench/l7/run.sh: an HTTP/1.1 listener and an HTTPS listener with
// HTTP/2, both proxying to -backend.
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
	cfg := l7.Config{
		Pools: map[string]l7.Pool{"bench": {Members: []l7.Member{{Addr: b, Weight: 100, Healthy: true}}}},
		Listeners: []l7.Listener{{Name: "http", Addr: ha, HTTP2: true, DefaultPool: "bench",
			Routes: []l7.Route{{Name: "all", PathPrefix: "/", Pool: "bench"}}}},
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("load certificate: %w", err)
		}
		sa, err := netip.ParseAddrPort(*httpsAddr)
		if err != nil {
			return fmt.Errorf("parse -https: %w", err)
		}
		cfg.Certificates = map[string]tls.Certificate{"bench": cert}
		cfg.Listeners = append(cfg.Listeners, l7.Listener{Name: "https", Addr: sa, TLS: true, HTTP2: true,
			Certificates: []string{"bench"}, DefaultPool: "bench"})
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
