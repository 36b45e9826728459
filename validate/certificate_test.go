package validate

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// testCert is a generated certificate with its key.
type testCert struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  string
}

var serial int64

// newCert creates a certificate for key, signed by parent (self-signed when
// parent is nil).
func newCert(t *testing.T, key crypto.Signer, parent *testCert, isCA bool, notAfter time.Time, dnsNames ...string) *testCert {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "weft test " + string(rune('a'+serial))},
		NotBefore:             time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              notAfter,
		DNSNames:              dnsNames,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return &testCert{cert: crt, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8(t *testing.T, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func sec1(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

func certResource(chain, key string) *weftv1.Certificate {
	return &weftv1.Certificate{
		Metadata: &weftv1.Metadata{Name: "x"},
		Spec:     &weftv1.CertificateSpec{CertificatePem: chain, PrivateKeyPem: key},
	}
}

func TestCertificateValid(t *testing.T) {
	year := time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := newCert(t, ecKey(t), nil, true, year)
	leafKey := ecKey(t)
	leaf := newCert(t, leafKey, ca, false, year, "www.example.com", "example.com")
	rsaLeafKey := rsaKey(t)
	rsaLeaf := newCert(t, rsaLeafKey, nil, false, year, "rsa.example.com")
	expired := newCert(t, leafKey, ca, false, time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), "old.example.com")
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})

	tests := []struct {
		name       string
		chain, key string
		leaf       *testCert
	}{
		{"ecdsa chain, pkcs8 key", leaf.pem + ca.pem, pkcs8(t, leafKey), leaf},
		{"ecdsa, sec1 key", leaf.pem, sec1(t, leafKey), leaf},
		{"ecdsa, sec1 key after ec parameters", leaf.pem + ca.pem, ecParams + sec1(t, leafKey), leaf},
		{"rsa, pkcs1 key", rsaLeaf.pem, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaLeafKey)), rsaLeaf},
		{"rsa, pkcs8 key", rsaLeaf.pem, pkcs8(t, rsaLeafKey), rsaLeaf},
		{"expired is accepted", expired.pem, pkcs8(t, leafKey), expired},
		{"surrounding text", "# chain\n" + leaf.pem + "\n\n", "\n" + pkcs8(t, leafKey), leaf},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := certResource(tc.chain, tc.key)
			// A status sent by a client is replaced by the computed one.
			c.Status = &weftv1.CertificateStatus{Fingerprint: "bogus"}
			if err := Certificate(c); err != nil {
				t.Fatalf("Certificate() = %v, want nil", err)
			}
			sum := sha256.Sum256(tc.leaf.cert.Raw)
			want := &weftv1.CertificateStatus{
				DnsNames:    tc.leaf.cert.DNSNames,
				NotBefore:   timestamppb.New(tc.leaf.cert.NotBefore),
				NotAfter:    timestamppb.New(tc.leaf.cert.NotAfter),
				Fingerprint: hex.EncodeToString(sum[:]),
			}
			if !proto.Equal(c.Status, want) {
				t.Errorf("status:\n got %s\nwant %s", protojson.Format(c.Status), protojson.Format(want))
			}
		})
	}
}

func TestCertificateInvalid(t *testing.T) {
	year := time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := newCert(t, ecKey(t), nil, true, year)
	leafKey := ecKey(t)
	leaf := newCert(t, leafKey, ca, false, year, "www.example.com")
	rsaLeafKey := rsaKey(t)
	rsaLeaf := newCert(t, rsaLeafKey, nil, false, year, "rsa.example.com")
	other := newCert(t, ecKey(t), nil, true, year)
	key := pkcs8(t, leafKey)

	tests := []struct {
		name       string
		chain, key string
		wantField  string
		wantIn     string
	}{
		{"no chain", "", key, "spec.certificatePem", "must be set"},
		{"not pem", "hello", key, "spec.certificatePem", "has no PEM block"},
		{"key in chain", leaf.pem + key, key, "spec.certificatePem", `PEM block 2 is "PRIVATE KEY", want CERTIFICATE`},
		{"bad der", pemBlock("CERTIFICATE", []byte("nope")), key, "spec.certificatePem", "certificate 1: "},
		{"trailing junk", leaf.pem + "junk", key, "spec.certificatePem", "has data after PEM block 1 that is not PEM"},
		{"chain in the wrong order", ca.pem + leaf.pem, key, "spec.certificatePem", "certificate 1 is not signed by certificate 2"},
		{"unrelated issuer", leaf.pem + other.pem, key, "spec.certificatePem", "certificate 1 is not signed by certificate 2"},
		{"no key", leaf.pem, "", "spec.privateKeyPem", "must be set"},
		{"key not pem", leaf.pem, "secret", "spec.privateKeyPem", "has no PRIVATE KEY PEM block"},
		{"certificate as key", leaf.pem, leaf.pem, "spec.privateKeyPem", `PEM block is "CERTIFICATE"`},
		{"encrypted key", leaf.pem, pemBlock("ENCRYPTED PRIVATE KEY", []byte{1}), "spec.privateKeyPem", "is encrypted"},
		{"bad key der", leaf.pem, pemBlock("EC PRIVATE KEY", []byte{1}), "spec.privateKeyPem", "parse ec private key: "},
		{"ecdsa key of another cert", leaf.pem, pkcs8(t, ecKey(t)), "spec.privateKeyPem", "does not match the certificate's public key"},
		{"rsa key for ecdsa cert", leaf.pem, pkcs8(t, rsaLeafKey), "spec.privateKeyPem", "does not match the certificate's public key"},
		{"key of the issuer", leaf.pem + ca.pem, pkcs8(t, ca.key), "spec.privateKeyPem", "does not match the certificate's public key"},
		{"ecdsa key for rsa cert", rsaLeaf.pem, key, "spec.privateKeyPem", "does not match the certificate's public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := certResource(tc.chain, tc.key)
			err := Resource(&weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: c}})
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Certificate() = %v, want a *FieldError for %s", err, tc.wantField)
			}
			if fe.Field != tc.wantField || !strings.Contains(fe.Problem, tc.wantIn) {
				t.Errorf("got field %q problem %q, want field %q problem containing %q", fe.Field, fe.Problem, tc.wantField, tc.wantIn)
			}
			if c.Status != nil {
				t.Errorf("status = %v, want nil on error", c.Status)
			}
		})
	}
}

func TestCertificateMismatchMessage(t *testing.T) {
	year := time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := newCert(t, ecKey(t), nil, false, year, "www.example.com")
	err := Certificate(certResource(leaf.pem, pkcs8(t, ecKey(t))))
	want := `certificate "x": spec.privateKeyPem: does not match the certificate's public key`
	if err == nil || err.Error() != want {
		t.Errorf("Certificate() = %v, want %s", err, want)
	}
}
