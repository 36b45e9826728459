package health

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseCodes(t *testing.T) {
	tests := []struct {
		in      string
		in200   bool
		in204   bool
		in302   bool
		in503   bool
		wantErr string
	}{
		{in: "200-399", in200: true, in204: true, in302: true},
		{in: "200,204", in200: true, in204: true},
		{in: "200, 500-599", in200: true, in503: true},
		{in: "399-200", wantErr: "ends before"},
		{in: "2xx", wantErr: "not a status code"},
		{in: "", wantErr: "not a status code"},
		{in: "600", wantErr: "not a status code"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			c, err := parseCodes(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseCodes(%q): got error %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCodes(%q): %v", tc.in, err)
			}
			for code, want := range map[int]bool{200: tc.in200, 204: tc.in204, 302: tc.in302, 503: tc.in503} {
				if got := c.contains(code); got != want {
					t.Errorf("%q contains %d: got %v, want %v", tc.in, code, got, want)
				}
			}
		})
	}
}

func TestCheckSpecDefaults(t *testing.T) {
	got, _, err := CheckSpec{Type: HTTP}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := CheckSpec{Type: HTTP, Path: "/", ExpectedCodes: "200-399", Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 2, Fall: 3}
	if got != want {
		t.Errorf("defaults: got %+v, want %+v", got, want)
	}
	got, _, _ = CheckSpec{Interval: time.Second}.withDefaults()
	if got.Type != TCP || got.Timeout != 500*time.Millisecond {
		t.Errorf("short interval: got type %q timeout %v, want tcp and 500ms", got.Type, got.Timeout)
	}
}

func TestValidateRejects(t *testing.T) {
	member := Member{Addr: netip.MustParseAddrPort("127.0.0.1:80")}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"timeout not below interval", Config{Pools: []Pool{{Name: "p", Check: CheckSpec{Interval: time.Second, Timeout: time.Second}}}}, "shorter than the interval"},
		{"unknown type", Config{Pools: []Pool{{Name: "p", Check: CheckSpec{Type: "icmp"}}}}, "not tcp"},
		{"bad codes", Config{Pools: []Pool{{Name: "p", Check: CheckSpec{Type: HTTP, ExpectedCodes: "ok"}}}}, "expected codes"},
		{"bad path", Config{Pools: []Pool{{Name: "p", Check: CheckSpec{Type: HTTP, Path: "health"}}}}, "must start with"},
		{"repeated pool", Config{Pools: []Pool{{Name: "p"}, {Name: "p"}}}, "repeated"},
		{"repeated member", Config{Pools: []Pool{{Name: "p", Members: []Member{member, member}}}}, "repeated"},
		{"port zero", Config{Pools: []Pool{{Name: "p", Members: []Member{{Addr: netip.MustParseAddrPort("127.0.0.1:0")}}}}}, "not valid"},
		{"repeated node", Config{Nodes: []NodeInfo{{Name: "a"}, {Name: "a"}}}, "repeated"},
		{"negative checkers", Config{CheckersPerMember: -1}, "not valid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(nil, nil)
			defer h.Close()
			err := h.Apply(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Apply: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
