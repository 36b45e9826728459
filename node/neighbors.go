package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
)

// neighbors reads the kernel's neighbour table for iface (the MACs of
// on-link backends, learnt by the node's own traffic such as health checks)
// and the MAC of its default gateway, which the XDP program needs to
// forward. It asks iproute2 in JSON form.
func neighbors(ctx context.Context, iface string) (map[netip.Addr]net.HardwareAddr, net.HardwareAddr, error) {
	out, err := exec.CommandContext(ctx, "ip", "-j", "neigh", "show", "dev", iface).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("read neighbours of %s: %w", iface, err)
	}
	var entries []struct {
		Dst    string   `json:"dst"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, nil, fmt.Errorf("parse neighbours of %s: %w", iface, err)
	}
	table := map[netip.Addr]net.HardwareAddr{}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Dst)
		mac, merr := net.ParseMAC(e.LLAddr)
		if err != nil || merr != nil || slices.Contains(e.State, "FAILED") || slices.Contains(e.State, "INCOMPLETE") {
			continue
		}
		table[a] = mac
	}
	out, err = exec.CommandContext(ctx, "ip", "-j", "route", "show", "default", "dev", iface).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("read default route of %s: %w", iface, err)
	}
	var routes []struct {
		Gateway string `json:"gateway"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, nil, fmt.Errorf("parse default route of %s: %w", iface, err)
	}
	var gw net.HardwareAddr
	for _, r := range routes {
		if a, err := netip.ParseAddr(r.Gateway); err == nil {
			gw = table[a]
		}
	}
	return table, gw, nil
}
