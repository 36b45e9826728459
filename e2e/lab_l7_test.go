package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftlb/weft/deploy/lab"
)

// l7Rotation is the agents' ticket-key rotation interval in the L7 lab
// test; three keys are kept, so a ticket resumes for 6 to 9 s.
const l7Rotation = 3 * time.Second

// TestLab_L7: three XDP nodes announce a load balancer with an http and an
// https listener over BGP; the XDP program passes their ports to each
// node's l7 proxy. Through the VIP: routing by host and path, header
// rewrites and a redirect over HTTP/1.1, HTTP/2 over TLS with the
// certificate chosen by SNI; a sticky cookie from one node pins the client
// on the others; a TLS session from one node resumes on the others, still
// after a key rotation, and no longer once its key is rotated out; a long
// request runs through a change of another rule.
func TestLab_L7(t *testing.T) {
	l := upLab(t, lab.Topology{Prefix: "weftl", Servers: 3,
		Nodes: []lab.Node{{Name: "node1", Zone: "a"}, {Name: "node2", Zone: "a"}, {Name: "node3", Zone: "a"}}},
		[]string{"curl"}, false, "-addr", ":8080", "-echo-headers", "-stream")
	ctx := context.Background()
	c := &cluster{t: t, dir: t.TempDir(), lab: l}
	t.Cleanup(c.stopAll)
	for i, h := range l.Nodes {
		pass, err := l.AttachPass(h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pass.Close() })
		c.agents = append(c.agents, &agent{name: h.Name, ip: h.Addr.String(), zone: l.Topology.Nodes[i].Zone, ns: h.NS,
			dataDir: filepath.Join(c.dir, h.Name), extra: []string{"--dataplane", "xdp", "--interface", h.Iface,
				"--bgp-asn", fmt.Sprint(lab.NodeASN), "--bgp-peer", fmt.Sprintf("%s:%d", lab.RouterInner, lab.RouterASN),
				"--drain-delay", "100ms", "--tls-ticket-rotation", l7Rotation.String()}})
	}
	c.initCluster(c.agents[0])
	c.join(c.agents[1], c.agents[0])
	c.join(c.agents[2], c.agents[0])

	sites := newTestPKI(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, sites.caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	certA, keyA := sites.leaf(t, "a.example.test")
	certB, keyB := sites.leaf(t, "b.example.test")
	manifest := func(extraRule string) string {
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		s := l.Servers
		return fmt.Sprintf(`kind: Certificate
metadata: {name: site-a}
spec: {certificatePem: %s, privateKeyPem: %s}
---
kind: Certificate
metadata: {name: site-b}
spec: {certificatePem: %s, privateKeyPem: %s}
---
kind: Pool
metadata: {name: web}
spec:
  members: [{address: %s, port: 8080}, {address: %s, port: 8080}, {address: %s, port: 8080}]
  healthCheck: {type: http, path: /healthz}
---
kind: Pool
metadata: {name: site-a}
spec: {members: [{address: %s, port: 8080}]}
---
kind: Pool
metadata: {name: api}
spec: {members: [{address: %s, port: 8080}]}
---
kind: LoadBalancer
metadata: {name: l7}
spec:
  vip: %s
  listeners:
  - port: 80
    protocol: http
    pool: web
    stickySession: {enabled: true}
    rules:
    - {host: a.example.test, pool: site-a, responseHeaders: {set: {X-Weft-Route: host-a}}}
    - {pathPrefix: /api/, pool: api, requestHeaders: {set: {X-Env: lab}, remove: [X-Secret]}}
    - {pathExact: /old, redirect: {scheme: https, code: 301}}%s
  - port: 443
    protocol: https
    pool: web
    certificates: [site-a, site-b]
    stickySession: {enabled: true}
    rules:
    - {host: a.example.test, pool: site-a}
`, q(certA), q(keyA), q(certB), q(keyB), s[0].Addr, s[1].Addr, s[2].Addr, s[0].Addr, s[2].Addr, labVIP, extraRule)
	}
	if _, err := c.weft(c.agents[0], manifest(""), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	took := waitVia(t, l, 10*time.Second, l.Nodes...)
	t.Logf("ECMP route via all three nodes %.0f ms after apply returned", took.Seconds()*1000)

	// Over HTTP/1.1 from the client, through whichever node ECMP picks.
	vip := labVIP.String()
	var res curlResult
	waitFor(t, 10*time.Second, "curl by host through the VIP", func() error {
		var err error
		res, err = curlVia(l, l.Client, "--http1.1", "-H", "Host: a.example.test", "http://"+vip+"/")
		if err == nil && (res.body != "server1" || res.header("X-Weft-Route") != "host-a") {
			err = fmt.Errorf("answer %+v, want server1 with X-Weft-Route: host-a", res)
		}
		return err
	})
	res = mustCurl(t, l, l.Client, "--http1.1", "-H", "X-Secret: s3cret", "http://"+vip+"/api/x")
	if res.body != "server3" || res.header("X-Echo-X-Env") != "lab" || res.header("X-Echo-X-Secret") != "" || res.version != "1.1" {
		t.Errorf("/api/ over HTTP/1.1: got %+v, want server3 over 1.1 that saw X-Env: lab and no X-Secret", res)
	}
	res = mustCurl(t, l, l.Client, "--http1.1", "http://"+vip+"/old")
	if res.code != 301 || res.header("Location") != "https://"+vip+"/old" {
		t.Errorf("/old: got %d Location %q, want 301 to https://%s/old", res.code, res.header("Location"), vip)
	}

	// HTTP/2 over TLS: each name gets its own certificate (curl checks it
	// against the name with the test CA).
	for _, tc := range []struct{ host, want string }{{"a.example.test", "server1"}, {"b.example.test", "server"}} {
		res = mustCurl(t, l, l.Client, "--http2", "--cacert", caFile, "--resolve", tc.host+":443:"+vip, "https://"+tc.host+"/")
		if res.version != "2" || !strings.HasPrefix(res.body, tc.want) {
			t.Errorf("https://%s/: got %+v, want HTTP/2 and %s", tc.host, res, tc.want)
		}
	}

	// A sticky cookie from node1 holds on node2 and node3; without it the
	// nodes spread requests over the pool.
	first := nodeHTTP(l, l.Nodes[0])
	resp, body := httpGet(t, first, "http://"+vip+"/", "")
	var cookie string
	for _, ck := range resp.Cookies() {
		if ck.Name == "weft_sticky" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		t.Fatalf("no sticky cookie from node1: %v", resp.Header)
	}
	for _, n := range l.Nodes[1:] {
		cl := nodeHTTP(l, n)
		for i := 0; i < 10; i++ {
			if _, got := httpGet(t, cl, "http://"+vip+"/", cookie); got != body {
				t.Fatalf("%s with node1's cookie: request %d reached %s, want %s", n.Name, i, got, body)
			}
		}
		seen := map[string]bool{}
		for i := 0; i < 6; i++ {
			_, got := httpGet(t, cl, "http://"+vip+"/", "")
			seen[got] = true
		}
		if len(seen) < 2 {
			t.Errorf("%s without a cookie reached only %v, want the pool", n.Name, seen)
		}
	}
	t.Logf("sticky cookie from node1 kept %s on node2 and node3 (20 requests)", body)

	// TLS session tickets: issued by node1, resumed by node2 and node3.
	// Retried: a handshake right after a rotation may meet a node that has
	// not applied the new key yet.
	var session *tls.ClientSessionState
	var issued time.Time
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		waitFor(t, 10*time.Second, fmt.Sprintf("%s session from node1 resumed on node2 and node3", tls.VersionName(version)), func() error {
			s, err := tlsSession(l, l.Nodes[0], sites, version)
			if err != nil {
				return err
			}
			if version == tls.VersionTLS13 {
				session, issued = s, time.Now()
			}
			for _, n := range l.Nodes[1:] {
				if resumed, err := tlsResume(l, n, sites, version, s); err != nil || !resumed {
					return fmt.Errorf("%s: resumed %v, %v", n.Name, resumed, err)
				}
			}
			return nil
		})
	}

	// Rotation: a ticket still resumes after a rotation (its key is the
	// previous one), and no longer once three newer keys replaced it (at
	// the end, after the next check has used the wait).
	time.Sleep(time.Until(issued.Add(l7Rotation * 3 / 2)))
	if resumed, err := tlsResume(l, l.Nodes[1], sites, tls.VersionTLS13, session); err != nil || !resumed {
		t.Errorf("%v after issue (at least one rotation): resumed %v, %v; want resumed", time.Since(issued).Round(time.Millisecond), resumed, err)
	} else {
		t.Logf("node1's TLS 1.3 session resumed on node2 %v after issue, past a key rotation", time.Since(issued).Round(time.Millisecond))
	}

	// A long request runs on while another rule is added.
	stream := l.Command(ctx, l.Client, "curl", "-sS", "-N", "-m", "20", "http://"+vip+"/stream?lines=30&every=100ms")
	out, err := stream.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	arrived := make(chan time.Time)
	go func() {
		defer close(arrived)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			arrived <- time.Now()
		}
	}()
	if _, ok := <-arrived; !ok {
		t.Fatal("stream: no first line")
	}
	if _, err := c.weft(c.agents[1], manifest("\n    - {pathPrefix: /new/, pool: api}"), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	var changed time.Time
	waitFor(t, 5*time.Second, "the new rule served", func() error {
		res, err := curlVia(l, l.Client, "http://"+vip+"/new/")
		if err == nil && res.body != "server3" {
			err = fmt.Errorf("answer %+v", res)
		}
		changed = time.Now()
		return err
	})
	lines, after := 1, 0
	for at := range arrived {
		lines++
		if at.After(changed) {
			after++
		}
	}
	if err := stream.Wait(); err != nil || lines != 30 || after == 0 {
		t.Errorf("stream through a rule change: %d lines, %d after the change (%v), want 30 with some after", lines, after, err)
	}
	t.Logf("a streamed request ran through a rule change: 30 lines, %d after the new rule was served", after)

	time.Sleep(time.Until(issued.Add(l7Rotation*3 + 2*time.Second)))
	if resumed, err := tlsResume(l, l.Nodes[2], sites, tls.VersionTLS13, session); err != nil || resumed {
		t.Errorf("%v after issue (its key rotated out): resumed %v, %v; want a full handshake", time.Since(issued).Round(time.Millisecond), resumed, err)
	} else {
		t.Logf("and not %v after issue, once three newer keys replaced its key", time.Since(issued).Round(time.Millisecond))
	}

	// The VIP is local on a node through the agent's route, until it stops.
	n3 := l.Nodes[2]
	if !vipRouted(t, n3) {
		t.Errorf("%s has no local route for the VIP", n3.Name)
	}
	c.agents[2].stop(t)
	if vipRouted(t, n3) {
		t.Errorf("%s still has the agent's local route for the VIP after it stopped", n3.Name)
	}
}

