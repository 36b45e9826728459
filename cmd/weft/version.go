package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/weftlb/weft/version"
)

// versionText is what `weft version` and `weft --version` print.
func versionText(v version.Info) string {
	var b strings.Builder
	fmt.Fprintf(&b, "weft %s\n", v.Version)
	if v.Revision != "" {
		mod := ""
		if v.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(&b, "revision: %s%s\n", v.Revision, mod)
	}
	fmt.Fprintf(&b, "go:       %s %s\n", v.Go, v.Platform)
	return b.String()
}

func newVersionCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the version of this weft binary (weft status shows each node's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version.Get()
			switch cf.output {
			case outTable, outWide, "":
				_, err := fmt.Fprint(cmd.OutOrStdout(), versionText(v))
				return err
			case outJSON, outYAML:
				doc := struct {
					Version  string `json:"version" yaml:"version"`
					Revision string `json:"revision,omitempty" yaml:"revision,omitempty"`
					Modified bool   `json:"modified" yaml:"modified"`
					Go       string `json:"go" yaml:"go"`
					Platform string `json:"platform" yaml:"platform"`
				}{v.Version, v.Revision, v.Modified, v.Go, v.Platform}
				var b []byte
				var err error
				if cf.output == outJSON {
					if b, err = json.MarshalIndent(doc, "", "  "); err == nil {
						b = append(b, '\n')
					}
				} else {
					b, err = yaml.Marshal(doc)
				}
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return fmt.Errorf("-o: version prints text, json or yaml, not %q", cf.output)
		},
	}
}
