package e2e

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/weftlb/weft/deploy/lab"
)

// TestLab_HTTP3: two XDP nodes behind ECMP serve an https listener with
// http3. HTTP/2 answers advertise it (Alt-Svc); HTTP/3 connections from the
// client, each on a new UDP socket, reach both nodes through the router
// (the XDP program passes the VIP's UDP port to the stack) and are served;
// the server id in the connection IDs (--quic-server-id) says which node
// holds each. node1's connection then moves to a new client port that ECMP
// sends to node2: node2's XDP program hands its datagrams to node1, which
// its connection ID names, and requests go on.
func TestLab_HTTP3(t *testing.T) {
	l := upLab(t, lab.Topology{Prefix: "wefth3", Servers: 2,
		Nodes: []lab.Node{{Name: "node1", Zone: "a"}, {Name: "node2", Zone: "a"}}},
		nil, false, "-addr", ":8080", "-echo-headers")
	c := &cluster{t: t, dir: t.TempDir(), lab: l}
	t.Cleanup(c.stopAll)
	serverIDs := map[uint16]string{}
	for i, h := range l.Nodes {
		pass, err := l.AttachPass(h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pass.Close() })
		id := uint16(101 + i)
		serverIDs[id] = h.Name
		c.agents = append(c.agents, &agent{name: h.Name, ip: h.Addr.String(), zone: l.Topology.Nodes[i].Zone, ns: h.NS,
			dataDir: filepath.Join(c.dir, h.Name), extra: []string{"--dataplane", "xdp", "--interface", h.Iface,
				"--bgp-asn", fmt.Sprint(lab.NodeASN), "--bgp-peer", fmt.Sprintf("%s:%d", lab.RouterInner, lab.RouterASN),
				"--drain-delay", "100ms", "--quic-server-id", fmt.Sprint(id)}})
	}
	c.initCluster(c.agents[0])
	c.join(c.agents[1], c.agents[0])

	pki := newTestPKI(t)
	certPEM, keyPEM := pki.leaf(t, "h3.example.test")
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	manifest := fmt.Sprintf(`kind: Certificate
metadata: {name: h3}
spec: {certificatePem: %s, privateKeyPem: %s}
---
kind: Pool
metadata: {name: web}
spec:
  members: [{address: %s, port: 8080}, {address: %s, port: 8080}]
---
kind: LoadBalancer
metadata: {name: h3}
spec:
  vip: %s
  listeners:
  - {port: 443, protocol: https, pool: web, certificates: [h3], http3: true}
`, q(certPEM), q(keyPEM), l.Servers[0].Addr, l.Servers[1].Addr, labVIP)
	if _, err := c.weft(c.agents[0], manifest, "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitVia(t, l, 10*time.Second, l.Nodes...)
	vip := netip.AddrPortFrom(labVIP, 443)
	tc := &tls.Config{ServerName: "h3.example.test", RootCAs: pki.pool}

	// HTTP/2 through the router advertises HTTP/3.
	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, l, l.Client, network, addr)
		},
	}}
	defer h2.CloseIdleConnections()
	var altSvc string
	waitFor(t, 10*time.Second, "an HTTP/2 answer through the VIP", func() error {
		resp, err := h2.Get("https://" + vip.String() + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			return fmt.Errorf("answered over %s", resp.Proto)
		}
		altSvc = resp.Header.Get("Alt-Svc")
		return nil
	})
	if want := `h3=":443"; ma=86400`; altSvc != want {
		t.Errorf("HTTP/2 answer: Alt-Svc %q, want %q", altSvc, want)
	}

	// HTTP/3 connections from new client sockets until both nodes served one.
	h3tc := tc.Clone()
	h3tc.NextProtos = []string{http3.NextProtoH3}
	byNode := map[string]*h3Client{}
	for i := 0; i < 16 && len(byNode) < len(l.Nodes); i++ {
		var hc *h3Client
		waitFor(t, 10*time.Second, "an HTTP/3 answer through the VIP", func() error {
			var err error
			hc, err = dialH3(l, vip, h3tc)
			if err == nil {
				_, err = hc.get("https://" + vip.String() + "/")
			}
			if err != nil && hc != nil {
				hc.close()
			}
			return err
		})
		id, ok := hc.path.serverID()
		node := serverIDs[id]
		if !ok || node == "" {
			t.Fatalf("connection %d: server id %d (%v) names no node of %v", i, id, ok, serverIDs)
		}
		if byNode[node] != nil {
			hc.close()
			continue
		}
		byNode[node] = hc
		defer hc.close()
	}
	if len(byNode) != len(l.Nodes) {
		t.Fatalf("16 HTTP/3 connections reached only %d of the %d nodes", len(byNode), len(l.Nodes))
	}
	t.Logf("HTTP/3 through the VIP served by both nodes (server ids in the connection IDs: %v)", serverIDs)

	// Migration: node1's connection moves to a new client port that ECMP
	// sends to node2. The port is found by opening a connection from it
	// first (its handshake, in long-header packets, goes where ECMP sends
	// the 4-tuple, and that node's server id comes back in the connection
	// IDs). node2 does not know node1's connection: its XDP program hands
	// the datagrams to node1, whose id their connection ID carries, and
	// counts them (weft_l4_flow_redirects_total{direction="quic"}).
	url := "https://" + vip.String() + "/"
	hc := byNode["node1"]
	var next *clientPath
	for tried := 0; next == nil; tried++ {
		if tried == 16 {
			t.Fatal("16 new client ports in a row were all sent to node1")
		}
		p, err := newClientPath(l)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		probe, err := p.tr.Dial(ctx, net.UDPAddrFromAddrPort(vip), h3tc, &quic.Config{})
		cancel()
		if err != nil {
			p.close()
			t.Fatalf("connection from %s: %v", p.conn.LocalAddr(), err)
		}
		probeHC := &h3Client{path: p, conn: probe, hc: &http.Client{Timeout: 5 * time.Second, Transport: (&http3.Transport{}).NewClientConn(probe)}}
		if _, err := probeHC.get(url); err != nil {
			t.Fatalf("request from %s: %v", p.conn.LocalAddr(), err)
		}
		id, _ := p.serverID()
		probe.CloseWithError(0, "")
		if serverIDs[id] != "node2" {
			t.Logf("client port %s is sent to %s", p.conn.LocalAddr(), serverIDs[id])
			p.close()
			continue
		}
		next = p
	}
	defer next.close()
	node2 := c.agents[1]
	before := quicRedirects(t, c, node2)
	path, err := hc.conn.AddPath(next.tr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err = path.Probe(ctx)
	cancel()
	if err != nil {
		t.Fatalf("probe of node1's connection from %s, a port ECMP sends to node2: %v", next.conn.LocalAddr(), err)
	}
	if err := path.Switch(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := hc.get(url); err != nil {
			t.Fatalf("request %d after moving to %s: %v", i, next.conn.LocalAddr(), err)
		}
	}
	if id, ok := next.serverID(); !ok || serverIDs[id] != "node1" {
		t.Errorf("packets on the new path carry server id %d (%v), want node1's", id, ok)
	}
	if err := hc.conn.Context().Err(); err != nil {
		t.Errorf("connection ended: %v", context.Cause(hc.conn.Context()))
	}
	// The probe, its response's acknowledgement and 5 requests at least.
	after := quicRedirects(t, c, node2)
	if after-before < 6 {
		t.Errorf("node2 handed %d QUIC datagrams to node1 (%d before the move, %d after), want at least 6", after-before, before, after)
	}
	t.Logf("node1's HTTP/3 connection moved from %s to %s, which ECMP sends to node2, and served 5 more requests: node2 handed %d datagrams to node1",
		hc.path.conn.LocalAddr(), next.conn.LocalAddr(), after-before)
	hc.conn.CloseWithError(0, "")
}

