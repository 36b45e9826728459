package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// TestUnknownFields sends requests with a misspelled or unknown field, at
// the top level and deep inside, over JSON, Connect and gRPC (with
// protobuf). Each is InvalidArgument naming the field by its path, and
// nothing is written. The JSON request is the valid one with the typo added
// at the path; the protobuf one is its valid encoding with the bytes of an
// unknown field (number 99) appended at that place.
func TestUnknownFields(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	l7 := &weftv1.Listener{Port: 80, Protocol: "http", StickySession: &weftv1.StickySession{Enabled: true},
		Timeouts: &weftv1.Timeouts{Idle: durationpb.New(time.Minute)},
		Rules:    []*weftv1.Rule{{PathPrefix: "/old", Redirect: &weftv1.Redirect{Scheme: "https"}}, {PathPrefix: "/", Pool: "web"}}}
	webLB := lb("web", "198.51.100.10", l7)
	webPool := pool("web")
	webPool.Spec.HealthCheck = &weftv1.HealthCheck{Type: "http", Interval: durationpb.New(5 * time.Second)}
	dnsRecord := &weftv1.DNSRecord{Metadata: &weftv1.Metadata{Name: "www"}, Spec: &weftv1.DNSRecordSpec{
		Fqdn: "www.example.com", Policy: "failover", Targets: []*weftv1.DNSTarget{{LoadBalancer: "web"}}}}
	certPEM, keyPEM := certPair(t, n, "site")
	lbs, cluster := "/"+weftv1connect.LoadBalancerServiceName+"/", "/"+weftv1connect.ClusterServiceName+"/"

	cases := []struct {
		name      string
		procedure string
		msg       proto.Message
		at        string // where the unknown field goes: "" for the request itself
		typo      string // the JSON key added there
	}{
		{"misspelled list", lbs + "CreatePool", &weftv1.CreatePoolRequest{Pool: webPool}, "pool.spec", "memberz"},
		{"member field", lbs + "CreatePool", &weftv1.CreatePoolRequest{Pool: webPool}, "pool.spec.members[0]", "adress"},
		{"second member", lbs + "UpdatePool", &weftv1.UpdatePoolRequest{Pool: webPool}, "pool.spec.members[1]", "wieght"},
		{"health check field", lbs + "CreatePool", &weftv1.CreatePoolRequest{Pool: webPool}, "pool.spec.healthCheck", "intervall"},
		{"metadata field", lbs + "CreatePool", &weftv1.CreatePoolRequest{Pool: webPool}, "pool.metadata", "nmae"},
		{"resource part", lbs + "CreatePool", &weftv1.CreatePoolRequest{Pool: webPool}, "pool", "specs"},
		{"top-level request field", lbs + "CreatePool", &weftv1.CreatePoolRequest{Pool: webPool}, "", "pol"},
		{"misspelled sticky session", lbs + "CreateLoadBalancer", &weftv1.CreateLoadBalancerRequest{LoadBalancer: webLB}, "loadBalancer.spec.listeners[0]", "stickySesion"},
		{"misspelled rules", lbs + "CreateLoadBalancer", &weftv1.CreateLoadBalancerRequest{LoadBalancer: webLB}, "loadBalancer.spec.listeners[0]", "rulez"},
		{"sticky session field", lbs + "CreateLoadBalancer", &weftv1.CreateLoadBalancerRequest{LoadBalancer: webLB}, "loadBalancer.spec.listeners[0].stickySession", "tll"},
		{"redirect field", lbs + "UpdateLoadBalancer", &weftv1.UpdateLoadBalancerRequest{LoadBalancer: webLB}, "loadBalancer.spec.listeners[0].rules[0].redirect", "codee"},
		{"timeouts field", lbs + "CreateLoadBalancer", &weftv1.CreateLoadBalancerRequest{LoadBalancer: webLB}, "loadBalancer.spec.listeners[0].timeouts", "idel"},
		{"load balancer spec", lbs + "CreateLoadBalancer", &weftv1.CreateLoadBalancerRequest{LoadBalancer: webLB}, "loadBalancer.spec", "primaryZon"},
		{"apply: member in a batch", lbs + "Apply", &weftv1.ApplyRequest{Resources: []*weftv1.Resource{asRes(webPool), asRes(webLB)}}, "resources[0].pool.spec.members[1]", "prot"},
		{"apply: second resource", lbs + "Apply", &weftv1.ApplyRequest{Resources: []*weftv1.Resource{asRes(webPool), asRes(webLB)}}, "resources[1].loadBalancer.spec", "vipp"},
		{"apply: top level", lbs + "Apply", &weftv1.ApplyRequest{Resources: []*weftv1.Resource{asRes(webPool)}}, "", "resource"},
		{"certificate spec", lbs + "CreateCertificate", &weftv1.CreateCertificateRequest{Certificate: cert("site", certPEM, keyPEM)}, "certificate.spec", "privateKey"},
		{"dns target, wrong case", lbs + "CreateDNSRecord", &weftv1.CreateDNSRecordRequest{DnsRecord: dnsRecord}, "dnsRecord.spec.targets[0]", "loadbalancer"},
		{"read request", lbs + "GetPool", &weftv1.GetRequest{Name: "web"}, "", "nmae"},
		{"delete request", lbs + "DeletePool", &weftv1.DeleteRequest{Name: "web"}, "", "versoin"},
		{"public join request", cluster + "Join", &weftv1.JoinRequest{Token: "weft1.x.y.z", Name: "n2"}, "", "tokn"},
	}
	if len(cases) < 15 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		jsonBody := withJSONKey(t, tc.msg, tc.at, tc.typo)
		bad := proto.Clone(tc.msg)
		sub := messageAt(t, bad.ProtoReflect(), tc.at)
		sub.SetUnknown(protowire.AppendBytes(protowire.AppendTag(sub.GetUnknown(), 99, protowire.BytesType), []byte("x")))
		protoBody, err := proto.Marshal(bad)
		if err != nil {
			t.Fatal(err)
		}
		wantJSON := fmt.Sprintf("unknown field %q", joinPath(tc.at, tc.typo))
		wantProto := fmt.Sprintf("unknown field number 99 in %q (%s)", tc.at, sub.Descriptor().FullName())
		if tc.at == "" {
			wantProto = fmt.Sprintf("unknown field number 99 in %s", sub.Descriptor().FullName())
		}
		for _, call := range []struct {
			protocol wireProtocol
			body     []byte
			want     string
		}{
			{wireProtocols[3], jsonBody, wantJSON},                 // JSON over HTTP/1.1
			{wireProtocols[2], protoBody, wantProto},               // Connect, protobuf
			{wireProtocols[0], grpcEnvelope(protoBody), wantProto}, // gRPC
		} {
			t.Run(tc.name+"/"+call.protocol.name, func(t *testing.T) {
				before := n.resources()
				_, _, commitBefore, _ := n.raft.Stats()
				code, msg, err := rawCall(ctx, n.rawClient(call.protocol), n.url+tc.procedure, call.protocol, n.admin, int64(len(call.body)), bytes.NewReader(call.body))
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%v: %s", code, msg)
				if code != connect.CodeInvalidArgument || !strings.HasSuffix(msg, call.want) {
					t.Errorf("got %v %q, want %v ending in %q", code, msg, connect.CodeInvalidArgument, call.want)
				}
				if _, _, commitAfter, _ := n.raft.Stats(); commitAfter != commitBefore || !sameResources(before, n.resources()) {
					t.Errorf("a refused call changed the state (commit index %d -> %d)", commitBefore, commitAfter)
				}
			})
		}
	}
}

