// Command median prints, for each benchmark in `go test -bench` output
// files, the median of every metric over the runs (-count), so a noisy
// shared machine is summarised by one robust figure per metric.
//
// With -base NAME=PEER, benchmarks named NAME/<peer>/<case> also get the
// ratio of each median to PEER's for the same case and metric, e.g.
// -base BenchmarkLab_L4=nftables-dnat.
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
	flag.Var(&bases, "base", "NAME=PEER: print ratios of NAME/<peer>/<case> to NAME/PEER/<case> (repeatable)")
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
