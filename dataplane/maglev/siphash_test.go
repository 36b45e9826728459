package maglev

import "testing"

// TestSipHash24 checks the reference vectors of the SipHash paper (key
// 00 01 .. 0f, message 00 01 .. n-1), covering an empty message, partial
// final blocks and whole 8-byte blocks.
func TestSipHash24(t *testing.T) {
	const k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	tests := []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{2, 0x0d6c8009d9a94f5a},
		{3, 0x85676696d7fb7e2d},
		{4, 0xcf2794e0277187b7},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
	}
	for _, tc := range tests {
		msg := make([]byte, tc.n)
		for i := range msg {
			msg[i] = byte(i)
		}
		if got := SipHash24(k0, k1, string(msg)); got != tc.want {
			t.Errorf("SipHash24(%d bytes) = %#016x, want %#016x", tc.n, got, tc.want)
		}
	}
}
