package l7

// Head parsing for the event loop. http.ReadRequest and http.ReadResponse
// allocate a dozen objects per head, which cost the loop a fifth of its
// CPU. These parsers fill reused values instead and intern the strings
// that repeat (header names, methods, common values). checkRequest first
// judges a request's bytes as net/http's server does, so the loops answer
// what cannot be valid themselves, at once and in net/http's words; the
// parsers then accept only what the loop serves: a valid request they do
// not parse goes to net/http, and a response they do not parse is a 502,
// as net/http's would be.

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// headError is net/http's server's answer to a request head it rejects,
// after which it closes the connection: the status and the whole
// response, byte for byte.
type headError struct {
	status int
	resp   string
}

// errorHeaders are the headers of net/http's answers to bad requests.
const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// statusError is net/http's answer when one of its server's own checks
// fails: the reason follows the status in both the status line and the
// body.
func statusError(status int, reason string) *headError {
	s := strconv.Itoa(status) + " " + http.StatusText(status) + ": " + reason
	return &headError{status, "HTTP/1.1 " + s + errorHeaders + s}
}

// net/http's answers to request heads, as its server writes them.
var (
	// errMalformed answers anything http.ReadRequest fails on.
	errMalformed = &headError{http.StatusBadRequest, "HTTP/1.1 400 Bad Request" + errorHeaders + "400 Bad Request"}
	// errMalformedVersion is errMalformed for a request line whose
	// version is not HTTP/x.y: on an h2c listener, an invalid HTTP/2
	// preface (lconn.reject).
	errMalformedVersion = &headError{errMalformed.status, errMalformed.resp}
	// errTransferEncoding answers a Transfer-Encoding other than chunked.
	errTransferEncoding = &headError{http.StatusNotImplemented,
		"HTTP/1.1 501 Not Implemented" + errorHeaders + "Unsupported transfer encoding"}
	errVersion    = statusError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
	errNoHost     = statusError(http.StatusBadRequest, "missing required Host header")
	errHost       = statusError(http.StatusBadRequest, "malformed Host header")
	errHeaderName = statusError(http.StatusBadRequest, "invalid header name")
)

// checkRequest judges the bytes a client sent for its next request as
// net/http's server does (http.ReadRequest, then the checks its
// server.go readRequest adds), with net/http's own rules: httpguts for
// tokens, values and hosts, url.ParseRequestURI for targets other than
// plain paths. It returns the length of a whole valid head, or net/http's
// answer to a head that cannot be valid, or neither while net/http would
// wait for more bytes. Like net/http's line reader it takes a bare LF as
// a line end and joins obsolete line folding with a space, and it answers
// as early as net/http does: a bad request line once the line is in, a
// bad header line once the byte after it is (it might start a
// continuation).
//
// atEnd means no more bytes will come (the header timeout passed or the
// client closed its side). A last line without its LF then counts as a
// line, as it does in net/http's bufio reader when a read fails.
// It allocates only for targets other than plain paths and folded Host,
// Content-Length, Transfer-Encoding or Trailer fields.
func checkRequest(b []byte, atEnd bool) (int, *headError) {
	line, rest, ok := nextLine(b, atEnd)
	if !ok {
		return 0, nil
	}
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || !httpguts.ValidHeaderFieldName(view(method)) {
		return 0, errMalformed
	}
	major, minor, ok := http.ParseHTTPVersion(view(proto))
	if !ok {
		return 0, errMalformedVersion
	}
	if !validTarget(method, target) {
		return 0, errMalformed
	}
	var h headFields
	for first := true; ; first = false {
		if len(rest) == 0 && !atEnd {
			return 0, nil
		}
		if first && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			// The first field cannot be a continuation.
			if _, _, ok := nextLine(rest, atEnd); !ok {
				return 0, nil
			}
			return 0, errMalformed
		}
		line, after, ok := nextLine(rest, atEnd)
		switch {
		case !ok:
			return 0, nil
		case len(line) == 0:
			return h.check(len(b)-len(after), method, target, proto, major, minor)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, errMalformed // net/http does not wait for a continuation here
		}
		valid := httpguts.ValidHeaderFieldValue(view(value))
		folds := after
		for len(after) > 0 && (after[0] == ' ' || after[0] == '\t') {
			cont := bytes.TrimLeft(after, " \t")
			if len(cont) == 0 && !atEnd {
				return 0, nil
			}
			if cont, after, ok = nextLine(cont, atEnd); !ok {
				if !atEnd {
					return 0, nil
				}
				after = nil // the field ends at the spaces
				break
			}
			valid = valid && httpguts.ValidHeaderFieldValue(view(cont))
		}
		if len(after) == 0 && !atEnd {
			return 0, nil // the next byte may start a continuation
		}
		if !valid || !fieldName(name) {
			return 0, errMalformed
		}
		h.add(name, value, folds[:len(folds)-len(after)])
		rest = after
	}
}

