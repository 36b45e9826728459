package l7

// The HTTP/2 server (golang.org/x/net/http2) and the guard on each of its
// client connections, which makes it answer as RFC 9113 says where it
// does not on its own.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// h2MaxFrame is the SETTINGS_MAX_FRAME_SIZE the server advertises:
	// the protocol's initial value, so a client never sends a larger
	// frame and the guard buffers at most one frame of this size (the
	// server's default, 1 MiB, lets through a 20 KB HEADERS frame that
	// RFC 9113 4.2's peer must reject).
	h2MaxFrame = 16384
	// h2TableSize is the HPACK dynamic table size the server advertises
	// and decodes with; the guard's decoder must follow the same table.
	h2TableSize = 4096
	// h2MaxBlock bounds the header block the guard decodes (and so what
	// its decoder may hold of one); past it the guard steps aside and the
	// server's own header limit (64 KiB by default) answers.
	h2MaxBlock = 256 << 10
)

// HTTP/2 frame types and flags the guard reads (RFC 9113 6).
const (
	frameHeaders      = 0x1
	frameSettings     = 0x4
	frameContinuation = 0x9

	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

// configureHTTP2 makes srv serve HTTP/2 (h2 by ALPN and h2c by prior
// knowledge, as its Protocols say) with x/net's server behind an h2guard,
// writing through a batchConn.
func configureHTTP2(srv *http.Server) error {
	h2 := &http2.Server{
		MaxReadFrameSize:          h2MaxFrame,
		MaxDecoderHeaderTableSize: h2TableSize,
	}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	serve := func(hs *http.Server, c net.Conn, h http.Handler, sawPreface bool) {
		// net/http passes its per-connection base context through an
		// unadvertised method of h, as in x/net's own TLSNextProto.
		var ctx context.Context
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		h2.ServeConn(c, &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs, SawClientPreface: sawPreface})
	}
	srv.TLSNextProto["h2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// Above the TLS connection, so a burst is one record.
		serve(hs, h2guardTLS{newH2Guard(newBatchConn(c), false), c}, h, false)
	}
	// net/http hands an h2c connection whose preface it has read over as
	// a *tls.Conn around a net.Conn with an UnencryptedNetConn method.
	srv.TLSNextProto["unencrypted_http2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		u, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			c.Close()
			return
		}
		serve(hs, newH2Guard(newBatchConn(u.UnencryptedNetConn()), true), h, true)
	}
	return nil
}

// h2guard reads an HTTP/2 client's frames on their way to the server and
// changes two kinds, frame by frame, without holding anything back but
// the frame in hand:
//
//   - A header block with a connection-specific field (Connection,
//     Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade) or a TE
//     other than "trailers" is malformed (RFC 9113 8.2.2), a stream error
//     of type PROTOCOL_ERROR (8.1.1); the server answers it with a 400
//     instead. The guard ends such a block with a CONTINUATION frame of
//     its own holding a field with an invalid name, which the server
//     resets the stream for. The field is a literal without indexing, so
//     the server's HPACK table stays the client's.
//   - A SETTINGS frame naming a setting twice is processed in order
//     (6.5.3); the server closes the connection on it. The guard keeps
//     each setting's last value, which is what processing in order
//     leaves.
//
// Everything else passes as it came; DATA payloads are read straight into
// the server's buffer. What the guard cannot read (a frame larger than
// the server allows, a header block that does not decode) it stops
// guarding at: the server rejects it itself.
type h2guard struct {
	net.Conn
	buf   []byte // bytes read from Conn: buf[r:w]
	r, w  int
	ready int    // buf[r:r+ready] may go to the server
	extra []byte // an added frame, after ready
	skip  int    // payload bytes that pass unread
	off   bool   // no longer guarding: everything passes
	err   error  // the read error behind buf[r:w]

	dec      *hpack.Decoder
	block    int  // bytes of the header block being decoded
	badBlock bool // the block has a connection-specific field
}

// h2guardTLS is an h2guard on a TLS connection: the server reads the TLS
// state through ConnectionState.
type h2guardTLS struct {
	*h2guard
	tc *tls.Conn
}

func (g h2guardTLS) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

// h2Preface is the client connection preface (RFC 9113 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func newH2Guard(c net.Conn, sawPreface bool) *h2guard {
	g := &h2guard{Conn: c, buf: make([]byte, 9+h2MaxFrame)}
	if !sawPreface {
		g.skip = len(h2Preface) // the server checks it
	}
	g.dec = hpack.NewDecoder(h2TableSize, g.field)
	g.dec.SetMaxStringLength(h2MaxBlock)
	return g
}

// invalidField is a HEADERS block fragment holding one literal field
// without indexing whose name has an upper-case letter, which HTTP/2
// forbids (RFC 9113 8.2.1).
var invalidField = func() []byte {
	var e hpackBuf
	enc := hpack.NewEncoder(&e)
	enc.WriteField(hpack.HeaderField{Name: "Weft-Malformed", Value: "1", Sensitive: true})
	return e
}()

