package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// ServerTLS returns a server config that presents the node certificate
// followed by the CA certificate that signed it, so a joiner holding only a
// pin (PinnedClientTLS) sees the CA, and trusts caPEM for client
// certificates. clientAuth is tls.VerifyClientCertIfGiven for the API
// (bearer token or client certificate) and tls.RequireAndVerifyClientCert
// for Raft and flow sync.
//
// NextProtos offers h2 and http/1.1 for the API; a client that offers no
// ALPN (the Raft transport) is unaffected.
func ServerTLS(certPEM, keyPEM, caPEM []byte, clientAuth tls.ClientAuthType) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("server tls: node key pair: %w", err)
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("server tls: ca: %w", err)
	}
	i := slices.IndexFunc(cas, func(ca *x509.Certificate) bool { return pair.Leaf.CheckSignatureFrom(ca) == nil })
	if i < 0 {
		return nil, errors.New("server tls: node certificate is not signed by any certificate in the CA PEM")
	}
	if !slices.ContainsFunc(pair.Certificate, func(der []byte) bool { return bytes.Equal(der, cas[i].Raw) }) {
		pair.Certificate = append(pair.Certificate, cas[i].Raw)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    poolOf(cas),
		ClientAuth:   clientAuth,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}, nil
}

// ClientTLS returns a client config that trusts caPEM and presents
// certPEM/keyPEM as its client certificate when they are given (both nil
// for none). The caller sets ServerName when dialling by something other
// than a name or address in the server's certificate.
func ClientTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("client tls: ca: %w", err)
	}
	cfg := &tls.Config{RootCAs: poolOf(cas), MinVersion: tls.VersionTLS12}
	if certPEM == nil && keyPEM == nil {
		return cfg, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client tls: client key pair: %w", err)
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// PinnedClientTLS returns a client config for a joiner that has no CA yet,
// only the pin from its join token. It skips the usual verification and
// instead requires that the last certificate of the server's chain is a CA
// whose Pin is pin and that the leaf verifies against that CA alone. The
// check runs inside the handshake, so a server that fails it never receives
// application data (the join token). Host names are not checked: the pin,
// not the address, names the cluster.
func PinnedClientTLS(pin string) *tls.Config {
	return &tls.Config{
		// Verification is done by VerifyPeerCertificate below.
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return verifyPinned(rawCerts, pin)
		},
	}
}

func verifyPinned(rawCerts [][]byte, pin string) error {
	if len(rawCerts) < 2 {
		return fmt.Errorf("pinned tls: server sent %d certificates, want the node certificate and the CA", len(rawCerts))
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("pinned tls: certificate %d: %w", i, err)
		}
		certs[i] = c
	}
	ca := certs[len(certs)-1]
	if !ca.IsCA {
		return errors.New("pinned tls: last certificate of the server's chain is not a CA")
	}
	if Pin(ca) != pin {
		return errors.New("pinned tls: server's CA does not match the pin in the join token")
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1 : len(certs)-1] {
		intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         poolOf([]*x509.Certificate{ca}),
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("pinned tls: verify node certificate against the pinned CA: %w", err)
	}
	return nil
}

// NodeName returns the CN of the client certificate of a connection, and
// whether there is one that was verified against the CA. Unverified
// certificates (tls.RequestClientCert) are ignored.
func NodeName(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	name := cs.VerifiedChains[0][0].Subject.CommonName
	return name, name != ""
}

// parseCerts parses every CERTIFICATE block of data; there must be one.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		der, r, ok := nextPEM(rest, pemCertificate)
		if !ok {
			break
		}
		rest = r
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block found")
	}
	return certs, nil
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}
