package validate

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Certificate validates c in place and fills its status from the leaf
// certificate. Expiry is not checked: an expired certificate is still a
// valid resource (the operator may be replacing it), and status.not_after
// shows it.
func Certificate(cert *weftv1.Certificate) error {
	c, err := metadata(kindCertificate, cert.GetMetadata())
	if err != nil {
		return err
	}
	if cert.Spec == nil {
		cert.Spec = &weftv1.CertificateSpec{}
	}
	s := cert.Spec
	chain, err := parseChain(s.CertificatePem)
	if err != nil {
		return c.fail("spec.certificatePem", "%v", err)
	}
	key, err := parseKey(s.PrivateKeyPem)
	if err != nil {
		return c.fail("spec.privateKeyPem", "%v", err)
	}
	leaf := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return c.fail("spec.privateKeyPem", "does not match the certificate's public key")
	}
	sum := sha256.Sum256(leaf.Raw)
	cert.Status = &weftv1.CertificateStatus{
		DnsNames:    leaf.DNSNames,
		NotBefore:   timestamppb.New(leaf.NotBefore),
		NotAfter:    timestamppb.New(leaf.NotAfter),
		Fingerprint: hex.EncodeToString(sum[:]),
	}
	return nil
}

// parseChain parses a PEM chain, leaf first, and checks that each
// certificate is signed by the next, so a chain in the wrong order is
// caught here rather than by clients failing to verify it.
func parseChain(s string) ([]*x509.Certificate, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("must be set")
	}
	var chain []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		n := len(chain) + 1
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, b.Type)
		}
		crt, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n, err)
		}
		chain = append(chain, crt)
	}
	if len(chain) == 0 {
		return nil, errors.New("has no PEM block")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, fmt.Errorf("has data after PEM block %d that is not PEM", len(chain))
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, fmt.Errorf("certificate %d is not signed by certificate %d (put the leaf first, then each issuer): %w", i+1, i+2, err)
		}
	}
	return chain, nil
}

// parseKey parses one private key in PKCS #8, PKCS #1 (RSA) or SEC 1 (EC)
// form. An "EC PARAMETERS" block before the key, as `openssl ecparam
// -genkey` writes, is skipped.
func parseKey(s string) (crypto.Signer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("must be set")
	}
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("has no PRIVATE KEY PEM block")
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("is encrypted; give the key unencrypted")
		default:
			return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", strings.ToLower(b.Type), err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key type %T cannot sign", k)
		}
		return signer, nil
	}
}
