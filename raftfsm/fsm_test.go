package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func TestFSM_InitCluster(t *testing.T) {
	f := NewFSM(0)
	if s := f.State().Secrets(); s != nil {
		t.Fatalf("Secrets() before init = %v, want nil", s)
	}
	sec := &statev1.ClusterSecrets{ClusterId: "c1", CaCertPem: "ca", CaKeyPem: "key", GossipKey: []byte("k")}
	if resp := mustApply(t, f, 3, InitClusterType, &statev1.InitClusterCommand{Secrets: sec}); resp != uint64(3) {
		t.Errorf("response = %#v, want index 3", resp)
	}
	if got := f.State().Secrets(); !proto.Equal(got, sec) {
		t.Errorf("Secrets() = %v, want %v", got, sec)
	}

	other := &statev1.ClusterSecrets{ClusterId: "c2"}
	checkStateError(t, apply(t, f, 4, InitClusterType, &statev1.InitClusterCommand{Secrets: other}), AlreadyExists, "cluster secrets are already set")
	checkStateError(t, apply(t, f, 5, InitClusterType, &statev1.InitClusterCommand{}), Invalid, "")
	if got := f.State().Secrets(); !proto.Equal(got, sec) {
		t.Errorf("Secrets() after refused inits = %v, want %v", got, sec)
	}
}

func TestFSM_RotateTicketKeys(t *testing.T) {
	f := NewFSM(0)
	key := func(b byte, created int64) *statev1.TicketKey {
		return &statev1.TicketKey{Key: bytes.Repeat([]byte{b}, 32), CreatedUnixNano: created}
	}
	cookie := bytes.Repeat([]byte{9}, 32)
	checkStateError(t, apply(t, f, 2, RotateTicketKeysType, &statev1.RotateTicketKeysCommand{Key: key(1, 10), Keep: 3}), FailedPrecondition, "rotate ticket keys: the cluster is not initialised")
	mustApply(t, f, 3, InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{ClusterId: "c1"}})

	mustApply(t, f, 4, RotateTicketKeysType, &statev1.RotateTicketKeysCommand{Key: key(1, 10), Keep: 2, CookieKey: cookie})
	mustApply(t, f, 5, RotateTicketKeysType, &statev1.RotateTicketKeysCommand{Key: key(2, 20), Keep: 2, PreviousCreatedUnixNano: 10, CookieKey: []byte("other")})
	mustApply(t, f, 6, RotateTicketKeysType, &statev1.RotateTicketKeysCommand{Key: key(3, 30), Keep: 2, PreviousCreatedUnixNano: 20})
	for _, tc := range []struct {
		cmd  *statev1.RotateTicketKeysCommand
		kind ErrorKind
		msg  string
	}{
		{&statev1.RotateTicketKeysCommand{Key: key(4, 40), Keep: 2, PreviousCreatedUnixNano: 20}, Conflict, "rotate ticket keys: the newest key was created at 30, not 20"},
		{&statev1.RotateTicketKeysCommand{Key: &statev1.TicketKey{Key: []byte("short")}, Keep: 2, PreviousCreatedUnixNano: 30}, Invalid, "rotate ticket keys: key is 5 bytes, want 32"},
		{&statev1.RotateTicketKeysCommand{Key: key(4, 40), PreviousCreatedUnixNano: 30}, Invalid, "rotate ticket keys: keep is 0"},
	} {
		checkStateError(t, apply(t, f, 7, RotateTicketKeysType, tc.cmd), tc.kind, tc.msg)
	}
	sec := f.State().Secrets()
	var got []int64
	for _, k := range sec.GetTicketKeys() {
		got = append(got, k.GetCreatedUnixNano())
	}
	if want := []int64{30, 20}; !slices.Equal(got, want) {
		t.Errorf("ticket keys created at %v, want %v (newest first, keep 2)", got, want)
	}
	if !bytes.Equal(sec.GetCookieKey(), cookie) {
		t.Errorf("cookie key = %x, want the first one set (%x)", sec.GetCookieKey(), cookie)
	}
}

