package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// run executes the CLI with args and returns what it printed.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// commandPaths lists every command of the tree as its arguments, e.g.
// ["token", "create"].
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, sub := range c.Commands() {
		p := append(slices.Clone(prefix), sub.Name())
		out = append(out, p)
		out = append(out, commandPaths(sub, p)...)
	}
	return out
}

// TestHelpShowsNoSecrets: with the API and join tokens in the environment,
// no command's help (--help, -h or `weft help CMD`) prints either; the
// flags still take their value from the environment.
func TestHelpShowsNoSecrets(t *testing.T) {
	const apiToken, joinToken = "weft_abcdefSECRETAPI123", "weft1.pin.id.SECRETJOIN456"
	t.Setenv("WEFT_TOKEN", apiToken)
	t.Setenv("WEFT_JOIN_TOKEN", joinToken)
	paths := commandPaths(newRoot(), nil)
	if len(paths) < 20 {
		t.Fatalf("found %d commands, want the whole tree", len(paths))
	}
	paths = append(paths, nil) // the root itself
	for _, p := range paths {
		for _, args := range [][]string{append(slices.Clone(p), "--help"), append(slices.Clone(p), "-h"), append([]string{"help"}, p...)} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, err := run(t, "", args...)
				if err != nil {
					t.Fatalf("weft %v: %v", args, err)
				}
				for _, secret := range []string{apiToken, joinToken, "SECRET"} {
					if strings.Contains(out, secret) {
						t.Errorf("weft %v prints a secret:\n%s", args, out)
					}
				}
				if strings.Contains(out, "--token") && !strings.Contains(out, "(default: WEFT_") {
					t.Errorf("weft %v: --token does not say where its default comes from:\n%s", args, out)
				}
			})
		}
	}

}

// TestSecretFlag: a secret flag keeps the value it starts with (from the
// environment) until given on the command line, and never shows it.
func TestSecretFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"from the environment", nil, "env-secret"},
		{"from the command line", []string{"--token", "cli-secret"}, "cli-secret"},
		{"emptied on the command line", []string{"--token="}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := "env-secret"
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.Var(secretFlag{&v}, "token", "a secret")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Errorf("value %q, want %q", v, tc.want)
			}
			if got := fs.Lookup("token").Value.String(); got != "" {
				t.Errorf("String() = %q, want it hidden", got)
			}
			if usage := fs.FlagUsages(); strings.Contains(usage, "secret\"") || strings.Contains(usage, "default \"") {
				t.Errorf("usage shows a default: %s", usage)
			}
		})
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func poolDoc(name string) string {
	return "kind: Pool\nmetadata: {name: " + name + "}\nspec: {members: [{address: 192.0.2.1, port: 80}]}\n"
}

// TestReadManifests: -f takes files, directories (their manifest files in
// name order, subdirectories with -R) and - once, in the order given;
// errors name the file.
func TestReadManifests(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"b.yaml":       poolDoc("b"),
		"a.yml":        poolDoc("a"),
		"c.json":       "{\n\t\"kind\": \"Pool\",\n\t\"metadata\": {\"name\": \"c\"},\n\t\"spec\": {\"members\": [{\"address\": \"192.0.2.1\", \"port\": 80}]}\n}\n",
		"notes.txt":    "not a manifest",
		"sub/d.yaml":   poolDoc("d"),
		"bad/x.yaml":   "kind: Pool\nmetadata: {name: x}\nspec: {memberz: []}\n",
		"empty/README": "nothing here",
	})
	for _, tc := range []struct {
		name      string
		args      []string
		recursive bool
		stdin     string
		want      string // names in order
		wantErr   string
	}{
		{"directory in name order", []string{dir}, false, "", "a b c", ""},
		{"recursive", []string{dir + "/sub", dir}, true, "", "d a b x", "bad/x.yaml: document 1 (Pool \"x\"): unknown field \"spec.memberz\""},
		{"files and stdin in order", []string{dir + "/b.yaml", "-", dir + "/sub"}, false, poolDoc("s"), "b s d", ""},
		{"any file name given directly", []string{dir + "/notes.txt"}, false, "", "", "notes.txt: document 1"},
		{"stdin twice", []string{"-", "-"}, false, poolDoc("s"), "", "standard input (-) may be given once"},
		{"missing file", []string{dir + "/nope.yaml"}, false, "", "", "no such file or directory"},
		{"directory without manifests", []string{dir + "/empty"}, false, "", "", "empty: no .yaml, .yml, .json files"},
		{"no resources", []string{"-"}, false, "# only a comment\n", "", "no resources in -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := readManifests(strings.NewReader(tc.stdin), tc.args, tc.recursive)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range rs {
				names = append(names, manifest.NameOf(r))
			}
			if got := strings.Join(names, " "); got != tc.want {
				t.Errorf("resources %q, want %q", got, tc.want)
			}
		})
	}
}

