package l7

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/weftlb/weft/l7/internal/osslrsa"
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

// newCertSet compiles a listener's certificates; signer, when not nil,
// gives the key each certificate's handshakes sign with.
func newCertSet(names []string, certs map[string]tls.Certificate, signer func(cert string, key crypto.PrivateKey) crypto.PrivateKey) (*certSet, error) {
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
		if signer != nil {
			c.PrivateKey = signer(n, c.PrivateKey)
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
func serverTLS(l Listener, cfg *Config, signer func(string, crypto.PrivateKey) crypto.PrivateKey) (*tls.Config, error) {
	cs, err := newCertSet(l.Certificates, cfg.Certificates, signer)
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

// signer returns the key a certificate's handshakes sign with: for an RSA
// key, an osslrsa.Signer, whose signatures libcrypto makes in about a third
// of crypto/rsa's time (the bulk of a full handshake's CPU), made once per
// key and kept across Applies while a certificate holds the key; other keys,
// and RSA keys libcrypto does not take, as they are.
func (c *compiler) signer(cert string, key crypto.PrivateKey) crypto.PrivateKey {
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return key
	}
	if s, ok := c.signers[rk]; ok {
		return s
	}
	s, ok := c.p.signers[rk]
	if !ok {
		s = c.p.newSigner(cert, rk)
	}
	c.signers[rk] = s
	return s
}

// logSigner makes the log say once per process which code signs for RSA
// certificates.
var logSigner sync.Once

func (p *Proxy) newSigner(cert string, key *rsa.PrivateKey) crypto.Signer {
	version, err := osslrsa.Load()
	logSigner.Do(func() {
		if err != nil {
			p.log.Info("l7 rsa certificates sign with crypto/rsa", "reason", err)
		} else {
			p.log.Info("l7 rsa certificates sign with libcrypto", "version", version)
		}
	})
	if err != nil {
		return key
	}
	s, err := osslrsa.New(key)
	if err != nil {
		p.log.Warn("l7 certificate: libcrypto does not take its rsa key; crypto/rsa signs for it",
			"certificate", cert, "err", err)
		return key
	}
	return s
}
