package main

import "testing"

func TestNames(t *testing.T) {
	for _, c := range []struct {
		bench, name string
		want        bool
	}{
		{"BenchmarkKatran/ipip-v4-hit", "BenchmarkKatran/ipip-v4-hit", true},
		{"BenchmarkKatran/ipip-v4-hit-2", "BenchmarkKatran/ipip-v4-hit", true},
		{"BenchmarkKatran/ipip-v4-hit-16", "BenchmarkKatran/ipip-v4-hit", true},
		{"BenchmarkKatran/ipip-v4-hitx", "BenchmarkKatran/ipip-v4-hit", false},
		{"BenchmarkKatran/ipip-v4-hit/more-2", "BenchmarkKatran/ipip-v4-hit", false},
		{"BenchmarkKatran/ipip-v4-hit--2", "BenchmarkKatran/ipip-v4-hit", false},
		{"BenchmarkKatran/ipip-v4-hit-", "BenchmarkKatran/ipip-v4-hit", false},
		{"BenchmarkXDP/dsr/ipv4/hit-2", "BenchmarkKatran/ipip-v4-hit", false},
	} {
		if got := names(c.bench, c.name); got != c.want {
			t.Errorf("names(%q, %q) = %v, want %v", c.bench, c.name, got, c.want)
		}
	}
}
