package tokens

import (
	"strings"
	"testing"

	"github.com/weftlb/weft/pki"
)

const (
	testPin    = "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpizdgnbvgy3q" // 52 chars of [a-z2-7]
	testID     = "abcd1234"
	testJoinS  = "0123456789abcdefghijklmnopqrstuv"         // 32
	testAPISec = "0123456789abcdefghijklmnopqrstuvwxyz0123" // 40
)

var goodJoin = "weft1." + testPin + "." + testID + "." + testJoinS

func TestParseJoin(t *testing.T) {
	want := Join{CAPin: testPin, ID: testID, Secret: testJoinS}
	tests := []struct {
		name    string
		in      string
		wantErr string // empty: success
	}{
		{"good", goodJoin, ""},
		{"surrounding whitespace", " \t" + goodJoin + "\n", ""},
		{"empty", "", "expected 4 dot-separated parts, got 1"},
		{"three parts", "weft1." + testPin + "." + testID, "expected 4 dot-separated parts, got 3"},
		{"extra dot", goodJoin + ".x", "expected 4 dot-separated parts, got 5"},
		{"dot inside secret", "weft1." + testPin + "." + testID + ".0123456789abcdef.hijklmnopqrstuv", "got 5"},
		{"inner whitespace", "weft1." + testPin + " ." + testID + "." + testJoinS, "ca pin must be 52"},
		{"wrong prefix", "weft2." + testPin + "." + testID + "." + testJoinS, `must start with "weft1."`},
		{"upper-case prefix", "WEFT1." + testPin + "." + testID + "." + testJoinS, `must start with "weft1."`},
		{"short pin", "weft1." + testPin[1:] + "." + testID + "." + testJoinS, "ca pin must be 52"},
		{"upper-case pin", "weft1." + strings.ToUpper(testPin) + "." + testID + "." + testJoinS, "ca pin must be 52"},
		{"pin not base32", "weft1." + testPin[:51] + "1." + testID + "." + testJoinS, "ca pin must be 52"},
		{"padded pin", "weft1." + testPin[:48] + "====." + testID + "." + testJoinS, "ca pin must be 52"},
		{"short id", "weft1." + testPin + ".abc123." + testJoinS, "id must be 8 characters [a-z0-9]"},
		{"upper-case id", "weft1." + testPin + ".ABCD1234." + testJoinS, "id must be 8 characters [a-z0-9]"},
		{"id with dash", "weft1." + testPin + ".abcd-123." + testJoinS, "id must be 8 characters [a-z0-9]"},
		{"short secret", goodJoin[:len(goodJoin)-1], "secret must be 32 characters [a-z0-9]"},
		{"long secret", goodJoin + "x", "secret must be 32 characters [a-z0-9]"},
		{"upper-case secret", "weft1." + testPin + "." + testID + "." + strings.ToUpper(testJoinS), "secret must be 32 characters [a-z0-9]"},
		{"api token", "weft_" + testID + "_" + testAPISec, "expected 4 dot-separated parts, got 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseJoin(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseJoin: %v", err)
				}
				if got != want {
					t.Errorf("ParseJoin = %+v, want %+v", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseJoin error = %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "join token: ") {
				t.Errorf("error %q does not start with %q", err, "join token: ")
			}
			if p := strings.Split(tc.in, "."); len(p) >= 4 && strings.Contains(err.Error(), p[3]) {
				t.Errorf("error %q contains the secret part %q", err, p[3])
			}
		})
	}
}

func TestParseAPI(t *testing.T) {
	good := "weft_" + testID + "_" + testAPISec
	want := API{ID: testID, Secret: testAPISec}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"good", good, ""},
		{"surrounding whitespace", "\n" + good + " \r\n", ""},
		{"empty", "", "expected 3 underscore-separated parts, got 1"},
		{"two parts", "weft_" + testID, "expected 3 underscore-separated parts, got 2"},
		{"extra underscore", good + "_x", "expected 3 underscore-separated parts, got 4"},
		{"inner whitespace", "weft_ " + testID + "_" + testAPISec, "id must be 8 characters [a-z0-9]"},
		{"wrong prefix", "weft1_" + testID + "_" + testAPISec, `must start with "weft_"`},
		{"upper-case prefix", "WEFT_" + testID + "_" + testAPISec, `must start with "weft_"`},
		{"short id", "weft_abc_" + testAPISec, "id must be 8 characters [a-z0-9]"},
		{"upper-case id", "weft_ABCD1234_" + testAPISec, "id must be 8 characters [a-z0-9]"},
		{"short secret", good[:len(good)-1], "secret must be 40 characters [a-z0-9]"},
		{"long secret", good + "0", "secret must be 40 characters [a-z0-9]"},
		{"upper-case secret", "weft_" + testID + "_" + strings.ToUpper(testAPISec), "secret must be 40 characters [a-z0-9]"},
		{"dot in secret", "weft_" + testID + "_" + testAPISec[:39] + ".", "secret must be 40 characters [a-z0-9]"},
		{"join token", goodJoin, "expected 3 underscore-separated parts, got 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAPI(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseAPI: %v", err)
				}
				if got != want {
					t.Errorf("ParseAPI = %+v, want %+v", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseAPI error = %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "api token: ") {
				t.Errorf("error %q does not start with %q", err, "api token: ")
			}
			if p := strings.Split(tc.in, "_"); len(p) >= 3 && strings.Contains(err.Error(), p[2]) {
				t.Errorf("error %q contains the secret part %q", err, p[2])
			}
		})
	}
}

