package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Timer defaults. GoBGP v3 has no BFD, so an unplanned node loss is only
// noticed when the router's hold timer expires: 3 s is the smallest hold time
// BGP allows (RFC 4271 4.2), and a 1 s keepalive leaves room for two lost
// keepalives before the router gives up.
const (
	DefaultHoldTime          = 3 * time.Second
	DefaultKeepaliveInterval = 1 * time.Second
	// defaultPort is the BGP port dialled when Peer.Port is 0.
	defaultPort = 179
	// maxPrepend bounds Announcement.Prepend: a few prepends already lose
	// against every plain path; hundreds only bloat routers' tables.
	maxPrepend = 32
)

// Config is the whole desired state of a node's BGP speaker. Apply makes the
// running speaker match it.
type Config struct {
	// RouterID is the BGP identifier, an IPv4 address unique among the
	// routers' peers (usually the node's own IPv4 address).
	RouterID netip.Addr
	// ASN is the node's autonomous system number (4-byte ASNs allowed).
	ASN uint32
	// ListenPort is the TCP port the speaker accepts sessions on. 0 or -1
	// (the default) means it does not listen and only dials its peers, so
	// a node needs no privileged port and routers may be passive.
	ListenPort int32
	// Peers are the routers to keep sessions with.
	Peers []Peer
	// Announcements are exactly the routes to announce to every peer.
	Announcements []Announcement
}

// Peer is one BGP neighbour (a router).
type Peer struct {
	Address netip.Addr
	ASN     uint32
	// Port is the peer's TCP port; 0 means 179.
	Port uint16
	// HoldTime and KeepaliveInterval are whole seconds; zero means the
	// defaults (DefaultHoldTime, DefaultKeepaliveInterval). The session
	// uses the smaller of both sides' hold times.
	HoldTime          time.Duration
	KeepaliveInterval time.Duration
	// Password enables TCP MD5 signatures (RFC 2385) when not empty.
	Password string
	// EBGPMultihop allows an eBGP peer that is not on a directly connected
	// network (TTL 255 instead of 1).
	EBGPMultihop bool
}

// Announcement is one route to announce: a VIP's host prefix.
type Announcement struct {
	// Prefix is a /32 (IPv4) or /128 (IPv6) VIP.
	Prefix netip.Prefix
	// NextHop is where routers send the VIP's traffic, of the prefix's
	// family. The zero Addr means the session's local address, which only
	// works when the peer's address has the prefix's family: an IPv6 VIP
	// announced over an IPv4 session needs an explicit IPv6 next hop.
	NextHop netip.Addr
	// Prepend is how many extra times the local ASN is put in front of the
	// AS path: 0 in the VIP's primary zone, N for backup zones, so routers
	// prefer the primary zone and fail over to the next (see README.md for
	// why prepends rather than MED).
	Prepend int
	// MED is the multi-exit discriminator; 0 sends none.
	MED uint32
	// Communities are standard communities (RFC 1997), ASN<<16 | value.
	Communities []uint32
}

// equal reports whether a and b announce the same route.
func (a Announcement) equal(b Announcement) bool {
	return a.Prefix == b.Prefix && a.NextHop == b.NextHop && a.Prepend == b.Prepend &&
		a.MED == b.MED && slices.Equal(a.Communities, b.Communities)
}

// global is the part of Config whose change needs a restart of the server.
type global struct {
	routerID   netip.Addr
	asn        uint32
	listenPort int32
}