// TestUnknownFields_ReadLikeTheCLI: the API names an unknown field as the
// CLI's manifest reader does, with the path under the request.
func TestUnknownFields_ReadLikeTheCLI(t *testing.T) {
	_, err := manifest.Decode(strings.NewReader("kind: Pool\nmetadata: {name: web}\nspec: {memberz: []}\n"))
	if want := `unknown field "spec.memberz"`; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("manifest: got %v, want an error ending in %s", err, want)
	}
	err = strictJSON{}.Unmarshal([]byte(`{"pool":{"metadata":{"name":"web"},"spec":{"memberz":[]}}}`), &weftv1.CreatePoolRequest{})
	if want := `unknown field "pool.spec.memberz"`; err == nil || err.Error() != want {
		t.Errorf("api: got %v, want %s", err, want)
	}
}

// withJSONKey returns the JSON of m with key (value 1) added to the object
// at path.
func withJSONKey(t *testing.T, m proto.Message, path, key string) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	obj := doc
	for _, seg := range pathSegments(path) {
		if i, err := strconv.Atoi(seg); err == nil {
			obj = obj.([]any)[i]
		} else {
			obj = obj.(map[string]any)[seg]
		}
	}
	obj.(map[string]any)[key] = 1
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// messageAt returns the message at path (JSON names, [i] for list items)
// inside m.
func messageAt(t *testing.T, m protoreflect.Message, path string) protoreflect.Message {
	t.Helper()
	var list protoreflect.List
	for _, seg := range pathSegments(path) {
		if i, err := strconv.Atoi(seg); err == nil {
			m = list.Get(i).Message()
			continue
		}
		fd := m.Descriptor().Fields().ByJSONName(seg)
		if fd == nil {
			t.Fatalf("%s has no field %q", m.Descriptor().FullName(), seg)
		}
		if fd.IsList() {
			list = m.Mutable(fd).List()
		} else {
			m = m.Mutable(fd).Message()
		}
	}
	return m
}

