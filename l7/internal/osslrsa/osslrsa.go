// Package osslrsa makes the RSA signatures of TLS handshakes with OpenSSL's
// libcrypto instead of crypto/rsa: an RSA-2048 private-key operation costs
// Go about 0.7-1 ms and libcrypto about 0.3 ms on the machines Weft is
// measured on, and a full handshake with an RSA certificate is mostly that
// one signature. crypto/tls takes any crypto.Signer as a certificate's
// private key, so a Signer goes where the *rsa.PrivateKey was.
//
// libcrypto is opened with dlopen at first use (libcrypto.so.3, OpenSSL 3),
// so the build needs a C compiler but no OpenSSL headers, and a machine
// without libcrypto still runs: New then returns an error and the caller
// keeps Go's key. Built without cgo, New always does.
package osslrsa

import (
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Signer is a crypto.Signer for an RSA key whose PKCS#1 v1.5 and PSS
// signatures over SHA-256, SHA-384 and SHA-512 digests libcrypto makes; other
// hashes (SHA-1, MD5+SHA-1, which TLS 1.2 peers may still ask for) and
// decryption go to the Go key, as before.
type Signer struct {
	key *rsa.PrivateKey
	lc  *evpKey
	n   atomic.Uint64 // signatures libcrypto made
}

var (
	_ crypto.Signer    = (*Signer)(nil)
	_ crypto.Decrypter = (*Signer)(nil)
)

var lib struct {
	once    sync.Once
	version string
	err     error
}

// Load opens libcrypto once and reports its version, or why it cannot be
// used (no cgo, no libcrypto.so.3, a symbol missing). In Go's FIPS 140-3
// mode it is not used: signatures stay inside Go's validated module.
func Load() (version string, err error) {
	lib.once.Do(func() {
		if fips140.Enabled() {
			lib.err = errors.New("Go's FIPS 140-3 mode is on")
			return
		}
		lib.version, lib.err = load()
	})
	return lib.version, lib.err
}

// New returns a Signer for key, or an error when libcrypto is not there or
// does not take the key; the caller then keeps key itself. It imports the
// key into an EVP_PKEY kept for the Signer's life, and checks one PKCS#1 v1.5
// and one PSS signature with crypto/rsa before returning.
func New(key *rsa.PrivateKey) (*Signer, error) {
	if _, err := Load(); err != nil {
		return nil, err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	lc, err := newEVPKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("libcrypto: import key: %w", err)
	}
	if lc.size != key.Size() {
		return nil, fmt.Errorf("libcrypto: key of %d bytes, want %d", lc.size, key.Size())
	}
	s := &Signer{key: key, lc: lc}
	d := sha256.Sum256([]byte("osslrsa self-check"))
	for _, opts := range []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}} {
		sig, err := s.Sign(nil, d[:], opts)
		if err == nil {
			err = verify(&key.PublicKey, d[:], sig, opts)
		}
		if err != nil {
			return nil, fmt.Errorf("libcrypto: self-check: %w", err)
		}
	}
	s.n.Store(0)
	return s, nil
}

func verify(pub *rsa.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	if o, ok := opts.(*rsa.PSSOptions); ok {
		return rsa.VerifyPSS(pub, o.Hash, digest, sig, o)
	}
	return rsa.VerifyPKCS1v15(pub, opts.HashFunc(), digest, sig)
}

// Public returns the Go public key, so crypto/tls chooses the RSA schemes it
// would for the Go key.
func (s *Signer) Public() crypto.PublicKey { return &s.key.PublicKey }

// Signatures is how many signatures libcrypto made for s.
func (s *Signer) Signatures() uint64 { return s.n.Load() }

// Sign signs digest as rsa.PrivateKey.Sign does: PSS when opts is an
// *rsa.PSSOptions (rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, the
// longest salt, or a length), PKCS#1 v1.5 otherwise. libcrypto draws the
// salt and the blinding from its own generator, so rand is used only for
// what goes to the Go key. An error from libcrypto is returned, never a
// signature it did not finish.
func (s *Signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	md, ok := digests[h]
	if !ok {
		return s.key.Sign(rand, digest, opts)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("osslrsa: %d-byte digest for %v, want %d", len(digest), h, h.Size())
	}
	salt := noPSS
	if o, ok := opts.(*rsa.PSSOptions); ok {
		switch {
		case o.SaltLength == rsa.PSSSaltLengthAuto:
			salt = saltMax
		case o.SaltLength == rsa.PSSSaltLengthEqualsHash:
			salt = saltDigest
		case o.SaltLength > 0:
			salt = o.SaltLength
		default:
			return nil, fmt.Errorf("osslrsa: PSS salt length %d", o.SaltLength)
		}
	}
	sig, err := s.lc.sign(md, salt, digest)
	if err != nil {
		return nil, fmt.Errorf("osslrsa: sign: %w", err)
	}
	if len(sig) != s.key.Size() {
		return nil, fmt.Errorf("osslrsa: sign: %d-byte signature, want %d", len(sig), s.key.Size())
	}
	s.n.Add(1)
	return sig, nil
}

// Decrypt is the Go key's (the static RSA key exchange of TLS 1.2, which
// crypto/tls offers only when configured to).
func (s *Signer) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return s.key.Decrypt(rand, msg, opts)
}

// What the C side is told: the digest (one of digests' values) and the
// padding, noPSS for PKCS#1 v1.5, else a PSS salt length in OpenSSL's
// terms (RSA_PSS_SALTLEN_DIGEST, RSA_PSS_SALTLEN_MAX, or bytes).
const (
	mdSHA256 = 1
	mdSHA384 = 2
	mdSHA512 = 3

	noPSS      = -100
	saltDigest = -1 // RSA_PSS_SALTLEN_DIGEST
	saltMax    = -3 // RSA_PSS_SALTLEN_MAX: Go's PSSSaltLengthAuto when signing
)

var digests = map[crypto.Hash]int{crypto.SHA256: mdSHA256, crypto.SHA384: mdSHA384, crypto.SHA512: mdSHA512}

var errNoCgo = errors.New("built without cgo")
