package node

// Flow sync on XDP nodes (dataplane/flowsync): the subsystem that feeds the
// syncer the committed ownership table and the nodes gossip knows, the
// leader's loop that commits a new table when the set of flow-keeping
// nodes changes, and the gratuitous ARP that moves a local address.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/flowsync"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/gossip"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
)

// flowHandoverDelay is how long a stopping node keeps its XDP program after
// its sync streams closed: the time its peers need to take its local
// addresses over.
const flowHandoverDelay = 300 * time.Millisecond

// startFlowSync starts flow sync on the XDP dataplane d: the syncer, its
// service on the API, its subsystem, and this node's flow metadata in
// gossip.
func (a *Agent) startFlowSync(d *xdp.Dataplane) error {
	if d.FlowBuckets() != flowsync.Buckets {
		return fmt.Errorf("flow sync: the XDP program has %d buckets, flow sync %d", d.FlowBuckets(), flowsync.Buckets)
	}
	iface, err := net.InterfaceByName(a.cfg.Interface)
	if err != nil {
		return fmt.Errorf("flow sync: %w", err)
	}
	mac := iface.HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("flow sync: interface %s has no Ethernet address", a.cfg.Interface)
	}
	s := flowsync.New(flowsync.Config{Self: a.id.Name, MAC: mac, Local: a.cfg.LocalAddrs, Driver: d,
		Client: peerClient(a.peerTLS),
		Authenticate: func(ctx context.Context) (string, bool) {
			c, ok := api.CallerFrom(ctx)
			return c.Node, ok && c.Node != ""
		},
		Announce: func(addr netip.Addr, at net.HardwareAddr) error { return gratuitousARP(a.cfg.Interface, mac, at, addr) },
		Logger:   a.cfg.Logger,
	})
	a.api.Mount(s.Handler(a.api.HandlerOptions()...))
	s.Start()
	a.flowsync = s
	sub := &flowSyncSubsystem{syncer: s, gossip: a.gossip}
	a.rec.subs = append(a.rec.subs, &subsystem{name: "flowsync", apply: sub.apply})
	a.rec.wake = append(a.rec.wake, s.Changed)
	a.gossip.cfg.Meta.Flows = &gossip.FlowMeta{MAC: mac, Local: a.cfg.LocalAddrs}
	return nil
}

// holdLocal makes the XDP program answer ARP for this node's dedicated
// local addresses when flow sync, which otherwise decides who holds them,
// is off: the node handles all its flows itself.
func holdLocal(d *xdp.Dataplane, ifname string, local []netip.Addr) error {
	if len(local) == 0 {
		return nil
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("local addresses: %w", err)
	}
	r := dataplane.FlowRouting{MAC: iface.HardwareAddr, Owners: make([]uint32, d.FlowBuckets()),
		Local: map[netip.Addr]dataplane.LocalTarget{}}
	for i := range r.Owners {
		r.Owners[i] = dataplane.TargetSelf
	}
	for _, a := range local {
		r.Local[a] = dataplane.LocalTarget{Target: dataplane.TargetSelf, Held: true}
	}
	if err := d.SetFlowRouting(r); err != nil {
		return err
	}
	for _, a := range local {
		if a.Is4() {
			if err := gratuitousARP(ifname, iface.HardwareAddr, iface.HardwareAddr, a); err != nil {
				return err
			}
		}
	}
	return nil
}

// flowSyncStatus is the syncer's status with the XDP program's counters.
func (a *Agent) flowSyncStatus() *weftv1.FlowSyncStatus {
	st := a.flowsync.Status()
	if c, err := a.xdp.FlowCounters(); err == nil {
		st.ReportLost, st.HandedForward, st.HandedReply = c.SyncLost, c.RedirectForward, c.RedirectReply
	}
	return st
}

// flowSyncSubsystem hands the syncer the state it follows.
type flowSyncSubsystem struct {
	syncer *flowsync.Syncer
	gossip *gossipSubsystem
}

func (f *flowSyncSubsystem) apply(ctx context.Context, st *raftfsm.State) error {
	return f.syncer.Apply(ctx, flowsync.State{Ownership: st.FlowOwnership(), Nodes: flowNodes(st, f.gossip.gossiper())})
}

