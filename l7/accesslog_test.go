package l7

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// accessEntry is an access log line as JSON decodes it.
type accessEntry struct {
	Time         time.Time `json:"time"`
	Listener     string    `json:"listener"`
	Route        string    `json:"route"`
	Client       string    `json:"client"`
	Proto        string    `json:"proto"`
	Method       string    `json:"method"`
	Host         string    `json:"host"`
	Path         string    `json:"path"`
	Status       int       `json:"status"`
	Bytes        int64     `json:"bytes"`
	Duration     float64   `json:"duration"`
	Upstream     string    `json:"upstream"`
	UpstreamTime float64   `json:"upstream_time"`
	TLSVersion   string    `json:"tls_version"`
	TLSResumed   bool      `json:"tls_resumed"`
}

// parseAccessLog decodes every line, failing on any that is not one JSON
// object with exactly the documented fields.
func parseAccessLog(t *testing.T, s string) []accessEntry {
	t.Helper()
	var out []accessEntry
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var e accessEntry
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		var fields map[string]any
		json.Unmarshal([]byte(line), &fields)
		if len(fields) != 15 {
			t.Errorf("access log line has %d fields, want 15: %s", len(fields), line)
		}
		out = append(out, e)
	}
	return out
}

// TestAccessLog sends requests down every path of the proxy (the event
// loop, the fast loop, net/http with a body, HTTP/2 over h2c and TLS, a
// resumed TLS session) and checks each line against what was sent; a
// listener without an access log and one sampling nothing log no line.
func TestAccessLog(t *testing.T) {
	body := "the-member-answers"
	b := startBackend(t, body, nil)
	var mu sync.Mutex
	var buf bytes.Buffer
	logged := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	var key [32]byte
	rand.Read(key[:])
	plain, secure := freeAddr(t, "127.0.0.15"), freeAddr(t, "127.0.0.15")
	quiet, none := freeAddr(t, "127.0.0.15"), freeAddr(t, "127.0.0.15")
	p := New(Options{AccessLog: &lockedWriter{mu: &mu, w: &buf}, DrainTimeout: 2 * time.Second})
	every := &AccessLog{SampleRate: 1}
	routes := []Route{{Name: "api", PathPrefix: "/api/", Pool: "p"}, {Name: "old", PathPrefix: "/old", Redirect: &Redirect{Host: "new.test"}}}
	err := p.Apply(context.Background(), Config{
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "shop.test")},
		TicketKeys:   [][32]byte{key},
		Pools:        map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{
			{Name: "shop/http", Addr: plain, HTTP2: true, DefaultPool: "p", Routes: routes, AccessLog: every},
			{Name: "shop/https", Addr: secure, TLS: true, HTTP2: true, Certificates: []string{"c"}, DefaultPool: "p", AccessLog: every},
			{Name: "shop/quiet", Addr: quiet, DefaultPool: "p"},
			{Name: "shop/none", Addr: none, DefaultPool: "p", AccessLog: &AccessLog{SampleRate: 0}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// 1. A bodyless HTTP/1.1 request: the event loop serves it.
	c, err := net.Dial("tcp", plain.String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /api/1?secret=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	loopClient := c.LocalAddr().String()
	c.Close()
	// Lines are written out within a second, without a Close.
	eventually(t, 3*time.Second, "the first line written out", func() bool { return strings.Contains(logged(), `"/api/1"`) })

	// 2. A redirect, served by the fast loop; 3. a POST with a body
	// (net/http and ReverseProxy); 4. an escaped path to the default pool.
	client := noRedirectClient()
	get(t, client, "http://"+plain.String()+"/old/x", nil)
	resp, err := client.Post("http://"+plain.String()+"/api/2", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	get(t, client, "http://"+plain.String()+`/a%22b%0Ac`, map[string]string{"Host": "shop.test"})

	// 5. HTTP/2 with prior knowledge.
	h2c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	get(t, h2c, "http://"+plain.String()+"/api/h2", nil)

	// 6. TLS twice on new connections: the second resumes.
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "shop.test", InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4)}}}
	get(t, tlsClient, "https://"+secure.String()+"/tls/1", nil)
	get(t, tlsClient, "https://"+secure.String()+"/tls/2", nil)

	// 7. Listeners that log nothing.
	get(t, client, "http://"+quiet.String()+"/quiet", nil)
	get(t, client, "http://"+none.String()+"/none", nil)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	entries := parseAccessLog(t, logged())
	want := []accessEntry{
		{Listener: "shop/http", Route: "api", Client: loopClient, Proto: "HTTP/1.1", Method: "GET", Host: "shop.test", Path: "/api/1",
			Status: 200, Bytes: int64(len(body)), Upstream: b.addr.String()},
		{Listener: "shop/http", Route: "old", Proto: "HTTP/1.1", Method: "GET", Host: plain.String(), Path: "/old/x", Status: 302},
		{Listener: "shop/http", Route: "api", Proto: "HTTP/1.1", Method: "POST", Host: plain.String(), Path: "/api/2",
			Status: 200, Bytes: int64(len(body)), Upstream: b.addr.String()},
		{Listener: "shop/http", Route: "default", Proto: "HTTP/1.1", Method: "GET", Host: "shop.test", Path: "/a\"b\nc",
			Status: 200, Bytes: int64(len(body)), Upstream: b.addr.String()},
		{Listener: "shop/http", Route: "api", Proto: "HTTP/2.0", Method: "GET", Host: plain.String(), Path: "/api/h2",
			Status: 200, Bytes: int64(len(body)), Upstream: b.addr.String()},
		{Listener: "shop/https", Route: "default", Proto: "HTTP/1.1", Method: "GET", Host: secure.String(), Path: "/tls/1",
			Status: 200, Bytes: int64(len(body)), Upstream: b.addr.String(), TLSVersion: "TLS 1.3"},
		{Listener: "shop/https", Route: "default", Proto: "HTTP/1.1", Method: "GET", Host: secure.String(), Path: "/tls/2",
			Status: 200, Bytes: int64(len(body)), Upstream: b.addr.String(), TLSVersion: "TLS 1.3", TLSResumed: true},
	}
	if len(entries) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(entries), len(want), logged())
	}
	start := time.Now().Add(-time.Minute)
	for i, e := range entries {
		w := want[i]
		if w.Client == "" {
			w.Client = e.Client
		}
		if !strings.HasPrefix(e.Client, "127.0.0.1:") {
			t.Errorf("line %d: client %q, want 127.0.0.1:port", i, e.Client)
		}
		if e.Time.Before(start) || e.Time.After(time.Now()) || e.Duration <= 0 || e.Duration > 5 {
			t.Errorf("line %d: time %v, duration %v: want now and a positive duration", i, e.Time, e.Duration)
		}
		if (e.Upstream != "") != (e.UpstreamTime > 0) || e.UpstreamTime > e.Duration {
			t.Errorf("line %d: upstream time %v of %v, want one between 0 and the duration when proxied", i, e.UpstreamTime, e.Duration)
		}
		w.Time, w.Duration, w.UpstreamTime = e.Time, e.Duration, e.UpstreamTime
		if e != w {
			t.Errorf("line %d:\n got %+v\nwant %+v", i, e, w)
		}
	}
}

