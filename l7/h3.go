package l7

// HTTP/3: an https listener with HTTP3 also serves QUIC on the UDP port of
// its address, through quic-go's http3 server, with the handler of its TCP
// side (the socket: same table, routes, pools, sticky cookies and access
// log).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// altSvcMaxAge is the Alt-Svc lifetime in seconds (a day, as nginx's
// example): a client that finds HTTP/3 gone falls back to TCP meanwhile.
const altSvcMaxAge = 86400

// h3Server is the HTTP/3 side of a socket. Under Proxy.mu.
type h3Server struct {
	conn *net.UDPConn
	tr   *quic.Transport
	ln   *quic.Listener
	srv  *http3.Server
	done chan struct{} // closed when srv stops serving ln
}

// bindH3 binds the UDP side of each HTTP/3 listener whose socket (in
// sockets) does not serve HTTP/3 yet, and listens for QUIC on it. Nothing
// is served before start. On error it closes what it bound.
func (p *Proxy) bindH3(ctx context.Context, ls []Listener, tables []*table, sockets map[netip.AddrPort]*socket) (map[netip.AddrPort]*h3Server, error) {
	out := map[netip.AddrPort]*h3Server{}
	for i, l := range ls {
		s := sockets[l.Addr]
		if !l.HTTP3 || s.h3 != nil {
			continue
		}
		h, err := p.newH3(ctx, s, l.Addr, tables[i])
		if err != nil {
			for _, h := range out {
				h.close()
			}
			return nil, fmt.Errorf("listener %q: http3: %w", l.Name, err)
		}
		out[l.Addr] = h
	}
	return out, nil
}

// newH3 binds and listens for one socket, whose table is t from now on.
func (p *Proxy) newH3(ctx context.Context, s *socket, addr netip.AddrPort, t *table) (*h3Server, error) {
	conn, err := listenUDP(ctx, addr)
	if err != nil {
		return nil, err
	}
	// quic-go raises the socket's buffers to 7 MiB (with SO_RCVBUFFORCE
	// as root) and logs once when it cannot.
	tr := &quic.Transport{Conn: conn, ConnectionIDGenerator: serverCIDs{p.opts.QUICServerID}}
	tc := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		if t := s.table.Load(); t.tls3 != nil {
			return t.tls3, nil
		}
		return nil, errors.New("listener does not serve http3")
	}}
	ln, err := tr.Listen(tc, &quic.Config{})
	if err != nil {
		tr.Close()
		conn.Close()
		return nil, fmt.Errorf("listen for quic: %w", err)
	}
	// The idle timeout and header limit of the listener when HTTP/3
	// starts stay until it stops: the UDP socket cannot be handed to a
	// new server without cutting its connections.
	return &h3Server{conn: conn, tr: tr, ln: ln, done: make(chan struct{}), srv: &http3.Server{
		Handler:        s,
		IdleTimeout:    t.timeouts.Idle,
		MaxHeaderBytes: t.limits.MaxHeaderBytes,
		Logger:         p.log,
	}}, nil
}

// start serves HTTP/3 on the listener.
func (h *h3Server) start(p *Proxy, addr netip.AddrPort) {
	go func() {
		defer close(h.done)
		if err := h.srv.ServeListener(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("l7 http3 server stopped", "addr", addr, "err", err)
		}
	}()
}

// shutdown stops taking connections, sends GOAWAY on those open, lets their
// requests finish until ctx ends, then closes all.
func (h *h3Server) shutdown(ctx context.Context) {
	// Shutdown leaves open a listener it did not create: close it first,
	// or handshakes would go on to connections nobody serves.
	h.ln.Close()
	h.srv.Shutdown(ctx)
	h.close()
}

// close cuts the connections and releases the socket.
func (h *h3Server) close() {
	h.srv.Close()
	h.ln.Close()
	h.tr.Close()
	h.conn.Close()
}

// stopH3 ends a socket's HTTP/3 side in the background, draining its
// requests for up to Options.DrainTimeout: unlike TCP, clients keep an idle
// QUIC connection open after GOAWAY.
func (p *Proxy) stopH3(s *socket) {
	h := s.h3
	if h == nil {
		return
	}
	s.h3 = nil
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
		defer cancel()
		h.shutdown(ctx)
	}()
}
