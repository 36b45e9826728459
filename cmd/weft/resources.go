package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
)

func newApplyCmd(cf *clientFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|-",
		Short: "Create or update resources from YAML, all in one Raft entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f: a file (or - for standard input) is required")
			}
			var in io.Reader = cmd.InOrStdin()
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			rs, err := manifest.Decode(in)
			if err != nil {
				return err
			}
			if len(rs) == 0 {
				return fmt.Errorf("%s: no resources", file)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.LB.Apply(cmd.Context(), connect.NewRequest(&weftv1.ApplyRequest{Resources: rs}))
			if err != nil {
				return err
			}
			for _, r := range res.Msg.GetResults() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s/%s %s\n", strings.ToLower(r.GetKind()), r.GetName(), r.GetAction())
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "YAML file with one resource per document, or - for standard input")
	return cmd
}

func newGetCmd(cf *clientFlags) *cobra.Command {
	var staleRead bool
	cmd := &cobra.Command{
		Use:       "get KIND [NAME]",
		Short:     "List resources of a kind, or show one",
		Long:      "List resources of a kind, or show one. Kinds: loadbalancers (lb), pools, certificates (cert), dnsrecords (dns).",
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"loadbalancers", "pools", "certificates", "dnsrecords"},
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
				r, err := getResource(cmd.Context(), c, kind, args[1], staleRead)
				if err != nil {
					return err
				}
				rs = []*weftv1.Resource{r}
			} else if rs, err = listResources(cmd.Context(), c, kind, staleRead); err != nil {
				return err
			}
			return printResources(cmd.OutOrStdout(), cf.output, kind, rs, len(args) == 2)
		},
	}
	cmd.Flags().BoolVar(&staleRead, "stale", false, "read this node's replica without asking the leader")
	return cmd
}

func newDescribeCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one resource in full, as YAML",
		Args:  cobra.ExactArgs(2),
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
			return manifest.Encode(cmd.OutOrStdout(), []*weftv1.Resource{r})
		},
	}
}

func newDeleteCmd(cf *clientFlags) *cobra.Command {
	var version uint64
	cmd := &cobra.Command{
		Use:   "delete KIND NAME",
		Short: "Delete a resource",
		Args:  cobra.ExactArgs(2),
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

func getResource(ctx context.Context, c *api.Client, kind, name string, staleRead bool) (*weftv1.Resource, error) {
	ops, ok := kinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	return ops.get(ctx, c.LB, connect.NewRequest(&weftv1.GetRequest{Name: name, Stale: staleRead}))
}

func listResources(ctx context.Context, c *api.Client, kind string, staleRead bool) ([]*weftv1.Resource, error) {
	ops, ok := kinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	return ops.list(ctx, c.LB, connect.NewRequest(&weftv1.ListRequest{Stale: staleRead}))
}

type lbClient = weftv1connect.LoadBalancerServiceClient

// kindOps are one resource kind's client calls, with results wrapped as
// Resources, so the commands need no switch on the kind.
type kindOps struct {
	get    func(context.Context, lbClient, *connect.Request[weftv1.GetRequest]) (*weftv1.Resource, error)
	list   func(context.Context, lbClient, *connect.Request[weftv1.ListRequest]) ([]*weftv1.Resource, error)
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
		list: func(ctx context.Context, c lbClient, req *connect.Request[weftv1.ListRequest]) ([]*weftv1.Resource, error) {
			res, err := list(c, ctx, req)
			if err != nil {
				return nil, err
			}
			var out []*weftv1.Resource
			for _, x := range all(res.Msg) {
				out = append(out, wrap(x))
			}
			return out, nil
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
}

// printResources writes resources as a table, JSON (an object for one
// resource, {"items": [...]} for a listing) or YAML documents.
func printResources(w io.Writer, format, kind string, rs []*weftv1.Resource, single bool) error {
	switch format {
	case "json":
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
	case "yaml":
		return manifest.Encode(w, rs)
	case "table", "":
		header, rows := tableOf(kind, rs)
		return manifest.Table(w, header, rows)
	}
	return fmt.Errorf("-o: %q is not table, json or yaml", format)
}

// jsonDoc is a resource in the form `apply -f` takes, as JSON.
func jsonDoc(r *weftv1.Resource) (json.RawMessage, error) {
	var inner proto.Message
	switch {
	case r.GetLoadBalancer() != nil:
		inner = r.GetLoadBalancer()
	case r.GetPool() != nil:
		inner = r.GetPool()
	case r.GetCertificate() != nil:
		inner = r.GetCertificate()
	case r.GetDnsRecord() != nil:
		inner = r.GetDnsRecord()
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

func tableOf(kind string, rs []*weftv1.Resource) ([]string, [][]string) {
	var rows [][]string
	switch kind {
	case raftfsm.KindLoadBalancer:
		for _, r := range rs {
			lb := r.GetLoadBalancer()
			var ls []string
			for _, l := range lb.GetSpec().GetListeners() {
				ls = append(ls, fmt.Sprintf("%d/%s", l.GetPort(), l.GetProtocol()))
			}
			zones := lb.GetSpec().GetPrimaryZone()
			if b := lb.GetSpec().GetBackupZones(); len(b) > 0 {
				zones += ">" + strings.Join(b, ">")
			}
			rows = append(rows, []string{lb.GetMetadata().GetName(), lb.GetSpec().GetVip(), lb.GetSpec().GetRegion(),
				zones, strings.Join(ls, ","), version(lb.GetMetadata())})
		}
		return []string{"name", "vip", "region", "zones", "listeners", "version"}, rows
	case raftfsm.KindPool:
		for _, r := range rs {
			p := r.GetPool()
			rows = append(rows, []string{p.GetMetadata().GetName(), strconv.Itoa(len(p.GetSpec().GetMembers())),
				p.GetSpec().GetHealthCheck().GetType(), p.GetSpec().GetAlgorithm(), version(p.GetMetadata())})
		}
		return []string{"name", "members", "health", "algorithm", "version"}, rows
	case raftfsm.KindCertificate:
		for _, r := range rs {
			c := r.GetCertificate()
			notAfter := ""
			if t := c.GetStatus().GetNotAfter(); t != nil {
				notAfter = t.AsTime().Format("2006-01-02")
			}
			rows = append(rows, []string{c.GetMetadata().GetName(), strings.Join(c.GetStatus().GetDnsNames(), ","),
				notAfter, version(c.GetMetadata())})
		}
		return []string{"name", "dns names", "not after", "version"}, rows
	default:
		for _, r := range rs {
			d := r.GetDnsRecord()
			rows = append(rows, []string{d.GetMetadata().GetName(), d.GetSpec().GetFqdn(), d.GetSpec().GetPolicy(),
				strconv.Itoa(len(d.GetSpec().GetTargets())), strconv.Itoa(int(d.GetSpec().GetTtl())), version(d.GetMetadata())})
		}
		return []string{"name", "fqdn", "policy", "targets", "ttl", "version"}, rows
	}
}

func version(m *weftv1.Metadata) string { return strconv.FormatUint(m.GetVersion(), 10) }
