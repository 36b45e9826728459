package manifest

import (
	"fmt"
	"slices"
	"strings"
)

// diffContext is how many unchanged lines a hunk shows around changes,
// as diff -u does.
const diffContext = 3

// maxDiffEdits bounds the search for the shortest edit script; texts that
// differ more are shown as every old line removed and every new one added.
const maxDiffEdits = 2000

// Diff returns a unified diff (diff -u style, with @@ hunk headers) that
// turns text from into text to, under ---/+++ lines naming them; "" when
// they are equal. Texts are compared line by line.
func Diff(fromName, toName, from, to string) string {
	if from == to {
		return ""
	}
	edits := diffLines(splitLines(from), splitLines(to))
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n+++ %s\n", fromName, toName)
	for _, h := range hunks(edits) {
		b.WriteString(h)
	}
	return b.String()
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// edit is one line of a diff: ' ' kept, '-' removed, '+' added.
type edit struct {
	op   byte
	line string
}

// diffLines is Myers' O(ND) shortest edit script from a to b.
func diffLines(a, b []string) []edit {
	n, m := len(a), len(b)
	limit := min(n+m, maxDiffEdits)
	off := limit + 1
	v := make([]int, 2*limit+3)
	var trace [][]int
	for d := 0; d <= limit; d++ {
		trace = append(trace, slices.Clone(v))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: an insertion
			} else {
				x = v[off+k-1] + 1 // right: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				return backtrack(a, b, trace, off)
			}
		}
	}
	out := make([]edit, 0, n+m)
	for _, l := range a {
		out = append(out, edit{'-', l})
	}
	for _, l := range b {
		out = append(out, edit{'+', l})
	}
	return out
}

// backtrack walks the trace of diffLines from the end back to the start.
func backtrack(a, b []string, trace [][]int, off int) []edit {
	var rev []edit
	x, y := len(a), len(b)
	for d := len(trace) - 1; d >= 0; d-- {
		v := trace[d]
		k := x - y
		prevK := k - 1
		if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
			prevK = k + 1
		}
		prevX := v[off+prevK]
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x, y = x-1, y-1
			rev = append(rev, edit{' ', a[x]})
		}
		if d > 0 {
			if x == prevX {
				rev = append(rev, edit{'+', b[prevY]})
			} else {
				rev = append(rev, edit{'-', a[prevX]})
			}
		}
		x, y = prevX, prevY
	}
	slices.Reverse(rev)
	return rev
}

// hunks groups edits into @@ hunks with diffContext lines of context.
func hunks(edits []edit) []string {
	var out []string
	// aLine and bLine are the 1-based line numbers of edits[i] in each text.
	aLine, bLine := 1, 1
	for i := 0; i < len(edits); {
		if edits[i].op == ' ' {
			aLine, bLine, i = aLine+1, bLine+1, i+1
			continue
		}
		// A hunk starts diffContext lines before the change and ends when
		// more than 2 x diffContext unchanged lines follow one.
		start := max(0, i-diffContext)
		end := i
		for end < len(edits) {
			if edits[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(edits) && edits[run].op == ' ' {
				run++
			}
			if run == len(edits) || run-end > 2*diffContext {
				end = min(end+diffContext, len(edits))
				break
			}
			end = run
		}
		aStart, bStart := aLine-(i-start), bLine-(i-start)
		var body strings.Builder
		aCount, bCount := 0, 0
		for _, e := range edits[start:end] {
			body.WriteByte(e.op)
			body.WriteString(e.line)
			body.WriteByte('\n')
			if e.op != '+' {
				aCount++
			}
			if e.op != '-' {
				bCount++
			}
		}
		out = append(out, fmt.Sprintf("@@ -%s +%s @@\n%s", hunkRange(aStart, aCount), hunkRange(bStart, bCount), body.String()))
		for _, e := range edits[i:end] {
			if e.op != '+' {
				aLine++
			}
			if e.op != '-' {
				bLine++
			}
		}
		i = end
	}
	return out
}

// hunkRange is a hunk header's start,count; an empty range names the line
// before it, as diff -u does.
func hunkRange(start, count int) string {
	if count == 0 {
		start--
	}
	if count == 1 {
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, count)
}
