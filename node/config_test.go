package node

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestConfig_GossipDefaults(t *testing.T) {
	tests := []struct {
		name                                       string
		raft, raftAdv, gossip, gossipAdv           string
		wantGossip, wantGossipAdvertise, wantError string
	}{
		{name: "from the raft address", raft: "10.0.0.1:7401",
			wantGossip: "10.0.0.1:7946", wantGossipAdvertise: "10.0.0.1:7946"},
		{name: "wildcard raft with an advertised host", raft: "0.0.0.0:7401", raftAdv: "10.0.0.1:7401",
			wantGossip: "0.0.0.0:7946", wantGossipAdvertise: "10.0.0.1:7946"},
		{name: "own port keeps the advertised host", raft: "10.0.0.1:7401", gossip: "10.0.0.1:8000",
			wantGossip: "10.0.0.1:8000", wantGossipAdvertise: "10.0.0.1:8000"},
		{name: "explicit advertise", raft: "10.0.0.1:7401", gossip: "0.0.0.0:8000", gossipAdv: "192.0.2.1:9000",
			wantGossip: "0.0.0.0:8000", wantGossipAdvertise: "192.0.2.1:9000"},
		{name: "not host:port", raft: "10.0.0.1:7401", gossip: "10.0.0.1",
			wantError: `gossip address "10.0.0.1"`},
		{name: "port 0 cannot be advertised", raft: "10.0.0.1:7401", gossip: "10.0.0.1:0",
			wantError: "port 0 cannot be dialled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{RaftAddr: tc.raft, RaftAdvertise: tc.raftAdv, APIAddr: "10.0.0.1:7400",
				GossipAddr: tc.gossip, GossipAdvertise: tc.gossipAdv}
			err := c.setDefaults()
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("setDefaults() error = %v, want one containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.GossipAddr != tc.wantGossip || c.GossipAdvertise != tc.wantGossipAdvertise {
				t.Errorf("gossip %s advertise %s, want %s advertise %s", c.GossipAddr, c.GossipAdvertise, tc.wantGossip, tc.wantGossipAdvertise)
			}
		})
	}
}

