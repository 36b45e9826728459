// Package console is Weft's web console: static files (HTML, CSS and
// JavaScript, embedded in the binary) that a node serves on its API port,
// and the two YAML conversions the browser cannot do itself. The page calls
// the node's ConnectRPC services with JSON over fetch(), with the API token
// the operator logs in with as bearer token, so it sees and may do exactly
// what that token may through the CLI.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// Path is where the console is served on the API.
const Path = "/ui/"

// ManifestPath is where the YAML conversions are served (ManifestHandler).
const ManifestPath = Path + "manifest/"

//go:embed static
var static embed.FS

// contentSecurityPolicy lets the page load its own script and style and
// talk to its own origin only, and makes the browser refuse every HTML
// string sink (innerHTML and the like: Trusted Types with no policy), so
// data can only ever reach the page as text.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// secure sets the headers every console answer carries: the policy above,
// no framing, no MIME sniffing, no referrer, and a browsing context and
// resources of the console's own.
func secure(h http.Handler, cache string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Cache-Control", cache)
		h.ServeHTTP(w, r)
	})
}

// FilesHandler serves the console's files under Path. They hold no data, so
// they need no token: the page asks for one.
func FilesHandler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	// no-cache: a browser revalidates, so an upgraded node serves its own
	// page at once.
	return secure(http.StripPrefix(Path, http.FileServerFS(sub)), "no-cache")
}

// RootHandler sends a browser asking for the API's root to the console.
func RootHandler() http.Handler {
	return secure(http.RedirectHandler(Path, http.StatusFound), "no-store")
}