func TestFSM_UpsertNode(t *testing.T) {
	f := NewFSM(0)
	got := mustApply(t, f, 3, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "a")}).(*weftv1.Node)
	if got.GetMetadata().GetVersion() != 3 || got.GetMetadata().GetCreateIndex() != 3 {
		t.Errorf("created node metadata = %v, want version 3, create_index 3", got.GetMetadata())
	}
	got = mustApply(t, f, 4, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "b")}).(*weftv1.Node)
	if got.GetMetadata().GetVersion() != 4 || got.GetMetadata().GetCreateIndex() != 3 {
		t.Errorf("updated node metadata = %v, want version 4, create_index 3", got.GetMetadata())
	}
	if n := f.State().Node("n1"); n.GetSpec().GetZone() != "b" {
		t.Errorf("stored zone = %q, want %q", n.GetSpec().GetZone(), "b")
	}
	mustApply(t, f, 5, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n0", "a")})
	var names []string
	for _, n := range f.State().Nodes() {
		names = append(names, n.GetMetadata().GetName())
	}
	if fmt.Sprint(names) != "[n0 n1]" {
		t.Errorf("Nodes() = %v, want [n0 n1]", names)
	}
	checkStateError(t, apply(t, f, 6, UpsertNodeType, &statev1.UpsertNodeCommand{}), Invalid, "node: metadata.name is not set")
}

func TestFSM_DeleteNode(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 3, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "a")})
	checkStateError(t, apply(t, f, 4, DeleteNodeType, &statev1.DeleteNodeCommand{Name: "n2"}), NotFound, `node "n2" not found`)
	if resp := mustApply(t, f, 5, DeleteNodeType, &statev1.DeleteNodeCommand{Name: "n1"}); resp != uint64(5) {
		t.Errorf("response = %#v, want index 5", resp)
	}
	if n := f.State().Node("n1"); n != nil {
		t.Errorf("Node(n1) after delete = %v, want nil", n)
	}
}

func TestFSM_SetNodeDrain(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 3, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "a")})
	before := f.State()
	got := mustApply(t, f, 4, SetNodeDrainType, &statev1.SetNodeDrainCommand{Name: "n1", Drain: true}).(*weftv1.Node)
	if !got.GetSpec().GetDrain() || got.GetMetadata().GetVersion() != 4 {
		t.Errorf("response = %v, want drain set at version 4", got)
	}
	if !f.State().Node("n1").GetSpec().GetDrain() {
		t.Errorf("stored node is not draining")
	}
	if before.Node("n1").GetSpec().GetDrain() {
		t.Errorf("an older State saw the change: stored rows must not be mutated")
	}
	checkStateError(t, apply(t, f, 5, SetNodeDrainType, &statev1.SetNodeDrainCommand{Name: "n2"}), NotFound, `node "n2" not found`)
}

func joinToken(id, secretHash string, uses uint32, expires time.Time) *statev1.JoinTokenRecord {
	return &statev1.JoinTokenRecord{
		Token:      &weftv1.JoinToken{Id: id, UsesRemaining: uses, ExpiresAt: timestamppb.New(expires)},
		SecretHash: secretHash,
	}
}

func TestFSM_CreateJoinToken(t *testing.T) {
	f := NewFSM(0)
	exp := time.Unix(1000, 0)
	got := mustApply(t, f, 3, CreateJoinTokenType, &statev1.CreateJoinTokenCommand{Record: joinToken("t1", "h", 1, exp)}).(*statev1.JoinTokenRecord)
	if got.GetToken().GetCreateIndex() != 3 {
		t.Errorf("create_index = %d, want 3", got.GetToken().GetCreateIndex())
	}
	if s := f.State().JoinToken("t1"); !proto.Equal(s, got) {
		t.Errorf("JoinToken(t1) = %v, want %v", s, got)
	}
	checkStateError(t, apply(t, f, 4, CreateJoinTokenType, &statev1.CreateJoinTokenCommand{Record: joinToken("t1", "x", 5, exp)}), AlreadyExists, `join token "t1" already exists`)
	checkStateError(t, apply(t, f, 5, CreateJoinTokenType, &statev1.CreateJoinTokenCommand{}), Invalid, "")
	if n := len(f.State().JoinTokens()); n != 1 {
		t.Errorf("JoinTokens() has %d records, want 1", n)
	}
}

