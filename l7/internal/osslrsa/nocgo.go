//go:build !cgo

package osslrsa

// Without cgo there is no libcrypto: Load fails, so New never makes an
// evpKey and callers keep Go's key.
type evpKey struct{ size int }

func load() (string, error) { return "", errNoCgo }

func newEVPKey([]byte) (*evpKey, error) { return nil, errNoCgo }

func (*evpKey) sign(int, int, []byte) ([]byte, error) { return nil, errNoCgo }

func freed() uint64 { return 0 }
