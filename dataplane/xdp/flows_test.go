package xdp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftlb/weft/dataplane"
)

var (
	peerMAC  = mac("02:00:00:00:00:02") // another node on the segment
	heldAddr = ip("10.0.0.200")         // a local address this node holds
	peerAddr = ip("10.0.0.201")         // a local address another node holds
)

// routing sends every bucket to owner and names peerMAC as peer 0.
func routing(d *Dataplane, owner uint32, sync bool) dataplane.FlowRouting {
	owners := make([]uint32, d.FlowBuckets())
	for i := range owners {
		owners[i] = owner
	}
	return dataplane.FlowRouting{Sync: sync, MAC: nodeMAC, Peers: []net.HardwareAddr{peerMAC}, Owners: owners,
		Local: map[netip.Addr]dataplane.LocalTarget{
			heldAddr: {Target: dataplane.TargetSelf, Held: true},
			peerAddr: {Target: 0},
		}}
}

func TestFlowRouting(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFlowRouting(routing(d, 0, false)); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	pkt := func(src string, vip string, port uint16, proto string, f func(*packet)) packet {
		p := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.MustParseAddrPort(src), dst: netip.AddrPortFrom(ip(vip), port),
			proto: proto, ack: proto == "tcp", payload: "data"}
		if f != nil {
			f(&p)
		}
		return p
	}
	handed := func(p packet) packet {
		return p.with(func(q *packet) { q.srcMAC, q.dstMAC = nodeMAC, peerMAC })
	}
	fromPeer := func(q *packet) { q.srcMAC = peerMAC }
	reply := func(dst netip.Addr) packet {
		return packet{srcMAC: backendMAC[ip("10.1.0.11")], dstMAC: nodeMAC, src: netip.MustParseAddrPort("10.1.0.11:8080"),
			dst: netip.AddrPortFrom(dst, 2000), proto: "tcp", ack: true, payload: "world"}
	}
	rows := []fixture{
		{name: "fullnat segment of an unknown flow handed to its owner", in: pkt("198.51.100.30:1000", "192.0.2.1", 80, "tcp", nil),
			action: xdpTX, want: handed(pkt("198.51.100.30:1000", "192.0.2.1", 80, "tcp", nil))},
		{name: "dsr segment of an unknown flow handed to its owner", in: pkt("198.51.100.30:1001", "192.0.2.2", 80, "tcp", nil),
			action: xdpTX, want: handed(pkt("198.51.100.30:1001", "192.0.2.2", 80, "tcp", nil))},
		{name: "v6 segment of an unknown flow handed to its owner", in: pkt("[2001:db8:c::30]:1000", "2001:db8::1", 80, "tcp", nil),
			action: xdpTX, want: handed(pkt("[2001:db8:c::30]:1000", "2001:db8::1", 80, "tcp", nil))},
		{name: "udp datagram of an unknown flow handed to its owner", in: pkt("198.51.100.30:1002", "192.0.2.1", 53, "udp", nil),
			action: xdpTX, want: handed(pkt("198.51.100.30:1002", "192.0.2.1", 53, "udp", nil))},
		{name: "fullnat segment handed over already is not handed on", in: pkt("198.51.100.30:1003", "192.0.2.1", 80, "tcp", fromPeer),
			action: xdpDrop},
		{name: "dsr segment handed over already goes by the table", in: pkt("198.51.100.30:1004", "192.0.2.2", 80, "tcp", fromPeer),
			action: xdpTX, want: forwardedPkt(t, cfg, pkt("198.51.100.30:1004", "192.0.2.2", 80, "tcp", fromPeer))},
		{name: "udp datagram handed over already opens the flow here", in: pkt("198.51.100.30:1005", "192.0.2.1", 53, "udp", fromPeer),
			action: xdpTX, want: forwardedPkt(t, cfg, pkt("198.51.100.30:1005", "192.0.2.1", 53, "udp", fromPeer))},
		{name: "syn opens the flow here whoever owns it", in: pkt("198.51.100.30:1006", "192.0.2.1", 80, "tcp", func(q *packet) { q.syn, q.ack = true, false }),
			action: xdpTX, want: forwardedPkt(t, cfg, pkt("198.51.100.30:1006", "192.0.2.1", 80, "tcp", func(q *packet) { q.syn, q.ack = true, false }))},
		{name: "reply to another node's local address handed to it", in: reply(peerAddr), action: xdpTX, want: handed(reply(peerAddr))},
		{name: "reply to a held local address without entry passes", in: reply(heldAddr), action: xdpPass},
		{name: "reply handed over already passes", in: reply(peerAddr).with(fromPeer), action: xdpPass},
		{name: "arp request for a held address answered", raw: arpRequest(heldAddr), action: xdpTX, wantRaw: arpReply(heldAddr)},
		{name: "arp request for another node's address passes", raw: arpRequest(peerAddr), action: xdpPass},
		{name: "arp reply passes", raw: arpReply(heldAddr), action: xdpPass},
		{name: "truncated arp passes", raw: arpRequest(heldAddr)[:30], action: xdpPass},
	}
	runFixtures(t, r, rows)

	// Routing back to this node: an unknown FullNAT segment is dropped again.
	if err := d.SetFlowRouting(routing(d, dataplane.TargetSelf, false)); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.run(t, pkt("198.51.100.30:1007", "192.0.2.1", 80, "tcp", nil).frame(t)); got != xdpDrop {
		t.Errorf("unknown segment with this node as owner: %s, want XDP_DROP", actionNames[got])
	}
	c, err := d.FlowCounters()
	if err != nil {
		t.Fatal(err)
	}
	if c.RedirectForward != 4 || c.RedirectReply != 1 || c.ARPReplies != 1 {
		t.Errorf("counters %+v, want 4 client packets and 1 reply handed over, 1 ARP reply", c)
	}
}