func TestFSM_ConsumeJoinToken(t *testing.T) {
	exp := time.Unix(1000, 0)
	before := exp.Add(-time.Second).UnixNano()
	tests := []struct {
		name     string
		record   *statev1.JoinTokenRecord
		cmd      *statev1.ConsumeJoinTokenCommand
		wantUses uint32
		wantKind ErrorKind
		wantMsg  string
	}{
		{
			name:     "spends one use",
			record:   joinToken("t1", "good", 2, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t1", SecretHash: "good", NowUnixNano: before},
			wantUses: 1,
		},
		{
			name:     "last use keeps the token",
			record:   joinToken("t1", "good", 1, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t1", SecretHash: "good", NowUnixNano: before},
			wantUses: 0,
		},
		{
			name:     "unknown",
			record:   joinToken("t1", "good", 1, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t2", SecretHash: "good", NowUnixNano: before},
			wantKind: NotFound, wantMsg: "join token not found",
		},
		{
			name:     "expired",
			record:   joinToken("t1", "good", 1, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t1", SecretHash: "good", NowUnixNano: exp.UnixNano()},
			wantKind: FailedPrecondition, wantMsg: `join token "t1" has expired`,
		},
		{
			name:     "used up",
			record:   joinToken("t1", "good", 0, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t1", SecretHash: "good", NowUnixNano: before},
			wantKind: FailedPrecondition, wantMsg: `join token "t1" has no uses remaining`,
		},
		{
			name:     "wrong secret",
			record:   joinToken("t1", "good", 1, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t1", SecretHash: "bad", NowUnixNano: before},
			wantKind: FailedPrecondition, wantMsg: `join token "t1": secret does not match`,
		},
		{
			name:     "wrong secret of an expired token says nothing of expiry",
			record:   joinToken("t1", "good", 1, exp),
			cmd:      &statev1.ConsumeJoinTokenCommand{Id: "t1", SecretHash: "bad", NowUnixNano: exp.UnixNano()},
			wantKind: FailedPrecondition, wantMsg: `join token "t1": secret does not match`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(0)
			mustApply(t, f, 3, CreateJoinTokenType, &statev1.CreateJoinTokenCommand{Record: tc.record})
			before := dump(f.State())
			resp := apply(t, f, 4, ConsumeJoinTokenType, tc.cmd)
			if tc.wantKind != 0 {
				checkStateError(t, resp, tc.wantKind, tc.wantMsg)
				if after := dump(f.State()); after != before {
					t.Errorf("state changed on error:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				return
			}
			rec, ok := resp.(*statev1.JoinTokenRecord)
			if !ok {
				t.Fatalf("response = %#v, want *statev1.JoinTokenRecord", resp)
			}
			if got := rec.GetToken().GetUsesRemaining(); got != tc.wantUses {
				t.Errorf("response uses_remaining = %d, want %d", got, tc.wantUses)
			}
			if got := f.State().JoinToken(tc.cmd.Id).GetToken().GetUsesRemaining(); got != tc.wantUses {
				t.Errorf("stored uses_remaining = %d, want %d", got, tc.wantUses)
			}
		})
	}
}

func TestFSM_RevokeJoinToken(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 3, CreateJoinTokenType, &statev1.CreateJoinTokenCommand{Record: joinToken("t1", "h", 1, time.Unix(1000, 0))})
	checkStateError(t, apply(t, f, 4, RevokeJoinTokenType, &statev1.RevokeJoinTokenCommand{Id: "t2"}), NotFound, `join token "t2" not found`)
	if resp := mustApply(t, f, 5, RevokeJoinTokenType, &statev1.RevokeJoinTokenCommand{Id: "t1"}); resp != uint64(5) {
		t.Errorf("response = %#v, want index 5", resp)
	}
	if r := f.State().JoinToken("t1"); r != nil {
		t.Errorf("JoinToken(t1) after revoke = %v, want nil", r)
	}
}

func apiToken(id, role string) *statev1.APITokenRecord {
	return &statev1.APITokenRecord{Token: &weftv1.APIToken{Id: id, Role: role}, SecretHash: "h-" + id}
}

func TestFSM_CreateAPIToken(t *testing.T) {
	f := NewFSM(0)
	got := mustApply(t, f, 3, CreateAPITokenType, &statev1.CreateAPITokenCommand{Record: apiToken("a1", "admin")}).(*statev1.APITokenRecord)
	if got.GetToken().GetCreateIndex() != 3 {
		t.Errorf("create_index = %d, want 3", got.GetToken().GetCreateIndex())
	}
	mustApply(t, f, 4, CreateAPITokenType, &statev1.CreateAPITokenCommand{Record: apiToken("a0", "viewer")})
	checkStateError(t, apply(t, f, 5, CreateAPITokenType, &statev1.CreateAPITokenCommand{Record: apiToken("a1", "viewer")}), AlreadyExists, `API token "a1" already exists`)
	checkStateError(t, apply(t, f, 6, CreateAPITokenType, &statev1.CreateAPITokenCommand{}), Invalid, "")
	var ids []string
	for _, r := range f.State().APITokens() {
		ids = append(ids, r.GetToken().GetId()+"/"+r.GetToken().GetRole())
	}
	if fmt.Sprint(ids) != "[a0/viewer a1/admin]" {
		t.Errorf("APITokens() = %v, want [a0/viewer a1/admin]", ids)
	}
}

func TestFSM_RevokeAPIToken(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 3, CreateAPITokenType, &statev1.CreateAPITokenCommand{Record: apiToken("a1", "admin")})
	checkStateError(t, apply(t, f, 4, RevokeAPITokenType, &statev1.RevokeAPITokenCommand{Id: "a2"}), NotFound, `API token "a2" not found`)
	if resp := mustApply(t, f, 5, RevokeAPITokenType, &statev1.RevokeAPITokenCommand{Id: "a1"}); resp != uint64(5) {
		t.Errorf("response = %#v, want index 5", resp)
	}
	if r := f.State().APIToken("a1"); r != nil {
		t.Errorf("APIToken(a1) after revoke = %v, want nil", r)
	}
}

func TestFSM_SetFlowOwnership(t *testing.T) {
	f := NewFSM(0)
	if o := f.State().FlowOwnership(); o != nil {
		t.Fatalf("FlowOwnership() before any = %v, want nil", o)
	}
	table := &statev1.FlowOwnership{Nodes: []string{"n1", "n2"}, Replicas: 2, Owners: []byte{0, 0, 0, 1, 0, 1, 0, 0}}
	if resp := mustApply(t, f, 7, SetFlowOwnershipType, &statev1.SetFlowOwnershipCommand{Ownership: table}); resp != uint64(7) {
		t.Errorf("response = %#v, want index 7", resp)
	}
	want := proto.CloneOf(table)
	want.Epoch = 7
	if got := f.State().FlowOwnership(); !proto.Equal(got, want) {
		t.Errorf("FlowOwnership() = %v, want %v (epoch from the index)", got, want)
	}
	for _, tc := range []struct {
		table *statev1.FlowOwnership
		msg   string
	}{
		{nil, "set flow ownership: no table"},
		{&statev1.FlowOwnership{Nodes: []string{"n1"}, Owners: []byte{0, 0}}, "set flow ownership: no owners"},
		{&statev1.FlowOwnership{Nodes: []string{"n1"}, Replicas: 2, Owners: []byte{0, 0, 0}}, "set flow ownership: 3 bytes of owners is not a whole number of buckets of 2"},
		{&statev1.FlowOwnership{Nodes: []string{"n1"}, Replicas: 1, Owners: []byte{0, 1}}, "set flow ownership: owner index 1 names no node (1 nodes)"},
	} {
		checkStateError(t, apply(t, f, 8, SetFlowOwnershipType, &statev1.SetFlowOwnershipCommand{Ownership: tc.table}), Invalid, tc.msg)
	}
	if got := f.State().FlowOwnership(); !proto.Equal(got, want) {
		t.Errorf("FlowOwnership() after refused tables = %v, want %v", got, want)
	}
}

func TestFSM_UnknownCommand(t *testing.T) {
	t.Run("without the ignore flag", func(t *testing.T) {
		f := NewFSM(0)
		defer func() {
			if recover() == nil {
				t.Errorf("Apply of an unknown command type did not panic")
			}
		}()
		f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{100, 1, 2}})
	})
	t.Run("with the ignore flag", func(t *testing.T) {
		f := NewFSM(0)
		changed := f.Changed()
		if resp := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownFlag | 100), 1, 2}}); resp != nil {
			t.Errorf("response = %#v, want nil", resp)
		}
		if got := f.State().Index(); got != 7 {
			t.Errorf("State().Index() = %d, want 7 (the entry counts as applied)", got)
		}
		select {
		case <-changed:
		default:
			t.Errorf("Changed() was not closed by an ignored command")
		}
	})
	t.Run("undecodable body", func(t *testing.T) {
		f := NewFSM(0)
		defer func() {
			if recover() == nil {
				t.Errorf("Apply of an undecodable entry did not panic")
			}
		}()
		f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(UpsertNodeType), 0xff, 0xff}})
	})
}

