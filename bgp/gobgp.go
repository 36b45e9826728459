package bgp

// This file translates the package's types to GoBGP's API and adapts
// GoBGP's logger to log/slog.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// connectRetry is how often GoBGP redials a router it has no session with
// (it waits between 1 and 2 times this). GoBGP's default of 120 s would keep
// a node out of the ECMP group for minutes after a router restart.
const connectRetry = 2 * time.Second

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func familyOf(a netip.Addr) *api.Family {
	if a.Is4() {
		return familyIPv4
	}
	return familyIPv6
}

func apiGlobal(g global) *api.Global {
	return &api.Global{
		Asn:        g.asn,
		RouterId:   g.routerID.String(),
		ListenPort: g.listenPort,
	}
}

// apiPeer builds the GoBGP neighbour for p. Both unicast families are
// enabled on every session (MP-BGP), so one IPv4 session to a router can
// carry IPv6 VIPs too.
func apiPeer(localASN uint32, p Peer) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        localASN,
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(p.HoldTime / time.Second),
			KeepaliveInterval: uint64(p.KeepaliveInterval / time.Second),
			ConnectRetry:      uint64(connectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: familyIPv6, Enabled: true}},
		},
	}
	if p.EBGPMultihop {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	return ap
}

// apiPath builds the locally originated route for a. The AS path holds
// the local ASN Prepend times; GoBGP adds it once more when sending to an
// eBGP peer, so routers see Prepend+1 hops.
func apiPath(localASN uint32, a Announcement) (*api.Path, error) {
	addr := a.Prefix.Addr()
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: addr.String(), PrefixLen: uint32(a.Prefix.Bits())})
	if err != nil {
		return nil, fmt.Errorf("encode nlri %v: %w", a.Prefix, err)
	}
	nextHop := a.NextHop
	if !nextHop.IsValid() {
		// The unspecified next hop makes GoBGP send the session's local
		// address instead.
		nextHop = netip.IPv4Unspecified()
		if addr.Is6() {
			nextHop = netip.IPv6Unspecified()
		}
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP
	if addr.Is4() {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nextHop.String()})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{
			Family:   familyIPv6,
			NextHops: []string{nextHop.String()},
			Nlris:    []*anypb.Any{nlri},
		})
	}
	if a.Prepend > 0 {
		asns := make([]uint32, a.Prepend)
		for i := range asns {
			asns[i] = localASN
		}
		attrs = append(attrs, &api.AsPathAttribute{Segments: []*api.AsSegment{
			{Type: api.AsSegment_AS_SEQUENCE, Numbers: asns},
		}})
	}
	if a.MED != 0 {
		attrs = append(attrs, &api.MultiExitDiscAttribute{Med: a.MED})
	}
	if len(a.Communities) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: a.Communities})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, m := range attrs {
		x, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("encode %v attribute: %w", a.Prefix, err)
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: familyOf(addr), Nlri: nlri, Pattrs: pattrs}, nil
}

// withdrawPath builds what DeletePath needs to withdraw prefix: its NLRI.
func withdrawPath(prefix netip.Prefix) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: prefix.Addr().String(), PrefixLen: uint32(prefix.Bits())})
	if err != nil {
		return nil, fmt.Errorf("encode nlri %v: %w", prefix, err)
	}
	return &api.Path{Family: familyOf(prefix.Addr()), Nlri: nlri, IsWithdraw: true}, nil
}

// slogLogger is GoBGP's logger interface on top of slog.
type slogLogger struct {
	l     *slog.Logger
	level atomic.Uint32 // gobgplog.LogLevel
}

var _ gobgplog.Logger = (*slogLogger)(nil)

func newSlogLogger(l *slog.Logger) *slogLogger {
	s := &slogLogger{l: l}
	// GoBGP checks the level before building costly debug messages.
	lvl := gobgplog.InfoLevel
	if l.Enabled(context.Background(), slog.LevelDebug) {
		lvl = gobgplog.DebugLevel
	}
	s.level.Store(uint32(lvl))
	return s
}

func (s *slogLogger) log(level slog.Level, msg string, fields gobgplog.Fields) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, len(fields))
	for k, v := range fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	s.l.LogAttrs(context.Background(), level, msg, attrs...)
}

// Panic and Fatal are how GoBGP reports its own logic bugs; it expects
// neither call to return.
func (s *slogLogger) Panic(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelError, msg, fields)
	panic("gobgp: " + msg)
}

func (s *slogLogger) Fatal(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelError, msg, fields)
	panic("gobgp: " + msg)
}

func (s *slogLogger) Error(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelError, msg, fields)
}

func (s *slogLogger) Warn(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelWarn, msg, fields)
}

func (s *slogLogger) Info(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelInfo, msg, fields)
}

func (s *slogLogger) Debug(msg string, fields gobgplog.Fields) {
	s.log(slog.LevelDebug, msg, fields)
}

func (s *slogLogger) SetLevel(level gobgplog.LogLevel) { s.level.Store(uint32(level)) }

func (s *slogLogger) GetLevel() gobgplog.LogLevel { return gobgplog.LogLevel(s.level.Load()) }