// arpRequest asks, from the gateway, who has addr.
func arpRequest(addr netip.Addr) []byte {
	b := arpFrame()
	b[14], b[15], b[16], b[17], b[18], b[19], b[20], b[21] = 0, 1, 8, 0, 6, 4, 0, 1
	copy(b[22:], gwMAC)
	copy(b[28:], ip("10.0.0.1").AsSlice())
	copy(b[38:], addr.AsSlice())
	return b
}

// arpReply is this node's answer to arpRequest(addr).
func arpReply(addr netip.Addr) []byte {
	b := arpRequest(addr)
	copy(b, gwMAC)
	copy(b[6:], nodeMAC)
	b[21] = 2
	copy(b[22:], nodeMAC)
	copy(b[28:], addr.AsSlice())
	copy(b[32:], gwMAC)
	copy(b[38:], ip("10.0.0.1").AsSlice())
	return b
}

// TestReadFlowsStops checks that ReadFlows hands on every report of a
// burst and returns when its context ends, as it may while reports are
// still coming in.
func TestReadFlowsStops(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	if err := d.Apply(context.Background(), testConfig()); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFlowRouting(routing(d, dataplane.TargetSelf, true)); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	for round := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		var got atomic.Int64
		done := make(chan error, 1)
		const flows = 50
		// This round's TCP flows: the ring may still hold the last
		// round's UDP reports.
		client := netip.MustParseAddr("198.51.100.41")
		first := uint16(1024 + round*flows)
		go func() {
			done <- d.ReadFlows(ctx, func(fs []dataplane.Flow) {
				for _, f := range fs {
					if f.Client.Addr() == client && f.Client.Port() >= first {
						got.Add(1)
					}
				}
			})
		}()
		for i := range flows {
			src := netip.AddrPortFrom(client, first+uint16(i))
			syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: src, dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true}
			r.run(t, syn.frame(t))
			r.run(t, syn.with(func(q *packet) { q.syn, q.ack = false, true }).frame(t))
		}
		for deadline := time.Now().Add(2 * time.Second); got.Load() < flows && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if n := got.Load(); n != flows {
			t.Fatalf("round %d: %d reports handed on, want %d", round, n, flows)
		}
		// Reports still coming in as the context ends: a UDP flow's
		// second datagram reports it.
		stop := make(chan struct{})
		producing := make(chan struct{})
		go func() {
			defer close(producing)
			for port := uint16(1); ; port++ {
				select {
				case <-stop:
					return
				default:
				}
				udp := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.42"), port),
					dst: netip.MustParseAddrPort("192.0.2.2:53"), proto: "udp"}.frame(t)
				r.run(t, udp)
				r.run(t, udp)
			}
		}()
		time.Sleep(5 * time.Millisecond)
		cancel()
		err := <-done
		close(stop)
		<-producing
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: ReadFlows returned %v, want context.Canceled", round, err)
		}
	}
}

