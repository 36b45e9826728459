package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// JSON writes m as indented protojson, for `-o json`. m may be any message,
// such as a list response wrapping several resources.
func JSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("render json: %w", err)
	}
	// protojson varies its whitespace on purpose; json.Indent makes the
	// output stable.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("render json: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// YAML writes m as YAML, for `-o yaml` of messages that are not resources
// (resources go through Encode, so the output can be applied again). Fields
// keep their proto declaration order, as in Encode.
func YAML(w io.Writer, m proto.Message) error {
	n, err := messageNode(m)
	if err != nil {
		return fmt.Errorf("render yaml: %w", err)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return fmt.Errorf("render yaml: %w", err)
	}
	return enc.Close()
}

// Table writes rows under header in aligned columns, kubectl style: the
// header in upper case, columns three spaces apart.
func Table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	upper := make([]string, len(header))
	for i, h := range header {
		upper[i] = strings.ToUpper(h)
	}
	if err := writeRow(tw, upper); err != nil {
		return err
	}
	for _, r := range rows {
		if err := writeRow(tw, r); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// cellBreaks would split a cell across columns or lines.
var cellBreaks = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func writeRow(w io.Writer, cells []string) error {
	clean := make([]string, len(cells))
	for i, c := range cells {
		clean[i] = cellBreaks.Replace(c)
	}
	_, err := fmt.Fprintln(w, strings.Join(clean, "\t"))
	return err
}
