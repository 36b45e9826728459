package node

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/weftlb/weft/bgp"
	"github.com/weftlb/weft/dataplane/maglev"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/validate"
)

// Config is how `weft agent` was started.
type Config struct {
	// DataDir holds the node's identity, certificates and Raft state.
	DataDir string
	// Name, Region and Zone identify the node; Name is its Raft server ID.
	Name, Region, Zone string
	// APIAddr and RaftAddr are host:port to listen on; the advertised
	// addresses are what other nodes and clients dial (default: the listen
	// address, which must then not be a wildcard).
	APIAddr, APIAdvertise   string
	RaftAddr, RaftAdvertise string
	// GossipAddr is host:port for membership gossip (UDP and TCP); the
	// default is the Raft listen host with DefaultGossipPort. Its advertised
	// address defaults to the Raft advertised host with the same port.
	GossipAddr, GossipAdvertise string
	// APIMaxRequestBytes is the largest API request message accepted (0:
	// api.DefaultMaxRequestBytes).
	APIMaxRequestBytes int
	// Console serves the web console on the API port (console.Path).
	Console bool

	// Init creates a new cluster; Join (host:port of any member) with
	// Token joins one. Neither: restart from DataDir.
	Init  bool
	Join  string
	Token string
	// JoinTokenUses is the uses of the join token printed by Init.
	JoinTokenUses uint32

	// SnapshotThreshold and SnapshotInterval tune Raft snapshots (0: the
	// raftfsm defaults); tests lower them.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// DeadServerTimeout is how long a voter may be unreachable before
	// placement replaces it (0: the raftfsm default).
	DeadServerTimeout time.Duration

	// Dataplane is the L4 driver: "none" (default), "userspace" or "xdp".
	Dataplane string
	// Interface is where the XDP program runs (--dataplane xdp).
	Interface string
	// LocalAddrs are FullNAT source addresses of this node alone, which
	// flow sync lets another node take over when this one is lost; none:
	// FullNAT sends from the node's own address.
	LocalAddrs []netip.Addr
	// FlowSync keeps copies of this node's flows on the nodes that own
	// them (XDP only).
	FlowSync bool
	// SampleNewFlows samples one new flow in SampleNewFlows, on average,
	// for the top clients and source prefixes of each VIP (XDP only); 0
	// samples none.
	SampleNewFlows uint32
	// ConntrackEntries, MaxServices and MaxBackends size the XDP
	// program's maps, MaglevTableSize (a prime; the same on every node)
	// both drivers' tables; 0 takes the defaults (dataplane/xdp's README
	// gives the bytes each entry takes).
	ConntrackEntries, MaglevTableSize, MaxServices, MaxBackends uint32

	// BGP peers the node with its routers; BGP.ASN 0 leaves it off.
	BGP BGP
	// DrainDelay is how long a stopping node keeps forwarding after it
	// withdrew its routes, so routers move traffic away first.
	DrainDelay time.Duration
	bgpPeers   []bgp.Peer

	// DNSAddr is the host:port the node answers DNS on, over UDP and TCP,
	// for the zones of the committed state ("": no DNS server).
	DNSAddr string
	// DNSAnycast announces DNSAddr's address over BGP like a VIP, from
	// every zone, and makes it local: anycast DNS (it needs BGP).
	DNSAnycast bool
	// DNSRateLimit is the UDP responses per second one client prefix gets
	// (response rate limiting); 0 takes gslb.DefaultRateLimit, negative
	// turns it off.
	DNSRateLimit int

	// MetricsAddr is the host:port serving Prometheus metrics on /metrics
	// ("": none). cmd/weft defaults it to DefaultMetricsAddr, on loopback:
	// the metrics need no token, and name the cluster's VIPs and servers.
	MetricsAddr string

	// TicketRotation is how often the leader rotates the cluster's TLS
	// session-ticket keys (0: DefaultTicketRotation); three are kept.
	TicketRotation time.Duration

	// QUICServerID is the node's id in the connection IDs of the HTTP/3
	// connections it serves (l7/quiccid.go); it should differ between the
	// nodes serving the same VIPs. 0 derives one from Name.
	QUICServerID uint16

	// AccessLog gets the access log lines of the http and https listeners
	// whose accessLog is enabled, one JSON object a line; nil: none are
	// written.
	AccessLog io.Writer

	Logger *slog.Logger
}