func testPool(name string, st *weftv1.PoolStatus, members int) *weftv1.Resource {
	p := &weftv1.Pool{Metadata: &weftv1.Metadata{Name: name, Version: 7}, Status: st,
		Spec: &weftv1.PoolSpec{HealthCheck: &weftv1.HealthCheck{Type: "tcp"}, Algorithm: "round-robin", UpstreamProtocol: "http1"}}
	for range members {
		p.Spec.Members = append(p.Spec.Members, &weftv1.Member{Address: "192.0.2.1", Port: 80})
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: p}}
}

// TestGetOutput: the pool table shows health counts and the check type,
// -o wide adds columns, -o name prints kind/name lines.
func TestGetOutput(t *testing.T) {
	rs := []*weftv1.Resource{
		testPool("web", &weftv1.PoolStatus{MembersUp: 2, MembersDown: 1, Observer: "node1"}, 3),
		testPool("new", &weftv1.PoolStatus{MembersUp: 1, MembersUnknown: 1, Observer: "node1"}, 2),
		testPool("dark", &weftv1.PoolStatus{MembersUnknown: 2, Observer: "node2"}, 2),
		testPool("empty", &weftv1.PoolStatus{Observer: "node1"}, 0),
	}
	for _, tc := range []struct {
		format string
		want   []string // lines, each compared with its spaces squeezed
	}{
		{"table", []string{"NAME MEMBERS HEALTH CHECK ALGORITHM VERSION", "web 3 2 up, 1 down tcp round-robin 7",
			"new 2 1 up, 0 down, 1 unknown tcp round-robin 7", "dark 2 unknown tcp round-robin 7", "empty 0 no members tcp round-robin 7"}},
		{"wide", []string{"NAME MEMBERS HEALTH CHECK ALGORITHM VERSION CHECK DETAIL UPSTREAM HEALTH OF LABELS",
			"web 3 2 up, 1 down tcp round-robin 7 every 0s timeout 0s rise 0 fall 0 http1 node1"}},
		{"name", []string{"pool/web", "pool/new", "pool/dark", "pool/empty"}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := printResources(&b, tc.format, "Pool", rs, false); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			for i, want := range tc.want {
				if i >= len(got) || strings.Join(strings.Fields(got[i]), " ") != want {
					t.Errorf("-o %s:\n%s\nwant line %d: %q", tc.format, b.String(), i+1, want)
				}
			}
		})
	}
	if err := printResources(&bytes.Buffer{}, "xml", "Pool", rs, false); err == nil || !strings.Contains(err.Error(), "table, wide, name, json or yaml") {
		t.Errorf("-o xml: %v, want the list of formats", err)
	}
}

// TestPrintChange: a dry run's update is a diff of the YAML without
// versions, a create is all additions, unchanged prints nothing.
func TestPrintChange(t *testing.T) {
	stored := testPool("web", nil, 1)
	stored.GetPool().Metadata.CreateIndex = 3
	desired := testPool("web", nil, 2)
	desired.GetPool().Metadata.Version = 0
	certificate := &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: &weftv1.Certificate{
		Metadata: &weftv1.Metadata{Name: "web"}, Spec: &weftv1.CertificateSpec{CertificatePem: "PEM"}}}}
	for _, tc := range []struct {
		name string
		r    *weftv1.ApplyResult
		want string
	}{
		{"updated", &weftv1.ApplyResult{Action: "updated", Current: stored, Desired: desired},
			"--- pool/web (stored)\n+++ pool/web (applied)\n@@ -6,6 +6,8 @@\n   members:\n     - address: 192.0.2.1\n       port: 80\n+    - address: 192.0.2.1\n+      port: 80\n   healthCheck:\n     type: tcp\n   algorithm: round-robin\n"},
		{"created", &weftv1.ApplyResult{Action: "created", Desired: testPool("web", nil, 0)},
			"--- /dev/null\n+++ pool/web (applied)\n@@ -0,0 +1,9 @@\n+apiVersion: weft.dev/v1\n+kind: Pool\n+metadata:\n+  name: web\n+spec:\n+  healthCheck:\n+    type: tcp\n+  algorithm: round-robin\n+  upstreamProtocol: http1\n"},
		{"unchanged", &weftv1.ApplyResult{Action: "unchanged", Current: stored, Desired: stored}, ""},
		// Reads never return keys, so a new key alone shows no line.
		{"only the key", &weftv1.ApplyResult{Action: "updated", Current: certificate, Desired: certificate},
			"  (only the private key differs; keys are never shown)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printChange(&b, "pool/web", tc.r); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}
