package node

// metrics.go: the Prometheus endpoint (--metrics-addr). The collectors of
// metrics_*.go read every figure from its subsystem when scraped: the BPF
// per-CPU counters summed, the proxy's atomic counters, the subsystems'
// Stats. Nothing on a packet's or a request's path counts for them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftlb/weft/latency"
	"github.com/weftlb/weft/version"
)

// metricsServer serves /metrics.
type metricsServer struct {
	srv *http.Server
	ln  net.Listener
}

// metricsRegistry registers the agent's collectors (and Go's and the
// process's), every series labelled with the node's name.
func (a *Agent) metricsRegistry() (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"node": a.id.Name}, reg)
	for _, c := range append(a.collectors(), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})) {
		if err := wrapped.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// collectors are Weft's own collectors. Each describes all its families
// whatever runs on the node, and collects what does.
func (a *Agent) collectors() []prometheus.Collector {
	return []prometheus.Collector{newL4Collector(a), newL7Collector(a), newClusterCollector(a)}
}

// startMetrics serves the metrics on --metrics-addr, if set.
func (a *Agent) startMetrics() error {
	if a.cfg.MetricsAddr == "" {
		return nil
	}
	reg, err := a.metricsRegistry()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A subsystem that cannot be read fails its own series, not the
		// scrape (its error is logged and counted by promhttp).
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(a.cfg.Logger.Handler(), slog.LevelWarn),
		Registry:      reg,
	}))
	m := &metricsServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	a.metrics = m
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.cfg.Logger.Error("metrics server stopped", "addr", ln.Addr(), "err", err)
		}
	}()
	a.cfg.Logger.Info("serving metrics", "addr", ln.Addr().String())
	return nil
}

func (m *metricsServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return m.srv.Shutdown(ctx)
}

// metricSet holds a collector's descriptions; Describe gives them all.
type metricSet struct{ descs []*prometheus.Desc }

func (s *metricSet) desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, nil)
	s.descs = append(s.descs, d)
	return d
}

func (s *metricSet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// histogram gives a duration histogram of per-bucket counts (bucket i up
// to bounds[i], one more unbounded) in seconds.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, buckets []uint64, bounds []time.Duration, sum time.Duration, labels ...string) {
	cum := make(map[float64]uint64, len(bounds))
	var n uint64
	for i, b := range bounds {
		n += buckets[i]
		cum[b.Seconds()] = n
	}
	n += buckets[len(bounds)]
	ch <- prometheus.MustNewConstHistogram(d, n, sum.Seconds(), cum, labels...)
}

func latencyHistogram(ch chan<- prometheus.Metric, d *prometheus.Desc, s latency.Snapshot, labels ...string) {
	histogram(ch, d, s.Buckets, latency.Bounds, s.Sum, labels...)
}

// failed reports a source that could not be read: the scrape goes on
// without its series, and promhttp logs and counts the error.
func failed(ch chan<- prometheus.Metric, d *prometheus.Desc, err error) {
	ch <- prometheus.NewInvalidMetric(d, err)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// buildInfo is the constant weft_build_info series.
func buildInfo(s *metricSet) func(ch chan<- prometheus.Metric) {
	d := s.desc("weft_build_info", "Always 1: the version of the running weft binary.", "version")
	return func(ch chan<- prometheus.Metric) { gauge(ch, d, 1, version.String()) }
}
