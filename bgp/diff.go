package bgp

import (
	"net/netip"
	"slices"
)

// This file holds the pure diffing behind Apply: what to change in the
// running server so that it matches a Config. Results are sorted so that
// Apply acts, and logs, in a stable order.

// peerPlan is what Apply does to the server's neighbours.
type peerPlan struct {
	// remove are deleted first: peers no longer wanted and peers whose
	// settings changed (re-added from add, since GoBGP applies most
	// neighbour settings only when the session starts).
	remove []netip.Addr
	add    []Peer
}

// planPeers compares the configured peers with the wanted ones.
func planPeers(have map[netip.Addr]Peer, want []Peer) peerPlan {
	var plan peerPlan
	wanted := make(map[netip.Addr]bool, len(want))
	for _, p := range want {
		wanted[p.Address] = true
		old, ok := have[p.Address]
		switch {
		case !ok:
			plan.add = append(plan.add, p)
		case old != p:
			plan.remove = append(plan.remove, p.Address)
			plan.add = append(plan.add, p)
		}
	}
	for addr := range have {
		if !wanted[addr] {
			plan.remove = append(plan.remove, addr)
		}
	}
	slices.SortFunc(plan.remove, netip.Addr.Compare)
	slices.SortFunc(plan.add, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	return plan
}

// pathPlan is what Apply does to the server's locally originated routes.
type pathPlan struct {
	withdraw []netip.Prefix
	// announce holds new routes and changed ones: announcing a prefix
	// again replaces its previous route (an implicit withdraw), so a
	// change of prepends never leaves the prefix unannounced.
	announce []Announcement
}

// planPaths compares the announced routes with the wanted ones.
func planPaths(have map[netip.Prefix]Announcement, want []Announcement) pathPlan {
	var plan pathPlan
	wanted := make(map[netip.Prefix]bool, len(want))
	for _, a := range want {
		wanted[a.Prefix] = true
		if old, ok := have[a.Prefix]; !ok || !old.equal(a) {
			plan.announce = append(plan.announce, a)
		}
	}
	for p := range have {
		if !wanted[p] {
			plan.withdraw = append(plan.withdraw, p)
		}
	}
	slices.SortFunc(plan.withdraw, comparePrefix)
	slices.SortFunc(plan.announce, func(a, b Announcement) int { return comparePrefix(a.Prefix, b.Prefix) })
	return plan
}

// needsRestart reports whether going from running to next needs the server
// stopped and started again: GoBGP cannot change the router id, ASN or
// listening port of a running server.
func needsRestart(running *global, next global) bool {
	return running == nil || *running != next
}

func globalOf(cfg Config) global {
	return global{routerID: cfg.RouterID, asn: cfg.ASN, listenPort: cfg.ListenPort}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