// pathSegments splits "a.b[1].c" into a, b, 1, c.
func pathSegments(path string) []string {
	if path == "" {
		return nil
	}
	return strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == '[' || r == ']' })
}

// grpcEnvelope frames one uncompressed gRPC message.
func grpcEnvelope(b []byte) []byte {
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// TestStrictProto_MapValues: unknown fields inside a map's message values
// are found too, named by the key (the API has no such map yet;
// google.protobuf.Struct is one).
func TestStrictProto_MapValues(t *testing.T) {
	s, err := structpb.NewStruct(map[string]any{"b": 1, "a": "x"})
	if err != nil {
		t.Fatal(err)
	}
	v := s.Fields["b"].ProtoReflect()
	v.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1))
	b, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	err = strictProto{}.Unmarshal(b, &structpb.Struct{})
	if want := `unknown field number 7 in "fields[\"b\"]" (google.protobuf.Value)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// FuzzStrictJSON: the strict JSON codec accepts exactly what protojson
// accepts when it discards unknown fields and there are none, decoding it the
// same; when only unknown fields are wrong, it names one.
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{
		`{"resources":[{"pool":{"metadata":{"name":"web"},"spec":{"members":[{"address":"192.0.2.1","port":80}]}}}]}`,
		`{"resources":[{"pool":{"spec":{"memberz":[]}}}]}`,
		`{"resources":[{"loadBalancer":{"spec":{"listeners":[{"sticky_session":{"ttl":"5s","x":1}}]}}}]}`,
		`{"resources":[{"pool":{"metadata":{"labels":{"a":"b"}},"spec":{"healthCheck":{"interval":"1s"}}}}],"nope":null}`,
		`{"resources":[]}`, `[]`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		strict, loose := &weftv1.ApplyRequest{}, &weftv1.ApplyRequest{}
		errStrict := strictJSON{}.Unmarshal(b, strict)
		errLoose := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, loose)
		switch {
		case errStrict == nil && errLoose != nil:
			t.Fatalf("strict accepted what protojson refuses (%v)", errLoose)
		case errStrict == nil && !proto.Equal(strict, loose):
			t.Fatalf("strict decoded %v, protojson %v", strict, loose)
		case errStrict != nil && errLoose == nil && !strings.HasPrefix(errStrict.Error(), `unknown field "`):
			t.Fatalf("strict refused a request whose only fault is an unknown field without naming it: %v", errStrict)
		}
	})
}

// FuzzStrictProto: the strict protobuf codec accepts exactly the encodings
// without unknown fields and names one otherwise.
func FuzzStrictProto(f *testing.F) {
	valid, err := proto.Marshal(&weftv1.ApplyRequest{Resources: []*weftv1.Resource{asRes(pool("web"))}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(protowire.AppendVarint(protowire.AppendTag(append([]byte(nil), valid...), 99, protowire.VarintType), 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		strict, loose, stripped := &weftv1.ApplyRequest{}, &weftv1.ApplyRequest{}, &weftv1.ApplyRequest{}
		errStrict := strictProto{}.Unmarshal(b, strict)
		if proto.Unmarshal(b, loose) != nil {
			if errStrict == nil {
				t.Fatal("strict accepted an encoding protobuf refuses")
			}
			return
		}
		if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, stripped); err != nil {
			t.Fatal(err)
		}
		hasUnknown := !proto.Equal(loose, stripped)
		switch {
		case hasUnknown && (errStrict == nil || !strings.HasPrefix(errStrict.Error(), "unknown field number ")):
			t.Fatalf("an encoding with unknown fields: got %v, want them named", errStrict)
		case !hasUnknown && errStrict != nil:
			t.Fatalf("an encoding without unknown fields refused: %v", errStrict)
		}
	})
}
