// Package pki is Weft's cluster certificate authority and the TLS
// configurations built on it: node certificates for the API, Raft and flow
// sync, and the CA pin a joining node uses before it trusts anything.
//
// Every key is ECDSA P-256.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

const (
	// caValidity is how long a cluster CA lives. Rotating it means re-issuing
	// every node certificate, so it is long.
	caValidity = 10 * 365 * 24 * time.Hour

	// NodeCertValidity is how long a node certificate lasts, whether issued
	// at init or signed at join (capped at the CA's own expiry).
	NodeCertValidity = 5 * 365 * 24 * time.Hour

	// clockSkew backdates NotBefore so a certificate issued by one node is
	// already valid on a peer whose clock is a little behind.
	clockSkew = 5 * time.Minute

	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY"
	pemECKey       = "EC PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
)

// CA is a cluster certificate authority: its certificate and key, parsed and
// as PEM.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA for the cluster clusterID, valid for ten
// years. MaxPathLen 0: it signs node certificates only, never another CA.
func NewCA(clusterID string) (*CA, error) {
	if clusterID == "" {
		return nil, errors.New("new ca: cluster id is empty")
	}
	key, keyPEM, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "weft cluster " + clusterID + " CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new ca: parse certificate: %w", err)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}),
		KeyPEM:  keyPEM,
	}, nil
}

// LoadCA parses a CA certificate and key, as NewCA writes them (the key may
// also be SEC 1 "EC PRIVATE KEY"), and checks that they belong together.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("load ca: certificate is not a CA")
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("load ca: key does not match the certificate's public key")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// ParseCertPEM parses the first CERTIFICATE block of pemBytes.
func ParseCertPEM(pemBytes []byte) (*x509.Certificate, error) {
	der, err := firstPEM(pemBytes, pemCertificate)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// NewKey generates a P-256 key and returns it with its PKCS #8 PEM.
func NewKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// pinEncoding is RFC 4648 base32 without padding; Pin lower-cases it so the
// pin reads well inside a join token.
var pinEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// PinLen is the length of every Pin: 32 bytes of SHA-256 in base32.
const PinLen = 52

// Pin is the join-token discovery hash of a CA: SHA-256 of its
// SubjectPublicKeyInfo, base32 lower case without padding. Hashing the
// public key rather than the certificate keeps the pin valid if the CA
// certificate is ever re-issued for the same key.
func Pin(caCert *x509.Certificate) string {
	sum := sha256.Sum256(caCert.RawSubjectPublicKeyInfo)
	return strings.ToLower(pinEncoding.EncodeToString(sum[:]))
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial, nil
}

// firstPEM returns the DER of the first block of type typ.
func firstPEM(data []byte, typ string) ([]byte, error) {
	der, _, ok := nextPEM(data, typ)
	if !ok {
		return nil, fmt.Errorf("no %s PEM block found", typ)
	}
	return der, nil
}

// nextPEM returns the DER of the next block of type typ and what follows it.
func nextPEM(data []byte, typ string) (der, rest []byte, ok bool) {
	for rest = data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, nil, false
		}
		if block.Type == typ {
			return block.Bytes, rest, true
		}
	}
}

// parseKeyPEM parses a P-256 private key from PKCS #8 or SEC 1 PEM.
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY or EC PRIVATE KEY PEM block found")
		}
		var key *ecdsa.PrivateKey
		switch block.Type {
		case pemPrivateKey:
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse private key: %w", err)
			}
			ec, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, want ECDSA P-256", k)
			}
			key = ec
		case pemECKey:
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse private key: %w", err)
			}
			key = k
		default:
			continue
		}
		if key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("private key curve is %s, want P-256", key.Curve.Params().Name)
		}
		return key, nil
	}
}
