package node

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// neighbors reads the kernel's neighbour table for iface (the MACs of
// on-link backends, learnt by the node's own traffic such as health checks)
// and the MAC of its IPv4 default gateway, which the XDP program needs to
// forward. It asks over netlink: the reconciler calls it every round, and
// running iproute2 there cost tens of milliseconds per round.
func neighbors(h *netlink.Handle, iface string) (map[netip.Addr]net.HardwareAddr, net.HardwareAddr, error) {
	link, err := h.LinkByName(iface)
	if err != nil {
		return nil, nil, fmt.Errorf("read neighbours of %s: %w", iface, err)
	}
	idx := link.Attrs().Index
	entries, err := h.NeighList(idx, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("read neighbours of %s: %w", iface, err)
	}
	table := map[netip.Addr]net.HardwareAddr{}
	for _, e := range entries {
		a, ok := netip.AddrFromSlice(e.IP)
		if !ok || len(e.HardwareAddr) != 6 || e.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 {
			continue
		}
		table[a.Unmap()] = e.HardwareAddr
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: idx}, netlink.RT_FILTER_OIF)
	if err != nil {
		return nil, nil, fmt.Errorf("read default route of %s: %w", iface, err)
	}
	var gw net.HardwareAddr
	for _, r := range routes {
		if isDefault(r.Dst) {
			if a, ok := netip.AddrFromSlice(r.Gw); ok {
				gw = table[a.Unmap()]
			}
		}
	}
	return table, gw, nil
}

// isDefault reports whether a route's destination is the default route
// (netlink gives it as nil or as 0.0.0.0/0).
func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}
