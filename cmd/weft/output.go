package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/manifest"
)

// Output formats of -o.
const (
	outTable = "table"
	outWide  = "wide"
	outName  = "name"
	outJSON  = "json"
	outYAML  = "yaml"
)

func badOutput(format string) error {
	return fmt.Errorf("-o: %q is not table, wide, name, json or yaml", format)
}

// column is one column of a table; wide ones show only with -o wide.
type column struct {
	name string
	wide bool
}

// cols makes the columns of a table, the wide ones after the others.
func cols(names []string, wide ...string) []column {
	var out []column
	for _, n := range names {
		out = append(out, column{name: n})
	}
	for _, n := range wide {
		out = append(out, column{name: n, wide: true})
	}
	return out
}

// table is what the table formats show of a listing: rows of cells, one
// per column, and each row's kind/name for -o name.
type table struct {
	columns []column
	rows    [][]string
	names   []string
}

// write prints t, with its wide columns when wide is set.
func (t table) write(w io.Writer, wide bool) error {
	var header []string
	var keep []int
	for i, c := range t.columns {
		if wide || !c.wide {
			header = append(header, c.name)
			keep = append(keep, i)
		}
	}
	rows := make([][]string, 0, len(t.rows))
	for _, r := range t.rows {
		row := make([]string, 0, len(keep))
		for _, i := range keep {
			row = append(row, r[i])
		}
		rows = append(rows, row)
	}
	return manifest.Table(w, header, rows)
}

// writeNames prints one kind/name line per row, as kubectl's -o name does.
func (t table) writeNames(w io.Writer) error {
	for _, n := range t.names {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// printMessage writes a response in the -o format: JSON or YAML of m, or t.
func printMessage(w io.Writer, format string, m proto.Message, t table) error {
	switch format {
	case outJSON:
		return manifest.JSON(w, m)
	case outYAML:
		return manifest.YAML(w, m)
	case outTable, "":
		return t.write(w, false)
	case outWide:
		return t.write(w, true)
	case outName:
		return t.writeNames(w)
	}
	return badOutput(format)
}

// labels shows a label map as sorted k=v pairs.
func labels(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ",")
}
