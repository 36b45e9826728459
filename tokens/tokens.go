// Package tokens makes and parses Weft's join tokens and API tokens, and
// hashes their secrets for storage in Raft.
//
// Parse errors say which part of a token is wrong but never repeat any part
// of the input: a mistyped token is still mostly a secret, and errors end up
// in logs.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

const (
	joinPrefix = "weft1"
	apiPrefix  = "weft"

	idLen         = 8
	joinSecretLen = 32 // 32 × log2(36) ≈ 165 bits
	apiSecretLen  = 40 // ≈ 206 bits

	// pinLen is the length of pki.Pin: SHA-256 in unpadded base32.
	pinLen = 52

	alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Join is a join token, "weft1.<ca-pin>.<id>.<secret>", kubeadm-style: the
// pin lets a new node authenticate the cluster before it sends the secret,
// the id names the token in the API, and only the secret's hash is stored.
type Join struct {
	CAPin  string
	ID     string
	Secret string
}

// NewJoin makes a join token for the CA whose pki.Pin is caPin.
func NewJoin(caPin string) (Join, error) {
	if err := checkPin(caPin); err != nil {
		return Join{}, fmt.Errorf("new join token: %w", err)
	}
	return Join{CAPin: caPin, ID: randomString(idLen), Secret: randomString(joinSecretLen)}, nil
}

// ParseJoin parses a join token. Surrounding white space (a newline from a
// file or a paste) is ignored; anything else must match exactly, lower case.
func ParseJoin(s string) (Join, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 {
		return Join{}, fmt.Errorf("join token: expected 4 dot-separated parts, got %d", len(parts))
	}
	if parts[0] != joinPrefix {
		return Join{}, fmt.Errorf("join token: must start with %q", joinPrefix+".")
	}
	if err := checkPin(parts[1]); err != nil {
		return Join{}, fmt.Errorf("join token: %w", err)
	}
	if !isToken(parts[2], idLen) {
		return Join{}, fmt.Errorf("join token: id must be %d characters [a-z0-9]", idLen)
	}
	if !isToken(parts[3], joinSecretLen) {
		return Join{}, fmt.Errorf("join token: secret must be %d characters [a-z0-9]", joinSecretLen)
	}
	return Join{CAPin: parts[1], ID: parts[2], Secret: parts[3]}, nil
}

// String returns the whole token, secret included.
func (j Join) String() string {
	return joinPrefix + "." + j.CAPin + "." + j.ID + "." + j.Secret
}

// API is an API bearer token, "weft_<id>_<secret>". Underscores, unlike
// dots, keep the token one word for a double-click and distinct from a join
// token at a glance.
type API struct {
	ID     string
	Secret string
}

// NewAPI makes an API token. The error is always nil today; it is there so
// a future source of randomness that can fail needs no API change.
func NewAPI() (API, error) {
	return API{ID: randomString(idLen), Secret: randomString(apiSecretLen)}, nil
}

// ParseAPI parses an API token. Surrounding white space is ignored; anything
// else must match exactly, lower case.
func ParseAPI(s string) (API, error) {
	parts := strings.Split(strings.TrimSpace(s), "_")
	if len(parts) != 3 {
		return API{}, fmt.Errorf("api token: expected 3 underscore-separated parts, got %d", len(parts))
	}
	if parts[0] != apiPrefix {
		return API{}, fmt.Errorf("api token: must start with %q", apiPrefix+"_")
	}
	if !isToken(parts[1], idLen) {
		return API{}, fmt.Errorf("api token: id must be %d characters [a-z0-9]", idLen)
	}
	if !isToken(parts[2], apiSecretLen) {
		return API{}, fmt.Errorf("api token: secret must be %d characters [a-z0-9]", apiSecretLen)
	}
	return API{ID: parts[1], Secret: parts[2]}, nil
}

// String returns the whole token, secret included.
func (a API) String() string {
	return apiPrefix + "_" + a.ID + "_" + a.Secret
}

// Hash returns the hex SHA-256 of a token secret, the form stored in Raft.
// A plain hash suffices: secrets are random with over 160 bits, so there is
// nothing for a slow password hash to protect.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Verify reports whether secret hashes to hash, in time independent of where
// they differ.
func Verify(hash, secret string) bool {
	want, err := hex.DecodeString(hash)
	if err != nil {
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(want, got[:]) == 1
}

// Role is what an API token may do.
type Role string

// Roles, from most to least privileged.
const (
	// RoleAdmin may do everything, including manage tokens and nodes.
	RoleAdmin Role = "admin"
	// RoleOperator may read and write resources.
	RoleOperator Role = "operator"
	// RoleViewer may only read.
	RoleViewer Role = "viewer"
)

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleViewer:
		return r, nil
	}
	return "", fmt.Errorf("role %q: must be admin, operator or viewer", s)
}

// AtLeast reports whether r has every permission of want, for the API's
// authorization check. Unknown roles fail closed: an unknown r has no
// permission, and no role satisfies an unknown want.
func (r Role) AtLeast(want Role) bool {
	return r.rank() > 0 && want.rank() > 0 && r.rank() >= want.rank()
}

func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

func checkPin(pin string) error {
	if len(pin) != pinLen || strings.Trim(pin, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return errors.New("ca pin must be 52 characters of lower-case base32 [a-z2-7]")
	}
	return nil
}

// isToken reports whether s is n characters of alphabet.
func isToken(s string, n int) bool {
	return len(s) == n && strings.Trim(s, alphabet) == ""
}

// randomString returns n characters drawn uniformly from alphabet.
func randomString(n int) string {
	// 252 is the largest multiple of 36 below 256; rejecting bytes at or
	// above it keeps every character equally likely.
	const limit = 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4)
	for len(out) < n {
		rand.Read(buf) // never fails: crypto/rand crashes the program instead
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[b%byte(len(alphabet))])
			}
		}
	}
	return string(out)
}
