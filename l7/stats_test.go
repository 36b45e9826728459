package l7

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"
)

func listenerStats(p *Proxy, name string) ListenerStats {
	for _, l := range p.Stats().Listeners {
		if l.Listener == name {
			return l
		}
	}
	return ListenerStats{}
}

func memberStats(p *Proxy, pool, addr string) MemberStats {
	for _, m := range p.Stats().Members {
		if m.Pool == pool && m.Addr == addr {
			return m
		}
	}
	return MemberStats{}
}

func TestListenerStats(t *testing.T) {
	s := newProtoSetup(t)
	ws := dialWS(t, s.plain, "/ws")
	wsEchoOnce(t, ws, "hello")
	if n := listenerStats(s.p, "plain").Connections; n != 1 {
		t.Errorf("plain listener with a WebSocket open: %d connections, want 1", n)
	}
	ws.Close()
	eventually(t, 5*time.Second, "the WebSocket counted and its connection gone", func() bool {
		l := listenerStats(s.p, "plain")
		return l.WebSocketUpgrades == 1 && l.Connections == 0
	})

	cache := tls.NewLRUClientSessionCache(4)
	var resumed []bool
	for range 2 {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "proto.test", ClientSessionCache: cache}}}
		resp, _ := get(t, c, "https://"+s.tls+"/", nil)
		if resp.ProtoMajor != 2 {
			t.Fatalf("TLS listener answered over %s, want HTTP/2", resp.Proto)
		}
		resumed = append(resumed, resp.TLS.DidResume)
	}
	if resumed[0] || !resumed[1] {
		t.Fatalf("sessions resumed: %v, want the second only", resumed)
	}
	l := listenerStats(s.p, "tls")
	if l.TLSHandshakes != 2 || l.TLSResumed != 1 || l.HTTP2Streams != 2 || l.Requests != 2 {
		t.Errorf("tls listener: %d handshakes, %d resumed, %d HTTP/2 streams, %d requests; want 2, 1, 2, 2",
			l.TLSHandshakes, l.TLSResumed, l.HTTP2Streams, l.Requests)
	}
}

func TestMemberErrorStats(t *testing.T) {
	live := startBackend(t, "live", nil)
	dead := freeAddr(t, "127.0.0.21") // nothing listens there any more
	rude, err := net.Listen("tcp4", "127.0.0.21:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rude.Close()
	go func() {
		for {
			c, err := rude.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	rudeAddr := mustAddrPort(t, rude.Addr().String())
	addr := freeAddr(t, "127.0.0.21")
	p := startProxy(t, Config{
		Pools: map[string]Pool{
			"two":  {Members: []Member{live.member(), {Addr: dead, Weight: 100, Healthy: true}}},
			"rude": {Members: []Member{{Addr: rudeAddr, Weight: 100, Healthy: true}}},
		},
		Listeners: []Listener{{Name: "web", Addr: addr, DefaultPool: "two", Routes: []Route{{Name: "rude", PathPrefix: "/rude", Pool: "rude"}}}},
	})
	client := noRedirectClient()
	for range 4 {
		if resp, _ := get(t, client, "http://"+addr.String()+"/", nil); resp.StatusCode != 200 {
			t.Fatalf("GET through a pool with a live member: %d, want 200", resp.StatusCode)
		}
	}
	d := memberStats(p, "two", dead.String())
	if d.ConnectErrors == 0 || d.Retries != d.ConnectErrors || d.ResponseErrors != 0 {
		t.Errorf("dead member: %d connect errors, %d retries, %d response errors; want as many retries as connect errors (> 0), no response error",
			d.ConnectErrors, d.Retries, d.ResponseErrors)
	}
	if resp, _ := get(t, client, "http://"+addr.String()+"/rude", nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET to a member that closes: %d, want 502", resp.StatusCode)
	}
	r := memberStats(p, "rude", rudeAddr.String())
	if r.ResponseErrors != 1 || r.ConnectErrors != 0 || r.Status[5] != 1 {
		t.Errorf("member that closes: %d response errors, %d connect errors, %d 5xx; want 1, 0, 1", r.ResponseErrors, r.ConnectErrors, r.Status[5])
	}
	l := memberStats(p, "two", live.addr.String())
	if l.IdleConns != 1 {
		t.Errorf("live member after sequential requests: %d idle connections, want 1", l.IdleConns)
	}
}
