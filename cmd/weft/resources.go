package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
)

func newApplyCmd(cf *clientFlags) *cobra.Command {
	var (
		files                   []string
		recursive, dryRun, wait bool
		waitTimeout             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- ...",
		Short: "Create or update resources from YAML, all in one Raft entry",
		Long: `Create or update resources from YAML (or JSON) documents, all in one Raft entry.

-f takes a file, a directory (its *.yaml, *.yml and *.json files in name order; with -R also
those of its subdirectories) or - for standard input, and may be repeated. --dry-run has the
leader check everything a real apply checks and print what would change as a diff of each
resource's YAML, without writing anything. --wait returns once every node the cluster holds
alive has applied the change to all its subsystems (dataplane, proxy, BGP, DNS, ...), and
fails naming the nodes that have not within --wait-timeout or whose apply failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return errors.New("-f: a file, a directory or - (standard input) is required")
			}
			rs, err := readManifests(cmd.InOrStdin(), files, recursive)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.LB.Apply(cmd.Context(), connect.NewRequest(&weftv1.ApplyRequest{Resources: rs, DryRun: dryRun}))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, r := range res.Msg.GetResults() {
				ref := strings.ToLower(r.GetKind()) + "/" + r.GetName()
				if !dryRun {
					fmt.Fprintf(out, "%s %s\n", ref, r.GetAction())
					continue
				}
				fmt.Fprintf(out, "%s %s (dry run)\n", ref, r.GetAction())
				if err := printChange(out, ref, r); err != nil {
					return err
				}
			}
			if wait && !dryRun {
				return waitApplied(cmd.Context(), out, cf, c, res.Msg.GetIndex(), waitTimeout)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&files, "filename", "f", nil, "file or directory of YAML documents, one resource each, or - for standard input (repeatable)")
	f.BoolVarP(&recursive, "recursive", "R", false, "read the directories given with -f and their subdirectories")
	f.BoolVar(&dryRun, "dry-run", false, "check on the leader and print the changes as a diff; write nothing")
	f.BoolVar(&wait, "wait", false, "return once every live node has applied the change")
	f.DurationVar(&waitTimeout, "wait-timeout", time.Minute, "how long --wait waits")
	cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	return cmd
}

// waitApplied waits until every node that gossip does not hold dead or
// gone has applied index (Status with wait_applied_index, asked of each
// node at its API address), and says how long that took.
func waitApplied(ctx context.Context, out io.Writer, cf *clientFlags, c *api.Client, index uint64, limit time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	nodes, err := c.Cluster.ListNodes(ctx, connect.NewRequest(&weftv1.ListNodesRequest{}))
	if err != nil {
		return fmt.Errorf("--wait: list nodes: %w", err)
	}
	var (
		wg              sync.WaitGroup
		mu              sync.Mutex
		failed, skipped []string
		waited          int
	)
	for _, n := range nodes.Msg.GetNodes() {
		name := n.GetMetadata().GetName()
		if l := n.GetStatus().GetLiveness(); l == "dead" || l == "left" {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", name, l))
			continue
		}
		waited++
		wg.Go(func() {
			err := waitNode(ctx, cf, n.GetSpec().GetApiAddress(), index)
			if err != nil {
				mu.Lock()
				defer mu.Unlock()
				failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			}
		})
	}
	wg.Wait()
	if len(skipped) > 0 {
		slices.Sort(skipped)
		fmt.Fprintf(out, "not waited for: %s\n", strings.Join(skipped, ", "))
	}
	if len(failed) > 0 {
		slices.Sort(failed)
		return fmt.Errorf("--wait: index %d is not applied on every node:\n  %s", index, strings.Join(failed, "\n  "))
	}
	fmt.Fprintf(out, "applied on %d nodes in %v\n", waited, time.Since(start).Round(time.Millisecond))
	return nil
}

// waitNode asks the node at addr to answer once it has applied index.
func waitNode(ctx context.Context, cf *clientFlags, addr string, index uint64) error {
	c, err := api.NewClient(api.ClientConfig{Addr: addr, Token: cf.token, CAFile: cf.caFile})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Cluster.Status(ctx, connect.NewRequest(&weftv1.StatusRequest{WaitAppliedIndex: index}))
	return err
}

// manifestExts are the file names a directory given to apply -f is read for.
var manifestExts = []string{".yaml", ".yml", ".json"}

// readManifests decodes the resources of every -f argument, in order: a
// file, a directory's manifest files (sorted; with recursive also those
// below), or - for stdin.
func readManifests(stdin io.Reader, args []string, recursive bool) ([]*weftv1.Resource, error) {
	var paths []string
	for _, a := range args {
		if a == "-" {
			paths = append(paths, a)
			continue
		}
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			paths = append(paths, a)
			continue
		}
		found, err := manifestFiles(a, recursive)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no %s files", a, strings.Join(manifestExts, ", "))
		}
		paths = append(paths, found...)
	}
	if n := slices.Index(paths, "-"); n >= 0 && slices.Index(paths[n+1:], "-") >= 0 {
		return nil, errors.New("-f: standard input (-) may be given once")
	}
	var out []*weftv1.Resource
	for _, p := range paths {
		rs, err := decodeFile(stdin, p)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no resources in %s", strings.Join(args, ", "))
	}
	return out, nil
}

// decodeFile decodes the documents of the file at path, or of stdin for -;
// errors name it.
func decodeFile(stdin io.Reader, path string) ([]*weftv1.Resource, error) {
	if path == "-" {
		rs, err := manifest.Decode(stdin)
		if err != nil {
			return nil, fmt.Errorf("standard input: %w", err)
		}
		return rs, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rs, err := manifest.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rs, nil
}

// manifestFiles lists dir's manifest files in name order, and with
// recursive those of its subdirectories (each directory's files in name
// order, as filepath.WalkDir visits them).
func manifestFiles(dir string, recursive bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && !recursive {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && slices.Contains(manifestExts, strings.ToLower(filepath.Ext(path))) {
			out = append(out, path)
		}
		return nil
	})
	return out, err
}

// printChange prints a dry run's change to one resource: a diff of its
// YAML from the stored form to the applied one (all added for a create).
// Versions are left out of both sides: they are not part of the change.
func printChange(w io.Writer, ref string, r *weftv1.ApplyResult) error {
	if r.GetAction() == raftfsm.ActionUnchanged {
		return nil
	}
	from, err := diffYAML(r.GetCurrent())
	if err != nil {
		return err
	}
	to, err := diffYAML(r.GetDesired())
	if err != nil {
		return err
	}
	fromName := ref + " (stored)"
	if r.GetCurrent() == nil {
		fromName = "/dev/null"
	}
	d := manifest.Diff(fromName, ref+" (applied)", from, to)
	if d == "" {
		// Only what reads never show differs.
		d = "  (only the private key differs; keys are never shown)\n"
	}
	_, err = io.WriteString(w, d)
	return err
}

// diffYAML is r as YAML for a diff: without its versions; "" for nil.
func diffYAML(r *weftv1.Resource) (string, error) {
	if r == nil {
		return "", nil
	}
	r = proto.Clone(r).(*weftv1.Resource)
	if m, ok := kindMessage(r); ok && m.GetMetadata() != nil {
		m.GetMetadata().Version, m.GetMetadata().CreateIndex = 0, 0
	}
	var b strings.Builder
	if err := manifest.Encode(&b, []*weftv1.Resource{r}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// kindMessage returns the message r holds, with its metadata accessor.
func kindMessage(r *weftv1.Resource) (interface {
	proto.Message
	GetMetadata() *weftv1.Metadata
}, bool) {
	switch {
	case r.GetLoadBalancer() != nil:
		return r.GetLoadBalancer(), true
	case r.GetPool() != nil:
		return r.GetPool(), true
	case r.GetCertificate() != nil:
		return r.GetCertificate(), true
	case r.GetDnsRecord() != nil:
		return r.GetDnsRecord(), true
	case r.GetAddressPool() != nil:
		return r.GetAddressPool(), true
	}
	return nil, false
}

func newGetCmd(cf *clientFlags) *cobra.Command {
	var list listOptions
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List resources of a kind, or show one",
		Long: `List resources of a kind, or show one. Kinds: loadbalancers (lb), pools, certificates (cert), dnsrecords (dns), addresspools (ap).

Pools show their members' health (up, down, unknown) as the answering node's copy of the agreed
health view holds it; -o wide adds columns, -o name prints kind/name lines.`,
		Args:              cobra.RangeArgs(1, 2),
		ValidArgsFunction: completeResource(cf, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := manifest.ParseKind(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			var rs []*weftv1.Resource
			if len(args) == 2 {
				r, err := getResource(cmd.Context(), c, kind, args[1], list.stale)
				if err != nil {
					return err
				}
				rs = []*weftv1.Resource{r}
			} else {
				var more bool
				if rs, more, err = listResources(cmd.Context(), c, kind, list); err != nil {
					return err
				}
				if more {
					defer fmt.Fprintf(cmd.ErrOrStderr(), "more %s than --limit %d; raise it, or narrow --selector\n", kind, list.limit)
				}
			}
			return printResources(cmd.OutOrStdout(), cf.output, kind, rs, len(args) == 2)
		},
	}
	cmd.Flags().BoolVar(&list.stale, "stale", false, "read this node's replica without asking the leader")
	cmd.Flags().StringVarP(&list.selector, "selector", "l", "", "list only resources whose labels match: key=value, key!=value, key or !key, comma separated (all must match)")
	cmd.Flags().Uint32Var(&list.limit, "limit", 0, "list at most this many resources, in name order (0: all)")
	return cmd
}

func newDescribeCmd(cf *clientFlags) *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one resource in full, as YAML; a load balancer with its live rates",
		Long: `Show one resource in full, as YAML. A load balancer is followed by its live rates per
listener and backend, over --interval (0: none): packets, bits, new flows and requests per
second, open flows, the share of requests answered 5xx or not at all, and each member's health,
summed over the nodes that answered. The rates are YAML comments: the output can be applied.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeResource(cf, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := manifest.ParseKind(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			r, err := getResource(cmd.Context(), c, kind, args[1], false)
			if err != nil {
				return err
			}
			if err := manifest.Encode(cmd.OutOrStdout(), []*weftv1.Resource{r}); err != nil {
				return err
			}
			if r.GetLoadBalancer() == nil || interval <= 0 {
				return nil
			}
			// The resource is what describe is for: rates that cannot be
			// had are said, not failed on.
			if err := describeRates(cmd.Context(), cmd.OutOrStdout(), c, args[1], interval); err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "# rates: %s\n", oneLine(err))
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", defaultRateInterval, "time between the two samples rates come from (load balancers; 0: no rates)")
	return cmd
}

func newDeleteCmd(cf *clientFlags) *cobra.Command {
	var version uint64
	cmd := &cobra.Command{
		Use:               "delete KIND NAME",
		Short:             "Delete a resource",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeResource(cf, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := manifest.ParseKind(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			// ParseKind accepts only the kinds in the table.
			req := connect.NewRequest(&weftv1.DeleteRequest{Name: args[1], Version: version})
			if err := kinds[kind].delete(cmd.Context(), c.LB, req); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s deleted\n", strings.ToLower(kind), args[1])
			return nil
		},
	}
	cmd.Flags().Uint64Var(&version, "version", 0, "delete only if the stored version is this one")
	return cmd
}

// kindWords are the kinds shell completion offers.
var kindWords = []string{"loadbalancers", "pools", "certificates", "dnsrecords"}

// completionTimeout bounds the API call behind a completion, so that an
// unreachable node does not hang the shell.
const completionTimeout = 3 * time.Second

// completeResource completes `KIND NAME` arguments for commands that take
// at most maxArgs of them: the kinds, then the names of that kind, listed
// through the API with the command's --addr, --token and --ca-file.
func completeResource(cf *clientFlags, maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		switch {
		case len(args) == 0:
			return withPrefix(kindWords, toComplete), cobra.ShellCompDirectiveNoFileComp
		case len(args) >= maxArgs:
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		kind, err := manifest.ParseKind(args[0])
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeNames(cmd, cf, toComplete, resourceNames(kind))
	}
}

// resourceNames lists the names of a kind's resources, for completion.
func resourceNames(kind string) func(ctx context.Context, c *api.Client) ([]string, error) {
	return func(ctx context.Context, c *api.Client) ([]string, error) {
		rs, _, err := listResources(ctx, c, kind, listOptions{})
		var names []string
		for _, r := range rs {
			names = append(names, manifest.NameOf(r))
		}
		return names, err
	}
}

// completeNodes completes a node name, for commands that take one.
func completeNodes(cf *clientFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeNames(cmd, cf, toComplete, func(ctx context.Context, c *api.Client) ([]string, error) {
			res, err := c.Cluster.ListNodes(ctx, connect.NewRequest(&weftv1.ListNodesRequest{}))
			var names []string
			for _, n := range res.Msg.GetNodes() {
				names = append(names, n.GetMetadata().GetName())
			}
			return names, err
		})
	}
}

// completeNames runs list against the API and offers the names that start
// with toComplete; on failure it offers nothing (a completion cannot
// print an error) and cobra's debug log (BASH_COMP_DEBUG_FILE) has why.
func completeNames(cmd *cobra.Command, cf *clientFlags, toComplete string,
	list func(context.Context, *api.Client) ([]string, error),
) ([]cobra.Completion, cobra.ShellCompDirective) {
	c, err := cf.client()
	if err != nil {
		cobra.CompDebugln(err.Error(), true)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	names, err := list(ctx, c)
	if err != nil {
		cobra.CompDebugln(err.Error(), true)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}

func withPrefix(words []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}

func getResource(ctx context.Context, c *api.Client, kind, name string, staleRead bool) (*weftv1.Resource, error) {
	ops, ok := kinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	return ops.get(ctx, c.LB, connect.NewRequest(&weftv1.GetRequest{Name: name, Stale: staleRead}))
}

// listOptions narrow a listing.
type listOptions struct {
	stale bool
	// selector is a label selector (ListRequest.selector).
	selector string
	// limit is the most resources listed; 0 means all.
	limit uint32
}

// listPage is how many resources one answer holds when every one is
// listed, so that no answer grows with the cluster.
const listPage = 1000

// listResources lists a kind's resources as o says, page by page; more
// reports that o.limit left some out.
func listResources(ctx context.Context, c *api.Client, kind string, o listOptions) (rs []*weftv1.Resource, more bool, err error) {
	ops, ok := kinds[kind]
	if !ok {
		return nil, false, fmt.Errorf("unknown kind %q", kind)
	}
	token := ""
	for {
		limit := uint32(listPage)
		if o.limit > 0 {
			limit = min(limit, o.limit-uint32(len(rs)))
		}
		page, next, err := ops.list(ctx, c.LB, connect.NewRequest(&weftv1.ListRequest{Stale: o.stale, Selector: o.selector, Limit: limit, PageToken: token}))
		if err != nil {
			return nil, false, err
		}
		rs = append(rs, page...)
		if token = next; token == "" {
			return rs, false, nil
		}
		if o.limit > 0 && uint32(len(rs)) >= o.limit {
			return rs, true, nil
		}
	}
}

type lbClient = weftv1connect.LoadBalancerServiceClient

// kindOps are one resource kind's client calls, with results wrapped as
// Resources, so the commands need no switch on the kind.
type kindOps struct {
	get func(context.Context, lbClient, *connect.Request[weftv1.GetRequest]) (*weftv1.Resource, error)
	// list returns one page and the token of the next ("": none).
	list   func(context.Context, lbClient, *connect.Request[weftv1.ListRequest]) ([]*weftv1.Resource, string, error)
	delete func(context.Context, lbClient, *connect.Request[weftv1.DeleteRequest]) error
}

// opsOf builds a kind's kindOps from its service methods, the accessors
// of their responses and wrap, which makes a Resource of one X.
func opsOf[G, L, X any](
	get func(lbClient, context.Context, *connect.Request[weftv1.GetRequest]) (*connect.Response[G], error), one func(*G) X,
	list func(lbClient, context.Context, *connect.Request[weftv1.ListRequest]) (*connect.Response[L], error), all func(*L) []X,
	del func(lbClient, context.Context, *connect.Request[weftv1.DeleteRequest]) (*connect.Response[weftv1.DeleteResponse], error),
	wrap func(X) *weftv1.Resource,
) kindOps {
	return kindOps{
		get: func(ctx context.Context, c lbClient, req *connect.Request[weftv1.GetRequest]) (*weftv1.Resource, error) {
			res, err := get(c, ctx, req)
			if err != nil {
				return nil, err
			}
			return wrap(one(res.Msg)), nil
		},
		list: func(ctx context.Context, c lbClient, req *connect.Request[weftv1.ListRequest]) ([]*weftv1.Resource, string, error) {
			res, err := list(c, ctx, req)
			if err != nil {
				return nil, "", err
			}
			var out []*weftv1.Resource
			for _, x := range all(res.Msg) {
				out = append(out, wrap(x))
			}
			// Every List*Response has it.
			return out, any(res.Msg).(interface{ GetNextPageToken() string }).GetNextPageToken(), nil
		},
		delete: func(ctx context.Context, c lbClient, req *connect.Request[weftv1.DeleteRequest]) error {
			_, err := del(c, ctx, req)
			return err
		},
	}
}

var kinds = map[string]kindOps{
	raftfsm.KindLoadBalancer: opsOf(lbClient.GetLoadBalancer, (*weftv1.GetLoadBalancerResponse).GetLoadBalancer,
		lbClient.ListLoadBalancers, (*weftv1.ListLoadBalancersResponse).GetLoadBalancers, lbClient.DeleteLoadBalancer,
		func(x *weftv1.LoadBalancer) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: x}}
		}),
	raftfsm.KindPool: opsOf(lbClient.GetPool, (*weftv1.GetPoolResponse).GetPool,
		lbClient.ListPools, (*weftv1.ListPoolsResponse).GetPools, lbClient.DeletePool,
		func(x *weftv1.Pool) *weftv1.Resource { return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: x}} }),
	raftfsm.KindCertificate: opsOf(lbClient.GetCertificate, (*weftv1.GetCertificateResponse).GetCertificate,
		lbClient.ListCertificates, (*weftv1.ListCertificatesResponse).GetCertificates, lbClient.DeleteCertificate,
		func(x *weftv1.Certificate) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: x}}
		}),
	raftfsm.KindDNSRecord: opsOf(lbClient.GetDNSRecord, (*weftv1.GetDNSRecordResponse).GetDnsRecord,
		lbClient.ListDNSRecords, (*weftv1.ListDNSRecordsResponse).GetDnsRecords, lbClient.DeleteDNSRecord,
		func(x *weftv1.DNSRecord) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: x}}
		}),
	raftfsm.KindAddressPool: opsOf(lbClient.GetAddressPool, (*weftv1.GetAddressPoolResponse).GetAddressPool,
		lbClient.ListAddressPools, (*weftv1.ListAddressPoolsResponse).GetAddressPools, lbClient.DeleteAddressPool,
		func(x *weftv1.AddressPool) *weftv1.Resource {
			return &weftv1.Resource{Kind: &weftv1.Resource_AddressPool{AddressPool: x}}
		}),
}