// endVerdict is net/http's answer to the bytes b of a request head when
// no more come: eof if the client closed its side, else the header
// timeout passed. nil means it closes without a word.
func endVerdict(b []byte, eof bool) *headError {
	if _, bad := checkRequest(b, true); bad != nil {
		return bad
	}
	if eof && len(b) > 0 {
		return errMalformed // io.ErrUnexpectedEOF in the middle of a head
	}
	return nil
}

// view is b as a string without a copy, for calls that only read it
// while b does not change.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// nextLine cuts the first line off b as net/http's line reader does: up
// to a LF, less one CR before it. At the end, the rest is a line too.
func nextLine(b []byte, atEnd bool) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil, atEnd && len(b) > 0
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

// validTarget reports whether http.ReadRequest takes a request target.
// A path without control bytes or escapes is valid; url.ParseRequestURI
// judges the rest.
func validTarget(method, target []byte) bool {
	if len(target) > 0 && target[0] == '/' && bytes.IndexByte(target, '%') < 0 {
		for _, c := range target {
			if c < ' ' || c == 0x7f {
				return false
			}
		}
		return true
	}
	raw := string(target)
	if string(method) == http.MethodConnect && (len(raw) == 0 || raw[0] != '/') {
		raw = "http://" + raw // an authority, as http.ReadRequest parses it
	}
	_, err := url.ParseRequestURI(raw)
	return err == nil
}

