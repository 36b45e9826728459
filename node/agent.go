// Package node is the Weft daemon: it turns a data directory and flags into
// a running node (Raft replica, API server) and stops it in order.
package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftlb/weft/api"
	"github.com/weftlb/weft/bgp"
	"github.com/weftlb/weft/console"
	"github.com/weftlb/weft/dataplane"
	"github.com/weftlb/weft/dataplane/flowsync"
	"github.com/weftlb/weft/dataplane/topflows"
	"github.com/weftlb/weft/dataplane/userspace"
	"github.com/weftlb/weft/dataplane/xdp"
	"github.com/weftlb/weft/gossip"
	"github.com/weftlb/weft/health"
	"github.com/weftlb/weft/pki"
	statev1 "github.com/weftlb/weft/proto/weft/state/v1"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/tokens"
	"github.com/weftlb/weft/version"
)

// neighborRefresh is how often an XDP node rereads next-hop MACs.
const neighborRefresh = 2 * time.Second

// caKeyFile holds the CA key only while `--init` has not finished: its
// presence tells a restarted node to finish the initialisation.
const caKeyFile = "tls/ca.key"

// Agent is a running node.
type Agent struct {
	cfg   Config
	id    identity
	raft  *raftfsm.Raft
	api   *api.Server
	apiLn net.Listener
	done  chan error

	rec *reconciler
	// started is closed when the subsystems exist: Status reads them.
	started   chan struct{}
	stopRec   context.CancelFunc
	recDone   chan struct{}
	gossip    *gossipSubsystem
	dataplane dataplane.Driver
	speaker   *bgp.Speaker
	health    *health.Health
	l7        *l7Subsystem
	dns       *gslbSubsystem
	nl        *netlink.Handle
	stopKeys  func()
	flowsync  *flowsync.Syncer
	xdp       *xdp.Dataplane
	metrics   *metricsServer
	peerTLS   *tls.Config
	// stopFlowTable stops the leader's keeping of the flow-ownership table.
	stopFlowTable func()
	// topFlows counts the XDP program's new-flow samples (nil: none);
	// stopSamples stops their reading.
	topFlows    *topflows.Tracker
	stopSamples func()
}

// Start brings a node up: creates or joins a cluster, or restarts from the
// data directory, then opens Raft and serves the API. Secrets printed at
// init (admin and join tokens) go to out, never to the log.
func Start(ctx context.Context, cfg Config, out io.Writer) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	d := dataDir(cfg.DataDir)
	have, err := d.exists()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Init && cfg.Join != "":
		return nil, errors.New("--init and --join exclude each other")
	case have && (cfg.Init || cfg.Join != ""):
		return nil, fmt.Errorf("data dir %s already holds a node: start without --init/--join to restart it", cfg.DataDir)
	case cfg.Init:
		if err := initFiles(cfg, d); err != nil {
			return nil, err
		}
	case cfg.Join != "":
		if err := joinCluster(ctx, cfg, d); err != nil {
			return nil, err
		}
	case !have:
		return nil, fmt.Errorf("data dir %s holds no node: start with --init to create a cluster or --join to join one", cfg.DataDir)
	}
	id, err := d.readIdentity()
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, id: id, done: make(chan error, 1), started: make(chan struct{})}
	if err := a.open(d); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.startReconciler(); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.startMetrics(); err != nil {
		a.Close()
		return nil, err
	}
	if _, err := os.Stat(d.path(caKeyFile)); err == nil {
		if err := a.finishInit(ctx, d, out); err != nil {
			a.Close()
			return nil, fmt.Errorf("initialise cluster: %w", err)
		}
	}
	cfg.Logger.Info("node started", "node", id.Name, "region", id.Region, "zone", id.Zone,
		"api", id.APIAdvertise, "raft", id.RaftAdvertise)
	return a, nil
}

