package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weftlb/weft/api"
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
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&cf.addr, "addr", envOr("WEFT_ADDR", "127.0.0.1:7400"), "API address of any node (WEFT_ADDR)")
	pf.StringVar(&cf.token, "token", os.Getenv("WEFT_TOKEN"), "API token (WEFT_TOKEN)")
	pf.StringVar(&cf.caFile, "ca-file", os.Getenv("WEFT_CA_FILE"), "cluster CA certificate (WEFT_CA_FILE)")
	pf.StringVarP(&cf.output, "output", "o", "table", "output format: table, json or yaml")
	root.AddCommand(
		newAgentCmd(),
		newApplyCmd(&cf), newGetCmd(&cf), newDescribeCmd(&cf), newDeleteCmd(&cf),
		newNodesCmd(&cf), newStatusCmd(&cf), newNodeCmd(&cf), newLeaderCmd(&cf),
		newTokenCmd(&cf), newJoinTokenCmd(&cf),
	)
	return root
}

func (cf *clientFlags) client() (*api.Client, error) {
	return api.NewClient(api.ClientConfig{Addr: cf.addr, Token: cf.token, CAFile: cf.caFile})
}

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
