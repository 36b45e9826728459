package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftlb/weft/gossip"
)

// clusterCollector reads what is not traffic: Raft, the reconciler, BGP,
// gossip, health checks and DNS.
type clusterCollector struct {
	metricSet
	a     *Agent
	build func(ch chan<- prometheus.Metric)

	raftState, term, commit, applied, lastLog, applyDuration   *prometheus.Desc
	leaderChanges, snapshotIndex, snapshotBytes                *prometheus.Desc
	subApplied, subDuration, subFailures                       *prometheus.Desc
	bgpEstablished, bgpState, bgpAnnounced                     *prometheus.Desc
	members, sent, received, duplicate, dropped, queued, score *prometheus.Desc
	checks, checkDuration, probeState, memberUp, viewChanges   *prometheus.Desc
	dnsQueries, dnsResponses, dnsTruncated, dnsLimited         *prometheus.Desc
	dnsSlipped, dnsFailOpen, dnsTransfers, dnsNotifies         *prometheus.Desc
}

// raftStates are the values of weft_raft_state's state label.
var raftStates = []string{"leader", "follower", "candidate", "shutdown"}

// bgpStates are the BGP FSM states (bgp.PeerStatus.State).
var bgpStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}

// probeStates are health.ProbeStatus.State's values.
var probeStates = []string{"unknown", "up", "down"}

func newClusterCollector(a *Agent) *clusterCollector {
	c := &clusterCollector{a: a}
	c.build = buildInfo(&c.metricSet)
	c.raftState = c.desc("weft_raft_state", "1 for this node's Raft role (leader, follower, candidate, shutdown), 0 for the others.", "state")
	c.term = c.desc("weft_raft_term", "This node's current Raft term.")
	c.commit = c.desc("weft_raft_commit_index", "The Raft log index this node knows committed.")
	c.applied = c.desc("weft_raft_applied_index", "The Raft log index this node's state machine applied.")
	c.lastLog = c.desc("weft_raft_last_log_index", "The last index of this node's Raft log.")
	c.applyDuration = c.desc("weft_raft_apply_duration_seconds", "Time from proposing a command to applying it, on the leader (commit on a quorum included).")
	c.leaderChanges = c.desc("weft_raft_leader_changes_total", "Leaders this node has learnt of since it started.")
	c.snapshotIndex = c.desc("weft_raft_snapshot_index", "Log index of this node's newest Raft snapshot (0: none).")
	c.snapshotBytes = c.desc("weft_raft_snapshot_size_bytes", "Size of this node's newest Raft snapshot.")
	c.subApplied = c.desc("weft_reconcile_applied_index", "The Raft index whose state a subsystem last applied without error.", "subsystem")
	c.subDuration = c.desc("weft_reconcile_apply_duration_seconds", "Time a subsystem took to apply a state, failed applies included.", "subsystem")
	c.subFailures = c.desc("weft_reconcile_apply_failures_total", "Applies of a state a subsystem failed (each retried).", "subsystem")
	c.bgpEstablished = c.desc("weft_bgp_session_established", "1 while the BGP session with a peer is established.", "peer")
	c.bgpState = c.desc("weft_bgp_session_state", "1 for the BGP FSM state of the session with a peer, 0 for the others.", "peer", "state")
	c.bgpAnnounced = c.desc("weft_bgp_announced_prefixes", "Prefixes (VIPs and the anycast DNS address) this node announces.")
	c.members = c.desc("weft_gossip_members", "Cluster members this node's gossip knows, by state.", "state")
	c.sent = c.desc("weft_gossip_messages_sent_total", "Broadcasts this node queued (not relays).")
	c.received = c.desc("weft_gossip_messages_received_total", "Gossip messages delivered to a handler, once each.")
	c.duplicate = c.desc("weft_gossip_messages_duplicate_total", "Copies of gossip messages already seen.")
	c.dropped = c.desc("weft_gossip_messages_dropped_total", "Gossip broadcasts too large to send, and messages or states that could not be decoded.")
	c.queued = c.desc("weft_gossip_queued_messages", "Gossip messages waiting for retransmission.")
	c.score = c.desc("weft_gossip_health_score", "memberlist's awareness score: 0 is healthy, higher means this node is slow to answer probes.")
	member := []string{"pool", "member"}
	c.checks = c.desc("weft_health_checks_total", "Health checks this node ran against a pool member, by result (success, failure).", "pool", "member", "result")
	c.checkDuration = c.desc("weft_health_check_duration_seconds", "Time a health check of a pool member took on this node.", member...)
	c.probeState = c.desc("weft_health_probe_state", "1 for this node's verdict on a pool member it checks (unknown, up, down), 0 for the others.", "pool", "member", "state")
	c.memberUp = c.desc("weft_health_member_up", "1 while a pool member is up in the agreed health view.", member...)
	c.viewChanges = c.desc("weft_health_view_changes_total", "Changes of the agreed health view.")
	c.dnsQueries = c.desc("weft_dns_queries_total", "DNS queries received, by transport.", "transport")
	c.dnsResponses = c.desc("weft_dns_responses_total", "DNS responses sent, by rcode.", "rcode")
	c.dnsTruncated = c.desc("weft_dns_truncated_total", "UDP DNS responses sent truncated (TC).")
	c.dnsLimited = c.desc("weft_dns_rate_limited_total", "DNS responses response rate limiting dropped.")
	c.dnsSlipped = c.desc("weft_dns_slipped_total", "DNS responses response rate limiting sent truncated and empty.")
	c.dnsFailOpen = c.desc("weft_dns_fail_open_total", "DNS answers given with every target unhealthy.")
	c.dnsTransfers = c.desc("weft_dns_zone_transfers_total", "AXFR and IXFR streams served.")
	c.dnsNotifies = c.desc("weft_dns_notifies_total", "DNS NOTIFY messages answered.")
	return c
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c.build(ch)
	c.collectRaft(ch)
	for _, s := range c.a.rec.metrics() {
		gauge(ch, c.subApplied, float64(s.applied), s.name)
		latencyHistogram(ch, c.subDuration, s.duration, s.name)
		counter(ch, c.subFailures, s.failures, s.name)
	}
	c.collectBGP(ch)
	c.collectGossip(ch)
	c.collectHealth(ch)
	c.collectDNS(ch)
}

