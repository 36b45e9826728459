package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weftlb/weft/manifest"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
)

// printStatus shows a node's Status as text: Raft progress, subsystems,
// BGP, gossip membership, the health view and the nodes (with their wide
// columns when wide is set).
func printStatus(w io.Writer, m *weftv1.StatusResponse, wide bool) error {
	fmt.Fprintf(w, "node:    %s (%s)\nversion: %s\nleader:  %s %s\nterm:    %d\ncommit:  %d\napplied: %d\n",
		m.GetNodeName(), m.GetState(), m.GetVersion(), m.GetLeaderName(), m.GetLeaderApiAddress(),
		m.GetTerm(), m.GetCommitIndex(), m.GetAppliedIndex())
	for _, s := range m.GetSubsystems() {
		fmt.Fprintf(w, "%-11s applied %d %s\n", s.GetName()+":", s.GetAppliedIndex(), s.GetError())
	}
	if len(m.GetGossip()) > 0 {
		fmt.Fprintln(w, "\ngossip members:")
		var rows [][]string
		for _, g := range m.GetGossip() {
			rows = append(rows, []string{g.GetName(), g.GetAddress(), g.GetZone(), g.GetState(),
				strconv.FormatBool(g.GetChecker()), strconv.FormatBool(g.GetDraining()), strconv.FormatUint(g.GetAppliedIndex(), 10),
				g.GetVersion()})
		}
		if err := manifest.Table(w, []string{"name", "address", "zone", "state", "checker", "draining", "applied", "version"}, rows); err != nil {
			return err
		}
	}
	if b := m.GetBgp(); b != nil {
		fmt.Fprintf(w, "\nbgp: router id %s, AS %d", b.GetRouterId(), b.GetAsn())
		if b.GetDraining() {
			fmt.Fprint(w, ", draining")
		}
		if b.GetError() != "" {
			fmt.Fprintf(w, ", error: %s", b.GetError())
		}
		fmt.Fprintln(w)
		var rows [][]string
		for _, p := range b.GetPeers() {
			up := ""
			if p.GetEstablishedSince() != nil {
				up = time.Since(p.GetEstablishedSince().AsTime()).Truncate(time.Second).String()
			}
			rows = append(rows, []string{p.GetAddress(), strconv.Itoa(int(p.GetAsn())), p.GetState(), up})
		}
		if err := manifest.Table(w, []string{"peer", "asn", "state", "up"}, rows); err != nil {
			return err
		}
		for _, a := range b.GetAnnounced() {
			fmt.Fprintf(w, "announced %s (prepends %d)\n", a.GetPrefix(), a.GetPrepend())
		}
	}
	if err := printFlowSync(w, m.GetFlowSync()); err != nil {
		return err
	}
	if d := m.GetDns(); d != nil {
		printDNSStatus(w, d)
	}
	if len(m.GetMembers()) > 0 {
		fmt.Fprintln(w, "\nhealth view:")
		var rows [][]string
		for _, h := range m.GetMembers() {
			state := "down"
			if h.GetUp() {
				state = "up"
			}
			rows = append(rows, []string{h.GetPool(), net.JoinHostPort(h.GetAddress(), strconv.Itoa(int(h.GetPort()))),
				state, strings.Join(h.GetCheckers(), ","), h.GetProbe(), h.GetLastError()})
		}
		if err := manifest.Table(w, []string{"pool", "member", "state", "checkers", "probe here", "last error"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nnodes:")
	return nodeTable(m.GetNodes()).write(w, wide)
}

// printFlowSync shows the node's flow ownership and sync: the table's
// epoch and this node's share, the local addresses it answers for, its
// sync peers with backlog and lag, and the counters.
func printFlowSync(w io.Writer, f *weftv1.FlowSyncStatus) error {
	if f == nil {
		return nil
	}
	ready := "pulled"
	if f.GetReadyEpoch() != f.GetEpoch() {
		ready = fmt.Sprintf("pulling (holds epoch %d)", f.GetReadyEpoch())
	}
	fmt.Fprintf(w, "\nflow sync: ownership epoch %d, %s; owns %d of %d buckets first, %d second\n",
		f.GetEpoch(), ready, f.GetPrimary(), f.GetBuckets(), f.GetBackup())
	if len(f.GetHeld()) > 0 {
		fmt.Fprintf(w, "answers for local addresses: %s\n", strings.Join(f.GetHeld(), ", "))
	}
	fmt.Fprintf(w, "flows: %d reported (%d lost), %d copies sent (%d bytes, %d unsent), %d received, %d installed, %d rejected, %d pulled\n",
		f.GetReported(), f.GetReportLost(), f.GetSent(), f.GetSentBytes(), f.GetUnsent(), f.GetReceived(), f.GetInstalled(), f.GetRejected(), f.GetPulled())
	fmt.Fprintf(w, "packets handed to another node: %d client, %d reply\n", f.GetHandedForward(), f.GetHandedReply())
	var rows [][]string
	for _, p := range f.GetPeers() {
		rows = append(rows, []string{p.GetName(), p.GetState(), strconv.FormatUint(p.GetReadyEpoch(), 10),
			strconv.Itoa(int(p.GetBacklog())), strconv.Itoa(int(p.GetLagMs())), strconv.FormatUint(p.GetSent(), 10)})
	}
	return manifest.Table(w, []string{"sync peer", "state", "ready epoch", "backlog", "lag ms", "sent"}, rows)
}

// printDNSStatus shows the node's DNS server: where it listens, its zones
// and what it answered, fail-open records first.
func printDNSStatus(w io.Writer, d *weftv1.DNSStatus) {
	fmt.Fprintf(w, "\ndns: %s", d.GetAddress())
	if d.GetAnnounced() {
		fmt.Fprint(w, " (anycast, announced over BGP)")
	}
	if d.GetError() != "" {
		fmt.Fprintf(w, ", error: %s", d.GetError())
	}
	fmt.Fprintln(w)
	if fo := d.GetFailOpenRecords(); len(fo) > 0 {
		fmt.Fprintf(w, "failing open (no healthy target): %s\n", strings.Join(fo, ", "))
	}
	for _, z := range d.GetZones() {
		fmt.Fprintf(w, "zone %s serial %d, %d records\n", z.GetName(), z.GetSerial(), z.GetRecords())
	}
	var rcodes []string
	for _, rc := range slices.Sorted(maps.Keys(d.GetResponses())) {
		rcodes = append(rcodes, fmt.Sprintf("%s %d", rc, d.GetResponses()[rc]))
	}
	fmt.Fprintf(w, "queries: udp %d, tcp %d; responses: %s; truncated %d, rate-limited %d (slipped %d), fail-open %d, transfers %d\n",
		d.GetQueries()["udp"], d.GetQueries()["tcp"], strings.Join(rcodes, ", "), d.GetTruncated(), d.GetRateLimited(),
		d.GetSlipped(), d.GetFailOpen(), d.GetTransfers())
}
