package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDNS_Loopback: a node with --dns-addr and no dataplane answers DNS
// for the committed zone, `weft dns query` asks it, and the API keeps
// listeners off the DNS port (UDP and TCP).
func TestDNS_Loopback(t *testing.T) {
	c := newCluster(t, 54)
	a := c.newAgent("dns1", "a", "--dns-addr", "127.0.54.1:5353")
	c.initCluster(a)
	if _, err := c.weft(a, `kind: DNSRecord
metadata: {name: example}
spec: {fqdn: example.com, zone: {}}
---
kind: DNSRecord
metadata: {name: www}
spec: {fqdn: www.example.com, policy: all-healthy, targets: [{address: 192.0.2.1}, {address: 192.0.2.2}]}
`, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "weft dns query answers", func() error {
		out, err := c.weft(a, "", "dns", "query", "WWW.example.com")
		if err != nil || !strings.Contains(out, "status:  NOERROR aa") || !strings.Contains(out, "192.0.2.1") ||
			!strings.Contains(out, "192.0.2.2") || !strings.Contains(out, "all-healthy: 2 of 2 targets healthy") {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	if out, err := c.weft(a, "", "dns", "query", "nope.example.com", "--type", "TXT"); err != nil ||
		!strings.Contains(out, "status:  NXDOMAIN") || !strings.Contains(out, "IN SOA") {
		t.Errorf("weft dns query nope: %v\n%s", err, out)
	}
	if _, err := c.weft(a, "", "dns", "query", "www.example.com", "--subnet", "nonsense"); err == nil ||
		!strings.Contains(err.Error(), `invalid_argument: dns query: subnet: "nonsense" is not a prefix`) {
		t.Errorf("weft dns query --subnet nonsense: %v", err)
	}
	for _, proto := range []string{"udp", "tcp"} {
		_, err := c.weft(a, fmt.Sprintf(`kind: Pool
metadata: {name: p}
spec: {members: [{address: 192.0.2.9, port: 53}]}
---
kind: LoadBalancer
metadata: {name: dns}
spec: {vip: 127.0.54.1, listeners: [{port: 5353, protocol: %s, pool: p}]}
`, proto), "apply", "-f", "-")
		if err == nil || !strings.Contains(err.Error(), "5353 is the DNS port of node dns1 (127.0.54.1:5353)") {
			t.Errorf("a %s listener on the DNS port: %v", proto, err)
		}
	}
}
