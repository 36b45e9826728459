package maglev

import (
	"math"
	"testing"
)

func TestIsPrime(t *testing.T) {
	tests := []struct {
		n    uint32
		want bool
	}{
		{0, false},
		{1, false},
		{2, true},
		{3, true},
		{4, false},
		{61, true},
		{101, true},
		{561, false},  // Carmichael number
		{2047, false}, // strong pseudoprime to base 2
		{65536, false},
		{65537, true},
		{655373, true},
		{655375, false},
		{16777213, true},
		{3215031751, false}, // strong pseudoprime to bases 2, 3, 5 and 7
		{4294967291, true},  // largest uint32 prime
		{math.MaxUint32, false},
	}
	for _, tc := range tests {
		if got := IsPrime(tc.n); got != tc.want {
			t.Errorf("IsPrime(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestIsPrimeSieve compares IsPrime with a sieve of Eratosthenes over every
// number below 2^20.
func TestIsPrimeSieve(t *testing.T) {
	const limit = 1 << 20
	composite := make([]bool, limit)
	for i := 2; i*i < limit; i++ {
		if !composite[i] {
			for j := i * i; j < limit; j += i {
				composite[j] = true
			}
		}
	}
	for n := range uint32(limit) {
		want := n >= 2 && !composite[n]
		if got := IsPrime(n); got != want {
			t.Fatalf("IsPrime(%d) = %v, want %v", n, got, want)
		}
	}
}