// TestSampler: a rate logs about that share of requests; 0 logs none
// (the listener gets no sampler), 1 every one.
func TestSampler(t *testing.T) {
	if newSampler(0) != nil {
		t.Error("rate 0 has a sampler")
	}
	for _, rate := range []float64{0.01, 0.25, 0.5, 1} {
		s := newSampler(rate)
		n := 0
		const draws = 100000
		for range draws {
			if s.sample() {
				n++
			}
		}
		if got := float64(n) / draws; got < rate-0.01 || got > rate+0.01 {
			t.Errorf("rate %v logged %v of requests", rate, got)
		}
	}
}

// TestLogRequestAllocs: formatting and writing a line allocates nothing.
func TestLogRequestAllocs(t *testing.T) {
	p := New(Options{AccessLog: io.Discard})
	defer p.Close()
	rs := &reqState{t: &table{name: "shop/http"}, rt: &route{name: "api"}, status: 200, logged: true,
		member: &member{hostport: "192.0.2.1:80"}, upstreamTime: time.Millisecond}
	r := httptest.NewRequest(http.MethodGet, "https://shop.test/a/b", nil)
	if n := testing.AllocsPerRun(1000, func() { p.logRequest(rs, r, time.Now(), 2*time.Millisecond) }); n != 0 {
		t.Errorf("logRequest allocates %v times, want 0", n)
	}
}

// FuzzAppendJSONString: every string is written as valid JSON that decodes
// to what encoding/json makes of it (invalid UTF-8 as U+FFFD).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"b\s`, "ctl\x00\x1f\x7f\n\r\t", "caf\xc3\xa9", "bad\xff\xfe", "\xe2\x80\xa8", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Fatalf("%q -> %s: not JSON: %v", s, got, err)
		}
		ref, _ := json.Marshal(s)
		var want string
		json.Unmarshal(ref, &want)
		if dec != want {
			t.Fatalf("%q -> %s decodes to %q, encoding/json's to %q", s, got, dec, want)
		}
	})
}
