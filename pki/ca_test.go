package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"
	"time"
)

func newTestCA(t *testing.T, id string) *CA {
	t.Helper()
	ca, err := NewCA(id)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", id, err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t, "c1")
	c := ca.Cert
	if got, want := c.Subject.CommonName, "weft cluster c1 CA"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v, want 0, true", c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage = %v, want CertSign set", c.KeyUsage)
	}
	if got, min := c.NotAfter.Sub(time.Now()), 9*365*24*time.Hour; got < min {
		t.Errorf("CA valid for %s more, want at least %s", got, min)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if _, err := NewCA(""); err == nil {
		t.Error("NewCA(\"\") succeeded, want an error")
	}
}

func TestLoadCARoundTrip(t *testing.T) {
	ca := newTestCA(t, "c1")
	got, err := LoadCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !got.Cert.Equal(ca.Cert) {
		t.Error("loaded certificate differs from the created one")
	}
	if !got.Key.Equal(ca.Key) {
		t.Error("loaded key differs from the created one")
	}
	if Pin(got.Cert) != Pin(ca.Cert) {
		t.Errorf("pin after load = %s, want %s", Pin(got.Cert), Pin(ca.Cert))
	}
	// A loaded CA signs certificates the original verifies.
	certPEM, _, err := got.IssueNode("n1", nil, time.Hour)
	if err != nil {
		t.Fatalf("IssueNode from loaded CA: %v", err)
	}
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("certificate from loaded CA does not verify: %v", err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c2")
	nodeCert, nodeKey, err := ca.IssueNode("n1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	sec1PEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string // empty: success
	}{
		{"pkcs8 key", ca.CertPEM, ca.KeyPEM, ""},
		{"sec1 key", ca.CertPEM, sec1PEM, ""},
		{"mismatched key", ca.CertPEM, other.KeyPEM, "does not match"},
		{"not a ca", nodeCert, nodeKey, "not a CA"},
		{"no certificate", []byte("junk"), ca.KeyPEM, "no CERTIFICATE"},
		{"no key", ca.CertPEM, ca.CertPEM, "no PRIVATE KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCA(tc.cert, tc.key)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("LoadCA: %v, want success", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("LoadCA error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestPin(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c2")
	pin := Pin(ca.Cert)
	if !regexp.MustCompile(`^[a-z2-7]{52}$`).MatchString(pin) {
		t.Errorf("Pin = %q, want 52 characters of lower-case base32 without padding", pin)
	}
	if len(pin) != PinLen {
		t.Errorf("len(Pin) = %d, want PinLen %d", len(pin), PinLen)
	}
	if Pin(other.Cert) == pin {
		t.Error("two CAs have the same pin")
	}

}