func TestJoinRoundTrip(t *testing.T) {
	ca, err := pki.NewCA("c1")
	if err != nil {
		t.Fatal(err)
	}
	pin := pki.Pin(ca.Cert)
	a, err := NewJoin(pin)
	if err != nil {
		t.Fatalf("NewJoin: %v", err)
	}
	b, err := NewJoin(pin)
	if err != nil {
		t.Fatalf("NewJoin: %v", err)
	}
	if a.ID == b.ID || a.Secret == b.Secret {
		t.Errorf("two join tokens share an id or secret: %+v, %+v", a, b)
	}
	got, err := ParseJoin(a.String())
	if err != nil {
		t.Fatalf("ParseJoin(NewJoin().String()): %v", err)
	}
	if got != a {
		t.Errorf("round trip = %+v, want %+v", got, a)
	}
	if got.CAPin != pin {
		t.Errorf("CAPin = %q, want pki.Pin %q", got.CAPin, pin)
	}
	if _, err := NewJoin("not-a-pin"); err == nil {
		t.Error("NewJoin with a malformed pin succeeded, want an error")
	}
}

func TestAPIRoundTrip(t *testing.T) {
	a, err := NewAPI()
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	got, err := ParseAPI(a.String())
	if err != nil {
		t.Fatalf("ParseAPI(NewAPI().String()): %v", err)
	}
	if got != a {
		t.Errorf("round trip = %+v, want %+v", got, a)
	}
}

func TestRandomString(t *testing.T) {
	seen := map[rune]bool{}
	for range 100 {
		s := randomString(apiSecretLen)
		if !isToken(s, apiSecretLen) {
			t.Fatalf("randomString = %q, want %d characters [a-z0-9]", s, apiSecretLen)
		}
		for _, r := range s {
			seen[r] = true
		}
	}
	// 4000 uniform draws miss a given character with probability ~1e-49.
	if len(seen) != len(alphabet) {
		t.Errorf("100 secrets used %d distinct characters, want all %d", len(seen), len(alphabet))
	}
}

func TestVerify(t *testing.T) {
	const secret = testJoinS
	h := Hash(secret)
	// echo -n 0123456789abcdefghijklmnopqrstuv | sha256sum
	if want := "73337f479fe170d73e53e247f3052e4243cc9c2a0ffa621853d9385c619efb77"; h != want {
		t.Errorf("Hash(%q) = %s, want %s", secret, h, want)
	}
	tests := []struct {
		name   string
		hash   string
		secret string
		want   bool
	}{
		{"match", h, secret, true},
		{"upper-case hash", strings.ToUpper(h), secret, true},
		{"other secret", h, secret[:31] + "w", false},
		{"empty secret", h, "", false},
		{"truncated hash", h[:62], secret, false},
		{"not hex", "zz" + h[2:], secret, false},
		{"empty hash", "", secret, false},
		{"hash of empty", Hash(""), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verify(tc.hash, tc.secret); got != tc.want {
				t.Errorf("Verify(%q, %q) = %v, want %v", tc.hash, tc.secret, got, tc.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	tests := []struct {
		in      string
		want    Role
		wantErr bool
	}{
		{"admin", RoleAdmin, false},
		{"operator", RoleOperator, false},
		{"viewer", RoleViewer, false},
		{"Admin", "", true},
		{" viewer", "", true},
		{"", "", true},
		{"root", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRole(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseRole(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestRoleAtLeast(t *testing.T) {
	tests := []struct {
		r, want Role
		ok      bool
	}{
		{RoleAdmin, RoleAdmin, true},
		{RoleAdmin, RoleViewer, true},
		{RoleOperator, RoleViewer, true},
		{RoleOperator, RoleOperator, true},
		{RoleOperator, RoleAdmin, false},
		{RoleViewer, RoleOperator, false},
		{"root", RoleViewer, false},
		{RoleAdmin, "root", false},
	}
	for _, tc := range tests {
		if got := tc.r.AtLeast(tc.want); got != tc.ok {
			t.Errorf("Role(%q).AtLeast(%q) = %v, want %v", tc.r, tc.want, got, tc.ok)
		}
	}
}
