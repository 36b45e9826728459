package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func serve(t *testing.T, h http.Handler, method, path, body string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Result()
}

func checkHeaders(t *testing.T, what string, res *http.Response) {
	t.Helper()
	for name, want := range map[string]string{
		"Content-Security-Policy": contentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s: %s is %q, want %q", what, name, got, want)
		}
	}
}

// TestFiles: the page and its script and style are served with the
// security headers; the root sends a browser to the console.
func TestFiles(t *testing.T) {
	h := FilesHandler()
	for _, tc := range []struct{ path, wantType, wantBody string }{
		{Path, "text/html; charset=utf-8", `<script src="console.js" defer></script>`},
		{Path + "console.js", "text/javascript; charset=utf-8", "'use strict';"},
		{Path + "console.css", "text/css; charset=utf-8", ":root"},
		{Path + "favicon.svg", "image/svg+xml", "<svg"},
	} {
		res := serve(t, h, "GET", tc.path, "")
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != tc.wantType || !strings.Contains(string(body), tc.wantBody) {
			t.Errorf("GET %s: %d %q, want 200 %q with %q", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.wantType, tc.wantBody)
		}
		checkHeaders(t, tc.path, res)
	}
	if res := serve(t, h, "GET", Path+"nothing.js", ""); res.StatusCode != 404 {
		t.Errorf("GET a missing file: %d, want 404", res.StatusCode)
	}
	res := serve(t, RootHandler(), "GET", "/", "")
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != Path {
		t.Errorf("GET /: %d to %q, want 302 to %s", res.StatusCode, res.Header.Get("Location"), Path)
	}
	checkHeaders(t, "/", res)
}

// htmlSinks are the DOM calls that parse a string as HTML. The policy's
// Trusted Types make the browser refuse them; the script must not need
// them.
var htmlSinks = regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment|srcdoc|eval\(|new Function`)

func TestScriptWritesNoHTML(t *testing.T) {
	b, err := os.ReadFile("static/console.js")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if m := htmlSinks.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
			t.Errorf("console.js:%d uses %s: render data with text nodes", i+1, m)
		}
	}
}

type apiError struct {
	Code, Message string
}

func post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	res := serve(t, ManifestHandler(), "POST", ManifestPath+path, body)
	checkHeaders(t, path, res)
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func wantError(t *testing.T, what string, status int, body []byte, wantMessage string) {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil || status != 400 || e.Code != "invalid_argument" || e.Message != wantMessage {
		t.Errorf("%s: %d %s, want 400 invalid_argument %q", what, status, body, wantMessage)
	}
}

// TestDecode: YAML becomes the resources manifest.Decode gives, as the
// JSON of an ApplyRequest; bad text gets the error `weft apply -f` prints.
func TestDecode(t *testing.T) {
	text, err := os.ReadFile("../manifest/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := manifest.Decode(strings.NewReader(string(text)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(yamlText{YAML: string(text)})
	status, out := post(t, "decode", string(body))
	var got weftv1.ApplyRequest
	if err := protojson.Unmarshal(out, &got); err != nil || status != 200 {
		t.Fatalf("decode: %d %s (%v)", status, out, err)
	}
	if !proto.Equal(&got, &weftv1.ApplyRequest{Resources: want}) {
		t.Errorf("decode gave %v, want %v", &got, want)
	}

	bad := "kind: Pool\nmetadata: {name: web}\nspec: {memberz: []}\n"
	_, decodeErr := manifest.Decode(strings.NewReader(bad))
	body, _ = json.Marshal(yamlText{YAML: bad})
	status, out = post(t, "decode", string(body))
	wantError(t, "unknown field", status, out, decodeErr.Error())

	status, out = post(t, "decode", `{"yaml": "# nothing\n"}`)
	wantError(t, "no documents", status, out, "no resources in the text")
	status, out = post(t, "decode", `{"yml": "kind: Pool"}`)
	wantError(t, "unknown request field", status, out, `request: json: unknown field "yml"`)
}

// TestEncode: resources read from the API become the YAML to edit, without
// what the server computes, and decode back to what was sent.
func TestEncode(t *testing.T) {
	in := `{"resources": [{"pool": {"metadata": {"name": "web", "version": "7"},
		"spec": {"members": [{"address": "10.0.0.1", "port": 80}]}, "status": {"membersUp": 1}}}]}`
	status, out := post(t, "encode", in)
	var got yamlText
	if err := json.Unmarshal(out, &got); err != nil || status != 200 {
		t.Fatalf("encode: %d %s (%v)", status, out, err)
	}
	if strings.Contains(got.YAML, "status") || !strings.Contains(got.YAML, `version: "7"`) {
		t.Errorf("encode gave\n%s\nwant the version and no status", got.YAML)
	}
	rs, err := manifest.Decode(strings.NewReader(got.YAML))
	if err != nil || len(rs) != 1 || rs[0].GetPool().GetSpec().GetMembers()[0].GetPort() != 80 || rs[0].GetPool().GetMetadata().GetVersion() != 7 {
		t.Errorf("the YAML decodes to %v (%v), want the pool sent", rs, err)
	}
	status, out = post(t, "encode", `{"resources": [{"pool": {"spek": {}}}]}`)
	if status != 400 || !strings.Contains(string(out), `spek`) {
		t.Errorf("encode of an unknown field: %d %s, want 400 naming it", status, out)
	}
}
