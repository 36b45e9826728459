package l7

import (
	"context"
	"net/http"
	"testing"
)

func TestRouting(t *testing.T) {
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	c := startBackend(t, "c", nil)
	d := startBackend(t, "d", nil)
	addr := freeAddr(t, "127.0.0.2")
	cfg := Config{
		Pools: map[string]Pool{
			"a": {Members: []Member{a.member()}},
			"b": {Members: []Member{b.member()}},
			"c": {Members: []Member{c.member()}},
			"d": {Members: []Member{d.member()}},
		},
		Listeners: []Listener{{
			Name: "web", Addr: addr, DefaultPool: "d",
			Routes: []Route{
				{Name: "api-exact", Host: "example.com", PathExact: "/api", Pool: "a"},
				{Name: "static", Host: "example.com", PathPrefix: "/static/", Pool: "b",
					RequestHeaders:  HeaderRewrite{Set: map[string]string{"X-Added": "yes"}, Remove: []string{"X-Secret"}},
					ResponseHeaders: HeaderRewrite{Add: map[string]string{"X-Served-By": "weft"}, Remove: []string{"Echo-Host"}}},
				{Name: "canary", Header: &HeaderMatch{Name: "x-canary", Value: "1"}, Pool: "c"},
				{Name: "wild", Host: "*.example.org", Pool: "b"},
				{Name: "to-https", Host: "secure.example.com", Redirect: &Redirect{Scheme: "https", Code: 301}},
				{Name: "moved", PathPrefix: "/old", Redirect: &Redirect{Host: "new.example.com", Port: 8443}},
			},
		}},
	}
	startProxy(t, cfg)
	url := "http://" + addr.String()
	tests := []struct {
		name     string
		path     string
		hdr      map[string]string
		status   int
		backend  string
		location string
		check    func(t *testing.T, h http.Header)
	}{
		{name: "exact path", path: "/api", hdr: map[string]string{"Host": "example.com"}, status: 200, backend: "a"},
		{name: "exact path with port and case", path: "/api", hdr: map[string]string{"Host": "EXAMPLE.com:80"}, status: 200, backend: "a"},
		{name: "exact path does not prefix", path: "/api/x", hdr: map[string]string{"Host": "example.com"}, status: 200, backend: "d"},
		{name: "prefix with rewrites", path: "/static/x.css", hdr: map[string]string{"Host": "example.com", "X-Secret": "s"}, status: 200, backend: "b",
			check: func(t *testing.T, h http.Header) {
				if got := h.Get("Echo-X-Added"); got != "yes" {
					t.Errorf("request header X-Added at member = %q, want yes", got)
				}
				if got := h.Get("Echo-X-Secret"); got != "" {
					t.Errorf("removed request header X-Secret reached member: %q", got)
				}
				if got := h.Get("X-Served-By"); got != "weft" {
					t.Errorf("response header X-Served-By = %q, want weft", got)
				}
				if got := h.Get("Echo-Host"); got != "" {
					t.Errorf("removed response header Echo-Host = %q, want none", got)
				}
			}},
		{name: "header match", path: "/", hdr: map[string]string{"Host": "other", "X-Canary": "1"}, status: 200, backend: "c"},
		{name: "header value mismatch", path: "/", hdr: map[string]string{"Host": "other", "X-Canary": "2"}, status: 200, backend: "d"},
		{name: "wildcard one label", path: "/", hdr: map[string]string{"Host": "www.example.org"}, status: 200, backend: "b"},
		{name: "wildcard two labels", path: "/", hdr: map[string]string{"Host": "a.b.example.org"}, status: 200, backend: "b"},
		{name: "wildcard not apex", path: "/", hdr: map[string]string{"Host": "example.org"}, status: 200, backend: "d"},
		{name: "redirect to https", path: "/p?q=1", hdr: map[string]string{"Host": "secure.example.com:80"}, status: 301,
			location: "https://secure.example.com/p?q=1"},
		{name: "redirect host and port", path: "/old/x", hdr: map[string]string{"Host": "example.net"}, status: 302,
			location: "http://new.example.com:8443/old/x"},
		{name: "default pool and forwarded headers", path: "/", hdr: map[string]string{"Host": "h.test", "X-Forwarded-For": "203.0.113.9"}, status: 200, backend: "d",
			check: func(t *testing.T, h http.Header) {
				if got, want := h.Get("Echo-X-Forwarded-For"), "203.0.113.9, 127.0.0.1"; got != want {
					t.Errorf("X-Forwarded-For = %q, want %q", got, want)
				}
				if got := h.Get("Echo-X-Forwarded-Proto"); got != "http" {
					t.Errorf("X-Forwarded-Proto = %q, want http", got)
				}
				if got := h.Get("Echo-X-Forwarded-Host"); got != "h.test" {
					t.Errorf("X-Forwarded-Host = %q, want h.test", got)
				}
				if got := h.Get("Echo-Host"); got != "h.test" {
					t.Errorf("Host at member = %q, want h.test (preserved)", got)
				}
			}},
	}
	client := noRedirectClient()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, client, url+tc.path, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.backend != "" && body != tc.backend {
				t.Errorf("backend = %q, want %q", body, tc.backend)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location = %q, want %q", got, tc.location)
			}
			if tc.check != nil {
				tc.check(t, resp.Header)
			}
		})
	}
}

func TestNoDefaultPool404(t *testing.T) {
	addr := freeAddr(t, "127.0.0.2")
	startProxy(t, Config{Listeners: []Listener{{Name: "web", Addr: addr}}})
	resp, _ := get(t, noRedirectClient(), "http://"+addr.String()+"/", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status = %d, want 404", resp.StatusCode)
	}
}

func TestApplyRejectsBadConfig(t *testing.T) {
	addr := freeAddr(t, "127.0.0.2")
	good := Config{Pools: map[string]Pool{"p": {}}, Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "p"}}}
	tests := []struct {
		name string
		mut  func(c *Config)
	}{
		{"unknown pool", func(c *Config) { c.Listeners[0].DefaultPool = "nope" }},
		{"duplicate name", func(c *Config) { c.Listeners = append(c.Listeners, c.Listeners[0]) }},
		{"route with pool and redirect", func(c *Config) {
			c.Listeners[0].Routes = []Route{{Pool: "p", Redirect: &Redirect{}}}
		}},
		{"bad redirect code", func(c *Config) { c.Listeners[0].Routes = []Route{{Redirect: &Redirect{Code: 200}}} }},
		{"sticky without key", func(c *Config) { c.Listeners[0].Sticky = &Sticky{} }},
		{"tls without certificate", func(c *Config) { c.Listeners[0].TLS = true }},
		{"http3 without tls", func(c *Config) { c.Listeners[0].HTTP3 = true }},
		{"unknown algorithm", func(c *Config) { c.Pools["p"] = Pool{Algorithm: "random"} }},
		{"bad host wildcard", func(c *Config) { c.Listeners[0].Routes = []Route{{Host: "a.*.com", Pool: "p"}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{})
			defer p.Close()
			cfg := good
			cfg.Pools = map[string]Pool{"p": {}}
			cfg.Listeners = append([]Listener(nil), good.Listeners...)
			tc.mut(&cfg)
			if err := p.Apply(context.Background(), cfg); err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			if len(p.sockets) != 0 {
				t.Errorf("failed Apply bound %d sockets, want 0", len(p.sockets))
			}
		})
	}
}
