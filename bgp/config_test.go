package bgp

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		RouterID: netip.MustParseAddr("198.18.1.11"),
		ASN:      64513,
		Peers:    []Peer{{Address: netip.MustParseAddr("198.18.1.1"), ASN: 64512}},
		Announcements: []Announcement{
			{Prefix: netip.MustParsePrefix("198.51.100.10/32")},
			{Prefix: netip.MustParsePrefix("2001:db8:51::10/128"), NextHop: netip.MustParseAddr("2001:db8:1::11"), Prepend: 2},
		},
	}
}

func TestNormalizeDefaults(t *testing.T) {
	got, err := normalize(validConfig())
	if err != nil {
		t.Fatalf("normalize() error = %v, want nil", err)
	}
	if got.ListenPort != -1 {
		t.Errorf("ListenPort = %d, want -1 (dial only)", got.ListenPort)
	}
	wantPeer := Peer{Address: netip.MustParseAddr("198.18.1.1"), ASN: 64512, Port: 179, HoldTime: 3 * time.Second, KeepaliveInterval: time.Second}
	if !reflect.DeepEqual(got.Peers, []Peer{wantPeer}) {
		t.Errorf("Peers = %+v, want %+v", got.Peers, []Peer{wantPeer})
	}
	if len(got.Announcements) != 2 {
		t.Errorf("len(Announcements) = %d, want 2", len(got.Announcements))
	}
}

func TestNormalizeRejects(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "no router id", mutate: func(c *Config) { c.RouterID = netip.Addr{} }, wantErr: "router id"},
		{name: "ipv6 router id", mutate: func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, wantErr: "router id"},
		{name: "asn 0", mutate: func(c *Config) { c.ASN = 0 }, wantErr: "asn"},
		{name: "listen port", mutate: func(c *Config) { c.ListenPort = 70000 }, wantErr: "listen port"},
		{name: "peer asn 0", mutate: func(c *Config) { c.Peers[0].ASN = 0 }, wantErr: "asn must not be 0"},
		{name: "peer without address", mutate: func(c *Config) { c.Peers[0].Address = netip.Addr{} }, wantErr: "plain IPv4 or IPv6"},
		{name: "duplicate peer", mutate: func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, wantErr: "listed twice"},
		{name: "hold time below 3s", mutate: func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, wantErr: "between 3s"},
		{name: "fractional hold time", mutate: func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, wantErr: "whole seconds"},
		{name: "keepalive not below hold", mutate: func(c *Config) { c.Peers[0].KeepaliveInterval = 3 * time.Second }, wantErr: "shorter than the hold time"},
		{name: "not a host prefix", mutate: func(c *Config) { c.Announcements[0].Prefix = netip.MustParsePrefix("198.51.100.0/24") }, wantErr: "single VIP"},
		{name: "no prefix", mutate: func(c *Config) { c.Announcements[0].Prefix = netip.Prefix{} }, wantErr: "not a valid"},
		{name: "mapped prefix", mutate: func(c *Config) { c.Announcements[0].Prefix = netip.MustParsePrefix("::ffff:198.51.100.10/128") }, wantErr: "not a valid"},
		{name: "next hop of the other family", mutate: func(c *Config) { c.Announcements[0].NextHop = netip.MustParseAddr("2001:db8::11") }, wantErr: "prefix's family"},
		{name: "negative prepend", mutate: func(c *Config) { c.Announcements[0].Prepend = -1 }, wantErr: "prepend"},
		{name: "too many prepends", mutate: func(c *Config) { c.Announcements[0].Prepend = 33 }, wantErr: "prepend"},
		{name: "duplicate prefix", mutate: func(c *Config) { c.Announcements = append(c.Announcements, c.Announcements[0]) }, wantErr: "listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.mutate(&cfg)
			_, err := normalize(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("normalize() error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNormalizeCopiesCommunities(t *testing.T) {
	cfg := validConfig()
	cfg.Announcements[0].Communities = []uint32{1}
	got, err := normalize(cfg)
	if err != nil {
		t.Fatalf("normalize() error = %v", err)
	}
	cfg.Announcements[0].Communities[0] = 2
	if c := got.Announcements[0].Communities[0]; c != 1 {
		t.Errorf("community after the caller changed its slice = %d, want 1", c)
	}
}
