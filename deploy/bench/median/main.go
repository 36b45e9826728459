// Command median prints, for each benchmark in `go test -bench` output
// files, the median of every metric over the runs (-count), so a noisy
// shared machine is summarised by one robust figure per metric.
//
// With -base NAME=PEER, benchmarks named NAME/<peer>/<case> also get the
// ratio of each median to PEER's for the same case and metric, e.g.
// -base BenchmarkLab_L4=nftables-dnat.
//
// With -ratio A=B, the medians of benchmark A (with or without its
// -GOMAXPROCS suffix) are also given as ratios to those of benchmark B for
// each metric both have, e.g. -ratio BenchmarkXDP/dsr/ipv4/hit=BenchmarkFloor/array-lookup-tx.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	var bases baseFlags
	var ratios ratioFlags
	flag.Var(&bases, "base", "NAME=PEER: print ratios of NAME/<peer>/<case> to NAME/PEER/<case> (repeatable)")
	flag.Var(&ratios, "ratio", "A=B: print the ratios of benchmark A's medians to benchmark B's (repeatable)")
	flag.Parse()
	type key struct{ bench, unit string }
	values := map[key][]float64{}
	var order []key
	for _, path := range flag.Args() {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
				continue
			}
			// name, iterations, then value/unit pairs
			for i := 2; i+1 < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					continue
				}
				k := key{fields[0], fields[i+1]}
				if _, ok := values[k]; !ok {
					order = append(order, k)
				}
				values[k] = append(values[k], v)
			}
		}
		f.Close()
	}
	median := func(k key) (float64, bool) {
		vs, ok := values[k]
		if !ok {
			return 0, false
		}
		vs = slices.Clone(vs)
		slices.Sort(vs)
		return vs[len(vs)/2], true
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BENCHMARK\tMETRIC\tMEDIAN\tRUNS\tRATIO")
	for _, k := range order {
		m, _ := median(k)
		ratio := ""
		if b, ok := bases.baseline(k.bench); ok {
			if bm, ok := median(key{b, k.unit}); ok && bm != 0 {
				ratio = fmt.Sprintf("%.2f", m/bm)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%.4g\t%d\t%s\n", k.bench, k.unit, m, len(values[k]), ratio)
	}
	w.Flush()
	if len(ratios) == 0 {
		return
	}
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RATIO OF MEDIANS\tMETRIC\tRATIO")
	for _, r := range ratios {
		for _, a := range order {
			if !names(a.bench, r.a) {
				continue
			}
			for _, b := range order {
				if b.unit != a.unit || !names(b.bench, r.b) {
					continue
				}
				am, _ := median(a)
				if bm, _ := median(b); bm != 0 {
					fmt.Fprintf(w, "%s / %s\t%s\t%.2f\n", r.a, r.b, a.unit, am/bm)
				}
			}
		}
	}
	w.Flush()
}

// names reports whether a -ratio flag's name names bench: the same, or
// with the -GOMAXPROCS suffix go test adds (e.g. "-2").
func names(bench, name string) bool {
	rest, ok := strings.CutPrefix(bench, name)
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	procs, ok := strings.CutPrefix(rest, "-")
	return ok && procs != "" && strings.Trim(procs, "0123456789") == ""
}

// ratioFlags are the -ratio A=B flags, in order.
type ratioFlags []struct{ a, b string }

func (r *ratioFlags) String() string { return fmt.Sprint(*r) }

func (r *ratioFlags) Set(s string) error {
	a, b, ok := strings.Cut(s, "=")
	if !ok || a == "" || b == "" {
		return fmt.Errorf("-ratio %q: want A=B", s)
	}
	*r = append(*r, struct{ a, b string }{a, b})
	return nil
}

// baseFlags are the -base NAME=PEER flags.
type baseFlags map[string]string

func (b *baseFlags) String() string { return fmt.Sprint(map[string]string(*b)) }

func (b *baseFlags) Set(s string) error {
	name, peer, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("-base %q: want NAME=PEER", s)
	}
	if *b == nil {
		*b = baseFlags{}
	}
	(*b)[name] = peer
	return nil
}

// baseline names the benchmark a NAME/<peer>/<case> benchmark compares to.
func (b baseFlags) baseline(bench string) (string, bool) {
	parts := strings.SplitN(bench, "/", 3)
	if len(parts) != 3 {
		return "", false
	}
	peer, ok := b[parts[0]]
	if !ok {
		return "", false
	}
	return parts[0] + "/" + peer + "/" + parts[2], true
}
