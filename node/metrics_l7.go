package node

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftlb/weft/l7"
)

// l7Collector reads the L7 proxy's counters (l7.Proxy.Stats).
type l7Collector struct {
	metricSet
	proxy func() *l7.Proxy

	requests, duration, routeRequests, routeDuration        *prometheus.Desc
	memberRequests, memberDuration, inFlight, ejected, idle *prometheus.Desc
	connectErrors, responseErrors, retries                  *prometheus.Desc
	connections, handshakes, upgrades, h2Streams            *prometheus.Desc
}

func newL7Collector(a *Agent) *l7Collector {
	c := &l7Collector{proxy: func() *l7.Proxy {
		if a.l7 == nil {
			return nil
		}
		return a.l7.proxy
	}}
	c.requests = c.desc("weft_l7_requests_total", "Requests an http or https listener answered, by status class (none: no status, the client went away).", "lb", "listener", "class")
	c.duration = c.desc("weft_l7_request_duration_seconds", "Time from a request's start to its end, per listener.", "lb", "listener")
	c.routeRequests = c.desc("weft_l7_route_requests_total", "Requests of a route (default: the default pool; none: nothing matched), by status class.", "lb", "listener", "route", "class")
	c.routeDuration = c.desc("weft_l7_route_request_duration_seconds", "Time from a request's start to its end, per route.", "lb", "listener", "route")
	member := []string{"pool", "member"}
	c.memberRequests = c.desc("weft_l7_member_requests_total", "Requests sent to a pool member, by status class.", "pool", "member", "class")
	// Per member a sum, not a histogram: a histogram's 16 series times
	// every member is most of a large node's scrape (BenchmarkScrape).
	c.memberDuration = c.desc("weft_l7_member_request_duration_seconds_total", "Time requests sent to a pool member took, summed (the mean is its rate over the requests').", member...)
	c.inFlight = c.desc("weft_l7_member_in_flight_requests", "Requests a pool member is serving now.", member...)
	c.ejected = c.desc("weft_l7_member_ejected", "1 while a pool member is ejected by passive outlier detection.", member...)
	c.idle = c.desc("weft_l7_member_idle_connections", "Kept-alive HTTP/1.1 connections to a pool member waiting for a request.", member...)
	c.connectErrors = c.desc("weft_l7_member_connect_errors_total", "Failed connects to a pool member.", member...)
	c.responseErrors = c.desc("weft_l7_member_response_errors_total", "Attempts on a pool member that connected but got no response head (closed, malformed, timed out).", member...)
	c.retries = c.desc("weft_l7_member_retries_total", "Requests moved from a pool member to another after a failed connect.", member...)
	c.connections = c.desc("weft_l7_connections", "Client connections open on a listener.", "lb", "listener")
	c.handshakes = c.desc("weft_l7_tls_handshakes_total", "TLS handshakes completed on a listener; resumed: whether they resumed a session.", "lb", "listener", "resumed")
	c.upgrades = c.desc("weft_l7_websocket_upgrades_total", "Requests of a listener answered 101 Switching Protocols (WebSocket), counted when they end.", "lb", "listener")
	c.h2Streams = c.desc("weft_l7_http2_streams_total", "Requests of a listener that came over HTTP/2.", "lb", "listener")
	return c
}

// statusClasses label l7.Counters.Status.
var statusClasses = [6]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

// lbListener splits an l7 listener's name, "lb/listener" (l7Listener).
func lbListener(name string) (lb, listener string) {
	lb, listener, _ = strings.Cut(name, "/")
	return lb, listener
}

func (c *l7Collector) Collect(ch chan<- prometheus.Metric) {
	p := c.proxy()
	if p == nil {
		return
	}
	st := p.Stats()
	for _, l := range st.Listeners {
		lb, ln := lbListener(l.Listener)
		c.requestSeries(ch, c.requests, c.duration, l.Counters, lb, ln)
		gauge(ch, c.connections, float64(l.Connections), lb, ln)
		counter(ch, c.handshakes, l.TLSHandshakes-l.TLSResumed, lb, ln, "false")
		counter(ch, c.handshakes, l.TLSResumed, lb, ln, "true")
		counter(ch, c.upgrades, l.WebSocketUpgrades, lb, ln)
		counter(ch, c.h2Streams, l.HTTP2Streams, lb, ln)
	}
	for _, r := range st.Routes {
		lb, ln := lbListener(r.Listener)
		c.requestSeries(ch, c.routeRequests, c.routeDuration, r.Counters, lb, ln, r.Route)
	}
	for _, m := range st.Members {
		c.statusSeries(ch, c.memberRequests, m.Counters, m.Pool, m.Addr)
		ch <- prometheus.MustNewConstMetric(c.memberDuration, prometheus.CounterValue, m.LatencySum.Seconds(), m.Pool, m.Addr)
		gauge(ch, c.inFlight, float64(m.InFlight), m.Pool, m.Addr)
		gauge(ch, c.ejected, boolValue(m.Ejected), m.Pool, m.Addr)
		gauge(ch, c.idle, float64(m.IdleConns), m.Pool, m.Addr)
		counter(ch, c.connectErrors, m.ConnectErrors, m.Pool, m.Addr)
		counter(ch, c.responseErrors, m.ResponseErrors, m.Pool, m.Addr)
		counter(ch, c.retries, m.Retries, m.Pool, m.Addr)
	}
}

// requestSeries gives the requests by status class and the duration
// histogram of one set of counters.
func (c *l7Collector) requestSeries(ch chan<- prometheus.Metric, requests, duration *prometheus.Desc, k l7.Counters, labels ...string) {
	c.statusSeries(ch, requests, k, labels...)
	histogram(ch, duration, k.Latency, l7.LatencyBounds, k.LatencySum, labels...)
}

// statusSeries gives the requests by status class, each class from its
// first request on: six series per member and route, most of them zero
// for good, would be a large share of a large node's output.
func (c *l7Collector) statusSeries(ch chan<- prometheus.Metric, requests *prometheus.Desc, k l7.Counters, labels ...string) {
	for class, n := range k.Status {
		if n != 0 {
			counter(ch, requests, n, append(labels, statusClasses[class])...)
		}
	}
}
