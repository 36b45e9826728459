package manifest

import (
	"bytes"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/validate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestGolden decodes each testdata/*.yaml, encodes the result and compares
// it with the .golden file beside it; the golden file must decode to the
// same resources.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no test cases in testdata: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := Decode(bytes.NewReader(src))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var got bytes.Buffer
			if err := Encode(&got, rs); err != nil {
				t.Fatalf("Encode: %v", err)
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got.String() != string(want) {
				t.Errorf("Encode(Decode(%s)):\n--- got\n%s--- want (%s)\n%s", in, got.String(), golden, want)
			}
			again, err := Decode(bytes.NewReader(want))
			if err != nil {
				t.Fatalf("Decode(%s): %v", golden, err)
			}
			assertEqual(t, again, rs)
		})
	}
}

func assertEqual(t *testing.T, got, want []*weftv1.Resource) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d resources, want %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("resource %d:\n got %s\nwant %s", i+1, protojson.Format(got[i]), protojson.Format(want[i]))
		}
	}
}

func TestExample(t *testing.T) {
	f, err := os.Open("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Decode(f)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	member := func(addr, zone string) *weftv1.Member {
		return &weftv1.Member{Address: addr, Port: 8080, Zone: zone}
	}
	want := []*weftv1.Resource{
		{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{
			Metadata: &weftv1.Metadata{Name: "web"},
			Spec: &weftv1.PoolSpec{
				Members: []*weftv1.Member{member("192.0.2.11", "a"), member("192.0.2.12", "a"), member("192.0.2.13", "b")},
				HealthCheck: &weftv1.HealthCheck{
					Type: "http", Path: "/healthz", ExpectedCodes: "200-399",
					Interval: durationpb.New(5 * time.Second), Timeout: durationpb.New(2 * time.Second), Rise: 2, Fall: 3,
				},
			},
		}}},
		{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{
			Metadata: &weftv1.Metadata{Name: "web"},
			Spec: &weftv1.LoadBalancerSpec{
				Vip: "198.51.100.10", Region: "lab", PrimaryZone: "a", BackupZones: []string{"b"},
				Listeners: []*weftv1.Listener{
					{Port: 80, Protocol: "tcp", Mode: "fullnat", Pool: "web"},
					{Port: 443, Protocol: "tcp", Mode: "dsr", Pool: "web"},
				},
			},
		}}},
	}
	assertEqual(t, got, want)
	for _, r := range got {
		if err := validate.Resource(r); err != nil {
			t.Errorf("the example does not validate: %v", err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	const pool = "kind: Pool\nmetadata: {name: web}\n"
	tests := []struct {
		name, in, want string
	}{
		{"unknown spec field", "kind: Pool\nmetadata: {name: a}\n---\n" + pool + "spec: {memberz: []}\n",
			`document 2 (Pool "web"): unknown field "spec.memberz"`},
		{"unknown nested field", pool + "spec:\n  members:\n    - {address: 192.0.2.1, port: 80}\n    - {address: 192.0.2.2, prot: 80}\n",
			`document 1 (Pool "web"): unknown field "spec.members[1].prot"`},
		{"unknown field in a message", pool + "spec: {healthCheck: {intervall: 5s}}\n",
			`document 1 (Pool "web"): unknown field "spec.healthCheck.intervall"`},
		{"unknown metadata field", "kind: Pool\nmetadata: {name: web, nmae: x}\n",
			`document 1 (Pool "web"): unknown field "metadata.nmae"`},
		{"unknown top-level field", pool + "specs: {}\n",
			`document 1 (Pool "web"): unknown field "specs"`},
		{"status is not a spec field", pool + "spec: {status: {}}\n",
			`document 1 (Pool "web"): unknown field "spec.status"`},
		{"unknown field without a name", "kind: Pool\nspec: {x: 1}\n",
			`document 1 (Pool): unknown field "spec.x"`},
		{"other api version", "apiVersion: weft.dev/v2\n" + pool,
			`document 1: apiVersion "weft.dev/v2" is not supported (want weft.dev/v1)`},
		{"api version not a string", "apiVersion: [1]\n" + pool,
			`document 1: apiVersion: want a string, got [1]`},
		{"missing kind", "metadata: {name: web}\n",
			`document 1: missing kind (LoadBalancer, Pool, Certificate, DNSRecord or AddressPool)`},
		{"unknown kind", "kind: pool\nmetadata: {name: web}\n",
			`document 1 (pool "web"): unknown kind (want LoadBalancer, Pool, Certificate, DNSRecord or AddressPool)`},
		{"kind not a string", "kind: {a: b}\n",
			`document 1: kind: want a string, got {"a":"b"}`},
		{"document is a list", "- kind: Pool\n",
			`document 1: want a mapping with kind, metadata and spec`},
		{"document is a string", "kind\n",
			`document 1: want a mapping with kind, metadata and spec`},
		{"spec is a list", pool + "spec: [a]\n",
			`document 1 (Pool "web"): spec: want a mapping, got ["a"]`},
		{"syntax error in document 3", pool + "---\n" + pool + "---\nkind: [\n",
			`document 3: yaml: line 7: did not find expected node content`},
		{"duplicate key", pool + "spec:\n  algorithm: a\n  algorithm: b\n",
			`document 1: line 5: duplicate key "algorithm"`},
		{"port not a number", pool + "spec: {members: [{port: eighty}]}\n",
			`document 1 (Pool "web"): spec.members[0].port: want a number, got "eighty"`},
		{"port out of range", pool + "spec: {members: [{port: 4294967296}]}\n",
			`document 1 (Pool "web"): spec: invalid value for uint32 field port: 4294967296`},
		{"bad duration", pool + "spec: {healthCheck: {interval: 5}}\n",
			`document 1 (Pool "web"): spec.healthCheck.interval: want a duration such as "5s" or "1m30s", got 5`},
		{"bad duration string", pool + "spec: {healthCheck: {timeout: 5 minutes}}\n",
			`document 1 (Pool "web"): spec.healthCheck.timeout: "5 minutes" is not a duration; write one such as "5s" or "1m30s"`},
		{"number for a string", pool + "spec: {members: [{zone: 1}]}\n",
			`document 1 (Pool "web"): spec.members[0].zone: want a string, got 1 (quote it)`},
		{"number for a label", "kind: Pool\nmetadata: {name: web, labels: {tier: 1}}\n",
			`document 1 (Pool "web"): metadata.labels.tier: want a string, got 1 (quote it)`},
		{"mapping for a list", pool + "spec: {members: {address: x}}\n",
			`document 1 (Pool "web"): spec.members: want a list, got {"address":"x"}`},
		{"string for a message", pool + "spec: {healthCheck: tcp}\n",
			`document 1 (Pool "web"): spec.healthCheck: want a mapping, got "tcp"`},
		{"string in a string list", "kind: LoadBalancer\nspec: {backupZones: [a, [b]]}\n",
			`document 1 (LoadBalancer): spec.backupZones[1]: want a string, got ["b"] (quote it)`},
		{"yes is a string", pool + "spec: {members: [{drain: yes}]}\n",
			`document 1 (Pool "web"): spec.members[0].drain: want true or false, got "yes"`},
		{"json and proto names together", pool + "spec: {healthCheck: {}, health_check: {}}\n",
			`document 1 (Pool "web"): spec: duplicate field "health_check"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Decode(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("Decode() = %d resources, nil error; want error %q", len(rs), tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Decode() error:\n got %q\nwant %q", err.Error(), tc.want)
			}
		})
	}
}

// roundTripResources exercises what YAML could get wrong: strings that look
// like other types, multi-line text, empty values, extremes.
func roundTripResources() []*weftv1.Resource {
	return []*weftv1.Resource{
		{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{
			Metadata: &weftv1.Metadata{Name: "web", Version: math.MaxUint64, CreateIndex: 7, Labels: map[string]string{
				"": "", "no": "yes", "null": "~", "n": "12", "multi": "a\nb", "quote": `"'`, "é": "☃",
			}},
			Spec: &weftv1.LoadBalancerSpec{
				Vip: "::1", Region: "true", PrimaryZone: "0x10", BackupZones: []string{"", "1e3", "- x", "#", "a: b"},
				Listeners: []*weftv1.Listener{
					{Port: 65535, Protocol: "https", Certificates: []string{"c"}, StickySession: &weftv1.StickySession{Ttl: &durationpb.Duration{Seconds: -1, Nanos: -5}}},
					{Rules: []*weftv1.Rule{{}, {Header: &weftv1.HeaderMatch{}, Redirect: &weftv1.Redirect{Code: 308}}}, Timeouts: &weftv1.Timeouts{}},
					{},
				},
			},
		}}},
		{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{
			Metadata: &weftv1.Metadata{},
			Spec: &weftv1.PoolSpec{Members: []*weftv1.Member{
				{Address: "192.0.2.1", Port: 80, Weight: proto.Int32(0)},
				{Weight: proto.Int32(math.MinInt32), Drain: true},
				{},
			}, HealthCheck: &weftv1.HealthCheck{Interval: durationpb.New(0)}},
		}}},
		{Kind: &weftv1.Resource_Certificate{Certificate: &weftv1.Certificate{
			Metadata: &weftv1.Metadata{Name: "c"},
			Spec: &weftv1.CertificateSpec{
				CertificatePem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
				PrivateKeyPem:  "line with trailing space \n\ttab\n\n",
			},
		}}},
		{Kind: &weftv1.Resource_DnsRecord{DnsRecord: &weftv1.DNSRecord{
			Spec: &weftv1.DNSRecordSpec{Fqdn: "www.example.com.", Targets: []*weftv1.DNSTarget{{Address: "203.0.113.1", Weight: math.MaxUint32}}},
		}}},
		{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{}}},
	}
}

func TestRoundTrip(t *testing.T) {
	want := roundTripResources()
	var buf bytes.Buffer
	if err := Encode(&buf, want); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatalf("Decode(Encode(x)): %v\n%s", err, buf.String())
	}
	assertEqual(t, got, want)
}

// TestStatusIgnored checks that status is written but not read back, since
// the server computes it.
// TestDurations checks that durations are read in protojson's form and in
// Go's, and written in protojson's.
func TestDurations(t *testing.T) {
	in := "kind: Pool\nspec:\n  healthCheck: {interval: 1m30s, timeout: 1.5s}\n" +
		"---\nkind: LoadBalancer\nspec:\n  listeners: [{timeouts: {idle: 500ms, connect: null}}]\n"
	got, err := Decode(strings.NewReader(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := []*weftv1.Resource{
		{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{Spec: &weftv1.PoolSpec{HealthCheck: &weftv1.HealthCheck{
			Interval: durationpb.New(90 * time.Second), Timeout: durationpb.New(1500 * time.Millisecond),
		}}}}},
		{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{Spec: &weftv1.LoadBalancerSpec{
			Listeners: []*weftv1.Listener{{Timeouts: &weftv1.Timeouts{Idle: durationpb.New(500 * time.Millisecond)}}},
		}}}},
	}
	assertEqual(t, got, want)
	var buf bytes.Buffer
	if err := Encode(&buf, got[:1]); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if !strings.Contains(buf.String(), "interval: 90s\n    timeout: 1.500s\n") {
		t.Errorf("Encode:\n%s\nwant interval: 90s and timeout: 1.500s", buf.String())
	}
}

func TestStatusIgnored(t *testing.T) {
	c := &weftv1.Certificate{
		Metadata: &weftv1.Metadata{Name: "c"},
		Spec:     &weftv1.CertificateSpec{CertificatePem: "x"},
		Status: &weftv1.CertificateStatus{
			DnsNames: []string{"www.example.com"}, Fingerprint: "ab",
			NotAfter: timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)),
		},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, []*weftv1.Resource{{Kind: &weftv1.Resource_Certificate{Certificate: c}}}); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	const wantYAML = `apiVersion: weft.dev/v1
kind: Certificate
metadata:
  name: c
spec:
  certificatePem: x
status:
  dnsNames:
    - www.example.com
  notAfter: "2030-01-02T03:04:05Z"
  fingerprint: ab
`
	if buf.String() != wantYAML {
		t.Errorf("Encode:\n got %s\nwant %s", buf.String(), wantYAML)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	c.Status = nil
	assertEqual(t, got, []*weftv1.Resource{{Kind: &weftv1.Resource_Certificate{Certificate: c}}})
}

func TestEncodeNoKind(t *testing.T) {
	err := Encode(&bytes.Buffer{}, []*weftv1.Resource{{}})
	if want := "encode resource 1: no kind set"; err == nil || err.Error() != want {
		t.Errorf("Encode() = %v, want %s", err, want)
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	var buf bytes.Buffer
	if err := Encode(&buf, roundTripResources()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.String())
	f.Add("kind: Pool\nspec: {members: [{address: &a x, zone: *a}]}\n")
	f.Add("kind: DNSRecord\nmetadata: {labels: {1: 2, ~: null}}\n")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := Decode(strings.NewReader(in))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Encode(&out, rs); err != nil {
			t.Fatalf("Encode(Decode(x)): %v", err)
		}
		again, err := Decode(&out)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))): %v\n%s", err, out.String())
		}
		assertEqual(t, again, rs)
	})
}
