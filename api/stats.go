package api

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	weftv1 "github.com/weftlb/weft/proto/weft/v1"
	"github.com/weftlb/weft/proto/weft/v1/weftv1connect"
	"github.com/weftlb/weft/raftfsm"
	"github.com/weftlb/weft/validate"
)

// statsPeerTimeout bounds the wait for another node's counters: a node that
// does not answer within it is reported missing rather than holding up the
// sums of the others.
const statsPeerTimeout = 2 * time.Second

// statsService implements weftv1connect.StatsServiceHandler.
type statsService struct{ s *Server }

var _ weftv1connect.StatsServiceHandler = (*statsService)(nil)

// GetStats sums this node's counters and, unless the request is local,
// those of every other node gossip does not know dead, asked at once with
// the caller's credentials. Nodes that do not answer are listed as missing.
func (st *statsService) GetStats(ctx context.Context, req *connect.Request[weftv1.GetStatsRequest]) (*connect.Response[weftv1.GetStatsResponse], error) {
	s := st.s
	names := req.Msg.GetLoadBalancers()
	for _, n := range names {
		if err := validate.Name(validate.KindName(raftfsm.KindLoadBalancer), n); err != nil {
			return nil, toConnect(err)
		}
		if !req.Msg.GetLocal() && s.fsm.State().Resource(raftfsm.KindLoadBalancer, n) == nil {
			return nil, notFound("load balancer %q not found", n)
		}
	}
	res := &weftv1.GetStatsResponse{Time: timestamppb.New(s.now())}
	sum := newStatsSum()
	if s.cfg.LocalStats == nil {
		res.Missing = append(res.Missing, &weftv1.MissingNode{Node: s.cfg.NodeName, Reason: "serves no traffic"})
	} else if own, err := s.cfg.LocalStats(names); err != nil {
		res.Missing = append(res.Missing, &weftv1.MissingNode{Node: s.cfg.NodeName, Reason: err.Error()})
	} else {
		sum.add(own)
		res.Nodes = append(res.Nodes, s.cfg.NodeName)
	}
	if !req.Msg.GetLocal() {
		nodes, missing := s.statsFromPeers(ctx, req)
		for _, r := range nodes {
			sum.add(r.GetLoadBalancers())
			res.Nodes = append(res.Nodes, r.GetNodes()...)
			res.Missing = append(res.Missing, r.GetMissing()...)
		}
		res.Missing = append(res.Missing, missing...)
	}
	for _, lb := range sum.out {
		lb.TopClients, lb.TopPrefixes = topSources(lb.TopClients), topSources(lb.TopPrefixes)
	}
	res.LoadBalancers = sum.out
	slices.Sort(res.Nodes)
	slices.SortFunc(res.Missing, func(a, b *weftv1.MissingNode) int { return strings.Compare(a.GetNode(), b.GetNode()) })
	return connect.NewResponse(res), nil
}

// statsFromPeers asks every other node of the node table for its own
// counters, skipping those gossip holds dead or gone.
func (s *Server) statsFromPeers(ctx context.Context, req *connect.Request[weftv1.GetStatsRequest]) ([]*weftv1.GetStatsResponse, []*weftv1.MissingNode) {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		answers []*weftv1.GetStatsResponse
		missing []*weftv1.MissingNode
	)
	fail := func(node, reason string) {
		mu.Lock()
		defer mu.Unlock()
		missing = append(missing, &weftv1.MissingNode{Node: node, Reason: reason})
	}
	ctx, cancel := context.WithTimeout(ctx, statsPeerTimeout)
	defer cancel()
	for _, n := range s.nodes() {
		name := n.GetMetadata().GetName()
		if name == s.cfg.NodeName {
			continue
		}
		if l := n.GetStatus().GetLiveness(); l == "dead" || l == "left" {
			fail(name, "gossip holds it "+l)
			continue
		}
		p, err := s.peer(name)
		if err != nil {
			fail(name, connectMessage(err))
			continue
		}
		wg.Go(func() {
			out := connect.NewRequest(&weftv1.GetStatsRequest{LoadBalancers: req.Msg.GetLoadBalancers(), Local: true})
			if v := req.Header().Get("Authorization"); v != "" {
				out.Header().Set("Authorization", v)
			}
			r, err := p.stats.GetStats(ctx, out)
			if err != nil {
				fail(name, connectMessage(err))
				return
			}
			mu.Lock()
			defer mu.Unlock()
			answers = append(answers, r.Msg)
		})
	}
	wg.Wait()
	return answers, missing
}

// connectMessage is an error as a reason to show: its message without the
// code prefix connect adds.
func connectMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code().String() + ": " + ce.Message()
	}
	return err.Error()
}

// statsSum adds up the counters of several nodes, matching load balancers
// by name, listeners by name and backends by pool and address; each node
// lists what its own copy of the committed state holds.
type statsSum struct {
	out       []*weftv1.LoadBalancerStats
	lbs       map[string]*weftv1.LoadBalancerStats
	listeners map[[2]string]*weftv1.ListenerStats
	backends  map[backendStatsKey]*weftv1.BackendStats
}