func TestFlowReports(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan dataplane.Flow, 64)
	done := make(chan error, 1)
	go func() {
		done <- d.ReadFlows(ctx, func(fs []dataplane.Flow) {
			for _, f := range fs {
				reports <- f
			}
		})
	}()
	defer func() { cancel(); <-done }()

	client := netip.MustParseAddrPort("198.51.100.40:3000")
	syn := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: client, dst: netip.MustParseAddrPort("192.0.2.1:80"), proto: "tcp", syn: true}
	ack := syn.with(func(q *packet) { q.syn, q.ack = false, true })
	fin := ack.with(func(q *packet) { q.fin = true })
	udp := packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: client, dst: netip.MustParseAddrPort("192.0.2.2:53"), proto: "udp"}
	expectNone := func(what string) {
		t.Helper()
		select {
		case f := <-reports:
			t.Fatalf("%s: unexpected report %+v", what, f)
		case <-time.After(20 * time.Millisecond):
		}
	}
	next := func(what string) dataplane.Flow {
		t.Helper()
		select {
		case f := <-reports:
			return f
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: no report", what)
		}
		return dataplane.Flow{}
	}

	// Sync off: nothing is reported.
	r.run(t, syn.frame(t))
	r.run(t, ack.frame(t))
	expectNone("sync off")

	if err := d.SetFlowRouting(routing(d, dataplane.TargetSelf, true)); err != nil {
		t.Fatal(err)
	}
	syn.src = netip.MustParseAddrPort("198.51.100.40:3001")
	ack.src, fin.src = syn.src, syn.src
	r.run(t, syn.frame(t))
	expectNone("syn")
	r.run(t, ack.frame(t))
	want := expect(t, cfg, findService(cfg, syn.dst, "tcp"), syn)
	f := next("established")
	if f.Client != syn.src || f.VIP != syn.dst || f.Proto != protoTCP || f.Backend != want.backend || f.Local != want.local ||
		!f.Established || f.Closing {
		t.Errorf("established report %+v, want %v -> %v via %v from %v, established", f, syn.src, syn.dst, want.backend, want.local)
	}
	r.run(t, ack.frame(t))
	expectNone("second ack")
	r.run(t, fin.frame(t))
	if f := next("closing"); !f.Closing {
		t.Errorf("closing report %+v, want closing", f)
	}
	// A UDP flow is reported on its second datagram, when it leaves
	// ct_new: a flood of one-datagram flows makes no sync traffic.
	r.run(t, udp.frame(t))
	expectNone("first udp datagram")
	r.run(t, udp.frame(t))
	f = next("udp")
	if f.Proto != protoUDP || f.FullNAT() || f.Backend.Port() != 53 || !f.Established {
		t.Errorf("dsr udp report %+v, want a new established DSR flow to port 53", f)
	}
	c, err := d.FlowCounters()
	if err != nil {
		t.Fatal(err)
	}
	if c.SyncEvents != 3 || c.SyncLost != 0 {
		t.Errorf("counters %+v, want 3 reports and none lost", c)
	}
}