// open starts Raft and the API server from the data directory.
func (a *Agent) open(d dataDir) error {
	caPEM, certPEM, keyPEM, err := d.tlsFiles()
	if err != nil {
		return err
	}
	apiTLS, err := pki.ServerTLS(certPEM, keyPEM, caPEM, tls.VerifyClientCertIfGiven)
	if err != nil {
		return fmt.Errorf("api tls: %w", err)
	}
	raftTLS, err := pki.ServerTLS(certPEM, keyPEM, caPEM, tls.RequireAndVerifyClientCert)
	if err != nil {
		return fmt.Errorf("raft tls: %w", err)
	}
	peerTLS, err := pki.ClientTLS(caPEM, certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("peer tls: %w", err)
	}
	raftTLS.RootCAs = peerTLS.RootCAs
	raftTLS.NextProtos = nil
	a.peerTLS = peerTLS

	// Placement asks peers for their progress through the API, which
	// exists only after Raft: the closure bridges the two.
	var srv *api.Server
	r, err := raftfsm.Open(raftfsm.Config{
		ID:                a.id.Name,
		DataDir:           d.path(raftDir),
		BindAddr:          a.cfg.RaftAddr,
		AdvertiseAddr:     a.id.RaftAdvertise,
		TLS:               raftTLS,
		Bootstrap:         a.cfg.Init,
		SnapshotThreshold: a.cfg.SnapshotThreshold,
		SnapshotInterval:  a.cfg.SnapshotInterval,
		TrailingLogs:      a.cfg.TrailingLogs,
		DeadServerTimeout: a.cfg.DeadServerTimeout,
		Logger:            a.cfg.Logger,
		FetchStats: func(ctx context.Context, id, addr string) (uint64, error) {
			return srv.FetchStats(ctx, id)
		},
	})
	if err != nil {
		return fmt.Errorf("open raft: %w", err)
	}
	a.raft = r
	srv = api.New(api.Config{NodeName: a.id.Name, Replica: r, PeerTLS: peerTLS, Logger: a.cfg.Logger,
		Local: a.localStatus, WaitApplied: a.waitApplied, Observed: a.observed, MaxRequestBytes: a.cfg.APIMaxRequestBytes, LocalPorts: a.cfg.listenPorts(a.id.Name),
		DNSQuery: a.dnsQuery(), LocalStats: a.localStats})
	a.api = srv
	if a.cfg.Console {
		srv.MountFiles("/{$}", console.RootHandler())
		srv.MountFiles(console.Path, console.FilesHandler())
		srv.MountForViewers(console.ManifestPath, console.ManifestHandler())
	}
	ln, err := net.Listen("tcp", a.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	a.apiLn = ln
	go func() { a.done <- srv.Serve(ln, apiTLS) }()
	return nil
}

// initFiles creates the cluster CA and this node's certificate.
func initFiles(cfg Config, d dataDir) error {
	clusterID := randomID()
	ca, err := pki.NewCA(clusterID)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.IssueNode(cfg.Name, certHosts(cfg), pki.NodeCertValidity)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.path("tls"), 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := pki.WriteFile(d.path(caKeyFile), ca.KeyPEM); err != nil {
		return fmt.Errorf("write ca key: %w", err)
	}
	return d.writeNode(identityOf(cfg), ca.CertPEM, certPEM, keyPEM)
}

// finishInit replicates the cluster secrets and records this node, makes
// the first admin and join tokens, then forgets the local CA key. Every step
// is safe to repeat, so a node that crashed half-way finishes on restart.
func (a *Agent) finishInit(ctx context.Context, d dataDir, out io.Writer) error {
	if err := a.waitLeader(ctx, 15*time.Second); err != nil {
		return err
	}
	st := a.raft.FSM().State()
	if st.Secrets() == nil {
		caPEM, err := os.ReadFile(d.path(caCertFile))
		if err != nil {
			return err
		}
		caKey, err := os.ReadFile(d.path(caKeyFile))
		if err != nil {
			return err
		}
		gossipKey := make([]byte, 32)
		if _, err := rand.Read(gossipKey); err != nil {
			return err
		}
		_, _, err = a.raft.Apply(ctx, raftfsm.InitClusterType, &statev1.InitClusterCommand{Secrets: &statev1.ClusterSecrets{
			ClusterId: randomID(), CaCertPem: string(caPEM), CaKeyPem: string(caKey), GossipKey: gossipKey,
		}})
		if err != nil {
			return err
		}
	}
	if st.Node(a.id.Name) == nil {
		if _, _, err := a.raft.Apply(ctx, raftfsm.UpsertNodeType, &statev1.UpsertNodeCommand{Node: a.nodeRecord()}); err != nil {
			return err
		}
	}
	tokenPath := d.path(AdminTokenFile)
	if _, err := os.Stat(tokenPath); err != nil {
		admin, err := a.api.CreateAPIToken(ctx, tokens.RoleAdmin, "created by cluster init", 0)
		if err != nil {
			return err
		}
		if err := pki.WriteFile(tokenPath, []byte(admin.Secret+"\n")); err != nil {
			return err
		}
		fmt.Fprintf(out, "admin token (also in %s, shown once): %s\n", tokenPath, admin.Secret)
	}
	join, err := a.api.CreateJoinToken(ctx, a.cfg.JoinTokenUses)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "join token (%d uses, 24h): %s\n", join.Token.GetUsesRemaining(), join.Secret)
	fmt.Fprintf(out, "cluster CA: %s\n", CAFile(string(d)))
	if err := os.Remove(d.path(caKeyFile)); err != nil {
		return fmt.Errorf("remove local ca key: %w", err)
	}
	return nil
}

