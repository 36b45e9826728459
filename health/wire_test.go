package health

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestRecordsRoundTrip(t *testing.T) {
	rs := []record{
		{checker: "a", member: MemberKey{Pool: "web", Addr: netip.MustParseAddrPort("10.0.0.1:80")}, up: true, seq: 1 << 62},
		{checker: "node-b", member: MemberKey{Pool: "api", Addr: netip.MustParseAddrPort("[2001:db8::7]:8443")}, seq: 5},
	}
	for _, tc := range []struct {
		name string
		rs   []record
	}{{"none", []record{}}, {"one", rs[:1]}, {"two", rs}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecords(encodeRecords(tc.rs))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.rs) {
				t.Errorf("round trip: got %+v, want %+v", got, tc.rs)
			}
		})
	}
	if b := encodeRecords(rs[:1]); len(b) > 64 {
		t.Errorf("one IPv4 record: got %d bytes, want at most 64", len(b))
	}
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeRecords([]record{{checker: "a", member: MemberKey{Pool: "p", Addr: netip.MustParseAddrPort("10.0.0.1:80")}, up: true, seq: 9}}))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeRecords(b)
		if err != nil {
			return
		}
		again, err := decodeRecords(encodeRecords(rs))
		if err != nil || len(again) != len(rs) {
			t.Errorf("re-decode: got %d records (%v), want %d", len(again), err, len(rs))
		}
	})
}
