package validate

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
)

// lb returns a valid load balancer resource, changed by edit.
func lb(edit func(s *weftv1.LoadBalancerSpec)) *weftv1.Resource {
	s := &weftv1.LoadBalancerSpec{
		Vip:         "198.51.100.10",
		Region:      "lab",
		PrimaryZone: "a",
		BackupZones: []string{"b"},
		Listeners: []*weftv1.Listener{
			{Port: 80, Protocol: "tcp", Pool: "web"},
			{Port: 443, Protocol: "https", Pool: "web", Certificates: []string{"web"}},
		},
	}
	if edit != nil {
		edit(s)
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: &weftv1.LoadBalancer{
		Metadata: &weftv1.Metadata{Name: "web"}, Spec: s,
	}}}
}

// pool returns a valid pool resource, changed by edit.
func pool(edit func(s *weftv1.PoolSpec)) *weftv1.Resource {
	s := &weftv1.PoolSpec{
		Members: []*weftv1.Member{
			{Address: "192.0.2.11", Port: 8080, Zone: "a"},
			{Address: "192.0.2.12", Port: 8080, Zone: "b"},
		},
		HealthCheck: &weftv1.HealthCheck{Type: "http"},
	}
	if edit != nil {
		edit(s)
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: &weftv1.Pool{
		Metadata: &weftv1.Metadata{Name: "web"}, Spec: s,
	}}}
}

// addressPool returns a valid address pool resource, changed by edit.
func addressPool(edit func(s *weftv1.AddressPoolSpec)) *weftv1.Resource {
	s := &weftv1.AddressPoolSpec{Cidrs: []string{"192.0.2.0/28", "2001:db8::/120"}, PrimaryZone: "a", BackupZones: []string{"b"}}
	if edit != nil {
		edit(s)
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_AddressPool{AddressPool: &weftv1.AddressPool{
		Metadata: &weftv1.Metadata{Name: "public"}, Spec: s,
	}}}
}

// static returns a static DNS record of type typ with values.
func static(typ string, values ...string) *weftv1.Resource {
	return dns(func(s *weftv1.DNSRecordSpec) {
		s.Policy, s.Targets, s.Type, s.Values = "", nil, typ, values
	})
}

// zone returns a zone apex record with no data but its zone, changed by edit.
func zone(edit func(z *weftv1.DNSZone)) *weftv1.Resource {
	return dns(func(s *weftv1.DNSRecordSpec) {
		s.Policy, s.Targets, s.Fqdn = "", nil, "example.com"
		s.Zone = &weftv1.DNSZone{}
		edit(s.Zone)
	})
}

// dns returns a valid DNS record resource, changed by edit.
func dns(edit func(s *weftv1.DNSRecordSpec)) *weftv1.Resource {
	s := &weftv1.DNSRecordSpec{
		Fqdn:    "www.example.com",
		Policy:  "failover",
		Targets: []*weftv1.DNSTarget{{LoadBalancer: "web", Region: "lab"}},
	}
	if edit != nil {
		edit(s)
	}
	return &weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: &weftv1.DNSRecord{
		Metadata: &weftv1.Metadata{Name: "www"}, Spec: s,
	}}}
}

// l7 is a valid http listener with rules, for rule cases.
func l7(rules ...*weftv1.Rule) *weftv1.Listener {
	return &weftv1.Listener{Port: 8080, Protocol: "http", Rules: rules}
}