type backendStatsKey struct {
	lb, listener, pool, address string
	port                        uint32
}

func newStatsSum() *statsSum {
	return &statsSum{lbs: map[string]*weftv1.LoadBalancerStats{}, listeners: map[[2]string]*weftv1.ListenerStats{},
		backends: map[backendStatsKey]*weftv1.BackendStats{}}
}

func (s *statsSum) add(lbs []*weftv1.LoadBalancerStats) {
	for _, lb := range lbs {
		into := s.lbs[lb.GetName()]
		if into == nil {
			into = &weftv1.LoadBalancerStats{Name: lb.GetName(), Vip: lb.GetVip()}
			s.lbs[lb.GetName()] = into
			s.out = append(s.out, into)
		}
		into.TopClients = addSources(into.TopClients, lb.GetTopClients())
		into.TopPrefixes = addSources(into.TopPrefixes, lb.GetTopPrefixes())
		for _, l := range lb.GetListeners() {
			lk := [2]string{lb.GetName(), l.GetName()}
			lin := s.listeners[lk]
			if lin == nil {
				lin = &weftv1.ListenerStats{Name: l.GetName(), Protocol: l.GetProtocol(), Port: l.GetPort()}
				s.listeners[lk] = lin
				into.Listeners = append(into.Listeners, lin)
			}
			lin.Traffic = addTraffic(lin.Traffic, l.GetTraffic())
			lin.Requests = addRequests(lin.Requests, l.GetRequests())
			for _, b := range l.GetBackends() {
				bk := backendStatsKey{lb.GetName(), l.GetName(), b.GetPool(), b.GetAddress(), b.GetPort()}
				bin := s.backends[bk]
				if bin == nil {
					bin = &weftv1.BackendStats{Pool: b.GetPool(), Address: b.GetAddress(), Port: b.GetPort(),
						Health: b.GetHealth(), Drain: b.GetDrain()}
					s.backends[bk] = bin
					lin.Backends = append(lin.Backends, bin)
				}
				// The agreed view is the same on every node that holds
				// it; a node that checks nothing says unknown.
				if bin.Health == HealthUnknown {
					bin.Health = b.GetHealth()
				}
				bin.Traffic = addTraffic(bin.Traffic, b.GetTraffic())
				bin.Requests = addRequests(bin.Requests, b.GetRequests())
			}
		}
	}
	slices.SortFunc(s.out, func(a, b *weftv1.LoadBalancerStats) int { return strings.Compare(a.GetName(), b.GetName()) })
}

// Health of a backend in BackendStats: up or down in the agreed view, or
// unknown when the view of no node that answered holds it.
const (
	HealthUp      = "up"
	HealthDown    = "down"
	HealthUnknown = "unknown"
)

func addTraffic(into, c *weftv1.TrafficCounters) *weftv1.TrafficCounters {
	if c == nil {
		return into
	}
	if into == nil {
		into = &weftv1.TrafficCounters{}
	}
	into.Packets += c.GetPackets()
	into.Bytes += c.GetBytes()
	into.NewFlows += c.GetNewFlows()
	into.ActiveFlows += c.GetActiveFlows()
	into.Drops += c.GetDrops()
	return into
}

func addRequests(into, c *weftv1.RequestCounters) *weftv1.RequestCounters {
	if c == nil {
		return into
	}
	if into == nil {
		into = &weftv1.RequestCounters{}
	}
	into.Requests += c.GetRequests()
	into.Status_1Xx += c.GetStatus_1Xx()
	into.Status_2Xx += c.GetStatus_2Xx()
	into.Status_3Xx += c.GetStatus_3Xx()
	into.Status_4Xx += c.GetStatus_4Xx()
	into.Status_5Xx += c.GetStatus_5Xx()
	into.NoStatus += c.GetNoStatus()
	return into
}

// TopSourcesShown is how many top clients and prefixes GetStats gives per
// load balancer.
const TopSourcesShown = 10

// addSources adds the new-flow rates of one node's top sources to those of
// the others, source by source.
func addSources(into, s []*weftv1.TopSource) []*weftv1.TopSource {
	for _, x := range s {
		i := slices.IndexFunc(into, func(y *weftv1.TopSource) bool { return y.GetSource() == x.GetSource() })
		if i < 0 {
			into = append(into, &weftv1.TopSource{Source: x.GetSource()})
			i = len(into) - 1
		}
		into[i].NewFlows += x.GetNewFlows()
		into[i].Limited += x.GetLimited()
	}
	return into
}

// topSources is the TopSourcesShown sources with the most new flows, most
// first.
func topSources(s []*weftv1.TopSource) []*weftv1.TopSource {
	slices.SortFunc(s, func(a, b *weftv1.TopSource) int {
		if c := cmp.Compare(b.GetNewFlows(), a.GetNewFlows()); c != 0 {
			return c
		}
		return strings.Compare(a.GetSource(), b.GetSource())
	})
	return s[:min(len(s), TopSourcesShown)]
}