// DefaultGossipPort is memberlist's usual port.
const DefaultGossipPort = "7946"

// DefaultMetricsAddr is where the metrics are served unless told: on
// loopback, beside the API's 7400 and Raft's 7401 (Prometheus's exporter
// range 9100-9999 is all allocated).
const DefaultMetricsAddr = "127.0.0.1:7402"

// Dataplane drivers.
const (
	DataplaneNone      = "none"
	DataplaneUserspace = "userspace"
	DataplaneXDP       = "xdp"
)

func (c *Config) setDefaults() error {
	if c.Region == "" {
		c.Region = "default"
	}
	if c.Zone == "" {
		c.Zone = "default"
	}
	if c.JoinTokenUses == 0 {
		c.JoinTokenUses = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch c.Dataplane {
	case "":
		c.Dataplane = DataplaneNone
	case DataplaneNone, DataplaneUserspace:
	case DataplaneXDP:
		if c.Interface == "" {
			return errors.New("--dataplane xdp needs --interface")
		}
	default:
		return fmt.Errorf("--dataplane: %q is not %s, %s or %s", c.Dataplane, DataplaneNone, DataplaneUserspace, DataplaneXDP)
	}
	for _, p := range c.BGP.Peers {
		peer, err := ParsePeer(p)
		if err != nil {
			return fmt.Errorf("--bgp-peer: %w", err)
		}
		c.bgpPeers = append(c.bgpPeers, peer)
	}
	if c.BGP.ASN != 0 && len(c.bgpPeers) == 0 {
		return errors.New("--bgp-asn needs at least one --bgp-peer")
	}
	if c.BGP.PrependPerZone == 0 {
		c.BGP.PrependPerZone = 2
	}
	if c.APIMaxRequestBytes < 0 {
		return fmt.Errorf("--api-max-request-bytes: %d is negative", c.APIMaxRequestBytes)
	}
	switch {
	case c.TicketRotation == 0:
		c.TicketRotation = DefaultTicketRotation
	case c.TicketRotation < time.Second:
		return fmt.Errorf("--tls-ticket-rotation: %v is shorter than 1s", c.TicketRotation)
	}
	if c.QUICServerID == 0 {
		c.QUICServerID = quicServerID(c.Name)
	}
	if err := c.dnsDefaults(); err != nil {
		return err
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %q: %w", c.MetricsAddr, err)
		}
	}
	var err error
	if c.APIAdvertise, err = advertise("api", c.APIAddr, c.APIAdvertise); err != nil {
		return err
	}
	if c.RaftAdvertise, err = advertise("raft", c.RaftAddr, c.RaftAdvertise); err != nil {
		return err
	}
	if err := c.checkLocalAddrs(); err != nil {
		return err
	}
	if err := c.checkDataplaneSizes(); err != nil {
		return err
	}
	return c.gossipDefaults()
}

// checkDataplaneSizes checks the map and table sizes against the
// dataplane's bounds.
func (c *Config) checkDataplaneSizes() error {
	if c.MaglevTableSize != 0 {
		if err := maglev.ValidateSize(c.MaglevTableSize); err != nil {
			return fmt.Errorf("--maglev-table-size: %w", err)
		}
	}
	for _, f := range []struct {
		flag     string
		v, limit uint32
	}{
		{"--conntrack-entries", c.ConntrackEntries, xdp.MaxConnTrackSize},
		{"--max-services", c.MaxServices, xdp.MaxServices},
		{"--max-backends", c.MaxBackends, xdp.MaxBackends},
	} {
		if f.v > f.limit {
			return fmt.Errorf("%s: %d is above the maximum %d", f.flag, f.v, f.limit)
		}
	}
	return nil
}

// quicServerID derives a node's QUIC server id from its name: 16 bits of
// its FNV-1a hash, never 0. Among 10 nodes two share one with odds of
// about 1 in 1,500; --quic-server-id sets distinct ones.
func quicServerID(name string) uint16 {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	return max(uint16(v>>16^v), 1)
}

// maxLocalAddrs is the XDP program's limit per address family
// (MAX_LOCAL_ADDRS).
const maxLocalAddrs = 16

