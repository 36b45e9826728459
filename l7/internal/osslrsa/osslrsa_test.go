package osslrsa

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// needLibcrypto skips a test when libcrypto cannot be used here, except in
// CI (CI=true), which has cgo and libcrypto: there it fails, so the tests
// that prove the libcrypto path cannot pass by skipping.
func needLibcrypto(t testing.TB) {
	t.Helper()
	if _, err := Load(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("libcrypto is not usable in CI: %v (the build needs cgo and a C compiler, the machine libcrypto.so.3)", err)
		}
		t.Skipf("libcrypto is not usable: %v", err)
	}
}

var keys struct {
	once         sync.Once
	k2048, k3072 *rsa.PrivateKey
}

func testKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	keys.once.Do(func() {
		var err error
		if keys.k2048, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keys.k3072, err = rsa.GenerateKey(rand.Reader, 3072); err != nil {
			panic(err)
		}
	})
	if bits == 3072 {
		return keys.k3072
	}
	return keys.k2048
}

func newSigner(t testing.TB, k *rsa.PrivateKey) *Signer {
	t.Helper()
	needLibcrypto(t)
	s, err := New(k)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// TestSignVerifies signs with libcrypto and verifies with crypto/rsa, for
// each hash crypto/tls uses with RSA and each padding and salt length it or
// a caller may ask for. PKCS#1 v1.5 is deterministic, so its signature must
// be crypto/rsa's byte for byte; PSS is verified with the exact salt length
// the options imply.
func TestSignVerifies(t *testing.T) {
	for _, bits := range []int{2048, 3072} {
		k := testKey(t, bits)
		s := newSigner(t, k)
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			hh := h.New()
			hh.Write([]byte("the handshake transcript"))
			digest := hh.Sum(nil)
			maxSalt := (k.N.BitLen()-1+7)/8 - 2 - h.Size()
			tests := []struct {
				name string
				opts crypto.SignerOpts
				salt int // the salt length to verify with; -100 for PKCS#1 v1.5
			}{
				{"pkcs1v15", h, -100},
				{"pss-equals-hash", &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}, h.Size()},
				{"pss-auto", &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h}, maxSalt},
				{"pss-20", &rsa.PSSOptions{SaltLength: 20, Hash: h}, 20},
			}
			for _, tc := range tests {
				t.Run(tc.name+"/"+h.String()+"/"+strconv.Itoa(bits), func(t *testing.T) {
					before := s.Signatures()
					sig, err := s.Sign(rand.Reader, digest, tc.opts)
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					if got := s.Signatures() - before; got != 1 {
						t.Errorf("libcrypto made %d signatures, want 1", got)
					}
					if len(sig) != k.Size() {
						t.Fatalf("signature of %d bytes, want %d", len(sig), k.Size())
					}
					if tc.salt == -100 {
						if err := rsa.VerifyPKCS1v15(&k.PublicKey, h, digest, sig); err != nil {
							t.Fatalf("VerifyPKCS1v15: %v", err)
						}
						want, err := rsa.SignPKCS1v15(nil, k, h, digest)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(sig, want) {
							t.Error("PKCS#1 v1.5 signature differs from crypto/rsa's")
						}
						return
					}
					if err := rsa.VerifyPSS(&k.PublicKey, h, digest, sig, &rsa.PSSOptions{SaltLength: tc.salt}); err != nil {
						t.Fatalf("VerifyPSS with a %d-byte salt: %v", tc.salt, err)
					}
				})
			}
		}
	}
}

// TestSignOthersToGo: hashes libcrypto is not given (SHA-1 for old TLS 1.2
// peers) sign with the Go key, and bad requests are errors, not signatures.
func TestSignOthersToGo(t *testing.T) {
	k := testKey(t, 2048)
	s := newSigner(t, k)
	d1 := sha1.Sum([]byte("x"))
	sig, err := s.Sign(rand.Reader, d1[:], crypto.SHA1)
	if err != nil {
		t.Fatalf("SHA-1 Sign: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA1, d1[:], sig); err != nil {
		t.Errorf("SHA-1 signature: %v", err)
	}
	if n := s.Signatures(); n != 0 {
		t.Errorf("libcrypto made %d signatures for SHA-1, want 0 (Go's)", n)
	}
	d := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		name   string
		digest []byte
		opts   crypto.SignerOpts
	}{
		{"short digest", d[:31], crypto.SHA256},
		{"digest of another hash", d[:], crypto.SHA384},
		{"negative salt", d[:], &rsa.PSSOptions{SaltLength: -7, Hash: crypto.SHA256}},
		{"salt too long", d[:], &rsa.PSSOptions{SaltLength: k.Size(), Hash: crypto.SHA256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if sig, err := s.Sign(rand.Reader, tc.digest, tc.opts); err == nil {
				t.Errorf("Sign gave a %d-byte signature, want an error", len(sig))
			}
		})
	}
	if _, ok := s.Public().(*rsa.PublicKey); !ok || !s.Public().(*rsa.PublicKey).Equal(&k.PublicKey) {
		t.Errorf("Public() = %T, want the key's *rsa.PublicKey", s.Public())
	}
}

// TestSignConcurrent signs from many goroutines with one Signer (run with
// -race): each signature verifies.
func TestSignConcurrent(t *testing.T) {
	k := testKey(t, 2048)
	s := newSigner(t, k)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				d := sha256.Sum256([]byte{byte(g), byte(i)})
				opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
				sig, err := s.Sign(rand.Reader, d[:], opts)
				if err == nil {
					err = rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, d[:], sig, opts)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.Signatures(); n != 64 {
		t.Errorf("libcrypto made %d signatures, want 64", n)
	}
}

// TestKeysFreed makes and drops signers: the cleanup frees each one's
// EVP_PKEY once the Signer is garbage.
func TestKeysFreed(t *testing.T) {
	k := testKey(t, 2048)
	needLibcrypto(t)
	before := freed()
	for range 20 {
		if _, err := New(k); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for freed() < before+20 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 20 EVP_PKEYs freed", freed()-before)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNotInFIPSMode runs the test binary again with GODEBUG=fips140=on:
// there Load must refuse, so signatures stay in Go's FIPS module.
func TestNotInFIPSMode(t *testing.T) {
	if os.Getenv("OSSLRSA_FIPS_CHILD") == "1" {
		if _, err := Load(); err == nil {
			t.Fatal("Load succeeded in FIPS 140-3 mode")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNotInFIPSMode$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OSSLRSA_FIPS_CHILD=1", "GODEBUG=fips140=on")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child in FIPS mode: %v\n%s", err, out)
	}
}

func BenchmarkRSASign(b *testing.B) {
	k := testKey(b, 2048)
	d := sha256.Sum256([]byte("the handshake transcript"))
	opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			if _, err := k.Sign(rand.Reader, d[:], opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("libcrypto", func(b *testing.B) {
		s := newSigner(b, k)
		for b.Loop() {
			if _, err := s.Sign(rand.Reader, d[:], opts); err != nil {
				b.Fatal(err)
			}
		}
	})
}