// printResources writes resources as a table (-o wide: with more
// columns), kind/name lines, JSON (an object for one resource,
// {"items": [...]} for a listing) or YAML documents.
func printResources(w io.Writer, format, kind string, rs []*weftv1.Resource, single bool) error {
	switch format {
	case outJSON:
		docs := make([]json.RawMessage, 0, len(rs))
		for _, r := range rs {
			doc, err := jsonDoc(r)
			if err != nil {
				return err
			}
			docs = append(docs, doc)
		}
		var v any = map[string]any{"items": docs}
		if single {
			v = docs[0]
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case outYAML:
		return manifest.Encode(w, rs)
	case outTable, "":
		return tableOf(kind, rs).write(w, false)
	case outWide:
		return tableOf(kind, rs).write(w, true)
	case outName:
		return tableOf(kind, rs).writeNames(w)
	}
	return badOutput(format)
}

// jsonDoc is a resource in the form `apply -f` takes, as JSON.
func jsonDoc(r *weftv1.Resource) (json.RawMessage, error) {
	inner, ok := kindMessage(r)
	if !ok {
		return nil, errors.New("a resource with no kind set")
	}
	b, err := protojson.Marshal(inner)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["kind"], _ = json.Marshal(raftfsm.KindOf(r))
	return json.Marshal(m)
}

func tableOf(kind string, rs []*weftv1.Resource) table {
	var t table
	for _, r := range rs {
		t.names = append(t.names, strings.ToLower(kind)+"/"+manifest.NameOf(r))
	}
	switch kind {
	case raftfsm.KindLoadBalancer:
		t.columns = cols([]string{"name", "vip", "region", "zones", "listeners", "version"}, "pools", "certificates", "address pool", "labels")
		for _, r := range rs {
			lb := r.GetLoadBalancer()
			var ls, pools, certs []string
			for _, l := range lb.GetSpec().GetListeners() {
				ls = append(ls, fmt.Sprintf("%d/%s", l.GetPort(), l.GetProtocol()))
				pools = append(pools, l.GetPool())
				for _, rule := range l.GetRules() {
					pools = append(pools, rule.GetPool())
				}
				certs = append(certs, l.GetCertificates()...)
			}
			t.rows = append(t.rows, []string{lb.GetMetadata().GetName(), lb.GetSpec().GetVip(), lb.GetSpec().GetRegion(),
				zoneList(lb.GetSpec().GetPrimaryZone(), lb.GetSpec().GetBackupZones()), strings.Join(ls, ","), versionOf(lb.GetMetadata()),
				strings.Join(uniqueSorted(pools), ","), strings.Join(uniqueSorted(certs), ","), lb.GetSpec().GetAddressPool(),
				labels(lb.GetMetadata().GetLabels())})
		}
	case raftfsm.KindAddressPool:
		t.columns = cols([]string{"name", "cidrs", "region", "zones", "version"}, "labels")
		for _, r := range rs {
			p := r.GetAddressPool()
			t.rows = append(t.rows, []string{p.GetMetadata().GetName(), strings.Join(p.GetSpec().GetCidrs(), ","), p.GetSpec().GetRegion(),
				zoneList(p.GetSpec().GetPrimaryZone(), p.GetSpec().GetBackupZones()), versionOf(p.GetMetadata()),
				labels(p.GetMetadata().GetLabels())})
		}
	case raftfsm.KindPool:
		t.columns = cols([]string{"name", "members", "health", "check", "algorithm", "version"}, "check detail", "upstream", "health of", "labels")
		for _, r := range rs {
			p := r.GetPool()
			hc := p.GetSpec().GetHealthCheck()
			t.rows = append(t.rows, []string{p.GetMetadata().GetName(), strconv.Itoa(len(p.GetSpec().GetMembers())),
				poolHealth(p), hc.GetType(), p.GetSpec().GetAlgorithm(), versionOf(p.GetMetadata()),
				checkDetail(hc), p.GetSpec().GetUpstreamProtocol(), p.GetStatus().GetObserver(), labels(p.GetMetadata().GetLabels())})
		}
	case raftfsm.KindCertificate:
		t.columns = cols([]string{"name", "dns names", "not after", "version"}, "not before", "fingerprint", "labels")
		for _, r := range rs {
			c := r.GetCertificate()
			t.rows = append(t.rows, []string{c.GetMetadata().GetName(), strings.Join(c.GetStatus().GetDnsNames(), ","),
				date(c.GetStatus().GetNotAfter()), versionOf(c.GetMetadata()),
				date(c.GetStatus().GetNotBefore()), c.GetStatus().GetFingerprint(), labels(c.GetMetadata().GetLabels())})
		}
	default:
		t.columns = cols([]string{"name", "fqdn", "policy", "targets", "answers", "ttl", "version"}, "target list", "why", "answered by", "labels")
		for _, r := range rs {
			d := r.GetDnsRecord()
			var targets []string
			for _, tg := range d.GetSpec().GetTargets() {
				targets = append(targets, cmp.Or(tg.GetLoadBalancer(), tg.GetAddress()))
			}
			t.rows = append(t.rows, []string{d.GetMetadata().GetName(), d.GetSpec().GetFqdn(), recordKind(d.GetSpec()),
				targetHealth(d), dnsAnswers(d.GetStatus()), strconv.Itoa(int(d.GetSpec().GetTtl())), versionOf(d.GetMetadata()),
				strings.Join(targets, ","), d.GetStatus().GetReason(), d.GetStatus().GetObserver(), labels(d.GetMetadata().GetLabels())})
		}
	}
	return t
}

// zoneList is a primary zone and its backups in order: "a>b>c".
func zoneList(primary string, backups []string) string {
	return strings.Join(append([]string{primary}, backups...), ">")
}

// recordKind is what a DNS record is: its policy, its static type, or a
// zone apex.
func recordKind(s *weftv1.DNSRecordSpec) string {
	kind := cmp.Or(s.GetPolicy(), s.GetType())
	switch {
	case s.GetZone() != nil && kind != "":
		return "zone," + kind
	case s.GetZone() != nil:
		return "zone"
	}
	return kind
}

// targetHealth counts a record's healthy targets as the answering node's
// DNS server sees them: "1/2 healthy".
func targetHealth(d *weftv1.DNSRecord) string {
	ts := d.GetStatus().GetTargets()
	if len(d.GetSpec().GetTargets()) == 0 {
		return ""
	}
	if len(ts) == 0 {
		return strconv.Itoa(len(d.GetSpec().GetTargets()))
	}
	up := 0
	for _, t := range ts {
		if t.GetHealthy() {
			up++
		}
	}
	return fmt.Sprintf("%d/%d healthy", up, len(ts))
}

// dnsAnswers shows what a record answers now: its addresses (per region
// for geo records), "fail open" when no target is healthy, or why it is
// not served.
func dnsAnswers(st *weftv1.DNSRecordStatus) string {
	switch {
	case st == nil:
		return ""
	case !st.GetServed():
		return "not served"
	}
	var parts []string
	for _, a := range st.GetAnswers() {
		p := strings.Join(a.GetAddresses(), ",")
		if a.GetRegion() != "" {
			p = a.GetRegion() + ":" + p
		} else if len(st.GetAnswers()) > 1 {
			p = "other:" + p
		}
		if a.GetFailOpen() {
			p += " (fail open)"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// poolHealth summarises a pool's members by their state in the answering
// node's health view: "2 up, 1 down", with ", 1 unknown" for members the
// view does not hold, or "unknown" when it holds none of them.
func poolHealth(p *weftv1.Pool) string {
	st := p.GetStatus()
	up, down, unknown := st.GetMembersUp(), st.GetMembersDown(), st.GetMembersUnknown()
	switch {
	case len(p.GetSpec().GetMembers()) == 0:
		return "no members"
	case st == nil || up+down == 0:
		return "unknown"
	}
	out := fmt.Sprintf("%d up, %d down", up, down)
	if unknown > 0 {
		out += fmt.Sprintf(", %d unknown", unknown)
	}
	return out
}

// checkDetail shows a health check's settings in one cell.
func checkDetail(hc *weftv1.HealthCheck) string {
	var parts []string
	if hc.GetPort() != 0 {
		parts = append(parts, fmt.Sprintf("port %d", hc.GetPort()))
	}
	if hc.GetType() == "http" {
		parts = append(parts, cmp.Or(hc.GetPath(), "/"), "codes "+hc.GetExpectedCodes())
	}
	parts = append(parts, fmt.Sprintf("every %s timeout %s rise %d fall %d",
		hc.GetInterval().AsDuration(), hc.GetTimeout().AsDuration(), hc.GetRise(), hc.GetFall()))
	return strings.Join(parts, " ")
}

func uniqueSorted(ss []string) []string {
	ss = slices.DeleteFunc(slices.Clone(ss), func(s string) bool { return s == "" })
	slices.Sort(ss)
	return slices.Compact(ss)
}

func date(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().Format("2006-01-02")
}

func versionOf(m *weftv1.Metadata) string { return strconv.FormatUint(m.GetVersion(), 10) }
