package l7

// Head parsing for the event loop. http.ReadRequest and http.ReadResponse
// allocate a dozen objects per head, which cost the loop a fifth of its
// CPU. These parsers fill reused values instead and intern the strings
// that repeat (header names, methods, common values). They accept only
// what the loop serves: a request they do not parse goes to net/http,
// which answers what is malformed, and a response they do not parse is a
// 502, as net/http's would be.

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// interner returns shared strings for byte slices that repeat.
type interner struct {
	strs map[string]string
	keys map[string]string // raw header name -> canonical
}

// maxInterned bounds an interner; it starts over when full.
const maxInterned = 4096

func (in *interner) str(b []byte) string {
	if s, ok := in.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) <= 64 {
		if in.strs == nil || len(in.strs) >= maxInterned {
			in.strs = map[string]string{}
		}
		in.strs[s] = s
	}
	return s
}

// key returns the canonical form of a header name; false if it is not a
// token.
func (in *interner) key(b []byte) (string, bool) {
	if s, ok := in.keys[string(b)]; ok {
		return s, true
	}
	if len(b) == 0 {
		return "", false
	}
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return "", false
		}
	}
	s := textproto.CanonicalMIMEHeaderKey(string(b))
	if in.keys == nil || len(in.keys) >= maxInterned {
		in.keys = map[string]string{}
	}
	in.keys[string(b)] = s
	return s, true
}

// fields parses header lines, each ending in CRLF, up to the empty line,
// into h; the values' slices come from *vals. False means a malformed
// field: a name that is not a token, a value with control bytes, an
// obsolete line folding.
func (in *interner) fields(lines []byte, h http.Header, vals *[]string) bool {
	for len(lines) > 0 {
		line, rest, _ := bytes.Cut(lines, crlf2[:2])
		lines = rest
		if len(line) == 0 {
			return true
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return false
		}
		k, ok := in.key(name)
		if !ok {
			return false
		}
		value = bytes.Trim(value, " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return false
			}
		}
		n := len(*vals)
		*vals = append(*vals, in.str(value))
		if old, ok := h[k]; ok {
			h[k] = append(old, (*vals)[n])
		} else {
			h[k] = (*vals)[n : n+1 : n+1]
		}
	}
	return true
}

// parseRequest parses a request head that loopHead accepted into r, u and
// h (all reused); false means net/http must see it. Like http.ReadRequest
// it takes Host out of the header and honours Pragma: no-cache.
func (in *interner) parseRequest(head []byte, r *http.Request, u *url.URL, h http.Header, vals *[]string) bool {
	line, rest, _ := bytes.Cut(head, crlf2[:2])
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return false // absolute and asterisk forms: net/http's parser
	}
	for _, c := range method {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f || c == '%' || c == '#' {
			return false // escapes and the rest: net/url's parser
		}
	}
	clear(h)
	*vals = (*vals)[:0]
	if len(method) == 0 || !in.fields(rest, h, vals) {
		return false
	}
	hosts := h["Host"]
	if len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
		return false
	}
	delete(h, "Host")
	if cl := h["Content-Length"]; len(cl) > 1 {
		h["Content-Length"] = cl[:1] // all "0" (loopHead)
	}
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" && h["Cache-Control"] == nil {
		h["Cache-Control"] = []string{"no-cache"}
	}
	path, query, hasQuery := bytes.Cut(target, []byte("?"))
	*u = url.URL{Path: in.str(path), RawQuery: in.str(query), ForceQuery: hasQuery && len(query) == 0}
	if u.EscapedPath() != u.Path {
		return false // net/url keeps such a path raw too (RawPath)
	}
	*r = http.Request{
		Method: in.str(method), URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Host: hosts[0], RequestURI: in.str(target),
		Close: httpguts.HeaderValuesContainsToken(h["Connection"], "close"),
	}
	return true
}

// parseResponse parses a member's response head into resp (reused) with
// the header h. The framing rules are http.ReadResponse's: chunked wins
// over Content-Length, which must be one number.
func (in *interner) parseResponse(head []byte, resp *http.Response, h http.Header, vals *[]string) bool {
	if n := bytes.Count(head, crlf2[:2]); bytes.Count(head, []byte("\n")) != n || bytes.Count(head, []byte("\r")) != n {
		return false // a bare CR or LF
	}
	line, rest, _ := bytes.Cut(head, crlf2[:2])
	proto, line, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(line) < 3 || len(line) > 3 && line[3] != ' ' {
		return false
	}
	var major, minor int
	switch string(proto) {
	case "HTTP/1.1":
		major, minor = 1, 1
	case "HTTP/1.0":
		major, minor = 1, 0
	default:
		return false
	}
	code := 0
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return false
	}
	clear(h)
	*vals = (*vals)[:0]
	if !in.fields(rest, h, vals) {
		return false
	}
	*resp = http.Response{StatusCode: code, ProtoMajor: major, ProtoMinor: minor, Header: h, ContentLength: -1}
	// Transfer-Encoding is ignored from HTTP/1.0 members (net/http's
	// issue 12785); any Content-Length must be valid, chunked or not.
	chunked := false
	if te, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		if minor == 1 {
			if len(te) != 1 || !bytes.EqualFold([]byte(te[0]), []byte("chunked")) {
				return false
			}
			chunked = true
		}
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		for _, v := range cl[1:] {
			if v != cl[0] {
				return false
			}
		}
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil {
			return false
		}
		resp.ContentLength = int64(n)
		h["Content-Length"] = cl[:1]
	}
	if chunked && code >= 200 && code != 204 && code != 304 {
		resp.TransferEncoding = []string{"chunked"}
		resp.ContentLength = -1
		delete(h, "Content-Length")
	}
	// A body that ends at EOF ends the connection too.
	conn := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if hasClose && minor == 1 {
		delete(h, "Connection") // as net/http does, for HTTP/1.1 only
	}
	resp.Close = hasClose ||
		minor == 0 && !httpguts.HeaderValuesContainsToken(conn, "keep-alive") ||
		resp.TransferEncoding == nil && resp.ContentLength < 0 && code >= 200 && code != 204 && code != 304
	if tr := h["Trailer"]; len(tr) > 0 && chunked {
		resp.Trailer = http.Header{}
		for _, v := range tr {
			for _, k := range bytes.Split([]byte(v), []byte(",")) {
				k, ok := in.key(bytes.TrimSpace(k))
				if !ok || k == "Transfer-Encoding" || k == "Trailer" || k == "Content-Length" {
					return false
				}
				resp.Trailer[k] = nil
			}
		}
		delete(h, "Trailer")
	}
	return true
}