func (c *clusterCollector) collectRaft(ch chan<- prometheus.Metric) {
	m := c.a.raft.Metrics()
	for _, s := range raftStates {
		gauge(ch, c.raftState, boolValue(s == m.State), s)
	}
	gauge(ch, c.term, float64(m.Term))
	gauge(ch, c.commit, float64(m.CommitIndex))
	gauge(ch, c.applied, float64(m.AppliedIndex))
	gauge(ch, c.lastLog, float64(m.LastLogIndex))
	latencyHistogram(ch, c.applyDuration, m.ApplyLatency)
	counter(ch, c.leaderChanges, m.LeaderChanges)
	gauge(ch, c.snapshotIndex, float64(m.SnapshotIndex))
	gauge(ch, c.snapshotBytes, float64(m.SnapshotBytes))
}

func (c *clusterCollector) collectBGP(ch chan<- prometheus.Metric) {
	if c.a.speaker == nil {
		return
	}
	st := c.a.speaker.Status()
	if st.Err != nil {
		failed(ch, c.bgpState, st.Err)
	}
	for _, p := range st.Peers {
		peer := p.Address.String()
		gauge(ch, c.bgpEstablished, boolValue(p.Established()), peer)
		for _, s := range bgpStates {
			gauge(ch, c.bgpState, boolValue(s == p.State), peer, s)
		}
	}
	gauge(ch, c.bgpAnnounced, float64(len(st.Announced)))
}

func (c *clusterCollector) collectGossip(ch chan<- prometheus.Metric) {
	g := c.a.gossip.gossiper()
	if g == nil {
		return // not joined yet
	}
	by := map[gossip.State]int{}
	for _, m := range g.Members() {
		by[m.State]++
	}
	for _, s := range []gossip.State{gossip.StateAlive, gossip.StateDead, gossip.StateLeft} {
		gauge(ch, c.members, float64(by[s]), s.String())
	}
	st := g.Stats()
	counter(ch, c.sent, st.MessagesSent)
	counter(ch, c.received, st.MessagesReceived)
	counter(ch, c.duplicate, st.MessagesDuplicate)
	counter(ch, c.dropped, st.MessagesDropped)
	gauge(ch, c.queued, float64(st.Queued))
	gauge(ch, c.score, float64(st.HealthScore))
}

func (c *clusterCollector) collectHealth(ch chan<- prometheus.Metric) {
	h := c.a.health
	if h == nil {
		return
	}
	for _, p := range h.Probes() {
		pool, member := p.Member.Pool, p.Member.Addr.String()
		counter(ch, c.checks, p.Checks-p.Failed, pool, member, "success")
		counter(ch, c.checks, p.Failed, pool, member, "failure")
		latencyHistogram(ch, c.checkDuration, p.Latency, pool, member)
		for _, s := range probeStates {
			gauge(ch, c.probeState, boolValue(s == p.State), pool, member, s)
		}
	}
	for k, up := range h.View() {
		gauge(ch, c.memberUp, boolValue(up), k.Pool, k.Addr.String())
	}
	counter(ch, c.viewChanges, h.Stats().ViewChanges)
}

func (c *clusterCollector) collectDNS(ch chan<- prometheus.Metric) {
	if c.a.dns == nil {
		return
	}
	st := c.a.dns.server.Stats()
	counter(ch, c.dnsQueries, st.UDPQueries, "udp")
	counter(ch, c.dnsQueries, st.TCPQueries, "tcp")
	for rcode, n := range st.Responses {
		counter(ch, c.dnsResponses, n, rcode)
	}
	counter(ch, c.dnsTruncated, st.Truncated)
	counter(ch, c.dnsLimited, st.RateLimited)
	counter(ch, c.dnsSlipped, st.Slipped)
	counter(ch, c.dnsFailOpen, st.FailOpen)
	counter(ch, c.dnsTransfers, st.Transfers)
	counter(ch, c.dnsNotifies, st.NotifiesSent)
}