// rewrite adds an http listener with one rule to a pool that rewrites the
// request and response headers.
func rewrite(req, resp *weftv1.HeaderRewrite) func(s *weftv1.LoadBalancerSpec) {
	return func(s *weftv1.LoadBalancerSpec) {
		s.Listeners = append(s.Listeners, l7(&weftv1.Rule{PathPrefix: "/", Pool: "web", RequestHeaders: req, ResponseHeaders: resp}))
	}
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

func TestValidBasesPass(t *testing.T) {
	for name, r := range map[string]*weftv1.Resource{"lb": lb(nil), "pool": pool(nil), "dns": dns(nil), "address pool": addressPool(nil),
		"lb from a pool": lb(func(s *weftv1.LoadBalancerSpec) { s.Vip, s.AddressPool = "", "public" })} {
		if err := Resource(r); err != nil {
			t.Errorf("%s: got %v, want nil", name, err)
		}
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name      string
		in        *weftv1.Resource
		wantField string
		wantIn    string // substring of Problem
	}{
		// Names and kinds.
		{"no kind", &weftv1.Resource{}, "kind", "must be set"},
		{"empty name", func() *weftv1.Resource { r := pool(nil); r.GetPool().Metadata.Name = ""; return r }(), "metadata.name", "must not be empty"},
		{"nil metadata", func() *weftv1.Resource { r := pool(nil); r.GetPool().Metadata = nil; return r }(), "metadata.name", "must not be empty"},
		{"upper-case name", func() *weftv1.Resource { r := lb(nil); r.GetLoadBalancer().Metadata.Name = "Web"; return r }(), "metadata.name", `character 'W'`},
		{"name ends with dash", func() *weftv1.Resource { r := dns(nil); r.GetDnsRecord().Metadata.Name = "www-"; return r }(), "metadata.name", "must not start or end with '-'"},
		{"name too long", func() *weftv1.Resource { r := pool(nil); r.GetPool().Metadata.Name = strings.Repeat("a", 64); return r }(), "metadata.name", "64 characters long"},

		// Address pool.
		{"pool without cidrs", addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs = nil }), "spec.cidrs", "at least one CIDR"},
		{"cidr not a prefix", addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs[1] = "192.0.2.1" }), "spec.cidrs[1]", `"192.0.2.1" is not a CIDR`},
		{"cidr with host bits", addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs[0] = "192.0.2.5/28" }), "spec.cidrs[0]", "write 192.0.2.0/28"},
		{"cidr of every address", addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs[0] = "0.0.0.0/0" }), "spec.cidrs[0]", "every address"},
		{"cidr multicast", addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs[0] = "224.0.0.0/28" }), "spec.cidrs[0]", "multicast"},
		{"cidrs overlap", addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs = append(s.Cidrs, "192.0.2.8/29") }), "spec.cidrs[2]", "192.0.2.8/29 overlaps spec.cidrs[0] (192.0.2.0/28)"},
		{"pool backup zone is primary", addressPool(func(s *weftv1.AddressPoolSpec) { s.BackupZones = []string{"a"} }), "spec.backupZones[0]", "is the primary zone"},

		// Load balancer.
		{"no vip", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "" }), "spec.vip", "must be set"},
		{"address pool not a label", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip, s.AddressPool = "", "Public" }), "spec.addressPool", `character 'P'`},
		{"vip not an address", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "web.example.com" }), "spec.vip", "is not an IP address"},
		{"vip unspecified", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "::" }), "spec.vip", "unspecified"},
		{"vip multicast", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "224.0.0.1" }), "spec.vip", "multicast"},
		{"vip broadcast", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "255.255.255.255" }), "spec.vip", "broadcast"},
		{"vip with zone", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "fe80::1%eth0" }), "spec.vip", "has a zone"},
		{"region not a label", lb(func(s *weftv1.LoadBalancerSpec) { s.Region = "eu_west" }), "spec.region", `character '_'`},
		{"primary zone not a label", lb(func(s *weftv1.LoadBalancerSpec) { s.PrimaryZone = "-a" }), "spec.primaryZone", "must not start"},
		{"backup zones without primary", lb(func(s *weftv1.LoadBalancerSpec) { s.PrimaryZone = "" }), "spec.primaryZone", "must be set when backupZones"},
		{"backup zone is primary", lb(func(s *weftv1.LoadBalancerSpec) { s.BackupZones = []string{"b", "a"} }), "spec.backupZones[1]", "is the primary zone"},
		{"backup zone twice", lb(func(s *weftv1.LoadBalancerSpec) { s.BackupZones = []string{"b", "b"} }), "spec.backupZones[1]", `duplicate zone "b"`},
		{"backup zone empty", lb(func(s *weftv1.LoadBalancerSpec) { s.BackupZones = []string{""} }), "spec.backupZones[0]", "must not be empty"},

		// Listeners.
		{"port 0", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Port = 0 }), "spec.listeners[0].port", "0 is not valid (1-65535)"},
		{"port too big", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Port = 65536 }), "spec.listeners[1].port", "65536 is not valid"},
		{"no protocol", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Protocol = "" }), "spec.listeners[0].protocol", "must be set (tcp, udp, http or https)"},
		{"bad protocol", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Protocol = "TCP" }), "spec.listeners[0].protocol", `"TCP" is not valid`},
		{"bad listener name", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Name = "web 80" }), "spec.listeners[0].name", `character ' '`},
		{"duplicate listener name", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Name = "front"; s.Listeners[1].Name = "front" }), "spec.listeners[1].name", `duplicate listener name "front"`},
		{"duplicate defaulted name", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, &weftv1.Listener{Name: "udp-53", Port: 54, Protocol: "udp", Pool: "dns"}, &weftv1.Listener{Port: 53, Protocol: "udp", Pool: "dns"})
		}), "spec.listeners[3].name", `duplicate listener name "udp-53"`},
		{"port used twice over tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Port = 80 }), "spec.listeners[1].port", "80/tcp is already used by spec.listeners[0]"},
		{"http3 port used over udp", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[1].Http3 = true
			s.Listeners = append(s.Listeners, &weftv1.Listener{Port: 443, Protocol: "udp", Pool: "dns"})
		}), "spec.listeners[2].port", "443/udp is already used by spec.listeners[1]"},
		{"http3 on http", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, &weftv1.Listener{Port: 8080, Protocol: "http", Pool: "web", Http3: true})
		}), "spec.listeners[2].http3", "only https listeners serve HTTP/3: QUIC always encrypts"},
		{"http3 on udp", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, &weftv1.Listener{Port: 443, Protocol: "udp", Pool: "dns", Http3: true})
		}), "spec.listeners[2].http3", "only https listeners serve HTTP/3"},
		{"bad mode", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Mode = "nat" }), "spec.listeners[0].mode", `"nat" is not valid (fullnat, dsr or tunnel)`},
		{"bad scheduler", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Scheduler = "rr" }), "spec.listeners[0].scheduler", "(maglev or source-hash)"},
		{"mode on https", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Mode = "dsr" }), "spec.listeners[1].mode", "only tcp and udp listeners have a mode"},
		{"scheduler on https", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Scheduler = "maglev" }), "spec.listeners[1].scheduler", "only tcp and udp"},
		{"tcp without pool", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Pool = "" }), "spec.listeners[0].pool", "must be set for tcp listeners"},
		{"pool not a label", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Pool = "Web" }), "spec.listeners[0].pool", `character 'W'`},
		{"http without pool or rules", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Pool = "" }), "spec.listeners[1].pool", "must be set when the listener has no rules"},
		{"rules on tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Rules = []*weftv1.Rule{{Pool: "web"}} }), "spec.listeners[0].rules", "only http and https listeners have rules"},
		{"certificates on tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Certificates = []string{"web"} }), "spec.listeners[0].certificates", "only https listeners"},
		{"certificates on http", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, &weftv1.Listener{Port: 8080, Protocol: "http", Pool: "web", Certificates: []string{"web"}})
		}), "spec.listeners[2].certificates", "only https listeners"},
		{"https without certificates", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Certificates = nil }), "spec.listeners[1].certificates", "at least one certificate"},
		{"duplicate certificate", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].Certificates = []string{"a", "a"} }), "spec.listeners[1].certificates[1]", `duplicate certificate "a"`},
		{"sticky on tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].StickySession = &weftv1.StickySession{Enabled: true} }), "spec.listeners[0].stickySession", "only http and https"},
		{"bad cookie name", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[1].StickySession = &weftv1.StickySession{Enabled: true, CookieName: "a b"}
		}), "spec.listeners[1].stickySession.cookieName", "not a valid cookie name"},
		{"zero timeout", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].Timeouts = &weftv1.Timeouts{Idle: dur(0)} }), "spec.listeners[0].timeouts.idle", "must be positive"},
		{"negative timeout", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[0].Timeouts = &weftv1.Timeouts{Connect: dur(-time.Second)}
		}), "spec.listeners[0].timeouts.connect", "must be positive"},
		{"timeout over an hour", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[1].Timeouts = &weftv1.Timeouts{Response: dur(2 * time.Hour)}
		}), "spec.listeners[1].timeouts.response", "too long (at most 1h0m0s)"},
		{"invalid duration", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[0].Timeouts = &weftv1.Timeouts{Idle: &durationpb.Duration{Seconds: 1, Nanos: -1}}
		}), "spec.listeners[0].timeouts.idle", "not a valid duration"},

		// Rules.
		{"rule without pool or redirect", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Host: "a.example"}))
		}), "spec.listeners[2].rules[0]", "it sets neither"},
		{"rule with pool and redirect", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Host: "a.example", Pool: "web", Redirect: &weftv1.Redirect{}}))
		}), "spec.listeners[2].rules[0]", "it sets both"},
		{"catch-all rule not last", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Pool: "web"}, &weftv1.Rule{Host: "a.example", Pool: "web"}))
		}), "spec.listeners[2].rules[0]", "has no match condition"},
		{"bad host", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Host: "a..example", Pool: "web"}))
		}), "spec.listeners[2].rules[0].host", "not a valid host name"},
		{"wildcard in the middle", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Host: "a.*.example", Pool: "web"}))
		}), "spec.listeners[2].rules[0].host", `character '*'`},
		{"bare wildcard", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Host: "*.", Pool: "web"}))
		}), "spec.listeners[2].rules[0].host", "must not be empty"},
		{"path prefix without slash", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{PathPrefix: "api", Pool: "web"}))
		}), "spec.listeners[2].rules[0].pathPrefix", `must start with "/"`},
		{"path exact without slash", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{PathExact: "x", Pool: "web"}))
		}), "spec.listeners[2].rules[0].pathExact", `must start with "/"`},
		{"prefix and exact", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{PathPrefix: "/a", PathExact: "/a", Pool: "web"}))
		}), "spec.listeners[2].rules[0].pathExact", "cannot be set together with pathPrefix"},
		{"bad header name", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Header: &weftv1.HeaderMatch{Name: "X Env", Value: "x"}, Pool: "web"}))
		}), "spec.listeners[2].rules[0].header.name", "not a valid header name"},
		{"empty header name", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Header: &weftv1.HeaderMatch{}, Pool: "web"}))
		}), "spec.listeners[2].rules[0].header.name", "must be set"},
		{"header value with newline", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Header: &weftv1.HeaderMatch{Name: "x", Value: "a\nb"}, Pool: "web"}))
		}), "spec.listeners[2].rules[0].header.value", "control characters"},
		{"bad redirect code", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Redirect: &weftv1.Redirect{Code: 300}}))
		}), "spec.listeners[2].rules[0].redirect.code", "300 is not valid (301, 302, 303, 307 or 308)"},
		{"bad redirect scheme", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Redirect: &weftv1.Redirect{Scheme: "ftp"}}))
		}), "spec.listeners[2].rules[0].redirect.scheme", `"ftp" is not valid`},
		{"bad redirect port", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Redirect: &weftv1.Redirect{Port: 70000}}))
		}), "spec.listeners[2].rules[0].redirect.port", "70000 is not valid (0-65535)"},
		{"bad redirect host", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Redirect: &weftv1.Redirect{Host: "a b"}}))
		}), "spec.listeners[2].rules[0].redirect.host", "want a host name or an IP address"},
		{"rule pool not a label", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Pool: "a.b"})) }), "spec.listeners[2].rules[0].pool", `character '.'`},

		// Header rewrites.
		{"rewrite bad name", lb(rewrite(&weftv1.HeaderRewrite{Set: map[string]string{"X Env": "a"}}, nil)), `spec.listeners[2].rules[0].requestHeaders.set["X Env"]`, `"X Env" is not a valid header name`},
		{"rewrite pseudo-header", lb(rewrite(nil, &weftv1.HeaderRewrite{Add: map[string]string{":status": "200"}})), `spec.listeners[2].rules[0].responseHeaders.add[":status"]`, "not a valid header name"},
		{"rewrite empty name", lb(rewrite(&weftv1.HeaderRewrite{Remove: []string{"X-A", ""}}, nil)), "spec.listeners[2].rules[0].requestHeaders.remove[1]", `"" is not a valid header name`},
		{"rewrite host", lb(rewrite(&weftv1.HeaderRewrite{Set: map[string]string{"host": "b.example"}}, nil)), `spec.listeners[2].rules[0].requestHeaders.set["host"]`, "host cannot be rewritten"},
		{"remove connection", lb(rewrite(&weftv1.HeaderRewrite{Remove: []string{"Connection"}}, nil)), "spec.listeners[2].rules[0].requestHeaders.remove[0]", "Connection cannot be rewritten"},
		{"set transfer-encoding", lb(rewrite(nil, &weftv1.HeaderRewrite{Set: map[string]string{"Transfer-Encoding": "chunked"}})), `spec.listeners[2].rules[0].responseHeaders.set["Transfer-Encoding"]`, "cannot be rewritten"},
		{"add upgrade", lb(rewrite(&weftv1.HeaderRewrite{Add: map[string]string{"UPGRADE": "websocket"}}, nil)), `spec.listeners[2].rules[0].requestHeaders.add["UPGRADE"]`, "cannot be rewritten"},
		{"set content-length", lb(rewrite(nil, &weftv1.HeaderRewrite{Set: map[string]string{"Content-Length": "0"}})), `spec.listeners[2].rules[0].responseHeaders.set["Content-Length"]`, "cannot be rewritten"},
		{"remove twice", lb(rewrite(&weftv1.HeaderRewrite{Remove: []string{"X-A", "x-a"}}, nil)), "spec.listeners[2].rules[0].requestHeaders.remove[1]", `duplicate header "x-a"`},
		{"set differing in case", lb(rewrite(nil, &weftv1.HeaderRewrite{Set: map[string]string{"X-A": "1", "x-a": "2"}})), `spec.listeners[2].rules[0].responseHeaders.set["x-a"]`, `"x-a" differs from "X-A" only in case`},
		{"value with CR LF", lb(rewrite(&weftv1.HeaderRewrite{Set: map[string]string{"X-A": "a\r\nX-Injected: 1"}}, nil)), `spec.listeners[2].rules[0].requestHeaders.set["X-A"]`, "control characters"},
		{"value with NUL", lb(rewrite(nil, &weftv1.HeaderRewrite{Add: map[string]string{"X-A": "a\x00"}})), `spec.listeners[2].rules[0].responseHeaders.add["X-A"]`, "control characters"},
		{"rewrite on a redirect", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Redirect: &weftv1.Redirect{Scheme: "https"}, ResponseHeaders: &weftv1.HeaderRewrite{Set: map[string]string{"X-A": "1"}}}))
		}), "spec.listeners[2].rules[0].responseHeaders", "only rules with a pool rewrite headers; this rule redirects"},
		{"request rewrite on a redirect", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, l7(&weftv1.Rule{Redirect: &weftv1.Redirect{}, RequestHeaders: &weftv1.HeaderRewrite{}}))
		}), "spec.listeners[2].rules[0].requestHeaders", "this rule redirects"},

		// Fragments.
		{"fragments on tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].ForwardFragments = true }), "spec.listeners[0].forwardFragments", "only udp listeners forward fragments"},
		{"fragments on https", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].ForwardFragments = true }), "spec.listeners[1].forwardFragments", "only udp listeners forward fragments"},
		{"fragments under fullnat", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners, &weftv1.Listener{Port: 53, Protocol: "udp", Pool: "dns", ForwardFragments: true})
		}), "spec.listeners[2].forwardFragments", "needs mode dsr: a fragment but the first has no ports, so fullnat could not translate it"},
		{"fragments twice", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners = append(s.Listeners,
				&weftv1.Listener{Port: 53, Protocol: "udp", Mode: "dsr", Pool: "dns", ForwardFragments: true},
				&weftv1.Listener{Port: 54, Protocol: "udp", Mode: "dsr", Pool: "dns", ForwardFragments: true})
		}), "spec.listeners[3].forwardFragments", "spec.listeners[2] forwards the VIP's fragments already"},

		// Body limit.
		{"new-flow rate on http", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].NewFlowRate = 1000 }), "spec.listeners[1].newFlowRate", "only tcp and udp listeners have a new-flow rate"},
		{"body limit on tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].MaxBodyBytes = 1024 }), "spec.listeners[0].maxBodyBytes", "only http and https listeners have a body limit"},
		{"body limit over int64", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[1].MaxBodyBytes = 1 << 63 }), "spec.listeners[1].maxBodyBytes", "9223372036854775808 is too large (at most 9223372036854775807)"},

		// Access logs.
		{"access log on tcp", lb(func(s *weftv1.LoadBalancerSpec) { s.Listeners[0].AccessLog = &weftv1.AccessLog{Enabled: true} }), "spec.listeners[0].accessLog", "only http and https listeners have an access log"},
		{"sample rate over 1", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[1].AccessLog = &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(1.5)}
		}), "spec.listeners[1].accessLog.sampleRate", "1.5 is not between 0 and 1"},
		{"negative sample rate", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[1].AccessLog = &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(-0.1)}
		}), "spec.listeners[1].accessLog.sampleRate", "-0.1 is not between 0 and 1"},
		{"NaN sample rate", lb(func(s *weftv1.LoadBalancerSpec) {
			s.Listeners[1].AccessLog = &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(math.NaN())}
		}), "spec.listeners[1].accessLog.sampleRate", "NaN is not between 0 and 1"},

		// Pools.
		{"too many members", pool(func(s *weftv1.PoolSpec) {
			s.Members = make([]*weftv1.Member, 1025)
		}), "spec.members", "has 1025 members (at most 1024)"},
		{"member without address", pool(func(s *weftv1.PoolSpec) { s.Members[1].Address = "" }), "spec.members[1].address", "must be set"},
		{"member address not an IP", pool(func(s *weftv1.PoolSpec) { s.Members[0].Address = "10.0.0.256" }), "spec.members[0].address", "not an IP address"},
		{"member port 0", pool(func(s *weftv1.PoolSpec) { s.Members[1].Port = 0 }), "spec.members[1].port", "0 is not valid (1-65535)"},
		{"negative weight", pool(func(s *weftv1.PoolSpec) { s.Members[0].Weight = proto.Int32(-1) }), "spec.members[0].weight", "must be 0..100, got -1"},
		{"weight over 100", pool(func(s *weftv1.PoolSpec) { s.Members[0].Weight = proto.Int32(101) }), "spec.members[0].weight", "must be 0..100, got 101"},
		{"bad member zone", pool(func(s *weftv1.PoolSpec) { s.Members[0].Zone = "A" }), "spec.members[0].zone", `character 'A'`},
		{"duplicate member", pool(func(s *weftv1.PoolSpec) { s.Members[1].Address = "::ffff:192.0.2.11" }), "spec.members[1]", "192.0.2.11:8080 is already spec.members[0]"},
		{"duplicate v6 member", pool(func(s *weftv1.PoolSpec) {
			s.Members = []*weftv1.Member{{Address: "2001:db8::1", Port: 80}, {Address: "2001:DB8:0::1", Port: 80}}
		}), "spec.members[1]", "[2001:db8::1]:80 is already"},
		{"bad check type", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Type = "icmp" }), "spec.healthCheck.type", `"icmp" is not valid (tcp, http or grpc)`},
		{"bad check port", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Port = 65536 }), "spec.healthCheck.port", "65536 is not valid (0-65535)"},
		{"interval too short", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Interval = dur(500 * time.Millisecond) }), "spec.healthCheck.interval", "500ms is not valid (1s..5m0s)"},
		{"interval too long", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Interval = dur(time.Hour) }), "spec.healthCheck.interval", "1h0m0s is not valid"},
		{"zero timeout", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Timeout = dur(0) }), "spec.healthCheck.timeout", "must be positive"},
		{"timeout not under the default interval", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Timeout = dur(5 * time.Second) }), "spec.healthCheck.timeout", "5s must be shorter than the interval (5s by default; set interval too)"},
		{"timeout not under interval", pool(func(s *weftv1.PoolSpec) {
			s.HealthCheck.Interval, s.HealthCheck.Timeout = dur(2*time.Second), dur(3*time.Second)
		}), "spec.healthCheck.timeout", "3s must be shorter than the interval (2s)"},
		{"bad interval reported before a default timeout", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Interval = dur(0) }), "spec.healthCheck.interval", "0s is not valid (1s..5m0s)"},
		{"rise too big", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Rise = 11 }), "spec.healthCheck.rise", "11 is not valid (1..10)"},
		{"fall too big", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Fall = 100 }), "spec.healthCheck.fall", "100 is not valid (1..10)"},
		{"path without slash", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.Path = "healthz" }), "spec.healthCheck.path", `must start with "/"`},
		{"path on tcp check", pool(func(s *weftv1.PoolSpec) { s.HealthCheck = &weftv1.HealthCheck{Path: "/"} }), "spec.healthCheck.path", "only http checks have a path"},
		{"codes on grpc check", pool(func(s *weftv1.PoolSpec) { s.HealthCheck = &weftv1.HealthCheck{Type: "grpc", ExpectedCodes: "200"} }), "spec.healthCheck.expectedCodes", "only http checks"},
		{"code out of range", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.ExpectedCodes = "200-600" }), "spec.healthCheck.expectedCodes", "600 is not a valid status code (100-599)"},
		{"code not a number", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.ExpectedCodes = "2xx" }), "spec.healthCheck.expectedCodes", `"2xx" is not a status code`},
		{"range backwards", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.ExpectedCodes = "399-200" }), "spec.healthCheck.expectedCodes", "ends before it starts"},
		{"empty code item", pool(func(s *weftv1.PoolSpec) { s.HealthCheck.ExpectedCodes = "200,,204" }), "spec.healthCheck.expectedCodes", "empty item"},
		{"bad algorithm", pool(func(s *weftv1.PoolSpec) { s.Algorithm = "random" }), "spec.algorithm", `"random" is not valid (round-robin, least-request, hash-client-ip, hash-header or hash-cookie)`},
		{"hash-header without key", pool(func(s *weftv1.PoolSpec) { s.Algorithm = "hash-header" }), "spec.hashKey", "must be set for hash-header pools (the header name to hash)"},
		{"hash-cookie without key", pool(func(s *weftv1.PoolSpec) { s.Algorithm = "hash-cookie" }), "spec.hashKey", "must be set for hash-cookie pools (the cookie name to hash)"},
		{"hash-header bad key", pool(func(s *weftv1.PoolSpec) { s.Algorithm = "hash-header"; s.HashKey = "X User" }), "spec.hashKey", `"X User" is not a valid header name`},
		{"hash-cookie bad key", pool(func(s *weftv1.PoolSpec) { s.Algorithm = "hash-cookie"; s.HashKey = "a;b" }), "spec.hashKey", `"a;b" is not a valid cookie name`},
		{"hash key on round robin", pool(func(s *weftv1.PoolSpec) { s.HashKey = "X-User" }), "spec.hashKey", "only hash-header and hash-cookie pools have a hash key (algorithm is round-robin)"},
		{"hash key on hash-client-ip", pool(func(s *weftv1.PoolSpec) { s.Algorithm = "hash-client-ip"; s.HashKey = "X-User" }), "spec.hashKey", "(algorithm is hash-client-ip)"},
		{"bad upstream protocol", pool(func(s *weftv1.PoolSpec) { s.UpstreamProtocol = "http2" }), "spec.upstreamProtocol", `"http2" is not valid (http1, h2c or h2)`},
		{"tls insecure without tls", pool(func(s *weftv1.PoolSpec) { s.UpstreamProtocol = "h2c"; s.UpstreamTlsInsecure = true }), "spec.upstreamTlsInsecure", "only h2 pools speak TLS to their members (upstreamProtocol is h2c)"},
		{"tls insecure on default protocol", pool(func(s *weftv1.PoolSpec) { s.UpstreamTlsInsecure = true }), "spec.upstreamTlsInsecure", "(upstreamProtocol is http1)"},

		// DNS records.
		{"no fqdn", dns(func(s *weftv1.DNSRecordSpec) { s.Fqdn = "" }), "spec.fqdn", "must not be empty"},
		{"root fqdn", dns(func(s *weftv1.DNSRecordSpec) { s.Fqdn = "." }), "spec.fqdn", "must not be empty"},
		{"bad fqdn", dns(func(s *weftv1.DNSRecordSpec) { s.Fqdn = "www..example.com." }), "spec.fqdn", "not a valid host name"},
		{"fqdn too long", dns(func(s *weftv1.DNSRecordSpec) { s.Fqdn = strings.Repeat("a.", 127) + "com" }), "spec.fqdn", "at most 253"},
		{"no policy", dns(func(s *weftv1.DNSRecordSpec) { s.Policy = "" }), "spec.policy", "must be set (failover, weighted, geo, all-healthy or nearest), or spec.type"},
		{"bad policy", dns(func(s *weftv1.DNSRecordSpec) { s.Policy = "random" }), "spec.policy", `"random" is not valid`},
		{"no targets", dns(func(s *weftv1.DNSRecordSpec) { s.Targets = nil }), "spec.targets", "at least one target"},
		{"target with neither", dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].LoadBalancer = "" }), "spec.targets[0]", "it sets neither"},
		{"target with both", dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].Address = "192.0.2.1" }), "spec.targets[0]", "it sets both"},
		{"target lb not a label", dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].LoadBalancer = "web_1" }), "spec.targets[0].loadBalancer", `character '_'`},
		{"target address not an IP", dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0] = &weftv1.DNSTarget{Address: "web"} }), "spec.targets[0].address", "not an IP address"},
		{"target weight too big", dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].Weight = 1001 }), "spec.targets[0].weight", "must be 0..1000, got 1001"},
		{"target region not a label", dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].Region = "Lab" }), "spec.targets[0].region", `character 'L'`},
		{"ttl too long", dns(func(s *weftv1.DNSRecordSpec) { s.Ttl = 86401 }), "spec.ttl", "86401 is not valid (1..86400)"},
		{"values on a steered record", dns(func(s *weftv1.DNSRecordSpec) { s.Values = []string{"192.0.2.1"} }), "spec.values", "values are for static records"},
		{"health check without address targets", dns(func(s *weftv1.DNSRecordSpec) { s.HealthCheck = &weftv1.HealthCheck{Port: 80} }), "spec.healthCheck", "has none"},
		{"health check without a port", dns(func(s *weftv1.DNSRecordSpec) {
			s.Targets[0] = &weftv1.DNSTarget{Address: "192.0.2.1"}
			s.HealthCheck = &weftv1.HealthCheck{}
		}), "spec.healthCheck.port", "must be set"},
		{"max answers too big", dns(func(s *weftv1.DNSRecordSpec) { s.MaxAnswers = 65 }), "spec.maxAnswers", "65 is not valid (1..64)"},
		{"static with a policy", dns(func(s *weftv1.DNSRecordSpec) { s.Type = "A"; s.Values = []string{"192.0.2.1"} }), "spec.type", "not a policy and targets"},
		{"unknown static type", static("MX", "mail.example.com"), "spec.type", `"MX" is not valid (A, AAAA, CNAME or TXT)`},
		{"A with an IPv6 value", static("a", "2001:db8::1"), "spec.values[0]", "is not an IPv4 address"},
		{"AAAA with an IPv4 value", static("AAAA", "192.0.2.1"), "spec.values[0]", "is not an IPv6 address"},
		{"CNAME with two values", static("CNAME", "a.example.com", "b.example.com"), "spec.values", "exactly one value, got 2"},
		{"CNAME to a bad name", static("CNAME", "a..example.com"), "spec.values[0]", "not a valid host name"},
		{"static without values", static("TXT"), "spec.values", "at least one value"},
		{"TXT too long", static("TXT", strings.Repeat("x", 4001)), "spec.values[0]", "4001 bytes long (at most 4000)"},
		{"CNAME apex", func() *weftv1.Resource {
			r := static("CNAME", "b.example.com")
			r.GetDnsRecord().Spec.Zone = &weftv1.DNSZone{}
			return r
		}(), "spec.type", "cannot be a CNAME"},
		{"zone with a bad nameserver", zone(func(z *weftv1.DNSZone) { z.Nameservers = []string{"ns_1.example.com"} }), "spec.zone.nameservers[0]", "character '_'"},
		{"zone with a bad secondary", zone(func(z *weftv1.DNSZone) { z.Secondaries = []string{"ns2"} }), "spec.zone.secondaries[0]", "not an IP address or IP:port"},
		{"zone with a bad region prefix", zone(func(z *weftv1.DNSZone) {
			z.Regions = []*weftv1.DNSRegion{{Name: "eu", Cidrs: []string{"203.0.113.0/33"}}}
		}), "spec.zone.regions[0].cidrs[0]", "not a prefix"},
		{"zone with a repeated region", zone(func(z *weftv1.DNSZone) {
			z.Regions = []*weftv1.DNSRegion{{Name: "eu", Cidrs: []string{"203.0.113.0/24"}}, {Name: "eu", Cidrs: []string{"198.51.100.0/24"}}}
		}), "spec.zone.regions[1].name", "already spec.zone.regions[0]"},
		{"zone negative TTL too long", zone(func(z *weftv1.DNSZone) { z.NegativeTtl = 90000 }), "spec.zone.negativeTtl", "90000 is not valid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Resource(tc.in)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Resource() = %v, want a *FieldError for %s", err, tc.wantField)
			}
			if fe.Field != tc.wantField || !strings.Contains(fe.Problem, tc.wantIn) {
				t.Errorf("got field %q problem %q, want field %q problem containing %q", fe.Field, fe.Problem, tc.wantField, tc.wantIn)
			}
			if err := resolveJSONPath(tc.in, fe.Field); err != nil {
				t.Errorf("field %q is not a path of JSON names: %v", fe.Field, err)
			}
		})
	}
}

