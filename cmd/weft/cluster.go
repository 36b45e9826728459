package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftlb/weft/api"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// clientCmd builds a command that runs fn with a connected client.
func clientCmd(cf *clientFlags, use, short string, args cobra.PositionalArgs,
	fn func(cmd *cobra.Command, c *api.Client, args []string) error,
) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return fn(cmd, c, args)
		},
	}
}

// nodeTable shows nodes: their record, Raft role, and liveness and version
// as the answering node's gossip sees them.
func nodeTable(nodes []*weftv1.Node) table {
	t := table{columns: cols([]string{"name", "region", "zone", "api", "raft role", "liveness", "version", "drain"},
		"raft", "gossip")}
	for _, n := range nodes {
		role := n.GetStatus().GetSuffrage()
		if n.GetStatus().GetLeader() {
			role += " (leader)"
		}
		drain := ""
		if n.GetSpec().GetDrain() {
			drain = "draining"
		}
		t.rows = append(t.rows, []string{n.GetMetadata().GetName(), n.GetSpec().GetRegion(), n.GetSpec().GetZone(),
			n.GetSpec().GetApiAddress(), role, n.GetStatus().GetLiveness(), n.GetStatus().GetVersion(), drain,
			n.GetSpec().GetRaftAddress(), n.GetSpec().GetGossipAddress()})
		t.names = append(t.names, "node/"+n.GetMetadata().GetName())
	}
	return t
}

func newNodesCmd(cf *clientFlags) *cobra.Command {
	return clientCmd(cf, "nodes", "List the cluster's nodes", cobra.NoArgs,
		func(cmd *cobra.Command, c *api.Client, _ []string) error {
			res, err := c.Cluster.ListNodes(cmd.Context(), connect.NewRequest(&weftv1.ListNodesRequest{}))
			if err != nil {
				return err
			}
			return printMessage(cmd.OutOrStdout(), cf.output, res.Msg, nodeTable(res.Msg.GetNodes()))
		})
}

func newStatusCmd(cf *clientFlags) *cobra.Command {
	return clientCmd(cf, "status", "Show the Raft status of the node at --addr", cobra.NoArgs,
		func(cmd *cobra.Command, c *api.Client, _ []string) error {
			res, err := c.Cluster.Status(cmd.Context(), connect.NewRequest(&weftv1.StatusRequest{}))
			if err != nil {
				return err
			}
			switch cf.output {
			case outTable, "":
				return printStatus(cmd.OutOrStdout(), res.Msg, false)
			case outWide:
				return printStatus(cmd.OutOrStdout(), res.Msg, true)
			case outName:
				return errors.New("-o name: status is not a listing (use table, wide, json or yaml)")
			}
			return printMessage(cmd.OutOrStdout(), cf.output, res.Msg, table{})
		})
}

func newNodeCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Drain, undrain or remove a node"}
	printNode := func(cmd *cobra.Command, n *weftv1.Node) error {
		return printMessage(cmd.OutOrStdout(), cf.output, n, nodeTable([]*weftv1.Node{n}))
	}
	cmd.AddCommand(
		clientCmd(cf, "drain NAME", "Stop sending new traffic to a node", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *api.Client, args []string) error {
				res, err := c.Cluster.DrainNode(cmd.Context(), connect.NewRequest(&weftv1.DrainNodeRequest{Name: args[0]}))
				if err != nil {
					return err
				}
				return printNode(cmd, res.Msg.GetNode())
			}),
		clientCmd(cf, "undrain NAME", "Let a drained node take traffic again", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *api.Client, args []string) error {
				res, err := c.Cluster.UndrainNode(cmd.Context(), connect.NewRequest(&weftv1.UndrainNodeRequest{Name: args[0]}))
				if err != nil {
					return err
				}
				return printNode(cmd, res.Msg.GetNode())
			}),
		clientCmd(cf, "remove NAME", "Remove a node from the cluster and its Raft configuration", cobra.ExactArgs(1),
			func(cmd *cobra.Command, c *api.Client, args []string) error {
				if _, err := c.Cluster.RemoveNode(cmd.Context(), connect.NewRequest(&weftv1.RemoveNodeRequest{Name: args[0]})); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "node/%s removed\n", args[0])
				return nil
			}),
	)
	for _, c := range cmd.Commands() {
		c.ValidArgsFunction = completeNodes(cf)
	}
	return cmd
}

func newLeaderCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "leader", Short: "Raft leadership"}
	transfer := clientCmd(cf, "transfer [NAME]", "Hand leadership to a node (or any voter)", cobra.MaximumNArgs(1),
		func(cmd *cobra.Command, c *api.Client, args []string) error {
			req := &weftv1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.Name = args[0]
			}
			res, err := c.Cluster.TransferLeadership(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "leader: %s\n", res.Msg.GetLeaderName())
			return nil
		})
	transfer.ValidArgsFunction = completeNodes(cf)
	cmd.AddCommand(transfer)
	return cmd
}

