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
// holds each. One connection then moves to a new client port: requests go
// on on it once a path whose 4-tuple ECMP hashes to the same node is found
// (a path hashed to the other node fails its probe: the XDP program does
// not route by connection ID yet).
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

	// Migration: node1's connection moves to a new client port. A new
	// 4-tuple that ECMP hashes to node2 fails its probe; then a new
	// connection to node1 tries again (each probe takes one of the
	// connection IDs the server gave, which are few).
	url := "https://" + vip.String() + "/"
	hc := byNode["node1"]
	for elsewhere := 0; ; elsewhere++ {
		if elsewhere == 12 {
			t.Fatal("12 new client ports in a row probed through the other node")
		}
		next, err := newClientPath(l)
		if err != nil {
			t.Fatal(err)
		}
		path, err := hc.conn.AddPath(next.tr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = path.Probe(ctx)
		cancel()
		if err != nil {
			t.Logf("probe from %s: %v (taken to node2, which does not know the connection)", next.conn.LocalAddr(), err)
			path.Close()
			next.close()
			if hc != byNode["node1"] {
				hc.close()
			}
			hc = dialNode(t, l, vip, h3tc, serverIDs, "node1")
			continue
		}
		if err := path.Switch(); err != nil {
			t.Fatal(err)
		}
		defer next.close()
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
		t.Logf("node1's HTTP/3 connection moved from %s to %s and served 5 more requests (%d ports tried before were hashed to node2)",
			hc.path.conn.LocalAddr(), next.conn.LocalAddr(), elsewhere)
		hc.conn.CloseWithError(0, "")
		return
	}
}

// dialNode opens HTTP/3 connections from new client sockets until one is
// served by node, as the server id in its connection IDs says.
func dialNode(t *testing.T, l *lab.Lab, vip netip.AddrPort, tc *tls.Config, serverIDs map[uint16]string, node string) *h3Client {
	t.Helper()
	for range 16 {
		hc, err := dialH3(l, vip, tc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hc.get("https://" + vip.String() + "/"); err != nil {
			t.Fatal(err)
		}
		if id, _ := hc.path.serverID(); serverIDs[id] == node {
			return hc
		}
		hc.close()
	}
	t.Fatalf("16 HTTP/3 connections missed %s", node)
	return nil
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
