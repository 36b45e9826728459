package maglev

import "math/bits"

// IsPrime reports whether n is prime. It is a Miller-Rabin test with the
// bases 2, 7 and 61, which is exact for every n below 4,759,123,141 and so
// for every uint32.
func IsPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for _, p := range [...]uint32{2, 3, 5, 7, 11, 13, 61} {
		if n == p {
			return true
		}
		if n%p == 0 {
			return false
		}
	}
	d := n - 1
	s := bits.TrailingZeros32(d)
	d >>= s
	for _, a := range [...]uint64{2, 7, 61} {
		if !millerRabinPass(uint64(n), a, uint64(d), s) {
			return false
		}
	}
	return true
}

// millerRabinPass reports whether n (odd, n-1 = d*2^s) passes one
// Miller-Rabin round for base a. Products of two values below n < 2^32
// fit in a uint64, so no wide multiplication is needed.
func millerRabinPass(n, a, d uint64, s int) bool {
	x := powMod(a, d, n)
	if x == 1 || x == n-1 {
		return true
	}
	for range s - 1 {
		x = x * x % n
		if x == n-1 {
			return true
		}
	}
	return false
}

func powMod(b, e, n uint64) uint64 {
	r := uint64(1)
	b %= n
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = r * b % n
		}
		b = b * b % n
	}
	return r
}