func expires(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "never"
	}
	return ts.AsTime().Format(time.RFC3339)
}

// printSecret prints a created token's secret alone, for a script to
// capture, or with -o json or yaml the whole response.
func printSecret(w io.Writer, format string, res interface {
	proto.Message
	GetSecret() string
}) error {
	if format == outJSON || format == outYAML {
		return printMessage(w, format, res, table{})
	}
	_, err := fmt.Fprintln(w, res.GetSecret())
	return err
}

func newTokenCmd(cf *clientFlags) *cobra.Command {
	var role, description string
	var ttl time.Duration
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens (admin)"}
	create := clientCmd(cf, "create", "Create an API token; its secret is printed once", cobra.NoArgs,
		func(cmd *cobra.Command, c *api.Client, _ []string) error {
			req := &weftv1.CreateAPITokenRequest{Role: role, Description: description}
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			res, err := c.Cluster.CreateAPIToken(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			return printSecret(cmd.OutOrStdout(), cf.output, res.Msg)
		})
	create.Flags().StringVar(&role, "role", "viewer", "admin, operator or viewer")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	create.Flags().DurationVar(&ttl, "ttl", 0, "expire after this long (0: never)")
	list := clientCmd(cf, "list", "List API tokens (never their secrets)", cobra.NoArgs,
		func(cmd *cobra.Command, c *api.Client, _ []string) error {
			res, err := c.Cluster.ListAPITokens(cmd.Context(), connect.NewRequest(&weftv1.ListAPITokensRequest{}))
			if err != nil {
				return err
			}
			t := table{columns: cols([]string{"id", "role", "expires", "description"}, "created")}
			for _, tok := range res.Msg.GetTokens() {
				t.rows = append(t.rows, []string{tok.GetId(), tok.GetRole(), expires(tok.GetExpiresAt()), tok.GetDescription(),
					strconv.FormatUint(tok.GetCreateIndex(), 10)})
				t.names = append(t.names, "token/"+tok.GetId())
			}
			return printMessage(cmd.OutOrStdout(), cf.output, res.Msg, t)
		})
	revoke := clientCmd(cf, "revoke ID", "Revoke an API token", cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *api.Client, args []string) error {
			if _, err := c.Cluster.RevokeAPIToken(cmd.Context(), connect.NewRequest(&weftv1.RevokeAPITokenRequest{Id: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token/%s revoked\n", args[0])
			return nil
		})
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func newJoinTokenCmd(cf *clientFlags) *cobra.Command {
	var uses uint32
	var ttl time.Duration
	var description string
	cmd := &cobra.Command{Use: "join-token", Short: "Manage join tokens (admin)"}
	create := clientCmd(cf, "create", "Create a join token; it is printed once", cobra.NoArgs,
		func(cmd *cobra.Command, c *api.Client, _ []string) error {
			req := &weftv1.CreateJoinTokenRequest{Uses: uses, Description: description}
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			res, err := c.Cluster.CreateJoinToken(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			return printSecret(cmd.OutOrStdout(), cf.output, res.Msg)
		})
	create.Flags().Uint32Var(&uses, "uses", 1, "how many nodes may join with it")
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long it is valid")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	list := clientCmd(cf, "list", "List join tokens (never their secrets)", cobra.NoArgs,
		func(cmd *cobra.Command, c *api.Client, _ []string) error {
			res, err := c.Cluster.ListJoinTokens(cmd.Context(), connect.NewRequest(&weftv1.ListJoinTokensRequest{}))
			if err != nil {
				return err
			}
			t := table{columns: cols([]string{"id", "uses left", "expires", "description"}, "created")}
			for _, tok := range res.Msg.GetTokens() {
				t.rows = append(t.rows, []string{tok.GetId(), strconv.Itoa(int(tok.GetUsesRemaining())), expires(tok.GetExpiresAt()),
					tok.GetDescription(), strconv.FormatUint(tok.GetCreateIndex(), 10)})
				t.names = append(t.names, "join-token/"+tok.GetId())
			}
			return printMessage(cmd.OutOrStdout(), cf.output, res.Msg, t)
		})
	revoke := clientCmd(cf, "revoke ID", "Revoke a join token", cobra.ExactArgs(1),
		func(cmd *cobra.Command, c *api.Client, args []string) error {
			if _, err := c.Cluster.RevokeJoinToken(cmd.Context(), connect.NewRequest(&weftv1.RevokeJoinTokenRequest{Id: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "join-token/%s revoked\n", args[0])
			return nil
		})
	cmd.AddCommand(create, list, revoke)
	return cmd
}
