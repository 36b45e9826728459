package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"time"
)

// NewCSR makes a PEM certificate signing request for a node: CN nodeName,
// and a SAN per host (IP addresses as IP SANs, anything else as DNS SANs).
func NewCSR(key *ecdsa.PrivateKey, nodeName string, hosts []string) ([]byte, error) {
	if nodeName == "" {
		return nil, errors.New("new csr: node name is empty")
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeName}}
	for _, h := range hosts {
		if h == "" {
			return nil, errors.New("new csr: empty host")
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("new csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// SignCSR issues a node certificate for csrPEM, valid for validity (cut to
// the CA's own expiry). It checks the CSR's signature, that its CN is
// nodeName and that its key is P-256. The certificate carries the CN and the
// CSR's DNS and IP SANs only (no implicit localhost, no other subject fields
// or extensions the requester asked for) and both server and client auth,
// because every node is both for the API, Raft and flow sync.
func (ca *CA) SignCSR(csrPEM []byte, nodeName string, validity time.Duration) ([]byte, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("sign csr: validity %s is not positive", validity)
	}
	der, err := firstPEM(csrPEM, pemCSR)
	if err != nil {
		return nil, fmt.Errorf("sign csr: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("sign csr: parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign csr: check signature: %w", err)
	}
	if csr.Subject.CommonName != nodeName {
		return nil, fmt.Errorf("sign csr: common name %q does not match node name %q", csr.Subject.CommonName, nodeName)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("sign csr: public key is not ECDSA P-256")
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("sign csr: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeName},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		// ECDSA keys only sign, so no KeyEncipherment.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              csr.DNSNames,
		IPAddresses:           csr.IPAddresses,
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign csr: create certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert}), nil
}

// IssueNode creates a key and a signed certificate for a node in one step,
// for the first node of a cluster, which signs its own.
func (ca *CA) IssueNode(nodeName string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("issue node: %w", err)
	}
	csr, err := NewCSR(key, nodeName, hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node: %w", err)
	}
	certPEM, err = ca.SignCSR(csr, nodeName, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node: %w", err)
	}
	return certPEM, keyPEM, nil
}
