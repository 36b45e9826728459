package manifest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func lines(n int, f func(i int) string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(f(i))
		b.WriteByte('\n')
	}
	return b.String()
}

func numbered(i int) string { return "line " + strconv.Itoa(i) }

// TestDiff compares hunks with GNU diff -u on the same texts, where the
// shortest edit is unique.
func TestDiff(t *testing.T) {
	tests := []struct{ name, from, to string }{
		{"one line changed", lines(10, numbered), lines(10, func(i int) string {
			if i == 5 {
				return "changed"
			}
			return numbered(i)
		})},
		{"line added at the end", lines(3, numbered), lines(4, numbered)},
		{"line removed at the start", lines(4, numbered), lines(3, func(i int) string { return numbered(i + 1) })},
		{"two changes far apart", lines(20, numbered), lines(20, func(i int) string {
			if i == 2 || i == 18 {
				return "x" + numbered(i)
			}
			return numbered(i)
		})},
		{"two changes close together", lines(20, numbered), lines(20, func(i int) string {
			if i == 8 || i == 13 {
				return "x" + numbered(i)
			}
			return numbered(i)
		})},
		{"from empty", "", lines(2, numbered)},
		{"to empty", lines(2, numbered), ""},
	}
	if _, err := exec.LookPath("diff"); err != nil {
		t.Skip("diff is not installed")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff("a", "b", tc.from, tc.to)
			want := gnuDiff(t, tc.from, tc.to)
			if got != want {
				t.Errorf("Diff:\n%s\ndiff -u:\n%s", got, want)
			}
		})
	}
	if got := Diff("a", "b", "same\n", "same\n"); got != "" {
		t.Errorf("Diff of equal texts = %q, want \"\"", got)
	}
}

// gnuDiff runs diff -u on from and to, with the header names a and b.
func gnuDiff(t *testing.T, from, to string) string {
	t.Helper()
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, []byte(from), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte(to), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("diff", "-u", "--label", "a", "--label", "b", a, b).Output()
	return string(out)
}

// TestDiff_Random: on random texts, applying the diff to the old text gives
// the new one, and it changes no more lines than the longest common
// subsequence requires.
func TestDiff_Random(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		from := lines(rng.IntN(15), func(int) string { return string(rune('a' + rng.IntN(4))) })
		to := lines(rng.IntN(15), func(int) string { return string(rune('a' + rng.IntN(4))) })
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			d := Diff("a", "b", from, to)
			got, changed := patch(t, from, d)
			if got != to {
				t.Fatalf("patching %q with\n%s\ngives %q, want %q", from, d, got, to)
			}
			a, b := splitLines(from), splitLines(to)
			if want := len(a) + len(b) - 2*lcs(a, b); changed != want {
				t.Errorf("diff changes %d lines, want the minimum %d:\n%s", changed, want, d)
			}
		})
	}
}

// patch applies a unified diff to from and counts its changed lines.
func patch(t *testing.T, from, d string) (string, int) {
	t.Helper()
	if d == "" {
		return from, 0
	}
	src := splitLines(from)
	var out []string
	next, changed := 0, 0 // next unread line of src, 0-based
	for _, l := range splitLines(d)[2:] {
		if strings.HasPrefix(l, "@@ ") {
			var start int
			r := strings.Fields(l)[1][1:]
			start, _ = strconv.Atoi(strings.Split(r, ",")[0])
			if strings.HasSuffix(r, ",0") {
				start++ // an empty range names the line before
			}
			for next < start-1 {
				out = append(out, src[next])
				next++
			}
			continue
		}
		switch l[0] {
		case ' ':
			if src[next] != l[1:] {
				t.Fatalf("context %q does not match line %d %q", l, next+1, src[next])
			}
			out = append(out, src[next])
			next++
		case '-':
			if src[next] != l[1:] {
				t.Fatalf("removal %q does not match line %d %q", l, next+1, src[next])
			}
			next++
			changed++
		case '+':
			out = append(out, l[1:])
			changed++
		}
	}
	out = append(out, src[next:]...)
	if len(out) == 0 {
		return "", changed
	}
	return strings.Join(out, "\n") + "\n", changed
}

func lcs(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}
