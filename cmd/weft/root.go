package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/version"
)

// clientFlags are how client commands reach a node.
type clientFlags struct {
	addr, token, caFile, output string
}

func newRoot() *cobra.Command {
	var cf clientFlags
	root := &cobra.Command{
		Use:           "weft",
		Short:         "Weft: a load-balancer fabric of peer nodes",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(versionText(version.Get()))
	pf := root.PersistentFlags()
	pf.StringVar(&cf.addr, "addr", envOr("WEFT_ADDR", "127.0.0.1:7400"), "API address of any node (WEFT_ADDR)")
	cf.token = os.Getenv("WEFT_TOKEN")
	pf.Var(secretFlag{&cf.token}, "token", "API token (default: WEFT_TOKEN)")
	pf.StringVar(&cf.caFile, "ca-file", os.Getenv("WEFT_CA_FILE"), "cluster CA certificate (WEFT_CA_FILE)")
	pf.StringVarP(&cf.output, "output", "o", outTable, "output format: table, wide (more columns), name (kind/name lines), json or yaml")
	root.AddCommand(
		newAgentCmd(), newVersionCmd(&cf),
		newApplyCmd(&cf), newGetCmd(&cf), newDescribeCmd(&cf), newDeleteCmd(&cf),
		newNodesCmd(&cf), newStatusCmd(&cf), newNodeCmd(&cf), newLeaderCmd(&cf),
		newTokenCmd(&cf), newJoinTokenCmd(&cf), newDNSCmd(&cf), newTopCmd(&cf), newK8sControllerCmd(&cf),
	)
	return root
}

func (cf *clientFlags) client() (*api.Client, error) {
	return api.NewClient(api.ClientConfig{Addr: cf.addr, Token: cf.token, CAFile: cf.caFile})
}

// secretFlag is a string flag holding a secret. Its String is always
// empty, so that help never prints the value it got from the environment
// as a default (pflag shows a non-empty String as `(default "...")`).
type secretFlag struct{ v *string }

func (f secretFlag) String() string     { return "" }
func (f secretFlag) Set(s string) error { *f.v = s; return nil }
func (f secretFlag) Type() string       { return "string" }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// oneLine keeps an error to the one line a failing command prints.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
