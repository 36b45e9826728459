package flowsync

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/weftlb/weft/dataplane"
	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
)

// fakeDriver is the dataplane behind FlowDriver in memory: the flows in
// each table, the routing last written, and reports the test injects.
type fakeDriver struct {
	reports chan []dataplane.Flow

	mu      sync.Mutex
	forward map[netip.AddrPort]dataplane.Flow // by client
	reply   map[netip.AddrPort]dataplane.Flow // by local address
	routing dataplane.FlowRouting
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{reports: make(chan []dataplane.Flow, 16), forward: map[netip.AddrPort]dataplane.Flow{}, reply: map[netip.AddrPort]dataplane.Flow{}}
}

func (d *fakeDriver) FlowBuckets() int { return testBuckets }

func (d *fakeDriver) SetFlowRouting(r dataplane.FlowRouting) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routing = r
	return nil
}

func (d *fakeDriver) ReadFlows(ctx context.Context, report func([]dataplane.Flow)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case fs := <-d.reports:
			report(fs)
		}
	}
}

func (d *fakeDriver) InstallFlows(flows []dataplane.Flow, into []dataplane.Install) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, f := range flows {
		if into[i]&dataplane.InstallForward != 0 {
			d.forward[f.Client] = f
		}
		if into[i]&dataplane.InstallReply != 0 {
			d.reply[f.Local] = f
		}
	}
	return nil
}

func (d *fakeDriver) Flows(yield func(dataplane.Flow) bool) error {
	d.mu.Lock()
	all := slices.Collect(func(y func(dataplane.Flow) bool) {
		for _, f := range d.forward {
			y(f)
		}
		for _, f := range d.reply {
			if _, ok := d.forward[f.Client]; !ok {
				y(f)
			}
		}
	})
	d.mu.Unlock()
	for _, f := range all {
		if !yield(f) {
			break
		}
	}
	return nil
}

func (d *fakeDriver) has(f dataplane.Flow) (forward, reply bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, forward = d.forward[f.Client]
	_, reply = d.reply[f.Local]
	return
}

func (d *fakeDriver) route() dataplane.FlowRouting {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.routing
}

// testNode is one node's syncer with its API server.
type testNode struct {
	name, zone string
	mac        net.HardwareAddr
	local      netip.Addr
	driver     *fakeDriver
	syncer     *Syncer
	srv        *httptest.Server
	announced  chan netip.Addr
}

type nodeKey struct{}

// The test's stand-in for the API's certificate check: the caller's name in
// a header, moved to the context by the server.
const nodeHeader = "Test-Node"

type namedTransport struct {
	name string
	rt   http.RoundTripper
}

func (t namedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(nodeHeader, t.name)
	return t.rt.RoundTrip(r)
}

func startNode(t *testing.T, name, zone string, i int) *testNode {
	t.Helper()
	n := &testNode{name: name, zone: zone, mac: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)},
		local: netip.AddrFrom4([4]byte{198, 18, 1, byte(110 + i)}), driver: newFakeDriver(), announced: make(chan netip.Addr, 16)}
	mux := http.NewServeMux()
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if v := r.Header.Get(nodeHeader); v != "" {
			ctx = context.WithValue(ctx, nodeKey{}, v)
		}
		mux.ServeHTTP(w, r.WithContext(ctx))
	}))
	n.srv.EnableHTTP2 = true
	n.srv.StartTLS()
	client := namedTransportClient(n.srv.Client(), name)
	n.syncer = New(Config{Self: name, MAC: n.mac, Local: []netip.Addr{n.local}, Driver: n.driver, Client: client,
		Authenticate: func(ctx context.Context) (string, bool) {
			v, ok := ctx.Value(nodeKey{}).(string)
			return v, ok
		},
		Announce:  func(a netip.Addr, _ net.HardwareAddr) error { n.announced <- a; return nil },
		Heartbeat: 20 * time.Millisecond, DeadAfter: 200 * time.Millisecond, JoinWait: 2 * time.Second,
	})
	mux.Handle(n.syncer.Handler())
	n.syncer.Start()
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *testNode) stop() {
	n.srv.CloseClientConnections()
	n.srv.Close()
	n.syncer.Close()
}

// ready reports whether the node has pulled the current table's flows, as
// its status says.
func (n *testNode) ready() bool {
	st := n.syncer.Status()
	return st.GetEpoch() != 0 && st.GetReadyEpoch() == st.GetEpoch()
}

func (n *testNode) addr() string { return strings.TrimPrefix(n.srv.URL, "https://") }

