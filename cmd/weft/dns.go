package main

import (
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func newDNSCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "dns", Short: "Ask a node's DNS server"}
	cmd.AddCommand(newDNSQueryCmd(cf))
	return cmd
}

func newDNSQueryCmd(cf *clientFlags) *cobra.Command {
	var req weftv1.QueryDNSRequest
	cmd := &cobra.Command{
		Use:   "query NAME",
		Short: "Show what the node at --addr would answer a DNS query, and why",
		Long: `Show what the node at --addr would answer a DNS query, and why. The node answers from its
own DNS server (it must run with --dns-addr) as it would a query over the network, without rate
limiting. --subnet is sent as EDNS Client Subnet; --client is the resolver's address.

  weft dns query www.example.com
  weft dns query www.example.com --subnet 203.0.113.0/24
  weft dns query example.com --type SOA`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.LB.QueryDNS(cmd.Context(), connect.NewRequest(&req))
			if err != nil {
				return err
			}
			switch cf.output {
			case outJSON:
				return manifest.JSON(cmd.OutOrStdout(), res.Msg)
			case outYAML:
				return manifest.YAML(cmd.OutOrStdout(), res.Msg)
			case outTable, outWide, "":
				return printDNSAnswer(cmd.OutOrStdout(), res.Msg)
			}
			return badOutput(cf.output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Type, "type", "A", "query type: A, AAAA, CNAME, TXT, SOA, NS, ...")
	f.StringVar(&req.Subnet, "subnet", "", "EDNS Client Subnet to send, e.g. 203.0.113.0/24")
	f.StringVar(&req.Client, "client", "", "the resolver's address the query comes from")
	return cmd
}

// printDNSAnswer prints an answer as dig does, in sections, with the
// reason first.
func printDNSAnswer(w io.Writer, r *weftv1.QueryDNSResponse) error {
	flags := ""
	if r.GetAuthoritative() {
		flags = " aa"
	}
	fmt.Fprintf(w, "node:    %s\nstatus:  %s%s\n", r.GetNode(), r.GetRcode(), flags)
	if r.GetReason() != "" {
		fmt.Fprintf(w, "why:     %s\n", r.GetReason())
	}
	if r.GetFailOpen() {
		fmt.Fprintln(w, "fail open: no target is healthy, so every one is answered")
	}
	if r.GetScope() > 0 {
		fmt.Fprintf(w, "scope:   /%d (EDNS Client Subnet)\n", r.GetScope())
	}
	for _, sec := range []struct {
		name string
		rrs  []string
	}{{"answer", r.GetAnswer()}, {"authority", r.GetAuthority()}, {"additional", r.GetAdditional()}} {
		if len(sec.rrs) > 0 {
			fmt.Fprintf(w, "\n;; %s\n%s\n", sec.name, strings.Join(sec.rrs, "\n"))
		}
	}
	return nil
}