// resolveJSONPath checks that path (as in FieldError.Field) names a field of
// r's kind by the names its JSON uses, with [i] after lists and ["key"]
// after maps.
func resolveJSONPath(r *weftv1.Resource, path string) error {
	oneof := r.ProtoReflect().Descriptor().Oneofs().ByName("kind")
	fd := r.ProtoReflect().WhichOneof(oneof)
	if fd == nil {
		if path != string(oneof.Name()) {
			return fmt.Errorf("a resource without a kind has only the field %q", oneof.Name())
		}
		return nil
	}
	md := fd.Message()
	var cur protoreflect.FieldDescriptor
	indexed := false
	for rest := path; rest != ""; {
		switch {
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if key, err := strconv.QuotedPrefix(rest[1:]); err == nil {
				end = 1 + len(key)
				if cur == nil || !cur.IsMap() || len(rest) <= end || rest[end] != ']' {
					return fmt.Errorf("%q: a key of something that is not a map", rest)
				}
			} else if cur == nil || !cur.IsList() || end < 0 {
				return fmt.Errorf("%q: an index of something that is not a list", rest)
			}
			rest = rest[end+1:]
			indexed = true
			if cur.IsMap() {
				md = cur.MapValue().Message()
			}
			continue
		case rest[0] == '.':
			rest = rest[1:]
		}
		end := strings.IndexAny(rest, ".[")
		if end < 0 {
			end = len(rest)
		}
		name := rest[:end]
		rest = rest[end:]
		if cur != nil && (cur.IsList() || cur.IsMap()) && !indexed {
			return fmt.Errorf("%q: a field of %s without an index or key", name, cur.Name())
		}
		indexed = false
		if md == nil {
			return fmt.Errorf("%q: %s has no fields", name, cur.FullName())
		}
		if cur = md.Fields().ByJSONName(name); cur == nil {
			return fmt.Errorf("%s has no field with the JSON name %q", md.FullName(), name)
		}
		md = cur.Message()
	}
	return nil
}

