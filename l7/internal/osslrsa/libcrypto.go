//go:build cgo

package osslrsa

/*
// dlopen is in libdl before glibc 2.34.
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

// libcrypto's types stay opaque and its functions are called through
// pointers dlsym gives, with OpenSSL 3's prototypes written out here, so no
// OpenSSL header or -lcrypto is needed to build.
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct engine_st ENGINE;

#define WEFT_EVP_PKEY_RSA 6 // NID_rsaEncryption
#define WEFT_RSA_PKCS1_PADDING 1
#define WEFT_RSA_PKCS1_PSS_PADDING 6
#define WEFT_NO_PSS -100 // noPSS in osslrsa.go

static struct {
	unsigned long (*OpenSSL_version_num)(void);
	const char *(*OpenSSL_version)(int);
	EVP_PKEY *(*d2i_PrivateKey)(int, EVP_PKEY **, const unsigned char **, long);
	void (*EVP_PKEY_free)(EVP_PKEY *);
	int (*EVP_PKEY_get_size)(const EVP_PKEY *);
	EVP_PKEY_CTX *(*EVP_PKEY_CTX_new)(EVP_PKEY *, ENGINE *);
	void (*EVP_PKEY_CTX_free)(EVP_PKEY_CTX *);
	int (*EVP_PKEY_sign_init)(EVP_PKEY_CTX *);
	int (*EVP_PKEY_CTX_set_rsa_padding)(EVP_PKEY_CTX *, int);
	int (*EVP_PKEY_CTX_set_signature_md)(EVP_PKEY_CTX *, const EVP_MD *);
	int (*EVP_PKEY_CTX_set_rsa_mgf1_md)(EVP_PKEY_CTX *, const EVP_MD *);
	int (*EVP_PKEY_CTX_set_rsa_pss_saltlen)(EVP_PKEY_CTX *, int);
	int (*EVP_PKEY_sign)(EVP_PKEY_CTX *, unsigned char *, size_t *, const unsigned char *, size_t);
	const EVP_MD *(*EVP_sha256)(void);
	const EVP_MD *(*EVP_sha384)(void);
	const EVP_MD *(*EVP_sha512)(void);
	unsigned long (*ERR_get_error)(void);
	void (*ERR_error_string_n)(unsigned long, char *, size_t);
	void (*ERR_clear_error)(void);
	void (*OPENSSL_cleanse)(void *, size_t);
} weft_ossl;

// weft_ossl_open loads libcrypto and its functions; on failure it writes why
// into msg and returns 0. Called once (sync.Once on the Go side).
static int weft_ossl_open(char *msg, size_t msglen) {
	void *h = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(msg, msglen, "dlopen: %s", e ? e : "unknown error");
		return 0;
	}
#define SYM(name) \
	if ((*(void **)&weft_ossl.name = dlsym(h, #name)) == NULL) { \
		snprintf(msg, msglen, "dlsym %s: not in libcrypto.so.3", #name); \
		dlclose(h); \
		return 0; \
	}
	SYM(OpenSSL_version_num) SYM(OpenSSL_version) SYM(d2i_PrivateKey) SYM(EVP_PKEY_free)
	SYM(EVP_PKEY_get_size) SYM(EVP_PKEY_CTX_new) SYM(EVP_PKEY_CTX_free) SYM(EVP_PKEY_sign_init)
	SYM(EVP_PKEY_CTX_set_rsa_padding) SYM(EVP_PKEY_CTX_set_signature_md)
	SYM(EVP_PKEY_CTX_set_rsa_mgf1_md) SYM(EVP_PKEY_CTX_set_rsa_pss_saltlen) SYM(EVP_PKEY_sign)
	SYM(EVP_sha256) SYM(EVP_sha384) SYM(EVP_sha512)
	SYM(ERR_get_error) SYM(ERR_error_string_n) SYM(ERR_clear_error) SYM(OPENSSL_cleanse)
#undef SYM
	// The soname says 3; the version number (0xMNN00PP0L) is checked too.
	if ((weft_ossl.OpenSSL_version_num() >> 28) < 3) {
		snprintf(msg, msglen, "libcrypto.so.3 reports version %lx, want 3 or later",
			weft_ossl.OpenSSL_version_num());
		weft_ossl.OpenSSL_version_num = NULL;
		dlclose(h);
		return 0;
	}
	return 1;
}

static const char *weft_ossl_version(void) {
	return weft_ossl.OpenSSL_version(0); // OPENSSL_VERSION
}

// weft_ossl_errors takes the thread's first queued error and clears the
// queue: the calls that fail run in the same C call, so on the same thread.
static unsigned long weft_ossl_errors(void) {
	unsigned long e = weft_ossl.ERR_get_error();
	weft_ossl.ERR_clear_error();
	return e;
}

static void weft_ossl_error_string(unsigned long e, char *buf, size_t len) {
	weft_ossl.ERR_error_string_n(e, buf, len);
}

// weft_ossl_load imports a PKCS#1 RSAPrivateKey, then wipes the DER.
static EVP_PKEY *weft_ossl_load(unsigned char *der, long len, int *size, unsigned long *err) {
	const unsigned char *p = der;
	weft_ossl.ERR_clear_error();
	EVP_PKEY *k = weft_ossl.d2i_PrivateKey(WEFT_EVP_PKEY_RSA, NULL, &p, len);
	weft_ossl.OPENSSL_cleanse(der, (size_t)len);
	if (k == NULL) {
		*err = weft_ossl_errors();
		return NULL;
	}
	*size = weft_ossl.EVP_PKEY_get_size(k);
	return k;
}

static unsigned long weft_ossl_freed; // for the tests

static void weft_ossl_free(EVP_PKEY *k) {
	weft_ossl.EVP_PKEY_free(k);
	__atomic_add_fetch(&weft_ossl_freed, 1, __ATOMIC_RELAXED);
}

static unsigned long weft_ossl_freed_count(void) {
	return __atomic_load_n(&weft_ossl_freed, __ATOMIC_RELAXED);
}

// weft_ossl_sign signs digest with one EVP_PKEY_CTX of its own (the key is
// shared; a context is not). It returns 0 and the signature's length, or the
// step that failed with libcrypto's error.
static int weft_ossl_sign(EVP_PKEY *k, int md, int salt, const unsigned char *digest, size_t dlen,
		unsigned char *sig, size_t *siglen, unsigned long *err) {
	const EVP_MD *m;
	switch (md) {
	case 1: m = weft_ossl.EVP_sha256(); break;
	case 2: m = weft_ossl.EVP_sha384(); break;
	case 3: m = weft_ossl.EVP_sha512(); break;
	default: return 1;
	}
	int step = 0;
	weft_ossl.ERR_clear_error();
	EVP_PKEY_CTX *ctx = weft_ossl.EVP_PKEY_CTX_new(k, NULL);
	if (ctx == NULL) {
		step = 2;
	} else if (weft_ossl.EVP_PKEY_sign_init(ctx) <= 0) {
		step = 3;
	} else if (weft_ossl.EVP_PKEY_CTX_set_rsa_padding(ctx,
			salt == WEFT_NO_PSS ? WEFT_RSA_PKCS1_PADDING : WEFT_RSA_PKCS1_PSS_PADDING) <= 0) {
		step = 4;
	} else if (weft_ossl.EVP_PKEY_CTX_set_signature_md(ctx, m) <= 0) {
		step = 5;
	} else if (salt != WEFT_NO_PSS && weft_ossl.EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, m) <= 0) {
		step = 6;
	} else if (salt != WEFT_NO_PSS && weft_ossl.EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, salt) <= 0) {
		step = 7;
	} else if (weft_ossl.EVP_PKEY_sign(ctx, sig, siglen, digest, dlen) <= 0) {
		step = 8;
	}
	if (step != 0) {
		*err = weft_ossl_errors();
	}
	weft_ossl.EVP_PKEY_CTX_free(ctx); // NULL is a no-op
	return step;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// evpKey holds an EVP_PKEY; a cleanup frees it once nothing refers to the
// evpKey.
type evpKey struct {
	pkey *C.EVP_PKEY
	size int
}

func load() (string, error) {
	var msg [256]C.char
	if C.weft_ossl_open(&msg[0], C.size_t(len(msg))) == 0 {
		return "", fmt.Errorf("libcrypto: %s", C.GoString(&msg[0]))
	}
	return C.GoString(C.weft_ossl_version()), nil
}

func libError(e C.ulong) error {
	if e == 0 {
		return errors.New("no error queued")
	}
	var buf [256]C.char
	C.weft_ossl_error_string(e, &buf[0], C.size_t(len(buf)))
	return errors.New(C.GoString(&buf[0]))
}

// newEVPKey imports a PKCS#1 DER private key. The DER is copied into C
// memory, which the C side wipes before it is freed.
func newEVPKey(der []byte) (*evpKey, error) {
	if len(der) == 0 {
		return nil, errors.New("empty key")
	}
	cder := C.CBytes(der)
	defer C.free(cder)
	var size C.int
	var e C.ulong
	k := C.weft_ossl_load((*C.uchar)(cder), C.long(len(der)), &size, &e)
	if k == nil {
		return nil, fmt.Errorf("d2i_PrivateKey: %w", libError(e))
	}
	ek := &evpKey{pkey: k, size: int(size)}
	runtime.AddCleanup(ek, func(k *C.EVP_PKEY) { C.weft_ossl_free(k) }, k)
	return ek, nil
}

// freed is how many EVP_PKEYs the cleanups freed.
func freed() uint64 { return uint64(C.weft_ossl_freed_count()) }

var signSteps = [...]string{1: "digest", 2: "EVP_PKEY_CTX_new", 3: "EVP_PKEY_sign_init",
	4: "EVP_PKEY_CTX_set_rsa_padding", 5: "EVP_PKEY_CTX_set_signature_md",
	6: "EVP_PKEY_CTX_set_rsa_mgf1_md", 7: "EVP_PKEY_CTX_set_rsa_pss_saltlen", 8: "EVP_PKEY_sign"}

// sign passes digest and the signature's buffer as Go pointers for the call
// only (cgo pins them for it; libcrypto keeps neither).
func (k *evpKey) sign(md, salt int, digest []byte) ([]byte, error) {
	sig := make([]byte, k.size)
	n := C.size_t(len(sig))
	var e C.ulong
	step := C.weft_ossl_sign(k.pkey, C.int(md), C.int(salt), (*C.uchar)(unsafe.Pointer(&digest[0])), C.size_t(len(digest)),
		(*C.uchar)(unsafe.Pointer(&sig[0])), &n, &e)
	// The cleanup must not free the key while libcrypto uses it.
	runtime.KeepAlive(k)
	switch {
	case step == 1:
		return nil, fmt.Errorf("unknown digest %d", md)
	case step != 0:
		return nil, fmt.Errorf("%s: %w", signSteps[step], libError(e))
	}
	if int(n) > len(sig) {
		return nil, fmt.Errorf("EVP_PKEY_sign wrote %d bytes into %d", n, len(sig))
	}
	return sig[:n], nil
}
