package api

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// indexes returns the node's Raft commit and applied indexes as Status
// reports them.
func (n *testNode) indexes(c *Client) (commit, applied uint64) {
	n.t.Helper()
	res, err := c.Cluster.Status(context.Background(), connect.NewRequest(&weftv1.StatusRequest{}))
	if err != nil {
		n.t.Fatal(err)
	}
	return res.Msg.GetCommitIndex(), res.Msg.GetAppliedIndex()
}

func apply(c *Client, dryRun bool, rs ...*weftv1.Resource) (*weftv1.ApplyResponse, error) {
	res, err := c.LB.Apply(context.Background(), connect.NewRequest(&weftv1.ApplyRequest{Resources: rs, DryRun: dryRun}))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func actions(res *weftv1.ApplyResponse) string {
	var out []string
	for _, r := range res.GetResults() {
		out = append(out, r.GetKind()+"/"+r.GetName()+" "+r.GetAction())
	}
	return strings.Join(out, ", ")
}

// TestApply_WritesNoEntryWhenNothingChanges: a batch that would leave the
// state as it is (every resource unchanged, with or without a matching
// expected version, or refused by the state store) is answered without a
// Raft entry; one that changes something writes one.
func TestApply_WritesNoEntryWhenNothingChanges(t *testing.T) {
	n := newTestNode(t)
	c := n.client(n.admin)
	first, err := apply(c, false, asRes(pool("web")), asRes(lb("web", "192.0.2.10", tcp(80, "web"))))
	if err != nil {
		t.Fatal(err)
	}
	version := first.GetResults()[0].GetVersion()

	withVersion := func(v uint64) *weftv1.Resource {
		p := pool("web")
		p.Metadata.Version = v
		return asRes(p)
	}
	tests := []struct {
		name      string
		batch     []*weftv1.Resource
		wantCode  connect.Code // 0: success
		want      string       // actions
		wantEntry bool
	}{
		{"unchanged", []*weftv1.Resource{asRes(pool("web")), asRes(lb("web", "192.0.2.10", tcp(80, "web")))}, 0,
			"Pool/web unchanged, LoadBalancer/web unchanged", false},
		{"unchanged at the expected version", []*weftv1.Resource{withVersion(version)}, 0, "Pool/web unchanged", false},
		{"stale expected version", []*weftv1.Resource{withVersion(version + 100)}, connect.CodeAborted, "", false},
		{"missing reference", []*weftv1.Resource{asRes(lb("api", "192.0.2.11", tcp(80, "nope")))}, connect.CodeFailedPrecondition, "", false},
		{"unchanged and created", []*weftv1.Resource{asRes(pool("web")), asRes(pool("api"))}, 0,
			"Pool/web unchanged, Pool/api created", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			commit, applied := n.indexes(c)
			res, err := apply(c, false, tc.batch...)
			if tc.wantCode != 0 {
				wantCode(t, err, tc.wantCode)
			} else if err != nil {
				t.Fatal(err)
			} else if got := actions(res); got != tc.want {
				t.Errorf("actions %q, want %q", got, tc.want)
			}
			commitAfter, appliedAfter := n.indexes(c)
			if wrote := commitAfter != commit || appliedAfter != applied; wrote != tc.wantEntry {
				t.Errorf("commit/applied index %d/%d -> %d/%d; want a new entry: %v", commit, applied, commitAfter, appliedAfter, tc.wantEntry)
			}
			if res != nil && !tc.wantEntry && res.GetIndex() != applied {
				t.Errorf("response index %d, want the state's index %d", res.GetIndex(), applied)
			}
		})
	}
}