// vipRouted reports whether a node has the agent's local route (proto 87)
// for the VIP.
func vipRouted(t *testing.T, h lab.Host) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", h.NS, "-N", "-j", "route", "show", "table", "local", "type", "local", "proto", "87").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	return strings.Contains(string(out), `"`+labVIP.String()+`"`)
}

// curlResult is what curlVia saw.
type curlResult struct {
	code    int
	version string
	headers []string
	body    string
}

func (r curlResult) header(name string) string {
	for _, h := range r.headers {
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// curlVia runs curl in a lab host and splits its answer.
func curlVia(l *lab.Lab, h lab.Host, args ...string) (curlResult, error) {
	args = append([]string{"-sS", "-m", "5", "-D", "-", "-w", "\n%{http_code} %{http_version}"}, args...)
	out, err := l.Command(context.Background(), h, "curl", args...).CombinedOutput()
	if err != nil {
		return curlResult{}, fmt.Errorf("curl %v: %w: %s", args, err, out)
	}
	s := string(out)
	i := strings.LastIndex(s, "\n")
	var r curlResult
	if _, err := fmt.Sscanf(s[i+1:], "%d %s", &r.code, &r.version); err != nil {
		return curlResult{}, fmt.Errorf("curl output %q: %w", s, err)
	}
	head, body, _ := strings.Cut(s[:i], "\r\n\r\n")
	r.headers = strings.Split(head, "\r\n")
	r.body = strings.TrimSpace(body)
	return r, nil
}

func mustCurl(t *testing.T, l *lab.Lab, h lab.Host, args ...string) curlResult {
	t.Helper()
	r, err := curlVia(l, h, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// nodeHTTP is an HTTP client whose connections are made in a node's
// namespace: to the VIP they reach that node's own listener.
func nodeHTTP(l *lab.Lab, h lab.Host) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, l, h, network, addr)
		},
	}}
}

