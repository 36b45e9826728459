package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/weftlb/weft/tokens"
)

// TestCLI drives a one-node cluster through the weft commands an operator
// uses, including their failures: a non-zero exit and a one-line reason.
func TestCLI(t *testing.T) {
	c := newCluster(t, 15)
	n1 := c.newAgent("node1", "a")
	c.initCluster(n1)
	example, err := os.ReadFile("../deploy/examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) string {
		t.Helper()
		out, err := c.weft(n1, stdin, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	fails := func(wantMsg string, env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(weftBin, args...)
		cmd.Env = append(append(os.Environ(), "WEFT_ADDR="+n1.apiAddr(), "WEFT_TOKEN="+c.adminToken, "WEFT_CA_FILE="+c.caFile), env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("weft %v succeeded, want failure: %s", args, out)
		}
		if got := strings.TrimRight(string(out), "\n"); strings.Count(got, "\n") != 0 || !strings.HasPrefix(got, "error: ") || !strings.Contains(got, wantMsg) {
			t.Errorf("weft %v printed %q, want one line 'error: ...%s...'", args, got, wantMsg)
		}
	}

	run(string(example), "apply", "-f", "-")
	if out := run("", "get", "pools"); !strings.Contains(out, "NAME") || !strings.Contains(out, "web") {
		t.Errorf("get pools table:\n%s", out)
	}
	if out := run("", "get", "pool", "web", "-o", "yaml"); !strings.Contains(out, "kind: Pool") || !strings.Contains(out, "healthCheck:") {
		t.Errorf("get pool web -o yaml:\n%s", out)
	}
	described := run("", "describe", "lb", "web")
	if !strings.Contains(described, "mode: dsr") {
		t.Errorf("describe lb web:\n%s", described)
	}
	// What get -o yaml prints can be applied again unchanged.
	if out := run(described, "apply", "-f", "-"); out != "loadbalancer/web unchanged\n" {
		t.Errorf("re-applying describe output printed %q", out)
	}
	fails(`not_found: pool "nope" not found`, nil, "get", "pool", "nope")
	fails(`failed_precondition: pool "web" is used by load balancer "web"`, nil, "delete", "pool", "web")
	fails("unknown kind", nil, "get", "widgets")

	// Every kind goes through get, list and delete.
	run(`kind: DNSRecord
metadata: {name: www}
spec: {fqdn: www.example.com., policy: failover, targets: [{loadBalancer: web}], ttl: 30}
`, "apply", "-f", "-")
	for _, kind := range []string{"lb", "pool", "certificate", "dnsrecord"} {
		run("", "get", kind, "-o", "json")
	}
	if out := run("", "get", "dnsrecord", "www", "-o", "yaml"); !strings.Contains(out, "www.example.com.") {
		t.Errorf("get dnsrecord www:\n%s", out)
	}
	if out := run("", "delete", "dnsrecord", "www"); !strings.Contains(out, "dnsrecord/www deleted") {
		t.Errorf("delete dnsrecord www: %s", out)
	}
	fails(`not_found: dns record "www" not found`, nil, "get", "dnsrecord", "www")
	fails("unauthenticated", []string{"WEFT_TOKEN="}, "get", "pools")
	fails("no such file", nil, "apply", "-f", "../deploy/examples/does-not-exist.yaml")

	viewer := strings.TrimSpace(run("", "token", "create", "--role", "viewer", "--description", "ci"))
	if _, err := tokens.ParseAPI(viewer); err != nil {
		t.Fatalf("token create printed %q: %v", viewer, err)
	}
	fails("permission_denied", []string{"WEFT_TOKEN=" + viewer}, "apply", "-f", "../deploy/examples/web.yaml")
	if out := run("", "get", "lb", "--token", viewer); !strings.Contains(out, "198.51.100.10") {
		t.Errorf("viewer get lb:\n%s", out)
	}
	tok, _ := tokens.ParseAPI(viewer)
	if out := run("", "token", "list"); !strings.Contains(out, tok.ID) || strings.Contains(out, tok.Secret) {
		t.Errorf("token list must show the id and never the secret:\n%s", out)
	}
	run("", "token", "revoke", tok.ID)
	fails("unauthenticated", []string{"WEFT_TOKEN=" + viewer}, "get", "lb")

	join := strings.TrimSpace(run("", "join-token", "create", "--uses", "3", "--ttl", "1h"))
	jt, err := tokens.ParseJoin(join)
	if err != nil {
		t.Fatalf("join-token create printed %q: %v", join, err)
	}
	if out := run("", "join-token", "list"); !strings.Contains(out, jt.ID) || strings.Contains(out, jt.Secret) {
		t.Errorf("join-token list:\n%s", out)
	}

	if out := run("", "node", "drain", "node1"); !strings.Contains(out, "draining") {
		t.Errorf("node drain:\n%s", out)
	}
	if out := run("", "nodes", "-o", "json"); !strings.Contains(out, `"drain": true`) {
		t.Errorf("nodes -o json after drain:\n%s", out)
	}
	if out := run("", "node", "undrain", "node1"); strings.Contains(out, "draining") {
		t.Errorf("node undrain:\n%s", out)
	}
	if out := run("", "status"); !strings.Contains(out, "leader:  node1") {
		t.Errorf("status:\n%s", out)
	}
	if out := run("", "completion", "bash"); !strings.Contains(out, "__start_weft") {
		t.Errorf("completion bash does not look like a bash completion script")
	}

	admin, _ := tokens.ParseAPI(c.adminToken)
	log := n1.log.String()
	for what, secret := range map[string]string{"admin token": admin.Secret, "join token": jt.Secret, "a private key": "PRIVATE KEY"} {
		if strings.Contains(log, secret) {
			t.Errorf("the agent log contains %s", what)
		}
	}
}