// TestApply_DryRun: a dry run reports what a real apply would do, with the
// same checks (validation, references, versions) and the stored and
// desired forms of each resource, and writes nothing.
func TestApply_DryRun(t *testing.T) {
	n := newTestNode(t)
	c := n.client(n.admin)
	certPEM, keyPEM := certPair(t, n, "www")
	if _, err := apply(c, false, asRes(pool("web")), asRes(cert("www", certPEM, keyPEM))); err != nil {
		t.Fatal(err)
	}
	changed := pool("web", &weftv1.Member{Address: "192.0.2.99", Port: 8080})
	tests := []struct {
		name     string
		batch    []*weftv1.Resource
		wantCode connect.Code
		want     string
	}{
		{"create, update and unchanged", []*weftv1.Resource{asRes(pool("api")), asRes(changed), asRes(cert("www", certPEM, keyPEM))}, 0,
			"Pool/api created, Pool/web updated, Certificate/www unchanged"},
		{"invalid", []*weftv1.Resource{asRes(pool("web", &weftv1.Member{Address: "192.0.2.1", Port: 0}))}, connect.CodeInvalidArgument, ""},
		{"missing reference", []*weftv1.Resource{asRes(lb("web", "192.0.2.10", tcp(80, "nope")))}, connect.CodeFailedPrecondition, ""},
		{"stale version", []*weftv1.Resource{asRes(&weftv1.Pool{Metadata: &weftv1.Metadata{Name: "web", Version: 999}})}, connect.CodeAborted, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := n.resources()
			commit, applied := n.indexes(c)
			res, err := apply(c, true, tc.batch...)
			if tc.wantCode != 0 {
				wantCode(t, err, tc.wantCode)
			} else if err != nil {
				t.Fatal(err)
			} else if got := actions(res); got != tc.want {
				t.Errorf("actions %q, want %q", got, tc.want)
			}
			if !sameResources(before, n.resources()) {
				t.Error("a dry run changed the stored resources")
			}
			if ca, aa := n.indexes(c); ca != commit || aa != applied {
				t.Errorf("a dry run moved commit/applied from %d/%d to %d/%d", commit, applied, ca, aa)
			}
			if res == nil {
				return
			}
			for _, r := range res.GetResults() {
				if r.GetDesired() == nil {
					t.Errorf("%s/%s: no desired resource", r.GetKind(), r.GetName())
				}
				if (r.GetCurrent() == nil) != (r.GetAction() == raftfsm.ActionCreated) {
					t.Errorf("%s/%s %s: current %v", r.GetKind(), r.GetName(), r.GetAction(), r.GetCurrent())
				}
				for _, x := range []*weftv1.Resource{r.GetCurrent(), r.GetDesired()} {
					if k := x.GetCertificate().GetSpec().GetPrivateKeyPem(); k != "" {
						t.Errorf("%s/%s: a dry run returned a private key", r.GetKind(), r.GetName())
					}
				}
			}
			// Desired is normalised as it would be stored (defaults filled in).
			if got := res.GetResults()[1].GetDesired().GetPool().GetSpec().GetAlgorithm(); got != "round-robin" {
				t.Errorf("desired pool algorithm %q, want the default round-robin", got)
			}
			if got := res.GetResults()[1].GetCurrent().GetPool().GetSpec().GetMembers()[0].GetAddress(); got != "192.0.2.11" {
				t.Errorf("current pool's first member %q, want the stored 192.0.2.11", got)
			}
		})
	}
}

// TestReads_ShowObservations: node listings carry each node's liveness
// and version from this node's gossip view (unknown where gossip has no
// record), and pool reads count members up, down and unknown in its health
// view; a written status is dropped.
func TestReads_ShowObservations(t *testing.T) {
	observed := Observed{
		Gossip: []*weftv1.GossipMember{{Name: "n1", State: "alive", Version: "v1.2.3"}, {Name: "gone", State: "dead"}},
		Health: []*weftv1.MemberHealth{
			{Pool: "web", Address: "192.0.2.11", Port: 8080, Up: true},
			{Pool: "web", Address: "192.0.2.12", Port: 8080, Up: false},
			{Pool: "other", Address: "192.0.2.13", Port: 8080, Up: true},
		},
	}
	n := newTestNode(t, func(c *Config) { c.Observed = func() Observed { return observed } })
	c := n.client(n.admin)
	ctx := context.Background()

	nodes, err := c.Cluster.ListNodes(ctx, connect.NewRequest(&weftv1.ListNodesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := nodes.Msg.GetNodes(); len(got) != 1 || got[0].GetStatus().GetLiveness() != "alive" || got[0].GetStatus().GetVersion() != "v1.2.3" {
		t.Errorf("ListNodes = %v, want n1 alive at v1.2.3", got)
	}
	observed.Gossip = nil // gossip not started
	st, err := c.Cluster.Status(ctx, connect.NewRequest(&weftv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Msg.GetNodes()[0].GetStatus().GetLiveness(); got != "unknown" {
		t.Errorf("liveness without gossip %q, want unknown", got)
	}
	if st.Msg.GetVersion() == "" {
		t.Error("Status carries no version")
	}

	p := pool("web", &weftv1.Member{Address: "192.0.2.11", Port: 8080}, &weftv1.Member{Address: "192.0.2.12", Port: 8080},
		&weftv1.Member{Address: "192.0.2.13", Port: 8080})
	p.Status = &weftv1.PoolStatus{MembersUp: 99}
	created, err := c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: p}))
	if err != nil {
		t.Fatal(err)
	}
	if stored := n.raft.FSM().State().Pool("web"); stored.GetStatus() != nil {
		t.Errorf("stored pool has status %v, want none", stored.GetStatus())
	}
	want := &weftv1.PoolStatus{MembersUp: 1, MembersDown: 1, MembersUnknown: 1, Observer: "n1"}
	got, err := c.LB.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "web"}))
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.LB.ListPools(ctx, connect.NewRequest(&weftv1.ListRequest{Stale: true}))
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]*weftv1.PoolStatus{"create": created.Msg.GetPool().GetStatus(),
		"get": got.Msg.GetPool().GetStatus(), "list": list.Msg.GetPools()[0].GetStatus()} {
		if !proto.Equal(s, want) {
			t.Errorf("%s: pool status %v, want %v", what, s, want)
		}
	}
}

// TestExamples: every file in deploy/examples decodes and applies, with
// the server's validation and reference checks, on an empty cluster.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../deploy/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := manifest.Decode(strings.NewReader(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) == 0 {
				t.Fatal("no resources")
			}
			n := newTestNode(t)
			res, err := apply(n.client(n.admin), false, rs...)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.GetResults() {
				if r.GetAction() != raftfsm.ActionCreated {
					t.Errorf("%s/%s %s, want created", r.GetKind(), r.GetName(), r.GetAction())
				}
			}
		})
	}
}
