// Package maglev builds Maglev consistent-hashing lookup tables (Eisenbud et
// al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI
// 2016) with Katran's weighting, for the XDP dataplane and the userspace
// driver. A table is a pure function of the backend set and the table size,
// so every node builds the same one and picks the same backend for a flow.
package maglev

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

const (
	// DefaultSize is the default table size M, the one used in the Maglev
	// paper and by Katran.
	DefaultSize = 65537
	// MinSize is the smallest table size Build accepts: the smallest prime
	// above 100. The paper sizes M at over 100 times the number of backends;
	// a smaller table is taken for a configuration mistake.
	MinSize = 101
	// MaxSize is the largest table size Build accepts, the largest prime
	// below 2^24 (a 64 MiB table). It keeps a bad setting from allocating
	// gigabytes and keeps every index within int32.
	MaxSize = 16777213
)

// NoBackend is the entry value of a table slot that has no backend, which
// is every slot of a table built from no backend of non-zero weight.
const NoBackend = -1

// ErrInvalidSize is wrapped by the errors Build and ValidateSize return for a
// table size that is not prime or is out of [MinSize, MaxSize].
var ErrInvalidSize = errors.New("invalid maglev table size")

// ErrInvalidBackends is wrapped by the errors Build returns for a backend set
// it cannot build a table from (an empty or duplicate ID, more backends than
// table entries).
var ErrInvalidBackends = errors.New("invalid maglev backend set")

// Hash keys of the two SipHash-2-4 functions that place a backend in the
// table: one gives its offset, the other its skip. Changing either moves
// almost every flow and makes nodes running different versions disagree, so
// they must never change (TestGolden pins them).
const (
	offsetK0, offsetK1 = 0x776566746f666673, 0x6d61676c65763031 // "weftoffs", "maglev01"
	skipK0, skipK1     = 0x77656674736b6970, 0x6d61676c65763032 // "weftskip", "maglev02"
)

// Backend is one destination of a table. ID is the stable key that orders
// backends and seeds their permutations, e.g. "192.0.2.11:8080"; Weight is
// relative to the other backends', and 0 gives the backend no entries.
type Backend struct {
	ID     string
	Weight uint32
}

// Table is a built Maglev lookup table.
type Table struct {
	// Entries has M slots, each an index into Backends or NoBackend.
	Entries []int32
	// Backends is the backend set sorted by ID, weight-0 backends included.
	Backends []Backend
}

// Lookup returns the backend for a flow hash: the one in slot hash mod M,
// which is how Katran's XDP program indexes its ring. It returns false when
// the table has no backend (or is the zero Table).
func (t Table) Lookup(hash uint64) (Backend, bool) {
	if len(t.Entries) == 0 {
		return Backend{}, false
	}
	i := t.Entries[hash%uint64(len(t.Entries))]
	if i < 0 {
		return Backend{}, false
	}
	return t.Backends[i], true
}

// ValidateSize returns an error wrapping ErrInvalidSize unless m is a prime
// in [MinSize, MaxSize]. Maglev needs a prime M so that every skip is
// coprime with it and each permutation visits every slot.
func ValidateSize(m uint32) error {
	switch {
	case m < MinSize:
		return fmt.Errorf("%w: %d is below the minimum %d", ErrInvalidSize, m, MinSize)
	case m > MaxSize:
		return fmt.Errorf("%w: %d is above the maximum %d", ErrInvalidSize, m, MaxSize)
	case !IsPrime(m):
		return fmt.Errorf("%w: %d is not prime", ErrInvalidSize, m)
	}
	return nil
}

// Build returns the Maglev table of size m for backends. The result does
// not depend on the order of backends: they are sorted by ID first, and
// Table.Entries index the sorted copy returned in Table.Backends. A backend
// of weight w gets a share of about w/sum(weights) of the entries. With no
// backend of non-zero weight every entry is NoBackend, and that is not an
// error.
func Build(backends []Backend, m uint32) (Table, error) {
	if err := ValidateSize(m); err != nil {
		return Table{}, err
	}
	// Counting weight-0 backends too keeps every index below m and so
	// within int32.
	if uint64(len(backends)) > uint64(m) {
		return Table{}, fmt.Errorf("%w: %d backends do not fit in a table of %d entries",
			ErrInvalidBackends, len(backends), m)
	}
	sorted := slices.Clone(backends)
	slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.ID, b.ID) })

	live := make([]slot, 0, len(sorted))
	var maxWeight uint64
	for i, b := range sorted {
		if b.ID == "" {
			return Table{}, fmt.Errorf("%w: backend with an empty id", ErrInvalidBackends)
		}
		if i > 0 && b.ID == sorted[i-1].ID {
			return Table{}, fmt.Errorf("%w: duplicate backend id %q", ErrInvalidBackends, b.ID)
		}
		if b.Weight == 0 {
			continue
		}
		live = append(live, slot{
			pos:    uint32(SipHash24(offsetK0, offsetK1, b.ID) % uint64(m)),
			skip:   uint32(SipHash24(skipK0, skipK1, b.ID)%uint64(m-1)) + 1,
			weight: uint64(b.Weight),
			index:  int32(i),
		})
		maxWeight = max(maxWeight, uint64(b.Weight))
	}

	entries := make([]int32, m)
	for i := range entries {
		entries[i] = NoBackend
	}
	if len(live) > 0 {
		populate(entries, live, maxWeight)
	}
	return Table{Entries: entries, Backends: sorted}, nil
}

// slot is a backend's place in the population loop: pos is the next slot of
// its permutation (offset + j*skip mod M) to try, so the permutation is
// walked without ever being stored (N*M entries would not fit in cache).
type slot struct {
	pos, skip uint32
	credit    uint64
	weight    uint64
	index     int32
}

// populate fills entries (all NoBackend on entry) from the live backends,
// in the order Build sorted them. It is Maglev's population loop with
// Katran's weighting (MaglevHashV2): every round each backend earns its weight
// in credit and, when its credit reaches maxWeight, spends maxWeight to take
// one turn, claiming the next still-free slot of its permutation. A backend
// of weight w thus takes w/maxWeight turns per round, and since every turn
// claims exactly one slot its share of the table is proportional to w.
//
// Most of the time goes into probing slots already taken (about M ln M
// probes in all), so the probes read a bitmap of taken slots, 8 KiB for the
// default M and so in L1 cache, rather than the 256 KiB of entries.
func populate(entries []int32, live []slot, maxWeight uint64) {
	m := uint32(len(entries))
	taken := make([]uint64, (m+63)/64)
	filled := uint32(0)
	for {
		for i := range live {
			s := &live[i]
			s.credit += s.weight
			if s.credit < maxWeight {
				continue
			}
			s.credit -= maxWeight
			c := s.pos
			for taken[c/64]&(1<<(c%64)) != 0 {
				c = step(c, s.skip, m)
			}
			taken[c/64] |= 1 << (c % 64)
			entries[c] = s.index
			s.pos = step(c, s.skip, m)
			filled++
			if filled == m {
				return
			}
		}
	}
}

// step returns (c + skip) mod m for c, skip < m, without a division: a
// division per probe would cost more than the rest of the probe.
func step(c, skip, m uint32) uint32 {
	c += skip
	if c >= m {
		c -= m
	}
	return c
}