// normalize checks cfg and returns it with defaults filled in, so that equal
// intent compares equal when diffing. It changes nothing on error.
func normalize(cfg Config) (Config, error) {
	var errs []error
	if !cfg.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("router id %v: must be an IPv4 address", cfg.RouterID))
	}
	if cfg.ASN == 0 {
		errs = append(errs, errors.New("asn: must not be 0"))
	}
	if cfg.ListenPort < -1 || cfg.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d: must be -1, 0 or a TCP port", cfg.ListenPort))
	}
	out := Config{RouterID: cfg.RouterID, ASN: cfg.ASN, ListenPort: cfg.ListenPort}
	if out.ListenPort == 0 {
		out.ListenPort = -1
	}

	seenPeers := make(map[netip.Addr]bool, len(cfg.Peers))
	for i, p := range cfg.Peers {
		p, err := normalizePeer(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %d: %w", i, err))
			continue
		}
		if seenPeers[p.Address] {
			errs = append(errs, fmt.Errorf("peer %d: address %v listed twice", i, p.Address))
			continue
		}
		seenPeers[p.Address] = true
		out.Peers = append(out.Peers, p)
	}

	seenPrefixes := make(map[netip.Prefix]bool, len(cfg.Announcements))
	for i, a := range cfg.Announcements {
		if err := checkAnnouncement(a); err != nil {
			errs = append(errs, fmt.Errorf("announcement %d: %w", i, err))
			continue
		}
		if seenPrefixes[a.Prefix] {
			errs = append(errs, fmt.Errorf("announcement %d: prefix %v listed twice", i, a.Prefix))
			continue
		}
		seenPrefixes[a.Prefix] = true
		a.Communities = slices.Clone(a.Communities)
		out.Announcements = append(out.Announcements, a)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("invalid bgp config: %w", err)
	}
	return out, nil
}

func normalizePeer(p Peer) (Peer, error) {
	if !p.Address.IsValid() || p.Address.Is4In6() || p.Address.Zone() != "" {
		return Peer{}, fmt.Errorf("address %v: must be a plain IPv4 or IPv6 address", p.Address)
	}
	if p.ASN == 0 {
		return Peer{}, fmt.Errorf("%v: asn must not be 0", p.Address)
	}
	if p.Port == 0 {
		p.Port = defaultPort
	}
	if p.HoldTime == 0 {
		p.HoldTime = DefaultHoldTime
	}
	if p.KeepaliveInterval == 0 {
		p.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if p.HoldTime%time.Second != 0 || p.KeepaliveInterval%time.Second != 0 {
		return Peer{}, fmt.Errorf("%v: hold time %v and keepalive %v must be whole seconds", p.Address, p.HoldTime, p.KeepaliveInterval)
	}
	// RFC 4271 4.2: the hold time is 0 or at least 3 s; 0 (no keepalives)
	// would mean never noticing a dead node, which Weft cannot afford.
	if p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second {
		return Peer{}, fmt.Errorf("%v: hold time %v must be between 3s and 65535s", p.Address, p.HoldTime)
	}
	if p.KeepaliveInterval < 0 || p.KeepaliveInterval >= p.HoldTime {
		return Peer{}, fmt.Errorf("%v: keepalive %v must be shorter than the hold time %v", p.Address, p.KeepaliveInterval, p.HoldTime)
	}
	if len(p.Password) > 80 { // TCP_MD5SIG_MAXKEYLEN
		return Peer{}, fmt.Errorf("%v: password longer than 80 bytes", p.Address)
	}
	return p, nil
}

func checkAnnouncement(a Announcement) error {
	if !a.Prefix.IsValid() || a.Prefix.Addr().Is4In6() || a.Prefix.Addr().Zone() != "" {
		return fmt.Errorf("prefix %v: not a valid IPv4 or IPv6 prefix", a.Prefix)
	}
	if !a.Prefix.IsSingleIP() {
		return fmt.Errorf("prefix %v: must be a single VIP (/32 or /128)", a.Prefix)
	}
	if a.NextHop.IsValid() && (a.NextHop.Is4() != a.Prefix.Addr().Is4() || a.NextHop.Is4In6() || a.NextHop.Zone() != "") {
		return fmt.Errorf("%v: next hop %v must be a plain address of the prefix's family", a.Prefix, a.NextHop)
	}
	if a.Prepend < 0 || a.Prepend > maxPrepend {
		return fmt.Errorf("%v: prepend %d must be between 0 and %d", a.Prefix, a.Prepend, maxPrepend)
	}
	return nil
}
