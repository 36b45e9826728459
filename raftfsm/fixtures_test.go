package raftfsm

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// apply applies one command to f at index, as raft would.
func apply(t testing.TB, f *FSM, index uint64, ct CommandType, msg proto.Message) any {
	t.Helper()
	data, err := Encode(ct, msg)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
}

// mustApply applies a command that must succeed.
func mustApply(t testing.TB, f *FSM, index uint64, ct CommandType, msg proto.Message) any {
	t.Helper()
	resp := apply(t, f, index, ct, msg)
	if err, ok := resp.(error); ok {
		t.Fatalf("apply %v at %d: %v", ct, index, err)
	}
	return resp
}

// checkStateError fails unless resp is a *StateError of the wanted kind and
// message (message checked only when wantMsg is not "").
func checkStateError(t *testing.T, resp any, wantKind ErrorKind, wantMsg string) {
	t.Helper()
	err, ok := resp.(error)
	if !ok {
		t.Fatalf("response = %#v, want a %v error", resp, wantKind)
	}
	var se *StateError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want a *StateError", err, err)
	}
	if se.Kind != wantKind {
		t.Errorf("error kind = %v (%q), want %v", se.Kind, se.Msg, wantKind)
	}
	if wantMsg != "" && se.Msg != wantMsg {
		t.Errorf("error message:\n got %q\nwant %q", se.Msg, wantMsg)
	}
}

// dump renders every record of the state (not its index) as text, to
// compare states and show differences.
func dump(s *State) string {
	var b strings.Builder
	for _, rec := range snapshotRecords(s) {
		b.WriteString(prototext.MarshalOptions{Multiline: false}.Format(rec))
		b.WriteString("\n")
	}
	return b.String()
}

func md(name string, version uint64) *weftv1.Metadata {
	return &weftv1.Metadata{Name: name, Version: version}
}

func pool(name string, version uint64, addrs ...string) *weftv1.Resource {
	p := &weftv1.Pool{Metadata: md(name, version), Spec: &weftv1.PoolSpec{}}
	for _, a := range addrs {
		p.Spec.Members = append(p.Spec.Members, &weftv1.Member{Address: a, Port: 8080})
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: p}}
}

func cert(name string, version uint64) *weftv1.Resource {
	c := &weftv1.Certificate{Metadata: md(name, version), Spec: &weftv1.CertificateSpec{CertificatePem: "pem of " + name}}
	return &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: c}}
}

func lb(name string, version uint64, vip string, listeners ...*weftv1.Listener) *weftv1.Resource {
	l := &weftv1.LoadBalancer{Metadata: md(name, version), Spec: &weftv1.LoadBalancerSpec{Vip: vip, Listeners: listeners}}
	return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: l}}
}

func listener(protocol string, port uint32, pool string) *weftv1.Listener {
	return &weftv1.Listener{Protocol: protocol, Port: port, Pool: pool}
}

func dns(name string, version uint64, lbs ...string) *weftv1.Resource {
	r := &weftv1.DNSRecord{Metadata: md(name, version), Spec: &weftv1.DNSRecordSpec{Fqdn: name + ".example.com.", Policy: "failover"}}
	for _, l := range lbs {
		r.Spec.Targets = append(r.Spec.Targets, &weftv1.DNSTarget{LoadBalancer: l})
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: r}}
}

func upsert(rs ...*weftv1.Resource) *statev1.ApplyResourcesCommand {
	return &statev1.ApplyResourcesCommand{Mode: statev1.WriteMode_WRITE_MODE_UPSERT, Resources: rs}
}

func node(name, zone string) *weftv1.Node {
	return &weftv1.Node{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.NodeSpec{Zone: zone, RaftAddress: name + ":7000"}}
}
