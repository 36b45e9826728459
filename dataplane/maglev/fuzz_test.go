package maglev

import (
	"slices"
	"testing"
)

// FuzzBuild builds tables from arbitrary backend lists and sizes: Build must
// not panic, must reject a size or set it cannot use, and otherwise return
// M valid entries that do not depend on input order. data is read as
// records of (weight byte, length byte, ID bytes). Weights stay below 256
// because Build's time grows with the ratio of the largest weight to the
// sum (see populate), and an input of a thousand backends with weights 2^32
// and 1 would take a tenth of a second and starve the fuzzer;
// TestBuildShares covers weights near 2^32.
func FuzzBuild(f *testing.F) {
	f.Add([]byte("\x01\x0f192.0.2.11:8080\x02\x0f192.0.2.12:8080"), uint16(101))
	f.Add([]byte("\x00\x01a\x00\x01b"), uint16(257))
	f.Add([]byte("\xff\x01a\x01\x01b\x01\x01c"), uint16(1009))
	f.Add([]byte("\x01\x01a\x01\x01a"), uint16(101))
	f.Add([]byte("\x01\x00"), uint16(4093))
	f.Add([]byte{}, uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, m16 uint16) {
		var bs []Backend
		for len(data) >= 2 {
			w, n := uint32(data[0]), int(data[1])
			data = data[2:]
			n = min(n, len(data))
			bs = append(bs, Backend{ID: string(data[:n]), Weight: w})
			data = data[n:]
		}
		// Sizes below 4096 reach every path of Build at many more inputs
		// a second than sizes near the default would.
		m := uint32(m16 % 4096)

		tbl, err := Build(bs, m)
		if err != nil {
			return
		}
		if ValidateSize(m) != nil {
			t.Fatalf("Build accepted size %d, which ValidateSize rejects", m)
		}
		if len(tbl.Entries) != int(m) {
			t.Fatalf("len(Entries) = %d, want %d", len(tbl.Entries), m)
		}
		live := slices.ContainsFunc(tbl.Backends, func(b Backend) bool { return b.Weight > 0 })
		for i, e := range tbl.Entries {
			switch {
			case e == NoBackend && !live:
			case e < 0 || int(e) >= len(tbl.Backends):
				t.Fatalf("Entries[%d] = %d, want an index below %d (or NoBackend without live backends)", i, e, len(tbl.Backends))
			case tbl.Backends[e].Weight == 0:
				t.Fatalf("Entries[%d] points to %q of weight 0", i, tbl.Backends[e].ID)
			}
		}

		slices.Reverse(bs)
		rev, err := Build(bs, m)
		if err != nil {
			t.Fatalf("Build of the reversed input: %v", err)
		}
		if !slices.Equal(rev.Entries, tbl.Entries) {
			t.Fatal("reversing the input changed the table")
		}
	})
}