func dialIn(ctx context.Context, l *lab.Lab, h lab.Host, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := l.Do(h, func() error {
		var err error
		conn, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func httpGet(t *testing.T, c *http.Client, url, cookie string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return resp, strings.TrimSpace(string(b))
}

// oneSession is a client session cache holding one session: every
// resumption offers the same ticket, whatever tickets later handshakes got.
type oneSession struct{ s *tls.ClientSessionState }

func (o *oneSession) Get(string) (*tls.ClientSessionState, bool) { return o.s, o.s != nil }
func (o *oneSession) Put(_ string, s *tls.ClientSessionState) {
	if o.s == nil {
		o.s = s
	}
}

// tlsRequest makes one HTTPS request to the VIP as a.example.test from a
// node's namespace, reading the answer (a TLS 1.3 ticket comes after the
// handshake), and reports whether the session was resumed.
func tlsRequest(l *lab.Lab, h lab.Host, p *testPKI, version uint16, cache tls.ClientSessionCache) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := dialIn(ctx, l, h, "tcp", net.JoinHostPort(labVIP.String(), "443"))
	if err != nil {
		return false, err
	}
	conn := tls.Client(raw, &tls.Config{ServerName: "a.example.test", RootCAs: p.pool, MinVersion: version, MaxVersion: version,
		ClientSessionCache: cache, NextProtos: []string{"http/1.1"}})
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n"); err != nil {
		return false, err
	}
	b, err := io.ReadAll(conn)
	if err != nil || !strings.Contains(string(b), "server1") {
		return false, fmt.Errorf("https answer %q: %v", b, err)
	}
	return conn.ConnectionState().DidResume, nil
}

// tlsSession makes a full handshake on a node and returns its session.
func tlsSession(l *lab.Lab, h lab.Host, p *testPKI, version uint16) (*tls.ClientSessionState, error) {
	cache := &oneSession{}
	if _, err := tlsRequest(l, h, p, version, cache); err != nil {
		return nil, err
	}
	if cache.s == nil {
		return nil, fmt.Errorf("%s gave no session ticket", h.Name)
	}
	return cache.s, nil
}

// tlsResume offers a session to a node.
func tlsResume(l *lab.Lab, h lab.Host, p *testPKI, version uint16, s *tls.ClientSessionState) (bool, error) {
	return tlsRequest(l, h, p, version, &oneSession{s: s})
}

// testPKI is a throwaway CA for the lab's site certificates.
type testPKI struct {
	ca    *x509.Certificate
	key   *ecdsa.PrivateKey
	caPEM []byte
	pool  *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft lab test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, key: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	return p
}

// leaf issues an ECDSA certificate for one name.
func (p *testPKI) leaf(t *testing.T, name string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}