func (a *Agent) waitLeader(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !a.raft.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("not leader after bootstrap")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (a *Agent) nodeRecord() *weftv1.Node {
	return &weftv1.Node{
		Metadata: &weftv1.Metadata{Name: a.id.Name},
		Spec: &weftv1.NodeSpec{Region: a.id.Region, Zone: a.id.Zone,
			RaftAddress: a.id.RaftAdvertise, ApiAddress: a.id.APIAdvertise, GossipAddress: a.id.GossipAdvertise},
	}
}

// startReconciler starts the subsystems the configuration asks for and
// the loop that keeps them in line with the committed state.
func (a *Agent) startReconciler() error {
	a.rec = &reconciler{fsm: a.raft.FSM(), log: a.cfg.Logger}
	// Only nodes that serve traffic check their pools' members.
	checker := a.cfg.Dataplane != DataplaneNone || a.cfg.BGP.ASN != 0 || a.cfg.DNSAddr != ""
	gossipAdvertise := a.id.GossipAdvertise
	if gossipAdvertise == "" {
		gossipAdvertise = a.cfg.GossipAdvertise
	}
	a.gossip = newGossipSubsystem(gossip.Config{
		NodeName: a.id.Name, BindAddr: a.cfg.GossipAddr, AdvertiseAddr: gossipAdvertise, Logger: a.cfg.Logger,
		Meta: gossip.NodeMeta{Region: a.id.Region, Zone: a.id.Zone, Checker: checker, Version: version.String(),
			Addrs: a.metaAddrs()},
	}, a.rec.appliedByOthers, a.cfg.Logger)
	a.rec.wake = append(a.rec.wake, a.gossip.changed)
	healthy := Healthy(allHealthy)
	var versions healthVersions
	if a.cfg.Dataplane != DataplaneNone {
		// Next hops and local routes are read and written over netlink.
		nl, err := netlink.NewHandle()
		if err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		a.nl = nl
	}
	if checker {
		a.health = health.New(a.gossip, a.cfg.Logger)
		a.gossip.health = a.health
		hs := &healthSubsystem{h: a.health, self: a.id.Name, nodes: a.gossip.checkers}
		healthy, versions = hs.healthy, healthVersions{pool: a.health.PoolVersion, view: a.health.Version}
		a.rec.subs = append(a.rec.subs, &subsystem{name: "health", apply: hs.apply})
		a.rec.wake = append(a.rec.wake, a.health.Changed)
	}
	switch a.cfg.Dataplane {
	case DataplaneUserspace:
		// No XDP program here can be handed datagrams; the id is told
		// all the same, so that a node with the same one is found.
		a.gossip.cfg.Meta.QUIC = &gossip.QUICMeta{ServerID: a.cfg.QUICServerID}
		a.dataplane = userspace.New(userspace.Options{TableSize: a.cfg.MaglevTableSize, Logger: a.cfg.Logger})
		dp := &dataplaneSubsystem{driver: a.dataplane, healthy: healthy, versions: versions}
		a.rec.subs = append(a.rec.subs, &subsystem{name: "dataplane", apply: dp.apply})
	case DataplaneXDP:
		d, err := xdp.New(xdp.Options{ConnTrackSize: a.cfg.ConntrackEntries, TableSize: a.cfg.MaglevTableSize,
			MaxServices: a.cfg.MaxServices, MaxBackends: a.cfg.MaxBackends, SampleEvery: a.cfg.SampleNewFlows, Logger: a.cfg.Logger})
		if err != nil {
			return err
		}
		a.dataplane, a.xdp = d, d
		a.startSampling(d)
		if err := d.Attach(a.cfg.Interface); err != nil {
			return err
		}
		// FullNAT sends from the node's local addresses, or from its own
		// address on that interface.
		local := a.cfg.LocalAddrs
		if len(local) == 0 {
			ap, err := netip.ParseAddrPort(a.id.RaftAdvertise)
			if err != nil {
				return fmt.Errorf("xdp: the Raft address %q is not an IP address and port: %w", a.id.RaftAdvertise, err)
			}
			local = []netip.Addr{ap.Addr()}
		}
		dp := &dataplaneSubsystem{driver: d, healthy: healthy, versions: versions, iface: a.cfg.Interface, nl: a.nl, local: local}
		a.rec.subs = append(a.rec.subs, &subsystem{name: "dataplane", apply: dp.apply})
		if a.cfg.FlowSync {
			if err := a.startFlowSync(d); err != nil {
				return err
			}
		} else if err := holdLocal(d, a.cfg.Interface, a.cfg.LocalAddrs); err != nil {
			return err
		}
		if err := a.startQUICRouting(d); err != nil {
			return err
		}
		// Next hops are learnt outside Raft: look at the kernel's table again.
		a.rec.wake = append(a.rec.wake, func() <-chan struct{} {
			c := make(chan struct{})
			time.AfterFunc(neighborRefresh, func() { close(c) })
			return c
		})
	}
	if a.cfg.Dataplane != DataplaneNone {
		// Nodes with a dataplane serve traffic: the http and https
		// listeners too.
		a.l7 = newL7Subsystem(healthy, versions, a.nl, a.cfg.AccessLog, a.cfg.QUICServerID, a.cfg.Logger)
		a.rec.subs = append(a.rec.subs, &subsystem{name: "l7", apply: a.l7.apply})
	}
	// DNS (issue 12): the GSLB answers for the committed zones; the anycast
	// DNS address is announced by the bgp subsystem below.
	if a.cfg.DNSAddr != "" {
		if err := a.startGSLB(healthy); err != nil {
			return err
		}
	}
	if a.cfg.BGP.ASN != 0 {
		sp, err := bgp.New(bgp.Options{Logger: a.cfg.Logger})
		if err != nil {
			return err
		}
		a.speaker = sp
		routerID := a.cfg.BGP.RouterID
		if !routerID.IsValid() {
			ap, err := netip.ParseAddrPort(a.id.RaftAdvertise)
			if err != nil || !ap.Addr().Is4() {
				return fmt.Errorf("bgp: set --bgp-router-id (the Raft address %q is not IPv4)", a.id.RaftAdvertise)
			}
			routerID = ap.Addr()
		}
		b := &bgpSubsystem{speaker: sp, self: a.id.Name, zone: a.id.Zone, prepend: a.cfg.BGP.PrependPerZone,
			healthy: healthy, versions: versions, base: bgp.Config{RouterID: routerID, ASN: a.cfg.BGP.ASN, Peers: a.cfg.bgpPeers},
			extra: a.dnsAnnouncements()}
		if a.flowsync != nil {
			// A (re)starting node announces once it holds its share of
			// the flows, so ECMP brings it none it cannot forward.
			b.ready = a.flowsync.Started
		}
		a.rec.subs = append(a.rec.subs, &subsystem{name: "bgp", apply: b.apply})
	}
	// Last, so that the applied index gossip publishes is the round's.
	a.rec.subs = append(a.rec.subs, &subsystem{name: gossipSubsystemName, apply: a.gossip.apply})
	ctx, cancel := context.WithCancel(context.Background())
	a.stopRec, a.recDone = cancel, make(chan struct{})
	go func() { defer close(a.recDone); a.rec.run(ctx) }()
	a.stopKeys = newTicketRotator(a.raft, a.cfg.TicketRotation, a.cfg.Logger).start()
	a.stopFlowTable = (&flowTableKeeper{raft: a.raft, gossip: a.gossip, buckets: flowsync.Buckets, log: a.cfg.Logger}).start()
	close(a.started)
	return nil
}

// localStatus adds to Status the subsystems' progress, the health view and
// the gossip membership.
func (a *Agent) localStatus(res *weftv1.StatusResponse) {
	select {
	case <-a.started:
	default:
		return // still starting
	}
	res.Subsystems = a.rec.status()
	obs := a.observed()
	res.Members, res.Gossip = obs.Health, obs.Gossip
	if a.speaker != nil {
		res.Bgp = bgpStatus(a.speaker.Status())
	}
	if a.flowsync != nil {
		res.FlowSync = a.flowSyncStatus()
	}
	if a.dns != nil {
		res.Dns = a.dns.status(a.dns.records(a.id.Name))
	}
}

// waitApplied returns once the node has started and every subsystem has
// applied index (reconciler.waitApplied).
func (a *Agent) waitApplied(ctx context.Context, index uint64) error {
	select {
	case <-a.started:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.rec.waitApplied(ctx, index)
}

// observed is this node's health view and gossip membership, for Status
// and for the API's reads of nodes and pools.
func (a *Agent) observed() api.Observed {
	var obs api.Observed
	select {
	case <-a.started:
	default:
		return obs // still starting
	}
	if a.health != nil {
		obs.Health = memberHealth(a.health)
	}
	if a.dns != nil {
		obs.DNS = a.dns.records(a.id.Name)
	}
	if g := a.gossip.gossiper(); g != nil {
		for _, m := range g.Members() {
			obs.Gossip = append(obs.Gossip, &weftv1.GossipMember{Name: m.Name, Address: m.Addr.String(),
				State: m.State.String(), Zone: m.Meta.Zone, Draining: m.Meta.Draining, Checker: m.Meta.Checker,
				AppliedIndex: m.Meta.AppliedIndex, Version: m.Meta.Version})
		}
	}
	return obs
}

// Done reports the API server's end.
func (a *Agent) Done() <-chan error { return a.done }

// Close stops the API (letting running calls finish for a few seconds),
// then Raft.
//
// A node that announces VIPs first withdraws them and keeps forwarding for
// DrainDelay, so routers move traffic away before it stops.
func (a *Agent) Close() error {
	var errs []error
	if a.speaker != nil {
		if a.stopRec != nil {
			a.stopRec() // no reconcile may announce again
			<-a.recDone
			a.stopRec = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, a.speaker.WithdrawAll(ctx))
		cancel()
		a.cfg.Logger.Info("routes withdrawn; draining", "delay", a.cfg.DrainDelay)
		time.Sleep(a.cfg.DrainDelay)
	}
	if a.flowsync != nil {
		// Peers see the streams end and take this node's local addresses
		// over; its program keeps translating replies until they have.
		errs = append(errs, a.flowsync.Close())
		time.Sleep(flowHandoverDelay)
	}
	if a.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, a.api.Shutdown(ctx))
		cancel()
	}
	if a.apiLn != nil {
		a.apiLn.Close() // already closed by Shutdown when Serve had started
	}
	if a.metrics != nil {
		errs = append(errs, a.metrics.close())
	}
	if a.stopRec != nil {
		a.stopRec()
		<-a.recDone
	}
	if a.stopKeys != nil {
		a.stopKeys()
	}
	if a.stopFlowTable != nil {
		a.stopFlowTable()
	}
	if a.stopSamples != nil {
		a.stopSamples()
	}
	if a.dataplane != nil {
		errs = append(errs, a.dataplane.Close())
	}
	if a.l7 != nil {
		errs = append(errs, a.l7.close())
	}
	if a.dns != nil {
		errs = append(errs, a.dns.close())
	}
	if a.speaker != nil {
		errs = append(errs, a.speaker.Close())
	}
	if a.health != nil {
		errs = append(errs, a.health.Close())
	}
	if a.gossip != nil {
		errs = append(errs, a.gossip.close())
	}
	if a.nl != nil {
		a.nl.Close()
	}
	if a.raft != nil {
		errs = append(errs, a.raft.Close())
	}
	return errors.Join(errs...)
}

func identityOf(cfg Config) identity {
	return identity{Name: cfg.Name, Region: cfg.Region, Zone: cfg.Zone,
		APIAdvertise: cfg.APIAdvertise, RaftAdvertise: cfg.RaftAdvertise, GossipAdvertise: cfg.GossipAdvertise}
}

// certHosts are the names a node's certificate is valid for: its name and
// the hosts of its advertised addresses.
func certHosts(cfg Config) []string {
	hosts := []string{cfg.Name}
	for _, addr := range []string{cfg.APIAdvertise, cfg.RaftAdvertise} {
		if h, _, err := net.SplitHostPort(addr); err == nil && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func randomID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return fmt.Sprintf("%x", b)
}
