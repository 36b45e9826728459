package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSignCSR(t *testing.T) {
	ca := newTestCA(t, "c1")
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(key, "node-a", []string{"10.0.0.1", "node-a.weft.internal", "fd00::1"})
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	// Rewrite the CN inside the signed bytes: the CN check passes for
	// "node-b", the signature check must not.
	block, _ := pem.Decode(csr)
	tampered := pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: bytes.Replace(block.Bytes, []byte("node-a"), []byte("node-b"), 1)})

	tests := []struct {
		name     string
		csr      []byte
		node     string
		validity time.Duration
		wantErr  string
	}{
		{"ok", csr, "node-a", time.Hour, ""},
		{"wrong cn", csr, "node-b", time.Hour, `common name "node-a" does not match node name "node-b"`},
		{"tampered", tampered, "node-b", time.Hour, "signature"},
		{"not pem", []byte("junk"), "node-a", time.Hour, "no CERTIFICATE REQUEST"},
		{"zero validity", csr, "node-a", 0, "not positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ca.SignCSR(tc.csr, tc.node, tc.validity)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("SignCSR error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("SignCSR: %v", err)
			}
			checkNodeCert(t, ca, got, "node-a", []string{"node-a.weft.internal"}, []string{"10.0.0.1", "fd00::1"})
		})
	}
}

func TestSignCSRClampsToCAExpiry(t *testing.T) {
	ca := newTestCA(t, "c1")
	certPEM, _, err := ca.IssueNode("n1", nil, 100*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("node NotAfter %s, want no later than the CA's %s", c.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueNode(t *testing.T) {
	ca := newTestCA(t, "c1")
	certPEM, keyPEM, err := ca.IssueNode("node-a", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatalf("IssueNode: %v", err)
	}
	checkNodeCert(t, ca, certPEM, "node-a", nil, []string{"127.0.0.1"})
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		t.Fatalf("parse issued key: %v", err)
	}
	c, _ := ParseCertPEM(certPEM)
	if !key.PublicKey.Equal(c.PublicKey) {
		t.Error("issued key does not match the issued certificate")
	}
}

// checkNodeCert checks what every node certificate must be.
func checkNodeCert(t *testing.T, ca *CA, certPEM []byte, cn string, dns, ips []string) {
	t.Helper()
	c, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatalf("parse node certificate: %v", err)
	}
	if c.Subject.CommonName != cn {
		t.Errorf("CN = %q, want %q", c.Subject.CommonName, cn)
	}
	if c.IsCA {
		t.Error("node certificate is a CA")
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if !slices.Equal(c.ExtKeyUsage, wantEKU) {
		t.Errorf("ExtKeyUsage = %v, want %v", c.ExtKeyUsage, wantEKU)
	}
	if !slices.Equal(c.DNSNames, dns) {
		t.Errorf("DNSNames = %q, want %q (no implicit localhost)", c.DNSNames, dns)
	}
	var gotIPs []string
	for _, ip := range c.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	if !slices.Equal(gotIPs, ips) {
		t.Errorf("IPAddresses = %q, want %q (no implicit 127.0.0.1)", gotIPs, ips)
	}
	for _, usage := range wantEKU {
		_, err := c.Verify(x509.VerifyOptions{Roots: poolOf([]*x509.Certificate{ca.Cert}), KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			t.Errorf("verify for %v against the CA: %v", usage, err)
		}
	}
	if len(ips) > 0 {
		if err := c.VerifyHostname(net.ParseIP(ips[0]).String()); err != nil {
			t.Errorf("VerifyHostname(%s): %v", ips[0], err)
		}
	}
}

func TestNewCSRErrors(t *testing.T) {
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCSR(key, "", nil); err == nil {
		t.Error("NewCSR with empty node name succeeded, want an error")
	}
	if _, err := NewCSR(key, "n1", []string{""}); err == nil {
		t.Error("NewCSR with an empty host succeeded, want an error")
	}
}