func TestInstallFlows(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	// Flows another node opened, to a backend this node's table would not
	// pick for them and from another node's local address.
	fullnat := dataplane.Flow{Client: netip.MustParseAddrPort("198.51.100.50:4000"), VIP: netip.MustParseAddrPort("192.0.2.1:80"), Proto: protoTCP,
		Backend: netip.MustParseAddrPort("10.1.0.12:8080"), Local: netip.MustParseAddrPort("10.0.0.201:5555"), Established: true, Idle: 3 * time.Second}
	dsr := dataplane.Flow{Client: netip.MustParseAddrPort("198.51.100.50:4001"), VIP: netip.MustParseAddrPort("192.0.2.2:80"), Proto: protoTCP,
		Backend: netip.MustParseAddrPort("10.1.0.13:80"), Established: true}
	replyOnly := fullnat
	replyOnly.Client = netip.MustParseAddrPort("198.51.100.50:4002")
	replyOnly.Local = netip.MustParseAddrPort("10.0.0.201:5556")
	if err := d.InstallFlows([]dataplane.Flow{fullnat, dsr, replyOnly},
		[]dataplane.Install{dataplane.InstallForward | dataplane.InstallReply, dataplane.InstallForward, dataplane.InstallReply}); err != nil {
		t.Fatal(err)
	}
	seg := func(f dataplane.Flow) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: f.Client, dst: f.VIP, proto: "tcp", ack: true, payload: "data"}
	}
	check := func(name string, in []byte, want packet) {
		t.Helper()
		got, out := r.run(t, in)
		if got != xdpTX {
			t.Fatalf("%s: action %s, want XDP_TX", name, actionNames[got])
		}
		if w := want.frame(t); !bytes.Equal(out, w) {
			t.Fatalf("%s: output differs:\n%s", name, frameDiff(out, w))
		}
	}
	check("fullnat segment", seg(fullnat).frame(t), seg(fullnat).with(func(q *packet) {
		q.srcMAC, q.dstMAC, q.ttl = nodeMAC, backendMAC[fullnat.Backend.Addr()], 63
		q.src, q.dst = fullnat.Local, fullnat.Backend
	}))
	check("dsr segment", seg(dsr).frame(t), seg(dsr).with(func(q *packet) {
		q.srcMAC, q.dstMAC, q.ttl = nodeMAC, backendMAC[dsr.Backend.Addr()], 63
	}))
	backendReply := func(f dataplane.Flow) packet {
		return packet{srcMAC: backendMAC[f.Backend.Addr()], dstMAC: nodeMAC, src: f.Backend, dst: f.Local, proto: "tcp", ack: true, payload: "world"}
	}
	for _, f := range []dataplane.Flow{fullnat, replyOnly} {
		check("reply to "+f.Local.String(), backendReply(f).frame(t), backendReply(f).with(func(q *packet) {
			q.srcMAC, q.dstMAC, q.ttl = nodeMAC, gwMAC, 63
			q.src, q.dst = f.VIP, f.Client
		}))
	}
	if got, _ := r.run(t, seg(replyOnly).frame(t)); got != xdpDrop {
		t.Errorf("segment of a flow installed for replies only: %s, want XDP_DROP", actionNames[got])
	}

	var dumped []dataplane.Flow
	if err := d.Flows(func(f dataplane.Flow) bool { dumped = append(dumped, f); return true }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []dataplane.Flow{fullnat, dsr, replyOnly} {
		i := slices.IndexFunc(dumped, func(f dataplane.Flow) bool { return f.Client == want.Client })
		if i < 0 {
			t.Errorf("flow of %v not dumped; got %+v", want.Client, dumped)
			continue
		}
		got := dumped[i]
		if got.VIP != want.VIP || got.Backend != want.Backend || got.Local != want.Local || !got.Established || got.Idle > 10*time.Second {
			t.Errorf("dumped %+v, want %+v", got, want)
		}
	}
	if len(dumped) != 3 {
		t.Errorf("dumped %d flows, want 3", len(dumped))
	}
}

// A closing entry idle past its grace is taken for an old connection on a
// tuple a new one reuses: a segment that hits it goes to the flow's owner.
func TestClosedEntryDefersToOwner(t *testing.T) {
	d := newTestDataplane(t, Options{ConnTrackSize: 4096, TableSize: testTableSize})
	cfg := testConfig()
	if err := d.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := d.SetFlowRouting(routing(d, 0, false)); err != nil {
		t.Fatal(err)
	}
	r := runner{d.objs.XdpLb}
	flow := func(port uint16, idle time.Duration) dataplane.Flow {
		return dataplane.Flow{Client: netip.AddrPortFrom(ip("198.51.100.60"), port), VIP: netip.MustParseAddrPort("192.0.2.1:80"), Proto: protoTCP,
			Backend: netip.MustParseAddrPort("10.1.0.12:8080"), Local: netip.AddrPortFrom(local4, port), Established: true, Closing: true, Idle: idle}
	}
	recent, old := flow(5000, 0), flow(5001, 5*time.Second)
	if err := d.InstallFlows([]dataplane.Flow{recent, old}, []dataplane.Install{dataplane.InstallForward, dataplane.InstallForward}); err != nil {
		t.Fatal(err)
	}
	seg := func(f dataplane.Flow) packet {
		return packet{srcMAC: gwMAC, dstMAC: nodeMAC, src: f.Client, dst: f.VIP, proto: "tcp", ack: true}
	}
	if got, out := r.run(t, seg(recent).frame(t)); got != xdpTX || !bytes.Equal(out[:6], backendMAC[recent.Backend.Addr()]) {
		t.Errorf("segment of a connection closing now: %s to %v, want XDP_TX to its backend", actionNames[got], net.HardwareAddr(out[:6]))
	}
	if got, out := r.run(t, seg(old).frame(t)); got != xdpTX || !bytes.Equal(out[:6], peerMAC) {
		t.Errorf("segment hitting an entry closed 5 s ago: %s to %v, want XDP_TX to the owner %v", actionNames[got], net.HardwareAddr(out[:6]), peerMAC)
	}
	if got, out := r.run(t, seg(old).with(func(q *packet) { q.srcMAC = peerMAC }).frame(t)); got != xdpTX || !bytes.Equal(out[:6], backendMAC[old.Backend.Addr()]) {
		t.Errorf("the same segment handed here by a peer: %s to %v, want XDP_TX to the entry's backend", actionNames[got], net.HardwareAddr(out[:6]))
	}
}