func TestFSM_Events(t *testing.T) {
	f := NewFSM(4)
	_, _, notify := f.Events(0)
	mustApply(t, f, 1, ApplyResourcesType, upsert(pool("a", 0), pool("b", 0)))
	select {
	case <-notify:
	default:
		t.Fatalf("notify from Events was not closed by an apply")
	}
	mustApply(t, f, 2, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "a")}) // no event
	mustApply(t, f, 3, ApplyResourcesType, upsert(pool("c", 0)))

	index := func(events []Event) []uint64 {
		var out []uint64
		for _, e := range events {
			out = append(out, e.Index)
		}
		return out
	}
	tests := []struct {
		from      uint64
		wantIdx   string
		wantReset bool
	}{
		{0, "[1 1 3]", false},
		{1, "[3]", false},
		{3, "[]", false},
	}
	for _, tc := range tests {
		events, reset, _ := f.Events(tc.from)
		if got := fmt.Sprint(index(events)); got != tc.wantIdx || reset != tc.wantReset {
			t.Errorf("Events(%d) = %s, reset %v; want %s, reset %v", tc.from, got, reset, tc.wantIdx, tc.wantReset)
		}
	}

	changes := []struct {
		from     uint64
		wantIdx  string
		complete bool
	}{
		{0, "[1 1 3]", true},
		{2, "[3]", true},
		{3, "[]", true},
		{4, "[]", false}, // after the state
	}
	st := f.State()
	for _, tc := range changes {
		events, complete := st.Changes(tc.from)
		if got := fmt.Sprint(index(events)); got != tc.wantIdx || complete != tc.complete {
			t.Errorf("Changes(%d) = %s, complete %v; want %s, complete %v", tc.from, got, complete, tc.wantIdx, tc.complete)
		}
	}

	// Two more events overflow the ring of 4: index 1 loses one event.
	mustApply(t, f, 4, ApplyResourcesType, upsert(pool("d", 0), pool("e", 0)))
	tests = []struct {
		from      uint64
		wantIdx   string
		wantReset bool
	}{
		{0, "[]", true},
		{1, "[3 4 4]", false},
	}
	for _, tc := range tests {
		events, reset, _ := f.Events(tc.from)
		if got := fmt.Sprint(index(events)); got != tc.wantIdx || reset != tc.wantReset {
			t.Errorf("after overflow: Events(%d) = %s, reset %v; want %s, reset %v", tc.from, got, reset, tc.wantIdx, tc.wantReset)
		}
	}
	// The state taken before the overflow sees its own changes only.
	if events, complete := st.Changes(1); fmt.Sprint(index(events)) != "[3]" || !complete {
		t.Errorf("Changes(1) of the state at 3 = %v, complete %v; want [3], complete", index(events), complete)
	}
	if _, complete := st.Changes(0); complete {
		t.Errorf("Changes(0) after the overflow is complete; index 1 lost an event")
	}
}