type hpackBuf []byte

func (b *hpackBuf) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

func (g *h2guard) field(f hpack.HeaderField) {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.badBlock = true
	case "te":
		// As net/http judges TE: "trailers" or empty.
		if f.Value != "trailers" && f.Value != "" {
			g.badBlock = true
		}
	}
}

func (g *h2guard) Read(p []byte) (int, error) {
	for {
		switch {
		case g.ready > 0:
			n := copy(p, g.buf[g.r:g.r+g.ready])
			g.r += n
			g.ready -= n
			return n, nil
		case len(g.extra) > 0:
			n := copy(p, g.extra)
			g.extra = g.extra[n:]
			return n, nil
		case g.skip > 0 && g.r < g.w:
			g.ready = min(g.skip, g.w-g.r)
			g.skip -= g.ready
			continue
		case g.off && g.r < g.w:
			g.ready = g.w - g.r
			continue
		case g.r < g.w && g.frame():
			continue
		case g.err != nil:
			// A frame cut short by the end: it passes as it is.
			if g.r < g.w {
				g.off = true
				continue
			}
			return 0, g.err
		case g.skip > 0 || g.off:
			// Nothing buffered: straight into the server's buffer.
			if g.skip > 0 && len(p) > g.skip {
				p = p[:g.skip]
			}
			n, err := g.Conn.Read(p)
			if g.skip > 0 {
				g.skip -= n
			}
			return n, err
		}
		if g.r == g.w {
			g.r, g.w = 0, 0
		} else if g.r > 0 {
			g.w = copy(g.buf, g.buf[g.r:g.w])
			g.r = 0
		}
		n, err := g.Conn.Read(g.buf[g.w:])
		g.w += n
		g.err = err
	}
}

// frame looks at the frame starting at buf[r]: false means it is not all
// in yet.
func (g *h2guard) frame() bool {
	b := g.buf[g.r:g.w]
	if len(b) < 9 {
		return false
	}
	length := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
	typ, flags := b[3], b[4]
	stream := binary.BigEndian.Uint32(b[5:9]) & (1<<31 - 1)
	if length > h2MaxFrame {
		g.off = true
		return true
	}
	if typ != frameHeaders && typ != frameContinuation && typ != frameSettings {
		g.ready, g.skip = 9, length
		return true
	}
	if len(b) < 9+length {
		return false
	}
	payload := b[9 : 9+length]
	switch typ {
	case frameSettings:
		if flags&flagAck == 0 && stream == 0 && length%6 == 0 {
			g.dedupSettings(payload)
			return true
		}
	case frameHeaders, frameContinuation:
		frag, ok := fragment(typ, flags, payload)
		if ok && g.block+len(frag) <= h2MaxBlock {
			g.block += len(frag)
			_, err := g.dec.Write(frag)
			ok = err == nil
		}
		if ok && flags&flagEndHeaders != 0 {
			ok = g.dec.Close() == nil
			if ok && g.badBlock {
				b[4] &^= flagEndHeaders
				g.extra = continuation(stream, invalidField)
			}
			g.block, g.badBlock = 0, false
		}
		if !ok {
			g.off = true
			return true
		}
	}
	g.ready = 9 + length
	return true
}

// fragment is the header block fragment of a HEADERS or CONTINUATION
// frame's payload, without padding and priority.
func fragment(typ, flags byte, p []byte) ([]byte, bool) {
	if typ == frameContinuation {
		return p, true
	}
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// continuation is a CONTINUATION frame ending a header block with frag.
func continuation(stream uint32, frag []byte) []byte {
	f := make([]byte, 9, 9+len(frag))
	f[0], f[1], f[2] = byte(len(frag)>>16), byte(len(frag)>>8), byte(len(frag))
	f[3], f[4] = frameContinuation, flagEndHeaders
	binary.BigEndian.PutUint32(f[5:], stream)
	return append(f, frag...)
}

// dedupSettings rewrites the SETTINGS frame at buf[r] with payload p to
// name each setting once, with its last value, and marks it ready.
func (g *h2guard) dedupSettings(p []byte) {
	n := 0
next:
	for i := 0; i < len(p); i += 6 {
		for j := 0; j < n; j += 6 {
			if p[j] == p[i] && p[j+1] == p[i+1] {
				copy(p[j+2:j+6], p[i+2:i+6])
				continue next
			}
		}
		copy(p[n:n+6], p[i:i+6])
		n += 6
	}
	// Close the gap behind the shortened frame.
	end := g.r + 9 + len(p)
	g.w = g.r + 9 + n + copy(g.buf[g.r+9+n:], g.buf[end:g.w])
	hdr := g.buf[g.r:]
	hdr[0], hdr[1], hdr[2] = byte(n>>16), byte(n>>8), byte(n)
	g.ready = 9 + n
}
