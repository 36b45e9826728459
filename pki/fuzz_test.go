package pki

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// FuzzSignCSR feeds SignCSR what a joiner controls: the CSR bytes. It must
// never panic, and whatever it signs is a node certificate for that node.
func FuzzSignCSR(f *testing.F) {
	ca, err := NewCA("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	key, _, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	csr, err := NewCSR(key, "node-a", []string{"10.0.0.1", "node-a.weft"})
	if err != nil {
		f.Fatal(err)
	}
	block, _ := pem.Decode(csr)
	f.Add(block.Bytes)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		in := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		out, err := ca.SignCSR(in, "node-a", time.Hour)
		if err != nil {
			return
		}
		c, err := ParseCertPEM(out)
		if err != nil {
			t.Fatalf("SignCSR returned an unparsable certificate: %v", err)
		}
		if c.Subject.CommonName != "node-a" || c.IsCA {
			t.Fatalf("signed CN %q, IsCA %v; want node-a, false", c.Subject.CommonName, c.IsCA)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: poolOf([]*x509.Certificate{ca.Cert}), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("signed certificate does not verify: %v", err)
		}
	})
}
