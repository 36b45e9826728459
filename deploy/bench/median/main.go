// Command median prints, for each benchmark in `go test -bench` output
// files, the median of every metric over the runs (-count), so a noisy
// shared machine is summarised by one robust figure per metric.
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

func main() {
	type key struct{ bench, unit string }
	values := map[key][]float64{}
	var order []key
	for _, path := range os.Args[1:] {
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
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BENCHMARK\tMETRIC\tMEDIAN\tRUNS")
	for _, k := range order {
		vs := values[k]
		slices.Sort(vs)
		fmt.Fprintf(w, "%s\t%s\t%.4g\t%d\n", k.bench, k.unit, vs[len(vs)/2], len(vs))
	}
	w.Flush()
}
