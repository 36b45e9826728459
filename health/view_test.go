package health

import (
	"net/netip"
	"testing"
)

func TestAgreeRule(t *testing.T) {
	m := MemberKey{Pool: "web", Addr: netip.MustParseAddrPort("10.0.0.1:80")}
	rec := func(checker string, up bool, seq uint64) record {
		return record{checker: checker, member: m, up: up, seq: seq}
	}
	tests := []struct {
		name     string
		assigned []string
		records  []record
		want     bool
	}{
		{"no reports: fail open", []string{"a", "b"}, nil, true},
		{"both up", []string{"a", "b"}, []record{rec("a", true, 1), rec("b", true, 1)}, true},
		{"both down", []string{"a", "b"}, []record{rec("a", false, 1), rec("b", false, 1)}, false},
		{"split: up wins", []string{"a", "b"}, []record{rec("a", true, 1), rec("b", false, 9)}, true},
		{"one reported down, other silent", []string{"a", "b"}, []record{rec("a", false, 1)}, false},
		{"assigned down outweighs a former checker's newer up", []string{"a", "b"}, []record{rec("a", false, 1), rec("old", true, 9)}, false},
		{"checkers gone: newest former verdict (down)", []string{"c", "d"}, []record{rec("a", true, 1), rec("b", false, 2)}, false},
		{"checkers gone: newest former verdict (up)", []string{"c", "d"}, []record{rec("a", true, 3), rec("b", false, 2)}, true},
		{"checkers gone: tie goes up", []string{"c"}, []record{rec("a", false, 2), rec("b", true, 2)}, true},
		{"no live nodes at all: last verdict", nil, []record{rec("a", false, 2)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := verdicts{}
			for _, r := range tc.records {
				if rs[m] == nil {
					rs[m] = map[string]record{}
				}
				rs[m][r.checker] = r
			}
			got := agreeOne(tc.assigned, rs[m])
			if got != tc.want {
				t.Errorf("up: got %v, want %v", got, tc.want)
			}
		})
	}
}