// cluster applies the same state (the plan of every node) to every node.
func apply(t *testing.T, nodes []*testNode, all []*testNode) {
	t.Helper()
	var ms []Member
	var ns []Node
	for _, n := range all {
		ms = append(ms, Member{Name: n.name, Zone: n.zone})
		ns = append(ns, Node{Name: n.name, Zone: n.zone, API: n.addr(), Flows: true, Gone: !slices.Contains(nodes, n), MAC: n.mac, Local: []netip.Addr{n.local}})
	}
	plan := Plan(ms, testBuckets)
	plan.Epoch = 10
	for _, n := range nodes {
		if err := n.syncer.Apply(context.Background(), State{Ownership: plan, Nodes: ns}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flowIn returns a FullNAT flow from n's local address whose bucket's
// owners are exactly owners, in order.
func flowIn(t *testing.T, n *testNode, owners ...string) dataplane.Flow {
	t.Helper()
	tb := n.syncer.cur
	for port := uint16(1000); port < 60000; port++ {
		f := dataplane.Flow{Client: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), port), VIP: netip.MustParseAddrPort("198.51.100.10:80"),
			Proto: 6, Backend: netip.MustParseAddrPort("198.18.1.21:8080"), Local: netip.AddrPortFrom(n.local, port), Established: true}
		if slices.Equal(tb.ownersOf(dataplane.Bucket(f.Hash(), testBuckets)), owners) {
			return f
		}
	}
	t.Fatalf("no flow with owners %v", owners)
	return dataplane.Flow{}
}

func TestSyncAcrossLossAndReturn(t *testing.T) {
	n1, n2, n3 := startNode(t, "n1", "a", 1), startNode(t, "n2", "a", 2), startNode(t, "n3", "b", 3)
	all := []*testNode{n1, n2, n3}
	apply(t, all, all)
	for _, n := range all {
		waitFor(t, n.name+" ready", n.ready)
	}
	// n1 forwards a flow whose bucket n2 and n3 own: both keep it for its
	// client packets, and n1's address's heir (in zone b: n3) for replies.
	f := flowIn(t, n1, "n2", "n3")
	g := flowIn(t, n1, "n1", "n3")
	n1.driver.reports <- []dataplane.Flow{f, g}
	waitFor(t, "flows on their owners", func() bool {
		f2, _ := n2.driver.has(f)
		f3, r3 := n3.driver.has(f)
		g3, _ := n3.driver.has(g)
		return f2 && f3 && r3 && g3
	})
	if fw, rp := n2.driver.has(g); fw || rp {
		t.Errorf("n2 got a flow it neither owns nor inherits (forward %v, reply %v)", fw, rp)
	}
	// Counted on its first owner alone, each flow counts once (n1
	// forwards both: they are in its own connection table).
	for _, fl := range []dataplane.Flow{f, g} {
		holders := 0
		for _, n := range all {
			if fw, _ := n.driver.has(fl); (fw || n == n1) && n.syncer.FirstOwner()(fl) == n.name {
				holders++
			}
		}
		if holders != 1 {
			t.Errorf("flow %v is held by %d of its first owners, want 1", fl.Client, holders)
		}
	}
	b := dataplane.Bucket(f.Hash(), testBuckets)
	waitFor(t, "routing to the bucket's first owner", func() bool {
		return n1.driver.route().Owners[b] == peerIndex(n1, "n2") && n2.driver.route().Owners[b] == dataplane.TargetSelf &&
			n3.driver.route().Owners[b] == peerIndex(n3, "n2")
	})
	if l := n3.driver.route().Local[n1.local]; l.Held || l.Target != peerIndex(n3, "n1") {
		t.Errorf("n3's routing of n1's local address while n1 lives: %+v, want held by n1", l)
	}

	// n1 is lost: n3, its address's heir, takes the address over and
	// says so; n2 is lost: n3 handles the bucket.
	for len(n3.announced) > 0 {
		<-n3.announced // its own, once ready
	}
	n1.stop()
	waitFor(t, "n3 holding n1's address", func() bool { l := n3.driver.route().Local[n1.local]; return l.Held && l.Target == dataplane.TargetSelf })
	select {
	case a := <-n3.announced:
		if a != n1.local {
			t.Errorf("n3 announced %v, want %v", a, n1.local)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("n3 did not announce n1's address")
	}
	n2.stop()
	waitFor(t, "n3 handling n2's bucket", func() bool { return n3.driver.route().Owners[b] == dataplane.TargetSelf })

	// n2 comes back empty and pulls its share from n3 before it is ready.
	n2b := startNode(t, "n2", "a", 2)
	all = []*testNode{n1, n2b, n3}
	apply(t, []*testNode{n2b, n3}, all)
	waitFor(t, "n2 ready", n2b.ready)
	if fw, _ := n2b.driver.has(f); !fw {
		t.Errorf("n2 did not pull back a flow of its bucket")
	}
	if fw, rp := n2b.driver.has(g); fw || rp {
		t.Errorf("n2 pulled a flow it does not keep")
	}
	waitFor(t, "n3 handing the bucket to n2 again", func() bool { return n3.driver.route().Owners[b] == peerIndex(n3, "n2") })
	if st := n3.syncer.Status(); st.GetInstalled() != 2 || st.GetRejected() != 0 {
		t.Errorf("n3 status %v: want 2 installed, none rejected", st)
	}
}

func peerIndex(n *testNode, name string) uint32 {
	r := n.driver.route()
	for i, m := range r.Peers {
		if m[5] == name[1]-'0' {
			return uint32(i)
		}
	}
	return dataplane.TargetSelf - 1 // matches no index
}

func TestSyncRefusesStrangers(t *testing.T) {
	n1 := startNode(t, "n1", "a", 1)
	apply(t, []*testNode{n1}, []*testNode{n1})
	plain := n1.srv.Client() // no node name: like a caller without a node certificate
	f := dataplane.Flow{Client: netip.MustParseAddrPort("198.18.0.2:1"), VIP: netip.MustParseAddrPort("198.51.100.10:80"), Proto: 6,
		Backend: netip.MustParseAddrPort("198.18.1.21:8080"), Established: true}
	for _, tc := range []struct {
		name   string
		client connect.HTTPClient
		claim  string
	}{
		{"no node certificate", plain, "n2"},
		{"a node speaking for another", namedTransportClient(plain, "n2"), "n3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := weftv1connect.NewFlowSyncServiceClient(tc.client, n1.srv.URL)
			stream := c.Sync(context.Background())
			stream.Send(&weftv1.SyncRequest{Node: tc.claim, Flows: []*weftv1.SyncedFlow{toWire(f, dataplane.InstallForward)}})
			_, err := stream.Receive()
			if connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Errorf("sync: %v, want PermissionDenied", err)
			}
			stream.CloseResponse()
			ps, err := c.Pull(context.Background(), connect.NewRequest(&weftv1.PullRequest{Node: tc.claim}))
			if err == nil {
				for ps.Receive() {
					t.Errorf("pull gave flows to a stranger")
				}
				err = ps.Err()
			}
			if connect.CodeOf(err) != connect.CodePermissionDenied {
				t.Errorf("pull: %v, want PermissionDenied", err)
			}
			if fw, _ := n1.driver.has(f); fw {
				t.Errorf("a refused sync installed a flow")
			}
		})
	}
	if st := n1.syncer.Status(); st.GetReceived() != 0 {
		t.Errorf("received %d flows from strangers", st.GetReceived())
	}
}