// TestConfig_ListenPorts: the API is given the ports the node binds as
// configured, the defaulted gossip port and wildcards included.
func TestConfig_ListenPorts(t *testing.T) {
	c := Config{APIAddr: "0.0.0.0:7400", APIAdvertise: "10.0.0.1:7400", RaftAddr: "10.0.0.1:7401", DNSAddr: ":53", MetricsAddr: ":7402"}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.listenPorts("n1") {
		got = append(got, fmt.Sprintf("%s %s %s", p.Node, p.Service, p.Addr))
	}
	want := []string{"n1 API 0.0.0.0:7400", "n1 Raft 10.0.0.1:7401", "n1 gossip 10.0.0.1:7946", "n1 DNS [::]:53", "n1 metrics [::]:7402"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestConfig_QUICServerID: without --quic-server-id the id comes from the
// name (the same on every start, nonzero, different for the lab's names);
// a set one is kept.
func TestConfig_QUICServerID(t *testing.T) {
	ids := map[uint16]string{}
	for _, name := range []string{"node1", "node2", "node3", "node4", "node5", "node6"} {
		c := Config{Name: name, APIAddr: "127.0.0.1:7400", RaftAddr: "127.0.0.1:7401"}
		if err := c.setDefaults(); err != nil {
			t.Fatal(err)
		}
		if c.QUICServerID == 0 || c.QUICServerID != quicServerID(name) {
			t.Errorf("%s: server id %d, want %d", name, c.QUICServerID, quicServerID(name))
		}
		if other, dup := ids[c.QUICServerID]; dup {
			t.Errorf("%s and %s have server id %d", other, name, c.QUICServerID)
		}
		ids[c.QUICServerID] = name
	}
	c := Config{Name: "node1", APIAddr: "127.0.0.1:7400", RaftAddr: "127.0.0.1:7401", QUICServerID: 7}
	if err := c.setDefaults(); err != nil || c.QUICServerID != 7 {
		t.Errorf("set server id 7: got %d, %v", c.QUICServerID, err)
	}
}

func TestConfig_DNS(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // error; "" for none
	}{
		{"dns on a wildcard", Config{DNSAddr: ":53"}, ""},
		{"anycast with BGP", Config{DNSAddr: "198.51.100.53:53", DNSAnycast: true, BGP: BGP{ASN: 64513, Peers: []string{"10.0.0.254:64512"}}}, ""},
		{"anycast without an address", Config{DNSAnycast: true}, "--dns-anycast needs --dns-addr"},
		{"anycast without BGP", Config{DNSAddr: "198.51.100.53:53", DNSAnycast: true}, "it needs --bgp-asn"},
		{"anycast on a wildcard", Config{DNSAddr: "0.0.0.0:53", DNSAnycast: true, BGP: BGP{ASN: 64513, Peers: []string{"10.0.0.254:64512"}}},
			"must name one IP address"},
		{"no port", Config{DNSAddr: "198.51.100.53"}, "missing port"},
		{"metrics without a port", Config{MetricsAddr: "127.0.0.1"}, `--metrics-addr "127.0.0.1": address 127.0.0.1: missing port`},
		{"metrics on loopback", Config{MetricsAddr: DefaultMetricsAddr}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.APIAddr, c.RaftAddr = "10.0.0.1:7400", "10.0.0.1:7401"
			err := c.setDefaults()
			if got := fmt.Sprint(err); (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(got, tc.want)) {
				t.Errorf("setDefaults() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestConfig_APIMaxRequestBytes(t *testing.T) {
	c := Config{APIAddr: "10.0.0.1:7400", RaftAddr: "10.0.0.1:7401", APIMaxRequestBytes: -1}
	if err := c.setDefaults(); err == nil || !strings.Contains(err.Error(), "--api-max-request-bytes: -1 is negative") {
		t.Errorf("setDefaults() = %v, want the negative limit refused", err)
	}
}

func TestConfig_LocalAddrs(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	many := make([]string, 17)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.1.%d", i+1)
	}
	for _, tc := range []struct {
		name, dataplane string
		local           []netip.Addr
		want            string
	}{
		{"dedicated", DataplaneXDP, addrs("10.0.0.111", "2001:db8::111"), ""},
		{"the raft address", DataplaneXDP, addrs("10.0.0.1"), "--local-addr: 10.0.0.1 is the node's own address"},
		{"twice", DataplaneXDP, addrs("10.0.0.111", "10.0.0.111"), "is given twice"},
		{"loopback", DataplaneXDP, addrs("127.0.0.2"), "is not a unicast address"},
		{"too many", DataplaneXDP, addrs(many...), "at most 16 addresses per family"},
		{"without xdp", DataplaneUserspace, addrs("10.0.0.111"), "--local-addr needs --dataplane xdp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{APIAddr: "10.0.0.1:7400", RaftAddr: "10.0.0.1:7401", Dataplane: tc.dataplane, Interface: "eth0", LocalAddrs: tc.local}
			checkDefaults(t, &c, tc.want)
		})
	}
}

func TestConfig_DataplaneSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"sized for 10,000 services", func(c *Config) {
			c.ConntrackEntries, c.MaglevTableSize, c.MaxServices, c.MaxBackends = 4<<20, 4099, 10000, 100000
		}, ""},
		{"table size not prime", func(c *Config) { c.MaglevTableSize = 4096 }, "--maglev-table-size: invalid maglev table size: 4096 is not prime"},
		{"conntrack too large", func(c *Config) { c.ConntrackEntries = 1 << 30 }, "--conntrack-entries: 1073741824 is above the maximum"},
		{"services too many", func(c *Config) { c.MaxServices = 1 << 21 }, "--max-services: 2097152 is above the maximum"},
		{"backends too many", func(c *Config) { c.MaxBackends = 1 << 23 }, "--max-backends: 8388608 is above the maximum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{APIAddr: "10.0.0.1:7400", RaftAddr: "10.0.0.1:7401", Dataplane: DataplaneXDP, Interface: "eth0"}
			tc.set(&c)
			checkDefaults(t, &c, tc.want)
		})
	}
}

// checkDefaults fails unless c.setDefaults() fails with an error
// containing want, or succeeds when want is empty.
func checkDefaults(t *testing.T, c *Config, want string) {
	t.Helper()
	err := c.setDefaults()
	switch {
	case want == "" && err != nil:
		t.Errorf("setDefaults() = %v, want nil", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("setDefaults() = %v, want %q", err, want)
	}
}
