package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

func pool(name string, members ...*weftv1.Member) *weftv1.Pool {
	if members == nil {
		members = []*weftv1.Member{{Address: "192.0.2.11", Port: 8080}, {Address: "192.0.2.12", Port: 8080}}
	}
	return &weftv1.Pool{Metadata: &weftv1.Metadata{Name: name}, Spec: &weftv1.PoolSpec{Members: members}}
}

func lb(name, vip string, listeners ...*weftv1.Listener) *weftv1.LoadBalancer {
	return &weftv1.LoadBalancer{Metadata: &weftv1.Metadata{Name: name},
		Spec: &weftv1.LoadBalancerSpec{Vip: vip, Region: "lab", PrimaryZone: "a", Listeners: listeners}}
}

func tcp(port uint32, pool string) *weftv1.Listener {
	return &weftv1.Listener{Port: port, Protocol: "tcp", Pool: pool}
}

func weight(w int32) *int32 { return &w }

// certPair returns a certificate and key for www.example.com.
func certPair(t *testing.T, n *testNode, name string) (certPEM, keyPEM string) {
	t.Helper()
	c, k, err := n.ca.IssueNode(name, []string{"www.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

func cert(name, certPEM, keyPEM string) *weftv1.Certificate {
	return &weftv1.Certificate{Metadata: &weftv1.Metadata{Name: name},
		Spec: &weftv1.CertificateSpec{CertificatePem: certPEM, PrivateKeyPem: keyPEM}}
}

func asRes(m proto.Message) *weftv1.Resource {
	switch x := m.(type) {
	case *weftv1.Pool:
		return &weftv1.Resource{Kind: &weftv1.Resource_Pool{Pool: x}}
	case *weftv1.LoadBalancer:
		return &weftv1.Resource{Kind: &weftv1.Resource_LoadBalancer{LoadBalancer: x}}
	case *weftv1.Certificate:
		return &weftv1.Resource{Kind: &weftv1.Resource_Certificate{Certificate: x}}
	case *weftv1.DNSRecord:
		return &weftv1.Resource{Kind: &weftv1.Resource_DnsRecord{DnsRecord: x}}
	}
	panic("unknown kind")
}

// TestBadInput sends invalid writes; each must fail with its own code and a
// message naming the resource, field and problem, and change nothing.
func TestBadInput(t *testing.T) {
	n := newTestNode(t)
	c := n.client(n.admin)
	ctx := context.Background()
	certA, keyA := certPair(t, n, "site-a")
	_, keyB := certPair(t, n, "site-b")
	res, err := c.LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: []*weftv1.Resource{
		asRes(pool("web", nil...)), asRes(pool("spare", nil...)),
		asRes(lb("web", "198.51.100.10", tcp(80, "web"))),
		asRes(cert("site", certA, keyA)),
		asRes(&weftv1.DNSRecord{Metadata: &weftv1.Metadata{Name: "www"}, Spec: &weftv1.DNSRecordSpec{
			Fqdn: "www.example.com", Policy: "failover", Targets: []*weftv1.DNSTarget{{LoadBalancer: "web"}}}}),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	version := res.Msg.GetIndex()

	apply := func(ms ...proto.Message) error {
		var rs []*weftv1.Resource
		for _, m := range ms {
			rs = append(rs, asRes(m))
		}
		_, err := c.LB.Apply(ctx, connect.NewRequest(&weftv1.ApplyRequest{Resources: rs}))
		return err
	}
	hc := func(mut func(*weftv1.HealthCheck)) *weftv1.Pool {
		p := pool("web")
		p.Spec.HealthCheck = &weftv1.HealthCheck{Type: "http"}
		mut(p.Spec.HealthCheck)
		return p
	}
	withLB := func(mut func(*weftv1.LoadBalancer)) *weftv1.LoadBalancer {
		l := lb("web", "198.51.100.10", tcp(80, "web"))
		mut(l)
		return l
	}
	dns := func(mut func(*weftv1.DNSRecordSpec)) *weftv1.DNSRecord {
		d := &weftv1.DNSRecord{Metadata: &weftv1.Metadata{Name: "www"}, Spec: &weftv1.DNSRecordSpec{
			Fqdn: "www.example.com", Policy: "failover", Targets: []*weftv1.DNSTarget{{LoadBalancer: "web"}}}}
		mut(d.Spec)
		return d
	}
	staleLB := lb("web", "198.51.100.10", tcp(80, "web"), tcp(81, "web"))
	staleLB.Metadata.Version = version - 1

	cases := []struct {
		name string
		call func() error
		code connect.Code
		want string // in the message
	}{
		{"vip not an IP", func() error { return apply(lb("x", "300.1.1.1", tcp(80, "web"))) },
			connect.CodeInvalidArgument, `load balancer "x": spec.vip: "300.1.1.1" is not an IP address`},
		{"vip unspecified", func() error { return apply(lb("x", "0.0.0.0", tcp(80, "web"))) },
			connect.CodeInvalidArgument, "spec.vip"},
		{"vip multicast", func() error { return apply(lb("x", "ff02::1", tcp(80, "web"))) },
			connect.CodeInvalidArgument, "multicast"},
		{"member address not an IP", func() error {
			return apply(pool("x", &weftv1.Member{Address: "backend-1", Port: 80}))
		}, connect.CodeInvalidArgument, `pool "x": spec.members[0].address`},
		{"listener port 0", func() error { return apply(lb("x", "198.51.100.20", tcp(0, "web"))) },
			connect.CodeInvalidArgument, "spec.listeners[0].port: 0 is not valid"},
		{"listener port 65536", func() error { return apply(lb("x", "198.51.100.20", tcp(65536, "web"))) },
			connect.CodeInvalidArgument, "spec.listeners[0].port: 65536 is not valid"},
		{"member port 0", func() error { return apply(pool("x", &weftv1.Member{Address: "192.0.2.1"})) },
			connect.CodeInvalidArgument, "spec.members[0].port"},
		{"member port 65536", func() error {
			return apply(pool("x", &weftv1.Member{Address: "192.0.2.1", Port: 65536}))
		}, connect.CodeInvalidArgument, "spec.members[0].port"},
		{"negative weight", func() error {
			return apply(pool("x", &weftv1.Member{Address: "192.0.2.1", Port: 80, Weight: weight(-1)}))
		}, connect.CodeInvalidArgument, "spec.members[0].weight"},
		{"weight over 100", func() error {
			return apply(pool("x", &weftv1.Member{Address: "192.0.2.1", Port: 80, Weight: weight(101)}))
		}, connect.CodeInvalidArgument, "spec.members[0].weight"},
		{"duplicate member", func() error {
			return apply(pool("x", &weftv1.Member{Address: "192.0.2.1", Port: 80}, &weftv1.Member{Address: "192.0.2.1", Port: 80}))
		}, connect.CodeInvalidArgument, "spec.members[1]"},
		{"name with upper case and underscore", func() error { return apply(pool("Web_1")) },
			connect.CodeInvalidArgument, "metadata.name"},
		{"name of 64 characters", func() error { return apply(pool(strings.Repeat("a", 64))) },
			connect.CodeInvalidArgument, "metadata.name"},
		{"empty name", func() error { return apply(pool("")) }, connect.CodeInvalidArgument, "metadata.name"},
		{"name starting with a dash", func() error { return apply(pool("-web")) },
			connect.CodeInvalidArgument, "metadata.name"},
		{"unknown protocol", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 80, Protocol: "sctp", Pool: "web"}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].protocol"},
		{"dsr on an http listener", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 80, Protocol: "http", Mode: "dsr", Pool: "web"}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].mode"},
		{"unknown scheduler", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 80, Protocol: "tcp", Scheduler: "random", Pool: "web"}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].scheduler"},
		{"duplicate port in one load balancer", func() error {
			return apply(lb("x", "198.51.100.20", tcp(80, "web"), tcp(80, "spare")))
		}, connect.CodeInvalidArgument, "spec.listeners[1]"},
		{"https without certificates", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 443, Protocol: "https", Pool: "web"}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].certificates"},
		{"rule with pool and redirect", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 80, Protocol: "http", Pool: "web",
				Rules: []*weftv1.Rule{{Host: "a.example.com", Pool: "web", Redirect: &weftv1.Redirect{Scheme: "https"}}}}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].rules[0]"},
		{"hash-header pool without hash key", func() error {
			p := pool("x")
			p.Spec.Algorithm = "hash-header"
			return apply(p)
		}, connect.CodeInvalidArgument, `pool "x": spec.hashKey: must be set`},
		{"rule rewriting hop-by-hop header", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 80, Protocol: "http", Pool: "web",
				Rules: []*weftv1.Rule{{PathPrefix: "/", Pool: "web", RequestHeaders: &weftv1.HeaderRewrite{Remove: []string{"Connection"}}}}}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].rules[0].requestHeaders.remove[0]"},
		{"body limit on a tcp listener", func() error {
			l := tcp(80, "web")
			l.MaxBodyBytes = 1024
			return apply(lb("x", "198.51.100.20", l))
		}, connect.CodeInvalidArgument, "spec.listeners[0].maxBodyBytes"},
		{"access log on a tcp listener", func() error {
			l := tcp(80, "web")
			l.AccessLog = &weftv1.AccessLog{Enabled: true}
			return apply(lb("x", "198.51.100.20", l))
		}, connect.CodeInvalidArgument, "spec.listeners[0].accessLog: only http and https listeners have an access log"},
		{"access log sample rate over 1", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 80, Protocol: "http", Pool: "web",
				AccessLog: &weftv1.AccessLog{Enabled: true, SampleRate: proto.Float64(2)}}))
		}, connect.CodeInvalidArgument, "spec.listeners[0].accessLog.sampleRate: 2 is not between 0 and 1"},
		{"backup zone equal to primary", func() error {
			return apply(withLB(func(l *weftv1.LoadBalancer) { l.Spec.BackupZones = []string{"a"} }))
		}, connect.CodeInvalidArgument, "spec.backupZones[0]"},
		{"health interval too short", func() error {
			return apply(hc(func(h *weftv1.HealthCheck) { h.Interval = durationpb.New(100 * time.Millisecond) }))
		}, connect.CodeInvalidArgument, "spec.healthCheck.interval"},
		{"health timeout not below interval", func() error {
			return apply(hc(func(h *weftv1.HealthCheck) {
				h.Interval, h.Timeout = durationpb.New(2*time.Second), durationpb.New(2*time.Second)
			}))
		}, connect.CodeInvalidArgument, "spec.healthCheck.timeout"},
		{"health expected codes", func() error {
			return apply(hc(func(h *weftv1.HealthCheck) { h.ExpectedCodes = "abc" }))
		}, connect.CodeInvalidArgument, "spec.healthCheck.expectedCodes"},
		{"health check type", func() error {
			return apply(hc(func(h *weftv1.HealthCheck) { h.Type = "icmp" }))
		}, connect.CodeInvalidArgument, "spec.healthCheck.type"},
		{"certificate key does not match", func() error { return apply(cert("x", certA, keyB)) },
			connect.CodeInvalidArgument, `certificate "x": spec.privateKeyPem`},
		{"certificate not PEM", func() error { return apply(cert("x", "hello", keyA)) },
			connect.CodeInvalidArgument, `certificate "x": spec.certificatePem`},
		{"dns fqdn", func() error { return apply(dns(func(s *weftv1.DNSRecordSpec) { s.Fqdn = "not a name" })) },
			connect.CodeInvalidArgument, "spec.fqdn"},
		{"dns policy", func() error { return apply(dns(func(s *weftv1.DNSRecordSpec) { s.Policy = "random" })) },
			connect.CodeInvalidArgument, "spec.policy"},
		{"dns target with both kinds", func() error {
			return apply(dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].Address = "192.0.2.1" }))
		}, connect.CodeInvalidArgument, "spec.targets[0]"},
		{"duplicate VIP:port across load balancers", func() error {
			return apply(lb("other", "198.51.100.10", tcp(80, "web")))
		}, connect.CodeAlreadyExists, `198.51.100.10:80/tcp is already used by load balancer "web"`},
		{"dangling pool", func() error { return apply(lb("x", "198.51.100.20", tcp(80, "nope"))) },
			connect.CodeFailedPrecondition, `pool "nope" does not exist`},
		{"dangling certificate", func() error {
			return apply(lb("x", "198.51.100.20", &weftv1.Listener{Port: 443, Protocol: "https", Pool: "web", Certificates: []string{"nope"}}))
		}, connect.CodeFailedPrecondition, `"nope"`},
		{"dangling dns target", func() error {
			return apply(dns(func(s *weftv1.DNSRecordSpec) { s.Targets[0].LoadBalancer = "nope" }))
		}, connect.CodeFailedPrecondition, `"nope"`},
		{"pool in use", func() error {
			_, err := c.LB.DeletePool(ctx, connect.NewRequest(&weftv1.DeleteRequest{Name: "web"}))
			return err
		}, connect.CodeFailedPrecondition, `pool "web" is used by load balancer "web"`},
		{"load balancer in use by dns", func() error {
			_, err := c.LB.DeleteLoadBalancer(ctx, connect.NewRequest(&weftv1.DeleteRequest{Name: "web"}))
			return err
		}, connect.CodeFailedPrecondition, `"www"`},
		{"stale version on update", func() error {
			_, err := c.LB.UpdateLoadBalancer(ctx, connect.NewRequest(&weftv1.UpdateLoadBalancerRequest{LoadBalancer: staleLB}))
			return err
		}, connect.CodeAborted, "version"},
		{"stale version on delete", func() error {
			_, err := c.LB.DeletePool(ctx, connect.NewRequest(&weftv1.DeleteRequest{Name: "spare", Version: version - 1}))
			return err
		}, connect.CodeAborted, "version"},
		{"create existing", func() error {
			_, err := c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: pool("spare")}))
			return err
		}, connect.CodeAlreadyExists, `pool "spare"`},
		{"update missing", func() error {
			_, err := c.LB.UpdatePool(ctx, connect.NewRequest(&weftv1.UpdatePoolRequest{Pool: pool("ghost")}))
			return err
		}, connect.CodeNotFound, `pool "ghost"`},
		{"delete missing", func() error {
			_, err := c.LB.DeletePool(ctx, connect.NewRequest(&weftv1.DeleteRequest{Name: "ghost"}))
			return err
		}, connect.CodeNotFound, `pool "ghost"`},
		{"get missing", func() error {
			_, err := c.LB.GetPool(ctx, connect.NewRequest(&weftv1.GetRequest{Name: "ghost"}))
			return err
		}, connect.CodeNotFound, `pool "ghost" not found`},
		{"create without a resource", func() error {
			_, err := c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{}))
			return err
		}, connect.CodeInvalidArgument, "pool: required"},
		{"empty apply", func() error { return apply() }, connect.CodeInvalidArgument, "at least one resource"},
		{"batch with one bad resource changes nothing", func() error {
			return apply(pool("new-a"), pool("new-b", &weftv1.Member{Address: "192.0.2.1", Port: 0}))
		}, connect.CodeInvalidArgument, `resources[1]: pool "new-b": spec.members[0].port`},
		{"batch failing a reference check changes nothing", func() error {
			return apply(pool("new-a"), lb("new-lb", "198.51.100.30", tcp(80, "nope")))
		}, connect.CodeFailedPrecondition, `pool "nope" does not exist`},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := n.resources()
			err := tc.call()
			wantCode(t, err, tc.code)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if after := n.resources(); !sameResources(before, after) {
				t.Errorf("state changed by a failed call:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestHealthCheckDefaults: an interval shorter than the default timeout
// allows gets a timeout that fits it, not an error about a timeout nobody
// wrote; a written timeout over the default interval is blamed as written.
func TestHealthCheckDefaults(t *testing.T) {
	n := newTestNode(t)
	c := n.client(n.admin)
	ctx := context.Background()
	p := pool("fast")
	p.Spec.HealthCheck = &weftv1.HealthCheck{Interval: durationpb.New(time.Second)}
	res, err := c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: p}))
	if err != nil {
		t.Fatalf("interval 1s without a timeout: got %v, want it created", err)
	}
	if got := res.Msg.GetPool().GetSpec().GetHealthCheck().GetTimeout().AsDuration(); got != 500*time.Millisecond {
		t.Errorf("stored timeout %v, want 500ms", got)
	}
	p = pool("slow")
	p.Spec.HealthCheck = &weftv1.HealthCheck{Timeout: durationpb.New(10 * time.Second)}
	_, err = c.LB.CreatePool(ctx, connect.NewRequest(&weftv1.CreatePoolRequest{Pool: p}))
	wantCode(t, err, connect.CodeInvalidArgument)
	if want := `pool "slow": spec.healthCheck.timeout: 10s must be shorter than the interval (5s by default; set interval too)`; !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v, want %s", err, want)
	}
}
