package tokens

import (
	"strings"
	"testing"
)

func FuzzParseJoin(f *testing.F) {
	for _, s := range []string{goodJoin, "", "weft1...", " " + goodJoin + "\n", goodJoin + ".x", "weft_" + testID + "_" + testAPISec} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := ParseJoin(s)
		if err == nil {
			if got, want := j.String(), strings.TrimSpace(s); got != want {
				t.Fatalf("ParseJoin(%q).String() = %q, want %q", s, got, want)
			}
			if again, err := ParseJoin(j.String()); err != nil || again != j {
				t.Fatalf("ParseJoin(String()) = %+v, %v; want %+v", again, err, j)
			}
			return
		}
		checkNoSecret(t, s, ".", 4, err.Error(), func(s string) error { _, err := ParseJoin(s); return err })
	})
}

func FuzzParseAPI(f *testing.F) {
	for _, s := range []string{"weft_" + testID + "_" + testAPISec, "", "weft__", "\tweft_" + testID + "_" + testAPISec + " ", "weft_a_b_c", goodJoin} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAPI(s)
		if err == nil {
			if got, want := a.String(), strings.TrimSpace(s); got != want {
				t.Fatalf("ParseAPI(%q).String() = %q, want %q", s, got, want)
			}
			if again, err := ParseAPI(a.String()); err != nil || again != a {
				t.Fatalf("ParseAPI(String()) = %+v, %v; want %+v", again, err, a)
			}
			return
		}
		checkNoSecret(t, s, "_", 3, err.Error(), func(s string) error { _, err := ParseAPI(s); return err })
	})
}

// checkNoSecret fails if the error msg for s reveals the secret part, the
// text after the (n-1)th sep. With exactly n parts the message must not
// depend on the secret at all: parse must fail the same way with the secret
// replaced by NULs. With more parts the secret part contains sep, so it
// must simply not appear.
func checkNoSecret(t *testing.T, s, sep string, n int, msg string, parse func(string) error) {
	t.Helper()
	parts := strings.SplitN(s, sep, n)
	if len(parts) < n || parts[n-1] == "" {
		return
	}
	secret := parts[n-1]
	if strings.Contains(secret, sep) {
		if strings.Contains(msg, secret) {
			t.Fatalf("error %q contains the secret part %q", msg, secret)
		}
		return
	}
	masked := strings.Join(parts[:n-1], sep) + sep + strings.Repeat("\x00", len(secret))
	err := parse(masked)
	if err == nil {
		t.Fatalf("parse(%q) succeeded with a NUL secret", masked)
	}
	if err.Error() != msg {
		t.Fatalf("error depends on the secret part: %q, with the secret masked %q", msg, err)
	}
}