// quicRedirects is a's weft_l4_flow_redirects_total{direction="quic"}: the
// QUIC datagrams its XDP program handed to the node their connection ID
// names.
func quicRedirects(t *testing.T, c *cluster, a *agent) uint64 {
	t.Helper()
	text, err := c.scrape(a)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, "weft_l4_flow_redirects_total{") || !strings.Contains(line, `direction="quic"`) {
			continue
		}
		f := strings.Fields(line)
		n, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", a.name, line, err)
		}
		return uint64(n)
	}
	t.Fatalf("%s has no weft_l4_flow_redirects_total{direction=\"quic\"}", a.name)
	return 0
}

// clientPath is a UDP socket in the lab's client with a QUIC transport on
// it, recording the packets it sends.
type clientPath struct {
	conn *capturingUDP
	tr   *quic.Transport
}

func newClientPath(l *lab.Lab) (*clientPath, error) {
	var uc *net.UDPConn
	if err := l.Do(l.Client, func() error {
		var err error
		uc, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		return nil, err
	}
	c := &capturingUDP{UDPConn: uc}
	return &clientPath{conn: c, tr: &quic.Transport{Conn: c}}, nil
}

func (p *clientPath) close() {
	p.tr.Close()
	p.conn.Close()
}

// serverID is the server id in the destination connection ID of the last
// short-header packet sent (l7/quiccid.go: version 01 in the first byte,
// then the id, big endian).
func (p *clientPath) serverID() (uint16, bool) {
	p.conn.mu.Lock()
	defer p.conn.mu.Unlock()
	for i := len(p.conn.sent) - 1; i >= 0; i-- {
		if b := p.conn.sent[i]; len(b) >= 9 && b[0]&0x80 == 0 {
			return binary.BigEndian.Uint16(b[2:4]), b[1]>>6 == 0b01
		}
	}
	return 0, false
}

// capturingUDP records the packets quic-go writes (through WriteMsgUDP, as
// on any *net.UDPConn).
type capturingUDP struct {
	*net.UDPConn
	mu   sync.Mutex
	sent [][]byte
}

func (c *capturingUDP) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	c.mu.Lock()
	c.sent = append(c.sent, append([]byte(nil), b[:min(len(b), 16)]...))
	c.mu.Unlock()
	return c.UDPConn.WriteMsgUDP(b, oob, addr)
}

// h3Client is one HTTP/3 connection from the lab's client.
type h3Client struct {
	path *clientPath
	conn *quic.Conn
	hc   *http.Client
}

func dialH3(l *lab.Lab, addr netip.AddrPort, tc *tls.Config) (*h3Client, error) {
	p, err := newClientPath(l)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := p.tr.Dial(ctx, net.UDPAddrFromAddrPort(addr), tc, &quic.Config{})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("quic dial: %w", err)
	}
	return &h3Client{path: p, conn: conn,
		hc: &http.Client{Timeout: 5 * time.Second, Transport: (&http3.Transport{}).NewClientConn(conn)}}, nil
}

// get fetches url on the connection; the lab's servers answer their name.
func (c *h3Client) get(url string) (string, error) {
	resp, err := c.hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		return "", fmt.Errorf("GET %s: %d over %s, %v", url, resp.StatusCode, resp.Proto, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *h3Client) close() {
	c.conn.CloseWithError(0, "")
	c.path.close()
}