func TestEventRing_BetweenNotYetAdded(t *testing.T) {
	r := newEventRing(4)
	r.add(1, []Event{{Index: 1}})
	// A state at 2 is visible before its events are added.
	if _, complete := r.between(0, 2); complete {
		t.Errorf("between(0, 2) with index 2 not added is complete")
	}
	r.add(2, nil)
	if events, complete := r.between(0, 2); len(events) != 1 || !complete {
		t.Errorf("between(0, 2) = %v, complete %v; want index 1's event, complete", events, complete)
	}
	r.reset(5)
	if _, complete := r.between(2, 5); complete {
		t.Errorf("between(2, 5) after a restore at 5 is complete")
	}
	if events, complete := r.between(5, 5); len(events) != 0 || !complete {
		t.Errorf("between(5, 5) after a restore at 5 = %v, complete %v; want none, complete", events, complete)
	}
}

// memorySink is a raft.SnapshotSink writing to memory.
type memorySink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memorySink) ID() string    { return "test" }
func (s *memorySink) Cancel() error { s.cancelled = true; return nil }
func (s *memorySink) Close() error  { return nil }

func TestFSM_SnapshotRestore(t *testing.T) {
	src := NewFSM(0)
	mustApply(t, src, 1, InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{ClusterId: "c1", GossipKey: []byte{1, 2}}})
	mustApply(t, src, 2, ApplyResourcesType, upsert(
		pool("web", 0, "10.0.0.1", "10.0.0.2"), cert("tls", 0),
		lb("lb1", 0, "192.0.2.10", listener("tcp", 80, "web"), &weftv1.Listener{Protocol: "https", Port: 443, Pool: "web", Certificates: []string{"tls"}}),
		dns("www", 0, "lb1"),
	))
	mustApply(t, src, 3, UpsertNodeType, &statev1.UpsertNodeCommand{Node: node("n1", "a")})
	mustApply(t, src, 4, CreateJoinTokenType, &statev1.CreateJoinTokenCommand{Record: joinToken("j1", "h", 3, time.Unix(1000, 0))})
	mustApply(t, src, 5, CreateAPITokenType, &statev1.CreateAPITokenCommand{Record: apiToken("a1", "admin")})
	mustApply(t, src, 6, SetFlowOwnershipType, &statev1.SetFlowOwnershipCommand{Ownership: &statev1.FlowOwnership{
		Nodes: []string{"n1"}, Replicas: 1, Owners: []byte{0, 0, 0, 0}}})
	mustApply(t, src, 7, ApplyResourcesType, upsert(pool("api", 0)))

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	// Writes after Snapshot() must not show in what Persist writes.
	mustApply(t, src, 8, ApplyResourcesType, upsert(pool("later", 0)))
	var sink memorySink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()

	dst := NewFSM(0)
	mustApply(t, dst, 1, ApplyResourcesType, upsert(pool("stale", 0))) // replaced by the restore
	_, _, notify := dst.Events(0)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	select {
	case <-notify:
	default:
		t.Errorf("notify was not closed by Restore")
	}

	got := dst.State()
	if got.Index() != 7 {
		t.Errorf("restored Index() = %d, want 7", got.Index())
	}
	if dst.AppliedIndex() != 7 {
		t.Errorf("restored AppliedIndex() = %d, want 7", dst.AppliedIndex())
	}
	if got.Pool("later") != nil {
		t.Errorf("the snapshot holds a write made after Snapshot()")
	}
	mustApply(t, src, 9, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindPool, Name: "later"})
	if g, w := dump(got), dump(src.State()); g != w {
		t.Errorf("restored state differs:\n got:\n%s\nwant:\n%s", g, w)
	}

	for _, from := range []uint64{0, 6} {
		if events, reset, _ := dst.Events(from); !reset || len(events) != 0 {
			t.Errorf("Events(%d) after restore = %d events, reset %v; want none, reset true", from, len(events), reset)
		}
	}
	if _, reset, _ := dst.Events(7); reset {
		t.Errorf("Events(7) after restore at 7: reset = true, want false")
	}

	// The restored store's indexes work: references are still enforced.
	checkStateError(t, apply(t, dst, 8, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindPool, Name: "web"}), FailedPrecondition, "")
	checkStateError(t, apply(t, dst, 9, ApplyResourcesType, upsert(lb("lb2", 0, "192.0.2.10", listener("tcp", 80, "api")))), AlreadyExists, "")
	if events, reset, _ := dst.Events(7); reset || len(events) != 0 {
		t.Errorf("Events(7) after failed applies = %d events, reset %v; want none", len(events), reset)
	}
}