func TestFieldErrorString(t *testing.T) {
	tests := []struct {
		err  *FieldError
		want string
	}{
		{&FieldError{Kind: "pool", Name: "web", Field: "spec.members[1].port", Problem: "0 is not valid (1-65535)"}, `pool "web": spec.members[1].port: 0 is not valid (1-65535)`},
		{&FieldError{Kind: "pool", Field: "metadata.name", Problem: "must not be empty"}, `pool: metadata.name: must not be empty`},
		{&FieldError{Kind: "dns record", Name: "www", Problem: "broken"}, `dns record "www": broken`},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		name string
		in   *weftv1.Resource
		want string
	}{
		{"member port", pool(func(s *weftv1.PoolSpec) { s.Members[1].Port = 0 }), `pool "web": spec.members[1].port: 0 is not valid (1-65535)`},
		{"missing name", func() *weftv1.Resource { r := pool(nil); r.GetPool().Metadata.Name = ""; return r }(), `pool: metadata.name: must not be empty`},
		{"lb kind", lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "" }), `load balancer "web": spec.vip: must be set`},
		{"dns kind", dns(func(s *weftv1.DNSRecordSpec) { s.Targets = nil }), `dns record "www": spec.targets: must have at least one target`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Resource(tc.in)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Resource() = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"a", ""},
		{"web-1", ""},
		{"0", ""},
		{strings.Repeat("a", 63), ""},
		{"", `pool: metadata.name: must not be empty`},
		{"-a", `pool: metadata.name: "-a" must not start or end with '-'`},
		{"a.b", `pool: metadata.name: "a.b" has character '.'; use a-z, 0-9 and '-'`},
		{"é", `pool: metadata.name: "é" has character 'é'; use a-z, 0-9 and '-'`},
	}
	for _, tc := range tests {
		err := Name("pool", tc.name)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.wantErr {
			t.Errorf("Name(%q) = %q, want %q", tc.name, got, tc.wantErr)
		}
	}
}

