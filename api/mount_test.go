package api

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/weftlb/weft/pki"
	"github.com/weftlb/weft/tokens"
)

// TestMountFilesAndForViewers: files mounted with MountFiles are served to
// GET without credentials and to nothing else; a handler mounted with
// MountForViewers takes POSTs of any token, refuses calls without one
// before it runs, and has the API's body limit.
func TestMountFilesAndForViewers(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxRequestBytes = 1024 })
	n.srv.MountFiles("/files/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "file "+r.URL.Path)
	}))
	ran := 0
	n.srv.MountForViewers("/tool/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran++
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "tool "+r.URL.Path)
	}))
	_, viewer := n.token(tokens.RoleViewer, 0)
	tlsConfig, err := pki.ClientTLS(n.ca.CertPEM, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}}
	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, n.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantBody                        string
	}{
		{"file without a token", "GET", "/files/a.js", "", "", 200, "file /files/a.js"},
		{"file posted", "POST", "/files/a.js", n.admin, "", 405, ""},
		{"tool without a token", "POST", "/tool/x", "", "{}", 401, `"code":"unauthenticated"`},
		{"tool with a viewer token", "POST", "/tool/x", viewer, "{}", 200, "tool /tool/x"},
		{"tool by GET", "GET", "/tool/x", viewer, "", 405, ""},
		{"tool over the body limit", "POST", "/tool/x", viewer, strings.Repeat("a", 1024+bodySlack+1), 429, "larger than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(tc.method, tc.path, tc.token, tc.body)
			if status != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %q, want %d with %q", status, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
	if ran != 1 {
		t.Errorf("the tool ran %d times, want once (refused calls never reach it)", ran)
	}
}