// fieldName reports whether textproto's header reader takes a field
// name: a token, in which it also lets spaces pass (net/http's server
// rejects those later: headFields.check).
func fieldName(name []byte) bool {
	for _, c := range name {
		if c != ' ' && !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return len(name) > 0
}

// headFields is what checkRequest keeps of a head's fields for the
// checks that need all of them.
type headFields struct {
	hosts, lengths, encodings, trailers int
	host, length, encoding              []byte // the first of each
	lengthsDiffer                       bool
	badTrailer                          bool // a Trailer names a framing field
	spaceInName                         bool
	others                              bool // fields that stay in the header
}

// add records a field whose first line had value and whose continuation
// lines are folds.
func (h *headFields) add(name, value, folds []byte) {
	if bytes.IndexByte(name, ' ') >= 0 {
		h.spaceInName, h.others = true, true
		return
	}
	v := func() []byte { return fieldValue(value, folds) }
	switch {
	case asciiFold(name, "Host"):
		if h.hosts++; h.hosts == 1 {
			h.host = v()
		}
	case asciiFold(name, "Content-Length"):
		// Compared and parsed trimmed (textproto.TrimString): a fold
		// can leave a space at the end.
		if l := bytes.Trim(v(), " \t"); h.lengths == 0 {
			h.length = l
		} else if !bytes.Equal(l, h.length) {
			h.lengthsDiffer = true
		}
		h.lengths++
	case asciiFold(name, "Transfer-Encoding"):
		if h.encodings++; h.encodings == 1 {
			h.encoding = v()
		}
	case asciiFold(name, "Trailer"):
		h.trailers++
		for k := range bytes.SplitSeq(v(), []byte(",")) {
			k = bytes.Trim(k, " \t")
			if asciiFold(k, "Transfer-Encoding") || asciiFold(k, "Trailer") || asciiFold(k, "Content-Length") {
				h.badTrailer = true
			}
		}
	default:
		h.others = true
	}
}

// fieldValue is a field's value as textproto gives it: trimmed, with
// each continuation line trimmed and joined after one space (so an empty
// last one leaves that space at the end).
func fieldValue(value, folds []byte) []byte {
	value = bytes.Trim(value, " \t")
	if len(folds) == 0 {
		return value
	}
	joined := bytes.Clone(value)
	for len(folds) > 0 {
		var cont []byte
		cont, folds, _ = nextLine(bytes.TrimLeft(folds, " \t"), true)
		joined = append(append(joined, ' '), bytes.Trim(cont, " \t")...)
	}
	return bytes.TrimLeft(joined, " \t")
}

// check makes, on a whole head of n bytes, the checks http.ReadRequest
// and net/http's server make once the fields are read, in their order.
func (h *headFields) check(n int, method, target, proto []byte, major, minor int) (int, *headError) {
	if h.hosts > 1 {
		return 0, errMalformed
	}
	// Transfer-Encoding counts from HTTP/1.1 on; net/http reads HTTP/0.0
	// as 1.1 there.
	chunked := false
	if h.encodings > 0 && (major > 1 || major == 1 && minor >= 1 || major == 0 && minor == 0) {
		if h.encodings > 1 || !asciiFold(h.encoding, "chunked") {
			return 0, errTransferEncoding
		}
		chunked = true
	}
	if h.lengths > 0 {
		if h.lengthsDiffer || len(h.length) == 0 {
			return 0, errMalformed
		}
		if _, err := strconv.ParseUint(view(h.length), 10, 63); err != nil {
			return 0, errMalformed
		}
	}
	if chunked && h.badTrailer {
		return 0, errMalformed
	}
	pri := string(method) == "PRI" && string(target) == "*" && string(proto) == "HTTP/2.0"
	if major != 1 && !pri {
		return 0, errVersion
	}
	// An HTTP/2 preface read as HTTP/1 needs no Host: it has no fields
	// once Transfer-Encoding and the framing fields chunked drops are gone.
	preface := pri && !h.others && h.hosts == 0 && (chunked || h.lengths == 0 && h.trailers == 0)
	if (major > 1 || minor >= 1) && h.hosts == 0 && !preface && string(method) != http.MethodConnect {
		return 0, errNoHost
	}
	if h.hosts == 1 && !httpguts.ValidHostHeader(view(h.host)) {
		return 0, errHost
	}
	if h.spaceInName {
		return 0, errHeaderName
	}
	return n, nil
}

// asciiFold is strings.EqualFold for ASCII only, as net/http compares
// tokens: Unicode folding would take "\u212a" for a "k".
func asciiFold[T string | []byte](b T, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

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

// parseRequest parses a request head that checkRequest found valid and
// loopHead accepted into r, u and h (all reused); false means net/http
// must see it. Like http.ReadRequest it takes Host out of the header and
// honours Pragma: no-cache.
func (in *interner) parseRequest(head []byte, r *http.Request, u *url.URL, h http.Header, vals *[]string) bool {
	line, rest, _ := bytes.Cut(head, crlf2[:2])
	method, line, _ := bytes.Cut(line, []byte(" "))
	target, _, _ := bytes.Cut(line, []byte(" "))
	if len(target) == 0 || target[0] != '/' {
		return false // absolute and asterisk forms: net/http's parser
	}
	for _, c := range target {
		if c >= 0x7f || c == '%' || c == '#' {
			return false // escapes and the rest: net/url's parser
		}
	}
	clear(h)
	*vals = (*vals)[:0]
	if !in.fields(rest, h, vals) {
		return false // obsolete line folding
	}
	hosts := h["Host"] // one, in a valid HTTP/1.1 head
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
			if len(te) != 1 || !asciiFold(te[0], "chunked") {
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