func TestFSM_RestoreRejectsBadSnapshots(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown format", []byte{2, 5}},
		{"truncated record", []byte{1, 5, 10, 1}},
		{"empty record", []byte{1, 5, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(0)
			mustApply(t, f, 1, ApplyResourcesType, upsert(pool("keep", 0)))
			err := f.Restore(io.NopCloser(bytes.NewReader(tc.data)))
			if err == nil {
				t.Fatalf("Restore succeeded, want an error")
			}
			if f.State().Pool("keep") == nil {
				t.Errorf("a failed Restore replaced the state")
			}
		})
	}
}

func TestStateIsImmutable(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 1, ApplyResourcesType, upsert(pool("web", 0, "10.0.0.1")))
	old := f.State()
	mustApply(t, f, 2, ApplyResourcesType, upsert(pool("web", 0, "10.0.0.2"), pool("api", 0)))
	mustApply(t, f, 3, DeleteResourceType, &statev1.DeleteResourceCommand{Kind: KindPool, Name: "api"})
	if got := old.Pool("web").GetSpec().GetMembers()[0].GetAddress(); got != "10.0.0.1" {
		t.Errorf("old State sees member %s, want 10.0.0.1", got)
	}
	if old.Index() != 1 || len(old.Pools()) != 1 {
		t.Errorf("old State: index %d, %d pools; want 1, 1", old.Index(), len(old.Pools()))
	}
	var kinds []string
	mustApply(t, f, 4, ApplyResourcesType, upsert(cert("c", 0), lb("lb", 0, "192.0.2.1"), dns("d", 0, "lb")))
	for _, r := range f.State().Resources() {
		kinds = append(kinds, KindOf(r)+"/"+metadataOf(kindOfResource(r).unwrap(r)).GetName())
	}
	if want := "[Certificate/c Pool/web LoadBalancer/lb DNSRecord/d]"; fmt.Sprint(kinds) != want {
		t.Errorf("Resources() = %v, want %s", kinds, want)
	}
	if f.State().Resource("Nope", "x") != nil || f.State().Resource(KindPool, "nope") != nil {
		t.Errorf("Resource of an unknown kind or name is not nil")
	}
}

