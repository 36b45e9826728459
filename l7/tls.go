package l7

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
)

// certSet chooses a listener's certificate by SNI: exact names first, then
// "*." wildcards, then the listener's first certificate. Among certificates
// for the same name it takes the first the client supports, so a listener
// with an ECDSA and an RSA certificate serves each client the one it can use,
// ECDSA when it can.
type certSet struct {
	exact map[string][]*tls.Certificate
	wild  map[string][]*tls.Certificate // by the part after "*."
	all   []*tls.Certificate
}

func newCertSet(names []string, certs map[string]tls.Certificate) (*certSet, error) {
	cs := &certSet{exact: map[string][]*tls.Certificate{}, wild: map[string][]*tls.Certificate{}}
	if len(names) == 0 {
		return nil, fmt.Errorf("no certificates")
	}
	for _, n := range names {
		c, ok := certs[n]
		if !ok {
			return nil, fmt.Errorf("certificate %q is not in the config", n)
		}
		if len(c.Certificate) == 0 {
			return nil, fmt.Errorf("certificate %q is empty", n)
		}
		if c.Leaf == nil {
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("certificate %q: parse leaf: %w", n, err)
			}
			c.Leaf = leaf
		}
		cp := &c
		cs.all = append(cs.all, cp)
		dns := c.Leaf.DNSNames
		if len(dns) == 0 && c.Leaf.Subject.CommonName != "" {
			dns = []string{c.Leaf.Subject.CommonName}
		}
		for _, d := range dns {
			d = strings.ToLower(d)
			if rest, ok := strings.CutPrefix(d, "*."); ok {
				cs.wild[rest] = append(cs.wild[rest], cp)
			} else {
				cs.exact[d] = append(cs.exact[d], cp)
			}
		}
	}
	// ECDSA first: cheaper handshakes for the clients that support it,
	// whatever the order of the listener's certificate list.
	for _, m := range []map[string][]*tls.Certificate{cs.exact, cs.wild} {
		for _, l := range m {
			slices.SortStableFunc(l, func(a, b *tls.Certificate) int { return ecdsaFirst(a) - ecdsaFirst(b) })
		}
	}
	return cs, nil
}

func ecdsaFirst(c *tls.Certificate) int {
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); ok {
		return 0
	}
	return 1
}

func (cs *certSet) get(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(chi.ServerName, "."))
	cands := cs.exact[name]
	if len(cands) == 0 {
		if i := strings.IndexByte(name, '.'); i >= 0 {
			cands = cs.wild[name[i+1:]]
		}
	}
	if len(cands) == 0 {
		cands = cs.all
	}
	for _, c := range cands {
		if chi.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	return cands[0], nil
}

// serverTLS builds a listener's TLS config for one Apply. The listener's
// socket keeps a fixed config whose GetConfigForClient returns the current
// one, so certificates and ticket keys change without touching the socket.
func serverTLS(l Listener, cfg *Config) (*tls.Config, error) {
	cs, err := newCertSet(l.Certificates, cfg.Certificates)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cs.get,
		NextProtos:     []string{"http/1.1"},
	}
	if l.HTTP2 {
		tc.NextProtos = []string{"h2", "http/1.1"}
	}
	if len(cfg.TicketKeys) > 0 {
		tc.SetSessionTicketKeys(cfg.TicketKeys)
	}
	return tc, nil
}
