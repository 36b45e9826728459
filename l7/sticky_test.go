package l7

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestStickySessions(t *testing.T) {
	bs := []*backend{startBackend(t, "b0", nil), startBackend(t, "b1", nil), startBackend(t, "b2", nil)}
	key := []byte("cluster cookie key, 32 bytes....")
	cfgFor := func(addr Listener, healthy ...bool) Config {
		var ms []Member
		for i, b := range bs {
			m := b.member()
			if len(healthy) > 0 {
				m.Healthy = healthy[i]
			}
			ms = append(ms, m)
		}
		addr.DefaultPool = "p"
		addr.Sticky = &Sticky{TTL: 3600e9}
		return Config{CookieKey: key, Pools: map[string]Pool{"p": {Members: ms}}, Listeners: []Listener{addr}}
	}
	l1 := Listener{Name: "web", Addr: freeAddr(t, "127.0.0.5")}
	l2 := Listener{Name: "web", Addr: freeAddr(t, "127.0.0.6")}
	p1 := startProxy(t, cfgFor(l1))
	startProxy(t, cfgFor(l2)) // another node sharing the cluster key
	client := noRedirectClient()
	url1, url2 := "http://"+l1.Addr.String()+"/", "http://"+l2.Addr.String()+"/"

	resp, first := get(t, client, url1, nil)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == DefaultCookieName {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("no %s cookie in %v", DefaultCookieName, resp.Header["Set-Cookie"])
	}
	if cookie.MaxAge != 3600 || !cookie.HttpOnly {
		t.Errorf("cookie Max-Age=%d HttpOnly=%v, want 3600 and true", cookie.MaxAge, cookie.HttpOnly)
	}
	if strings.Contains(cookie.Value, "127.0.0.1") {
		t.Errorf("cookie %q leaks the member address", cookie.Value)
	}
	hdr := map[string]string{"Cookie": cookie.String()}
	for _, url := range []string{url1, url2} {
		for i := range 100 {
			resp, body := get(t, client, url, hdr)
			if body != first {
				t.Fatalf("%s request %d with the cookie reached %s, want %s", url, i, body, first)
			}
			if sc := resp.Header.Get("Set-Cookie"); sc != "" {
				t.Fatalf("pinned request got a new cookie %q", sc)
			}
		}
	}

	forged := stickyID([]byte("some other key"), "p", &member{hostport: bs[2].addr.String()})
	for _, tc := range []struct{ name, value string }{
		{"tampered", cookie.Value[:len(cookie.Value)-2] + "xx"},
		{"forged with another key", forged},
		{"member address", bs[2].addr.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := get(t, client, url1, map[string]string{"Cookie": DefaultCookieName + "=" + tc.value})
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d, want 200 (cookie ignored)", resp.StatusCode)
			}
			if resp.Header.Get("Set-Cookie") == "" {
				t.Errorf("invalid cookie was accepted: no new cookie issued")
			}
		})
	}

	// The pinned member goes down: the balancer picks another, and a new
	// cookie pins the client there.
	healthy := []bool{true, true, true}
	for i, b := range bs {
		if b.name == first {
			healthy[i] = false
		}
	}
	if err := p1.Apply(context.Background(), cfgFor(l1, healthy...)); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, client, url1, hdr)
	if resp.StatusCode != 200 || body == first {
		t.Fatalf("with %s down got %d from %q, want 200 from another member", first, resp.StatusCode, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), DefaultCookieName+"=") {
		t.Errorf("fallback did not re-pin the client: Set-Cookie %q", resp.Header.Get("Set-Cookie"))
	}
}

// TestStickyCookieAttributes checks the sticky cookie's attributes on
// each path that sets it: the event loop (plain GET), the direct path
// in net/http (GET over TLS) and the ReverseProxy path (POST, either
// listener). It is Secure exactly on https listeners.
func TestStickyCookieAttributes(t *testing.T) {
	b := startBackend(t, "b", nil)
	plain, secure := freeAddr(t, "127.0.0.8"), freeAddr(t, "127.0.0.8")
	startProxy(t, Config{
		CookieKey:    []byte("cluster cookie key, 32 bytes...."),
		Certificates: map[string]tls.Certificate{"c": selfSigned(t, false, "a.example.com")},
		Pools:        map[string]Pool{"p": {Members: []Member{b.member()}}},
		Listeners: []Listener{
			{Name: "http", Addr: plain, DefaultPool: "p", Sticky: &Sticky{}},
			{Name: "https", Addr: secure, TLS: true, Certificates: []string{"c"}, DefaultPool: "p", Sticky: &Sticky{}},
		},
	})
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "a.example.com"}}}
	defer client.CloseIdleConnections()
	tests := []struct {
		name   string
		url    string
		method string
		secure bool
	}{
		{"http GET on the event loop", "http://" + plain.String() + "/", http.MethodGet, false},
		{"http POST through ReverseProxy", "http://" + plain.String() + "/", http.MethodPost, false},
		{"https GET on the direct path", "https://" + secure.String() + "/", http.MethodGet, true},
		{"https POST through ReverseProxy", "https://" + secure.String() + "/", http.MethodPost, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == http.MethodPost {
				body = strings.NewReader("data")
			}
			req, err := http.NewRequest(tc.method, tc.url, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.method, tc.url, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			var c *http.Cookie
			for _, rc := range resp.Cookies() {
				if rc.Name == DefaultCookieName {
					c = rc
				}
			}
			if c == nil {
				t.Fatalf("no %s cookie in %q", DefaultCookieName, resp.Header["Set-Cookie"])
			}
			if c.Secure != tc.secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("cookie %q: Secure=%v HttpOnly=%v SameSite=%v, want Secure=%v HttpOnly=true SameSite=Lax",
					resp.Header.Get("Set-Cookie"), c.Secure, c.HttpOnly, c.SameSite, tc.secure)
			}
		})
	}
}
