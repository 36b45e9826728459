package l7

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"
)

// DefaultCookieName is the sticky cookie's name when Sticky.CookieName is empty.
const DefaultCookieName = "weft_sticky"

// stickyID is the cookie value naming a member of a pool: an HMAC of the
// pool and member address under the cluster cookie key. It is opaque (the
// member's address does not leak) and cannot be forged: the proxy accepts
// only values it computed itself for a member of the pool, so a client can
// reach no member other than those it was legitimately pinned to, and
// every node with the same key computes the same value.
func stickyID(key []byte, pool string, m *member) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("weft-sticky\x00"))
	mac.Write([]byte(pool))
	mac.Write([]byte{0})
	mac.Write([]byte(m.hostport))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}

// setCookie renders the Set-Cookie value pinning a client to the member
// with the given sticky id. On an https listener the cookie is Secure, so
// a browser never sends it over plain HTTP, where anyone on the path could
// read it.
func setCookie(s *Sticky, id string, secure bool) string {
	c := &http.Cookie{
		Name:     s.CookieName,
		Value:    id,
		Path:     "/",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	if s.TTL > 0 {
		c.MaxAge = int(s.TTL / time.Second)
	}
	return c.String()
}