func namedTransportClient(c *http.Client, name string) *http.Client {
	out := *c
	out.Transport = namedTransport{name, c.Transport}
	return &out
}

func TestFromWireRefusesNonsense(t *testing.T) {
	good := toWire(dataplane.Flow{Client: netip.MustParseAddrPort("198.18.0.2:1"), VIP: netip.MustParseAddrPort("198.51.100.10:80"), Proto: 6,
		Backend: netip.MustParseAddrPort("198.18.1.21:8080"), Local: netip.MustParseAddrPort("198.18.1.111:2000"), Established: true},
		dataplane.InstallForward|dataplane.InstallReply)
	if _, _, err := fromWire(good); err != nil {
		t.Fatalf("good flow: %v", err)
	}
	for _, tc := range []struct {
		name string
		bad  func(*weftv1.SyncedFlow)
	}{
		{"vip port 0", func(w *weftv1.SyncedFlow) { w.VipPort = 0 }},
		{"port over 65535", func(w *weftv1.SyncedFlow) { w.BackendPort = 70000 }},
		{"protocol icmp", func(w *weftv1.SyncedFlow) { w.Proto = 1 }},
		{"short address", func(w *weftv1.SyncedFlow) { w.Vip = []byte{1, 2, 3} }},
		{"mixed families", func(w *weftv1.SyncedFlow) { w.Backend = netip.MustParseAddr("2001:db8::1").AsSlice() }},
		{"local of another family", func(w *weftv1.SyncedFlow) { w.Local = netip.MustParseAddr("2001:db8::1").AsSlice() }},
		{"for no table", func(w *weftv1.SyncedFlow) { w.Forward, w.Reply = false, false }},
	} {
		w := proto.CloneOf(good)
		tc.bad(w)
		if _, _, err := fromWire(w); !errors.Is(err, errBadFlow) {
			t.Errorf("%s: %v, want errBadFlow", tc.name, err)
		}
	}
}