func TestStateErrorKind(t *testing.T) {
	err := fmt.Errorf("apply: %w", stateErrorf(Conflict, "pool %q: stale", "web"))
	var se *StateError
	if !errors.As(err, &se) || se.Kind != Conflict || se.Error() != `pool "web": stale` {
		t.Errorf("errors.As(%v) = %v, want a Conflict StateError", err, se)
	}
}

func TestStateResourcesAfter(t *testing.T) {
	f := NewFSM(0)
	mustApply(t, f, 1, ApplyResourcesType, upsert(pool("a", 0), pool("ab", 0), pool("b", 0), pool("c", 0), lb("lb", 0, "192.0.2.1")))
	tests := []struct {
		kind, after string
		max         int
		want        string
	}{
		{KindPool, "", 0, "[a ab b c]"},
		{KindPool, "", 2, "[a ab]"},
		{KindPool, "a", 0, "[ab b c]"},
		{KindPool, "aa", 2, "[ab b]"}, // a name no longer stored
		{KindPool, "c", 0, "[]"},
		{KindLoadBalancer, "", 0, "[lb]"},
		{"Nope", "", 0, "[]"},
	}
	for _, tc := range tests {
		names := []string{}
		f.State().ResourcesAfter(tc.kind, tc.after, func(r *weftv1.Resource) bool {
			names = append(names, metadataOf(kindOfResource(r).unwrap(r)).GetName())
			return tc.max == 0 || len(names) < tc.max
		})
		if got := fmt.Sprint(names); got != tc.want {
			t.Errorf("ResourcesAfter(%s, %q) = %s, want %s", tc.kind, tc.after, got, tc.want)
		}
	}
}
