package raftfsm

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// setupIndex is where test setups start applying, so that stored versions
// are recognisable in messages (the first setup batch gives version 9).
const setupIndex = 9

func applySetup(t *testing.T, f *FSM, batches [][]*weftv1.Resource) {
	t.Helper()
	for i, b := range batches {
		mustApply(t, f, setupIndex+uint64(i), ApplyResourcesType, upsert(b...))
	}
}

func TestFSM_ApplyResources(t *testing.T) {
	const index = 100
	withLabel := func(r *weftv1.Resource) *weftv1.Resource {
		mutableMetadata(poolKind.unwrap(r)).Labels = map[string]string{"team": "a"}
		return r
	}
	tests := []struct {
		name     string
		setup    [][]*weftv1.Resource
		mode     statev1.WriteMode
		batch    []*weftv1.Resource
		want     []ItemResult
		wantKind ErrorKind // 0: success
		wantMsg  string
	}{
		{
			name:  "create",
			batch: []*weftv1.Resource{pool("web", 0, "10.0.0.1")},
			want:  []ItemResult{{KindPool, "web", ActionCreated, index}},
		},
		{
			name:  "unchanged keeps its version",
			setup: [][]*weftv1.Resource{{pool("web", 0, "10.0.0.1")}},
			batch: []*weftv1.Resource{pool("web", 0, "10.0.0.1")},
			want:  []ItemResult{{KindPool, "web", ActionUnchanged, setupIndex}},
		},
		{
			name:  "label change is an update",
			setup: [][]*weftv1.Resource{{pool("web", 0, "10.0.0.1")}},
			batch: []*weftv1.Resource{withLabel(pool("web", setupIndex, "10.0.0.1"))},
			want:  []ItemResult{{KindPool, "web", ActionUpdated, index}},
		},
		{
			name:  "spec change is an update",
			setup: [][]*weftv1.Resource{{pool("web", 0, "10.0.0.1")}},
			batch: []*weftv1.Resource{pool("web", 0, "10.0.0.2")},
			want:  []ItemResult{{KindPool, "web", ActionUpdated, index}},
		},
		{
			name:  "results in request order",
			batch: []*weftv1.Resource{dns("www", 0, "lb1"), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web")), pool("web", 0)},
			want: []ItemResult{
				{KindDNSRecord, "www", ActionCreated, index},
				{KindLoadBalancer, "lb1", ActionCreated, index},
				{KindPool, "web", ActionCreated, index},
			},
		},
		{
			name:     "stale version",
			setup:    [][]*weftv1.Resource{{pool("web", 0, "10.0.0.1")}},
			batch:    []*weftv1.Resource{pool("web", 7, "10.0.0.2")},
			wantKind: Conflict,
			wantMsg:  `pool "web": version 7 does not match current version 9`,
		},
		{
			name:     "version of a missing resource",
			batch:    []*weftv1.Resource{pool("web", 7)},
			wantKind: NotFound,
			wantMsg:  `pool "web": version 7 was expected but the pool does not exist`,
		},
		{
			name:     "create existing",
			setup:    [][]*weftv1.Resource{{pool("web", 0)}},
			mode:     statev1.WriteMode_WRITE_MODE_CREATE,
			batch:    []*weftv1.Resource{pool("web", 0, "10.0.0.2")},
			wantKind: AlreadyExists,
			wantMsg:  `pool "web" already exists`,
		},
		{
			name:     "update missing",
			mode:     statev1.WriteMode_WRITE_MODE_UPDATE,
			batch:    []*weftv1.Resource{cert("tls", 0)},
			wantKind: NotFound,
			wantMsg:  `certificate "tls" not found`,
		},
		{
			name:     "listener pool missing",
			batch:    []*weftv1.Resource{lb("lb1", 0, "192.0.2.10", listener("http", 80, "nope"))},
			wantKind: FailedPrecondition,
			wantMsg:  `load balancer "lb1": listener "http-80": pool "nope" does not exist`,
		},
		{
			name:  "rule pool missing",
			setup: [][]*weftv1.Resource{{pool("web", 0)}},
			batch: []*weftv1.Resource{lb("lb1", 0, "192.0.2.10", &weftv1.Listener{
				Name: "front", Protocol: "http", Port: 80, Pool: "web",
				Rules: []*weftv1.Rule{{PathPrefix: "/a", Pool: "web"}, {PathPrefix: "/b", Pool: "api"}},
			})},
			wantKind: FailedPrecondition,
			wantMsg:  `load balancer "lb1": listener "front": rule 2: pool "api" does not exist`,
		},
		{
			name:  "listener certificate missing",
			setup: [][]*weftv1.Resource{{pool("web", 0)}},
			batch: []*weftv1.Resource{lb("lb1", 0, "192.0.2.10", &weftv1.Listener{
				Protocol: "https", Port: 443, Pool: "web", Certificates: []string{"tls"},
			})},
			wantKind: FailedPrecondition,
			wantMsg:  `load balancer "lb1": listener "https-443": certificate "tls" does not exist`,
		},
		{
			name:     "address used by another load balancer",
			setup:    [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"))}},
			batch:    []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", listener("tcp", 80, "web"))},
			wantKind: AlreadyExists,
			wantMsg:  `load balancer "lb2": listener "tcp-80": 192.0.2.10:80/tcp is already used by load balancer "lb1"`,
		},
		{
			name:     "http and tcp share the tcp port space",
			setup:    [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"))}},
			batch:    []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", listener("http", 80, "web"))},
			wantKind: AlreadyExists,
			wantMsg:  `load balancer "lb2": listener "http-80": 192.0.2.10:80/tcp is already used by load balancer "lb1"`,
		},
		{
			name:     "IPv6 spellings of one address collide",
			setup:    [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "2001:db8::1", listener("tcp", 80, "web"))}},
			batch:    []*weftv1.Resource{lb("lb2", 0, "2001:0db8:0:0::1", listener("tcp", 80, "web"))},
			wantKind: AlreadyExists,
			wantMsg:  `load balancer "lb2": listener "tcp-80": [2001:db8::1]:80/tcp is already used by load balancer "lb1"`,
		},
		{
			name:     "https with http3 takes the udp port from another load balancer",
			setup:    [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", listener("udp", 443, "web"))}},
			batch:    []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", &weftv1.Listener{Protocol: "https", Port: 443, Pool: "web", Http3: true})},
			wantKind: AlreadyExists,
			wantMsg:  `load balancer "lb2": listener "https-443": 192.0.2.10:443/udp is already used by load balancer "lb1"`,
		},
		{
			name:     "udp on the port of another load balancer's http3",
			setup:    [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", &weftv1.Listener{Protocol: "https", Port: 443, Pool: "web", Http3: true})}},
			batch:    []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", listener("udp", 443, "web"))},
			wantKind: AlreadyExists,
			wantMsg:  `load balancer "lb2": listener "udp-443": 192.0.2.10:443/udp is already used by load balancer "lb1"`,
		},
		{
			name:  "udp beside https without http3",
			setup: [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", &weftv1.Listener{Protocol: "https", Port: 443, Pool: "web"})}},
			batch: []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", listener("udp", 443, "web"))},
			want:  []ItemResult{{KindLoadBalancer, "lb2", ActionCreated, index}},
		},
		{
			name:  "udp and tcp on one port",
			setup: [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", listener("tcp", 53, "web"))}},
			batch: []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", listener("udp", 53, "web"))},
			want:  []ItemResult{{KindLoadBalancer, "lb2", ActionCreated, index}},
		},
		{
			name:     "two listeners of one load balancer",
			setup:    [][]*weftv1.Resource{{pool("web", 0)}},
			batch:    []*weftv1.Resource{lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"), &weftv1.Listener{Name: "again", Protocol: "http", Port: 80, Pool: "web"})},
			wantKind: AlreadyExists,
			wantMsg:  `load balancer "lb1": listener "again": 192.0.2.10:80/tcp is already used by listener "tcp-80"`,
		},
		{
			name:  "updating a load balancer keeps its own addresses",
			setup: [][]*weftv1.Resource{{pool("web", 0), pool("api", 0), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"))}},
			batch: []*weftv1.Resource{lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "api"))},
			want:  []ItemResult{{KindLoadBalancer, "lb1", ActionUpdated, index}},
		},
		{
			name:  "address freed and taken in one batch",
			setup: [][]*weftv1.Resource{{pool("web", 0), lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"))}},
			batch: []*weftv1.Resource{lb("lb2", 0, "192.0.2.10", listener("tcp", 80, "web")), lb("lb1", 0, "192.0.2.10", listener("tcp", 81, "web"))},
			want: []ItemResult{
				{KindLoadBalancer, "lb2", ActionCreated, index},
				{KindLoadBalancer, "lb1", ActionUpdated, index},
			},
		},
		{
			name:     "DNS record target missing",
			batch:    []*weftv1.Resource{dns("www", 0, "lb9")},
			wantKind: FailedPrecondition,
			wantMsg:  `DNS record "www": target 1: load balancer "lb9" does not exist`,
		},
		{
			name:     "same resource twice",
			batch:    []*weftv1.Resource{pool("web", 0), pool("web", 0, "10.0.0.1")},
			wantKind: Invalid,
			wantMsg:  `pool "web" appears more than once in the batch`,
		},
		{
			name:     "no kind",
			batch:    []*weftv1.Resource{pool("web", 0), {}},
			wantKind: Invalid,
			wantMsg:  `resource 2 of the batch: no kind is set`,
		},
		{
			name:     "no name",
			batch:    []*weftv1.Resource{pool("", 0)},
			wantKind: Invalid,
			wantMsg:  `resource 1 of the batch: pool: metadata.name is not set`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(0)
			applySetup(t, f, tc.setup)
			before := dump(f.State())
			beforeEvents, _, _ := f.Events(0)

			mode := tc.mode
			if mode == statev1.WriteMode_WRITE_MODE_UNSPECIFIED {
				mode = statev1.WriteMode_WRITE_MODE_UPSERT
			}
			cmd := &statev1.ApplyResourcesCommand{Mode: mode, Resources: tc.batch}
			checkEvaluate(t, f, cmd, tc.want, tc.wantKind, tc.wantMsg)
			if after := dump(f.State()); after != before {
				t.Errorf("EvaluateResources changed the state:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			resp := apply(t, f, index, ApplyResourcesType, cmd)
			if got := f.State().Index(); got != index {
				t.Errorf("State().Index() = %d, want %d", got, index)
			}

			if tc.wantKind != 0 {
				checkStateError(t, resp, tc.wantKind, tc.wantMsg)
				if after := dump(f.State()); after != before {
					t.Errorf("state changed on error:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if events, _, _ := f.Events(0); len(events) != len(beforeEvents) {
					t.Errorf("got %d events after a failed apply, want %d", len(events), len(beforeEvents))
				}
				return
			}
			res, ok := resp.(*ApplyResult)
			if !ok {
				t.Fatalf("response = %#v, want *ApplyResult", resp)
			}
			if res.Index != index {
				t.Errorf("ApplyResult.Index = %d, want %d", res.Index, index)
			}
			if !slices.Equal(res.Results, tc.want) {
				t.Errorf("results:\n got %+v\nwant %+v", res.Results, tc.want)
			}
			// Written resources carry their version; create_index is the
			// creating index, kept across updates.
			s := f.State()
			for _, item := range res.Results {
				r := s.Resource(item.Kind, item.Name)
				m := metadataOf(kindByName(item.Kind).unwrap(r))
				if m.GetVersion() != item.Version {
					t.Errorf("%s %s: stored version %d, want %d", item.Kind, item.Name, m.GetVersion(), item.Version)
				}
				wantCreate := uint64(index)
				if item.Action != ActionCreated {
					wantCreate = setupIndex
				}
				if m.GetCreateIndex() != wantCreate {
					t.Errorf("%s %s: create_index %d, want %d", item.Kind, item.Name, m.GetCreateIndex(), wantCreate)
				}
			}
		})
	}
}

// checkEvaluate checks that EvaluateResources predicts the apply that
// follows: the same error, or the same results with version 0 for what is
// created or updated, at the current index; and that it leaves cmd as it was.
func checkEvaluate(t *testing.T, f *FSM, cmd *statev1.ApplyResourcesCommand, want []ItemResult, wantKind ErrorKind, wantMsg string) {
	t.Helper()
	sent := proto.Clone(cmd)
	res, st, err := f.EvaluateResources(cmd)
	if !proto.Equal(cmd, sent) {
		t.Errorf("EvaluateResources changed its command:\n got %v\nwant %v", cmd, sent)
	}
	if st == nil || st.Index() != f.State().Index() {
		t.Errorf("EvaluateResources: state %v, want one at index %d", st, f.State().Index())
	}
	if wantKind != 0 {
		checkStateError(t, err, wantKind, wantMsg)
		return
	}
	if err != nil {
		t.Fatalf("EvaluateResources: %v", err)
	}
	var wantEval []ItemResult
	for _, it := range want {
		if it.Action != ActionUnchanged {
			it.Version = 0
		}
		wantEval = append(wantEval, it)
	}
	if res.Index != f.State().Index() || !slices.Equal(res.Results, wantEval) {
		t.Errorf("EvaluateResources: index %d, results %+v; want index %d, results %+v", res.Index, res.Results, f.State().Index(), wantEval)
	}
}

func TestFSM_ApplyResources_Events(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 5, ApplyResourcesType, upsert(pool("web", 0, "10.0.0.1"), pool("api", 0)))
	mustApply(t, f, 6, ApplyResourcesType, upsert(pool("web", 0, "10.0.0.1"), pool("api", 0, "10.0.0.9")))

	events, reset, _ := f.Events(5)
	if reset {
		t.Fatalf("Events(5): reset = true, want false")
	}
	if len(events) != 1 {
		t.Fatalf("Events(5) = %d events, want 1 (only the changed pool)", len(events))
	}
	e := events[0]
	if name := e.Resource.GetPool().GetMetadata().GetName(); e.Index != 6 || e.Type != EventPut || name != "api" || KindOf(e.Resource) != KindPool {
		t.Errorf("event = {%d %s %s %s}, want {6 put Pool api}", e.Index, e.Type, KindOf(e.Resource), name)
	}
	if !proto.Equal(e.Resource, f.State().Resource(KindPool, "api")) {
		t.Errorf("event resource = %v, want the stored pool", e.Resource)
	}
}

func TestFSM_DeleteResource(t *testing.T) {
	const index = 100
	setup := [][]*weftv1.Resource{
		{pool("web", 0), pool("spare", 0), cert("tls", 0), cert("old", 0)},
		{lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "spare"), &weftv1.Listener{
			Protocol: "https", Port: 443, Pool: "spare", Certificates: []string{"tls"},
			Rules: []*weftv1.Rule{{PathPrefix: "/", Pool: "web"}},
		}), lb("lb2", 0, "192.0.2.11")},
		{dns("www", 0, "lb1")},
	}
	tests := []struct {
		name     string
		cmd      *statev1.DeleteResourceCommand
		wantKind ErrorKind
		wantMsg  string
	}{
		{name: "unused certificate", cmd: &statev1.DeleteResourceCommand{Kind: KindCertificate, Name: "old"}},
		{name: "unused load balancer at its version", cmd: &statev1.DeleteResourceCommand{Kind: KindLoadBalancer, Name: "lb2", Version: setupIndex + 1}},
		{name: "DNS record", cmd: &statev1.DeleteResourceCommand{Kind: KindDNSRecord, Name: "www"}},
		{
			name: "missing", cmd: &statev1.DeleteResourceCommand{Kind: KindPool, Name: "nope"},
			wantKind: NotFound, wantMsg: `pool "nope" not found`,
		},
		{
			name: "stale version", cmd: &statev1.DeleteResourceCommand{Kind: KindPool, Name: "spare", Version: 3},
			wantKind: Conflict, wantMsg: `pool "spare": version 3 does not match current version 9`,
		},
		{
			name: "pool used by a listener", cmd: &statev1.DeleteResourceCommand{Kind: KindPool, Name: "spare"},
			wantKind: FailedPrecondition, wantMsg: `pool "spare" is used by load balancer "lb1" listener "tcp-80"`,
		},
		{
			name: "pool used by a rule", cmd: &statev1.DeleteResourceCommand{Kind: KindPool, Name: "web"},
			wantKind: FailedPrecondition, wantMsg: `pool "web" is used by load balancer "lb1" listener "https-443"`,
		},
		{
			name: "certificate used", cmd: &statev1.DeleteResourceCommand{Kind: KindCertificate, Name: "tls"},
			wantKind: FailedPrecondition, wantMsg: `certificate "tls" is used by load balancer "lb1" listener "https-443"`,
		},
		{
			name: "load balancer used", cmd: &statev1.DeleteResourceCommand{Kind: KindLoadBalancer, Name: "lb1"},
			wantKind: FailedPrecondition, wantMsg: `load balancer "lb1" is used by DNS record "www"`,
		},
		{
			name: "unknown kind", cmd: &statev1.DeleteResourceCommand{Kind: "Listener", Name: "x"},
			wantKind: Invalid, wantMsg: `unknown resource kind "Listener"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(0)
			applySetup(t, f, setup)
			before := dump(f.State())
			resp := apply(t, f, index, DeleteResourceType, tc.cmd)
			if tc.wantKind != 0 {
				checkStateError(t, resp, tc.wantKind, tc.wantMsg)
				if after := dump(f.State()); after != before {
					t.Errorf("state changed on error:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				return
			}
			if resp != uint64(index) {
				t.Fatalf("response = %#v, want index %d", resp, index)
			}
			if r := f.State().Resource(tc.cmd.Kind, tc.cmd.Name); r != nil {
				t.Errorf("%s %s still exists after delete", tc.cmd.Kind, tc.cmd.Name)
			}
			events, _, _ := f.Events(index - 1)
			if len(events) != 1 {
				t.Fatalf("got %d events, want 1", len(events))
			}
			e := events[0]
			m := metadataOf(kindByName(tc.cmd.Kind).unwrap(e.Resource))
			if e.Type != EventDelete || KindOf(e.Resource) != tc.cmd.Kind || m.GetName() != tc.cmd.Name || m.GetVersion() != index {
				t.Errorf("event = {%s %s %s v%d}, want {delete %s %s v%d}", e.Type, KindOf(e.Resource), m.GetName(), m.GetVersion(), tc.cmd.Kind, tc.cmd.Name, index)
			}
		})
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		r        *weftv1.Resource
		wantKind string
	}{
		{lb("a", 0, ""), KindLoadBalancer},
		{pool("b", 0), KindPool},
		{cert("c", 0), KindCertificate},
		{dns("d", 0), KindDNSRecord},
		{&weftv1.Resource{}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		if got := KindOf(tc.r); got != tc.wantKind {
			t.Errorf("KindOf(%v) = %q, want %q", tc.r, got, tc.wantKind)
		}
	}
}
