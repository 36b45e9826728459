package node

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/weftlb/weft/health"
	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

const gslbManifest = `kind: Pool
metadata: {name: eu}
spec: {members: [{address: 192.0.2.11, port: 80}]}
---
kind: Pool
metadata: {name: us}
spec: {members: [{address: 192.0.2.21, port: 80}]}
---
kind: LoadBalancer
metadata: {name: web-eu}
spec: {vip: 198.51.100.1, region: eu, primaryZone: a, listeners: [{port: 80, protocol: tcp, pool: eu}]}
---
kind: LoadBalancer
metadata: {name: web-us}
spec: {vip: 198.51.100.2, region: us, primaryZone: b, listeners: [{port: 80, protocol: tcp, pool: us}]}
---
kind: DNSRecord
metadata: {name: zone}
spec: {fqdn: example.com, zone: {regions: [{name: eu, cidrs: [203.0.113.0/24]}]}}
---
kind: DNSRecord
metadata: {name: www}
spec: {fqdn: www.example.com, policy: failover, ttl: 5, targets: [{loadBalancer: web-eu, priority: 1}, {loadBalancer: web-us, priority: 2}]}
---
kind: DNSRecord
metadata: {name: api}
spec: {fqdn: api.example.com, policy: all-healthy, healthCheck: {port: 8080}, targets: [{address: 192.0.2.31}, {address: 192.0.2.32}]}
---
kind: DNSRecord
metadata: {name: www-txt}
spec: {fqdn: www.example.com, type: TXT, values: ["hello"]}
---
kind: DNSRecord
metadata: {name: www2}
spec: {fqdn: www.example.com, type: A, values: [192.0.2.99]}
---
kind: DNSRecord
metadata: {name: zz-alias}
spec: {fqdn: www.example.com, type: CNAME, values: [web.example.net]}
---
kind: DNSRecord
metadata: {name: stray}
spec: {fqdn: www.example.org, type: A, values: [192.0.2.1]}
`

func TestGSLBConfig(t *testing.T) {
	rs, err := manifest.Decode(strings.NewReader(gslbManifest))
	if err != nil {
		t.Fatal(err)
	}
	st := stateOf(t, rs...)
	euDown := func(pool string, m *weftv1.Member) bool { return pool != "eu" }
	apiKey := func(a string) health.MemberKey {
		return health.MemberKey{Pool: "dnsrecord/api", Addr: netip.AddrPortFrom(netip.MustParseAddr(a), 8080)}
	}
	view := map[health.MemberKey]bool{apiKey("192.0.2.31"): false, apiKey("192.0.2.32"): true}
	tests := []struct {
		name string
		in   gslbInputs
		// want: record -> "target=healthy" list, in order
		want map[string]string
	}{
		{"no BGP anywhere: backend health decides", gslbInputs{healthy: allHealthy, view: view},
			map[string]string{"www": "web-eu=true web-us=true", "api": "192.0.2.31=false 192.0.2.32=true"}},
		{"eu's only member down", gslbInputs{healthy: euDown},
			map[string]string{"www": "web-eu=false web-us=true", "api": "192.0.2.31=true 192.0.2.32=true"}},
		{"speakers only in zone b: web-eu is announced by no node",
			gslbInputs{healthy: allHealthy, speakers: []speaker{{name: "n2", zone: "b"}}},
			map[string]string{"www": "web-eu=false web-us=true"}},
		{"the zone-a speaker drains", gslbInputs{healthy: allHealthy,
			speakers: []speaker{{name: "n1", zone: "a", draining: true}, {name: "n2", zone: "b"}}},
			map[string]string{"www": "web-eu=false web-us=true"}},
		{"speakers in both zones", gslbInputs{healthy: allHealthy, speakers: []speaker{{name: "n1", zone: "a"}, {name: "n2", zone: "b"}}},
			map[string]string{"www": "web-eu=true web-us=true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, notes := gslbConfig(st, tc.in)
			if len(cfg.Zones) != 1 || cfg.Zones[0].Name != "example.com." || cfg.Zones[0].Regions[0].Name != "eu" {
				t.Fatalf("zones: got %+v, want example.com. with region eu", cfg.Zones)
			}
			got := map[string]string{}
			for _, r := range cfg.Zones[0].Records {
				var ts []string
				for _, tg := range r.Targets {
					ts = append(ts, tg.Name+"="+map[bool]string{true: "true", false: "false"}[tg.Healthy])
				}
				got[r.Source] = strings.Join(ts, " ")
			}
			for rec, want := range tc.want {
				if got[rec] != want {
					t.Errorf("%s: got %q, want %q (notes %+v)", rec, got[rec], want, notes[rec].targets)
				}
			}
			for rec, want := range map[string]string{
				"stray":    "in no zone",
				"zz-alias": "must be the only data",
				"www2":     "dns record www already answers A www.example.com.",
			} {
				if n := notes[rec]; n == nil || !strings.Contains(n.skipped, want) {
					t.Errorf("%s: skipped because %q, want %q", rec, n.skipped, want)
				}
			}
			if n := notes["www-txt"]; n.skipped != "" {
				t.Errorf("www-txt: skipped (%s), want it served beside www's addresses", n.skipped)
			}
		})
	}
}