// flowNodes are the committed nodes with what gossip says of them: whether
// they keep flows, are gone, their MAC and local addresses.
func flowNodes(st *raftfsm.State, g *gossip.Gossip) []flowsync.Node {
	seen := map[string]gossip.Member{}
	if g != nil {
		for _, m := range g.Members() {
			seen[m.Name] = m
		}
	}
	var out []flowsync.Node
	for _, n := range st.Nodes() {
		fn := flowsync.Node{Name: n.GetMetadata().GetName(), Zone: n.GetSpec().GetZone(), API: n.GetSpec().GetApiAddress()}
		if m, ok := seen[fn.Name]; ok && m.Meta.Flows != nil {
			fn.Flows, fn.MAC, fn.Local = true, m.Meta.Flows.MAC, m.Meta.Flows.Local
			fn.Gone = m.State == gossip.StateDead || m.State == gossip.StateLeft
		}
		out = append(out, fn)
	}
	return out
}

// flowTableMembers are the nodes that own buckets: committed, not drained
// (a drained node hands its buckets over before it stops), and keeping
// flows as gossip knows them, alive or not. A lost node keeps its buckets,
// whose other owner serves them, until gossip forgets it or it is removed.
func flowTableMembers(st *raftfsm.State, g *gossip.Gossip) []flowsync.Member {
	var out []flowsync.Member
	for _, n := range flowNodes(st, g) {
		if n.Flows && !st.Node(n.Name).GetSpec().GetDrain() {
			out = append(out, flowsync.Member{Name: n.Name, Zone: n.Zone})
		}
	}
	return out
}

// flowTableEvery is how often the leader looks at the flow-keeping nodes.
const flowTableEvery = time.Second

// flowTableKeeper proposes a new ownership table on the leader when the
// members' plan differs from the committed table.
type flowTableKeeper struct {
	raft    proposer
	gossip  *gossipSubsystem
	buckets int
	log     *slog.Logger
}

// start runs the keeper until the returned stop function is called; stop
// waits for it to end.
func (k *flowTableKeeper) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(flowTableEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := k.step(ctx); err != nil {
					k.log.Warn("flow ownership table", "error", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (k *flowTableKeeper) step(ctx context.Context) error {
	if !k.raft.IsLeader() {
		return nil
	}
	g := k.gossip.gossiper()
	if g == nil {
		return nil
	}
	st := k.raft.FSM().State()
	members := flowTableMembers(st, g)
	if len(members) == 0 {
		return nil
	}
	plan := flowsync.Plan(members, k.buckets)
	if cur := st.FlowOwnership(); cur != nil {
		cur = proto.CloneOf(cur)
		cur.Epoch = 0
		if proto.Equal(cur, plan) {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, index, err := k.raft.Apply(ctx, raftfsm.SetFlowOwnershipType, &statev1.SetFlowOwnershipCommand{Ownership: plan})
	if err != nil {
		return err
	}
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	k.log.Info("flow ownership table committed", "epoch", index, "nodes", names)
	return nil
}

// peerClient dials other nodes' APIs for flow sync: HTTP/2 over TLS with
// this node's certificate, dead connections noticed within seconds.
func peerClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsConfig,
		ForceAttemptHTTP2:   true,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		TLSHandshakeTimeout: 2 * time.Second,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: time.Second, PingTimeout: time.Second},
	}}
}

// gratuitousARP tells the segment of ifname that addr is at MAC at: an ARP
// request for addr from addr, broadcast, twice, as keepalived does, sent
// from this node's MAC (so switches learn nothing wrong). Hosts with an
// entry for addr update it.
func gratuitousARP(ifname string, mac, at net.HardwareAddr, addr netip.Addr) error {
	if !addr.Is4() || len(at) != 6 {
		return fmt.Errorf("gratuitous arp: %v at %v: need an IPv4 address and a 6-byte MAC", addr, at)
	}
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("gratuitous arp: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("gratuitous arp: socket: %w", err)
	}
	defer unix.Close(fd)
	frame := make([]byte, 0, 42)
	frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	frame = append(frame, mac...)
	frame = binary.BigEndian.AppendUint16(frame, unix.ETH_P_ARP)
	frame = append(frame, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	a := addr.As4()
	frame = append(frame, at...)
	frame = append(frame, a[:]...)
	frame = append(frame, 0, 0, 0, 0, 0, 0)
	frame = append(frame, a[:]...)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: iface.Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	for i := range 2 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("gratuitous arp on %s: %w", ifname, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