// checkLocalAddrs checks --local-addr: unicast addresses, none twice, none
// of the node's own (another node takes a local address over when this one
// is lost, which it must never do to the address the node itself uses).
func (c *Config) checkLocalAddrs() error {
	if len(c.LocalAddrs) > 0 && c.Dataplane != DataplaneXDP {
		return errors.New("--local-addr needs --dataplane xdp")
	}
	own := map[netip.Addr]bool{}
	for _, a := range []string{c.APIAdvertise, c.RaftAdvertise} {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			own[ap.Addr().Unmap()] = true
		}
	}
	var n4, n6 int
	seen := map[netip.Addr]bool{}
	for _, a := range c.LocalAddrs {
		a = a.Unmap()
		switch {
		case !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			return fmt.Errorf("--local-addr: %v is not a unicast address", a)
		case seen[a]:
			return fmt.Errorf("--local-addr: %v is given twice", a)
		case own[a]:
			return fmt.Errorf("--local-addr: %v is the node's own address (API or Raft), which no other node may take over", a)
		case a.Is4():
			n4++
		default:
			n6++
		}
		seen[a] = true
	}
	if n4 > maxLocalAddrs || n6 > maxLocalAddrs {
		return fmt.Errorf("--local-addr: at most %d addresses per family", maxLocalAddrs)
	}
	return nil
}

// dnsDefaults checks the DNS flags.
func (c *Config) dnsDefaults() error {
	if c.DNSAddr == "" {
		if c.DNSAnycast {
			return errors.New("--dns-anycast needs --dns-addr")
		}
		return nil
	}
	host, _, err := net.SplitHostPort(c.DNSAddr)
	if err != nil {
		return fmt.Errorf("--dns-addr %q: %w", c.DNSAddr, err)
	}
	if !c.DNSAnycast {
		return nil
	}
	if c.BGP.ASN == 0 {
		return errors.New("--dns-anycast announces the DNS address over BGP: it needs --bgp-asn")
	}
	if _, err := c.dnsAnycastAddr(); err != nil || host == "" {
		return fmt.Errorf("--dns-anycast: --dns-addr %q must name one IP address to announce", c.DNSAddr)
	}
	return nil
}

// dnsAnycastAddr is the address --dns-anycast announces.
func (c *Config) dnsAnycastAddr() (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(c.DNSAddr)
	if err != nil || ap.Addr().IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("dns address %q is not one IP address and port", c.DNSAddr)
	}
	return ap.Addr().Unmap(), nil
}

// gossipDefaults derives the gossip addresses from the Raft ones.
func (c *Config) gossipDefaults() error {
	if c.GossipAddr == "" {
		host, _, err := net.SplitHostPort(c.RaftAddr)
		if err != nil {
			return fmt.Errorf("raft address %q: %w", c.RaftAddr, err)
		}
		c.GossipAddr = net.JoinHostPort(host, DefaultGossipPort)
	}
	_, port, err := net.SplitHostPort(c.GossipAddr)
	if err != nil {
		return fmt.Errorf("gossip address %q: %w", c.GossipAddr, err)
	}
	if c.GossipAdvertise == "" {
		host, _, _ := net.SplitHostPort(c.RaftAdvertise) // checked by advertise
		c.GossipAdvertise = net.JoinHostPort(host, port)
	}
	c.GossipAdvertise, err = advertise("gossip", c.GossipAddr, c.GossipAdvertise)
	return err
}

// advertise picks the address others dial for a listen address.
func advertise(what, listen, adv string) (string, error) {
	if adv == "" {
		adv = listen
	}
	host, port, err := net.SplitHostPort(adv)
	if err != nil {
		return "", fmt.Errorf("%s advertise address %q: %w", what, adv, err)
	}
	ip := net.ParseIP(host)
	if host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", fmt.Errorf("%s address %q is a wildcard: set --advertise-%s to an address other nodes can dial", what, adv, what)
	}
	if port == "0" {
		return "", fmt.Errorf("%s advertise address %q: port 0 cannot be dialled", what, adv)
	}
	return adv, nil
}

// listenPorts are the ports this node's own services bind, as configured
// (wildcards included), which the API keeps listeners off; the node table
// holds only the advertised addresses.
func (c *Config) listenPorts(name string) []validate.NodePort {
	ports := append(validate.NodePorts(name, c.APIAddr, c.RaftAddr, c.GossipAddr),
		validate.ServicePorts(name, validate.ServiceDNS, c.DNSAddr)...)
	return append(ports, validate.ServicePorts(name, validate.ServiceMetrics, c.MetricsAddr)...)
}