// TestNormalise checks that valid inputs are filled with their defaults and
// canonical forms, and that normalising twice changes nothing.
func TestNormalise(t *testing.T) {
	w := func(n int32) *int32 { return &n }
	tests := []struct {
		name string
		in   *weftv1.Resource
		want *weftv1.Resource
	}{
		{
			name: "load balancer defaults",
			in: lb(func(s *weftv1.LoadBalancerSpec) {
				s.Vip = "::ffff:198.51.100.10"
				s.Listeners = []*weftv1.Listener{
					{Port: 80, Protocol: "tcp", Pool: "web"},
					{Name: "dns", Port: 53, Protocol: "udp", Mode: "dsr", Scheduler: "source-hash", Pool: "dns"},
					{Port: 8080, Protocol: "http", StickySession: &weftv1.StickySession{Enabled: true}, Rules: []*weftv1.Rule{
						{Host: "*.Example.COM", Pool: "web"},
						{Redirect: &weftv1.Redirect{Scheme: "https"}},
					}},
					{Port: 8081, Protocol: "http", Pool: "web", AccessLog: &weftv1.AccessLog{Enabled: true}},
					{Port: 8082, Protocol: "http", Pool: "web", AccessLog: &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(0)}},
				}
			}),
			want: lb(func(s *weftv1.LoadBalancerSpec) {
				s.Listeners = []*weftv1.Listener{
					{Name: "tcp-80", Port: 80, Protocol: "tcp", Mode: "fullnat", Scheduler: "maglev", Pool: "web"},
					{Name: "dns", Port: 53, Protocol: "udp", Mode: "dsr", Scheduler: "source-hash", Pool: "dns"},
					{Name: "http-8080", Port: 8080, Protocol: "http", StickySession: &weftv1.StickySession{Enabled: true, CookieName: "weft_sticky"}, Rules: []*weftv1.Rule{
						{Host: "*.example.com", Pool: "web"},
						{Redirect: &weftv1.Redirect{Scheme: "https", Code: 302}},
					}},
					{Name: "http-8081", Port: 8081, Protocol: "http", Pool: "web", AccessLog: &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(1)}},
					{Name: "http-8082", Port: 8082, Protocol: "http", Pool: "web", AccessLog: &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(0)}},
				}
			}),
		},
		{
			name: "address pool cidrs in canonical form",
			in:   addressPool(func(s *weftv1.AddressPoolSpec) { s.Cidrs[1] = "2001:DB8:0::/120" }),
			want: addressPool(nil),
		},
		{
			name: "zero listeners and loopback vip",
			in:   lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "127.0.0.2"; s.Listeners = nil }),
			want: lb(func(s *weftv1.LoadBalancerSpec) { s.Vip = "127.0.0.2"; s.Listeners = nil }),
		},
		{
			name: "same port over tcp and udp",
			in: lb(func(s *weftv1.LoadBalancerSpec) {
				s.Listeners = []*weftv1.Listener{{Port: 53, Protocol: "tcp", Pool: "dns"}, {Port: 53, Protocol: "udp", Pool: "dns"}}
			}),
			want: lb(func(s *weftv1.LoadBalancerSpec) {
				s.Listeners = []*weftv1.Listener{
					{Name: "tcp-53", Port: 53, Protocol: "tcp", Mode: "fullnat", Scheduler: "maglev", Pool: "dns"},
					{Name: "udp-53", Port: 53, Protocol: "udp", Mode: "fullnat", Scheduler: "maglev", Pool: "dns"},
				}
			}),
		},
		{
			name: "pool http check defaults",
			in: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Address = "2001:DB8::0:1"
				s.Members[1].Weight = w(0)
				s.HealthCheck.ExpectedCodes = "200, 204-206"
			}),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Address = "2001:db8::1"
				s.Members[0].Weight = w(100)
				s.Members[1].Weight = w(0)
				s.HealthCheck = &weftv1.HealthCheck{
					Type: "http", Path: "/", ExpectedCodes: "200,204-206",
					Interval: dur(5 * time.Second), Timeout: dur(2 * time.Second), Rise: 2, Fall: 3,
				}
				s.Algorithm = "round-robin"
				s.UpstreamProtocol = "http1"
			}),
		},
		{
			name: "pool without health check",
			in:   pool(func(s *weftv1.PoolSpec) { s.Members = nil; s.HealthCheck = nil; s.Algorithm = "least-request" }),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members = nil
				s.HealthCheck = &weftv1.HealthCheck{Type: "tcp", Interval: dur(5 * time.Second), Timeout: dur(2 * time.Second), Rise: 2, Fall: 3}
				s.Algorithm = "least-request"
				s.UpstreamProtocol = "http1"
			}),
		},
		{
			name: "a short interval gets half of it as timeout",
			in:   pool(func(s *weftv1.PoolSpec) { s.HealthCheck = &weftv1.HealthCheck{Interval: dur(time.Second)} }),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Weight, s.Members[1].Weight = w(100), w(100)
				s.HealthCheck = &weftv1.HealthCheck{Type: "tcp", Interval: dur(time.Second), Timeout: dur(500 * time.Millisecond), Rise: 2, Fall: 3}
				s.Algorithm = "round-robin"
				s.UpstreamProtocol = "http1"
			}),
		},
		{
			name: "a 3s interval gets 1.5s",
			in:   pool(func(s *weftv1.PoolSpec) { s.HealthCheck = &weftv1.HealthCheck{Interval: dur(3 * time.Second)} }),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Weight, s.Members[1].Weight = w(100), w(100)
				s.HealthCheck = &weftv1.HealthCheck{Type: "tcp", Interval: dur(3 * time.Second), Timeout: dur(1500 * time.Millisecond), Rise: 2, Fall: 3}
				s.Algorithm = "round-robin"
				s.UpstreamProtocol = "http1"
			}),
		},
		{
			name: "a long interval keeps the 2s timeout",
			in:   pool(func(s *weftv1.PoolSpec) { s.HealthCheck = &weftv1.HealthCheck{Interval: dur(time.Minute)} }),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Weight, s.Members[1].Weight = w(100), w(100)
				s.HealthCheck = &weftv1.HealthCheck{Type: "tcp", Interval: dur(time.Minute), Timeout: dur(2 * time.Second), Rise: 2, Fall: 3}
				s.Algorithm = "round-robin"
				s.UpstreamProtocol = "http1"
			}),
		},
		{
			name: "a written timeout under the default interval is kept",
			in:   pool(func(s *weftv1.PoolSpec) { s.HealthCheck = &weftv1.HealthCheck{Timeout: dur(4 * time.Second)} }),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Weight, s.Members[1].Weight = w(100), w(100)
				s.HealthCheck = &weftv1.HealthCheck{Type: "tcp", Interval: dur(5 * time.Second), Timeout: dur(4 * time.Second), Rise: 2, Fall: 3}
				s.Algorithm = "round-robin"
				s.UpstreamProtocol = "http1"
			}),
		},
		{
			name: "l7 pool fields kept",
			in: pool(func(s *weftv1.PoolSpec) {
				s.HealthCheck = nil
				s.Algorithm, s.HashKey = "hash-cookie", "session"
				s.UpstreamProtocol, s.UpstreamTlsInsecure, s.ProxyProtocol = "h2", true, true
			}),
			want: pool(func(s *weftv1.PoolSpec) {
				s.Members[0].Weight, s.Members[1].Weight = w(100), w(100)
				s.HealthCheck = &weftv1.HealthCheck{Type: "tcp", Interval: dur(5 * time.Second), Timeout: dur(2 * time.Second), Rise: 2, Fall: 3}
				s.Algorithm, s.HashKey = "hash-cookie", "session"
				s.UpstreamProtocol, s.UpstreamTlsInsecure, s.ProxyProtocol = "h2", true, true
			}),
		},
		{
			name: "l7 listener with rewrites and a body limit",
			in: lb(func(s *weftv1.LoadBalancerSpec) {
				s.Listeners = []*weftv1.Listener{{Port: 80, Protocol: "http", Pool: "web", MaxBodyBytes: 1 << 20, Rules: []*weftv1.Rule{{
					PathPrefix:      "/api/",
					Pool:            "api",
					RequestHeaders:  &weftv1.HeaderRewrite{Remove: []string{"Cookie"}, Set: map[string]string{"X-Env": "prod", "X-Forwarded-Port": "80"}},
					ResponseHeaders: &weftv1.HeaderRewrite{Add: map[string]string{"Set-Cookie": "a=b", "x-served-by": "weft"}, Remove: []string{"Server"}},
				}}}}
			}),
			want: lb(func(s *weftv1.LoadBalancerSpec) {
				s.Listeners = []*weftv1.Listener{{Name: "http-80", Port: 80, Protocol: "http", Pool: "web", MaxBodyBytes: 1 << 20, Rules: []*weftv1.Rule{{
					PathPrefix:      "/api/",
					Pool:            "api",
					RequestHeaders:  &weftv1.HeaderRewrite{Remove: []string{"Cookie"}, Set: map[string]string{"X-Env": "prod", "X-Forwarded-Port": "80"}},
					ResponseHeaders: &weftv1.HeaderRewrite{Add: map[string]string{"Set-Cookie": "a=b", "x-served-by": "weft"}, Remove: []string{"Server"}},
				}}}}
			}),
		},
		{
			name: "dns record",
			in: dns(func(s *weftv1.DNSRecordSpec) {
				s.Fqdn = "WWW.Example.com"
				s.Targets = append(s.Targets, &weftv1.DNSTarget{Address: "2001:db8:0::5", Weight: 1000, Priority: 1})
			}),
			want: dns(func(s *weftv1.DNSRecordSpec) {
				s.Fqdn = "www.example.com."
				s.Ttl = 30
				s.MaxAnswers = 8
				s.Targets = []*weftv1.DNSTarget{
					{LoadBalancer: "web", Region: "lab", Weight: 1},
					{Address: "2001:db8::5", Weight: 1000, Priority: 1},
				}
			}),
		},
		{
			name: "static records",
			in:   static("aaaa", "2001:DB8:0::1"),
			want: func() *weftv1.Resource {
				r := static("AAAA", "2001:db8::1")
				r.GetDnsRecord().Spec.Fqdn, r.GetDnsRecord().Spec.Ttl = "www.example.com.", 30
				return r
			}(),
		},
		{
			name: "zone defaults",
			in: zone(func(z *weftv1.DNSZone) {
				z.Secondaries = []string{"198.18.0.2", "[2001:db8::2]:5353"}
				z.Regions = []*weftv1.DNSRegion{{Name: "eu", Cidrs: []string{"203.0.113.7/24"}}}
			}),
			want: func() *weftv1.Resource {
				r := zone(func(z *weftv1.DNSZone) {
					*z = weftv1.DNSZone{PrimaryNs: "ns1.example.com.", Hostmaster: "hostmaster.example.com.",
						Nameservers: []string{"ns1.example.com."}, Refresh: 3600, Retry: 600, Expire: 604800, NegativeTtl: 30,
						Secondaries: []string{"198.18.0.2:53", "[2001:db8::2]:5353"},
						Regions:     []*weftv1.DNSRegion{{Name: "eu", Cidrs: []string{"203.0.113.0/24"}}}}
				})
				r.GetDnsRecord().Spec.Fqdn, r.GetDnsRecord().Spec.Ttl = "example.com.", 30
				return r
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Resource(tc.in); err != nil {
				t.Fatalf("Resource() = %v, want nil", err)
			}
			if !proto.Equal(tc.in, tc.want) {
				t.Errorf("normalised:\n got %s\nwant %s", protojson.Format(tc.in), protojson.Format(tc.want))
			}
			again := proto.Clone(tc.in).(*weftv1.Resource)
			if err := Resource(again); err != nil {
				t.Fatalf("second Resource() = %v, want nil", err)
			}
			if !proto.Equal(again, tc.in) {
				t.Errorf("normalising twice:\n got %s\nwant %s", protojson.Format(again), protojson.Format(tc.in))
			}
		})
	}
}
