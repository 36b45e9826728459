package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/l7"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// Scale of BenchmarkScrape: load balancers, each with a FullNAT tcp and
// an http listener over a pool of members, and live flows.
const (
	benchLBs     = 1000
	benchMembers = 10
	// benchServers is how many distinct servers the pools share: the XDP
	// program holds at most MAX_BACKENDS (4096) backends.
	benchServers = 4000
	benchFlows   = 100_000
)

// benchState is benchLBs load balancers (VIPs in 198.19.0.0/16) of
// benchMembers members each (198.18.0.0/16, never dialled).
func benchState(b *testing.B) []*weftv1.Resource {
	var rs []*weftv1.Resource
	for i := range benchLBs {
		name := fmt.Sprintf("lb%04d", i)
		var members []*weftv1.Member
		for j := range benchMembers {
			s := (i*benchMembers + j) % benchServers
			members = append(members, &weftv1.Member{Address: fmt.Sprintf("198.18.%d.%d", s/250, 1+s%250), Port: 8080})
		}
		rs = append(rs, res(&weftv1.Pool{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.PoolSpec{Members: members}}),
			res(&weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.LoadBalancerSpec{
				Vip: fmt.Sprintf("198.19.%d.%d", i/250, 1+i%250),
				Listeners: []*weftv1.Listener{
					{Name: "tcp", Port: 80, Protocol: "tcp", Pool: name},
					{Name: "http", Port: 8080, Protocol: "http", Pool: name},
				},
			}}))
	}
	return rs
}

// scrape serves one /metrics request from the collectors, as Prometheus
// would make it, and returns the response's size.
func scrape(b *testing.B, h http.Handler) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		b.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.Len()
}

// benchScrapes scrapes c's registry b.N times, reporting the size of one
// scrape.
func benchScrapes(b *testing.B, c prometheus.Collector) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		b.Fatal(err)
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	size := 0
	for b.Loop() {
		size = scrape(b, h)
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// BenchmarkScrape times one scrape of /metrics (collect and encode) of a
// node with benchLBs load balancers of benchMembers members: l4, its XDP
// dataplane with benchFlows live flows in a table of the default size
// (root); l7, its proxy with an http listener per load balancer.
func BenchmarkScrape(b *testing.B) {
	st := stateOf(b, benchState(b)...)
	b.Run("l4", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Skip("loading the XDP program needs root")
		}
		d, err := xdp.New(xdp.Options{TableSize: 1009})
		if err != nil {
			b.Skipf("XDP dataplane: %v", err)
		}
		defer d.Close()
		local := []netip.Addr{netip.MustParseAddr("198.18.255.1")}
		cfg := dataplaneConfig(st, local, allHealthy)
		cfg.Gateway = net.HardwareAddr{2, 0, 0, 0, 0, 1}
		if err := d.Apply(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		flows := make([]dataplane.Flow, benchFlows)
		into := make([]dataplane.Install, benchFlows)
		for i := range flows {
			svc := cfg.Services[i%len(cfg.Services)]
			be := svc.Backends[i%len(svc.Backends)]
			flows[i] = dataplane.Flow{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 16), byte(i >> 8)}), uint16(1024+i%250)),
				VIP: netip.AddrPortFrom(svc.VIP, svc.Port), Proto: 6, Backend: netip.AddrPortFrom(be.Addr, be.Port),
				Local: netip.AddrPortFrom(local[0], uint16(1024+i%60000)), Established: true}
			into[i] = dataplane.InstallForward | dataplane.InstallReply
		}
		if err := d.InstallFlows(flows, into); err != nil {
			b.Fatal(err)
		}
		c := newL4Collector(&Agent{xdp: d})
		c.state = func() *raftfsm.State { return st }
		benchScrapes(b, c)
	})
	b.Run("l7", func(b *testing.B) {
		cfg, _, err := l7Config(st, allHealthy, &certCache{})
		if err != nil {
			b.Fatal(err)
		}
		// Bound on loopback: the proxy's sockets take any address with
		// IP_FREEBIND, but its listeners need not be reachable here.
		for i := range cfg.Listeners {
			cfg.Listeners[i].Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, byte(i >> 8), byte(i)}), 8080)
		}
		p := l7.New(l7.Options{DrainTimeout: time.Second})
		defer p.Close()
		if err := p.Apply(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		c := newL7Collector(&Agent{})
		c.proxy = func() *l7.Proxy { return p }
		benchScrapes(b, c)
	})
}
