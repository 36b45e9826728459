package node

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var descRe = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// described are the families the collectors describe: name -> labels.
func described(t *testing.T) map[string]string {
	ch := make(chan *prometheus.Desc, 1000)
	for _, c := range (&Agent{}).collectors() {
		c.Describe(ch)
	}
	close(ch)
	names := map[string]string{}
	for d := range ch {
		m := descRe.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read %s", d)
		}
		names[m[1]] = m[2]
	}
	return names
}

// TestDashboardNames: every Weft series the Grafana dashboard queries is
// one a node exports (a histogram's _bucket of a described family).
func TestDashboardNames(t *testing.T) {
	raw, err := os.ReadFile("../deploy/prometheus/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	names := described(t)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range regexp.MustCompile(`weft_[a-z0-9_]+`).FindAllString(tg.Expr, -1) {
				queried++
				_, family := names[name]
				_, histogram := names[strings.TrimSuffix(name, "_bucket")]
				if !family && !histogram {
					t.Errorf("panel %q queries %s, which no node exports", p.Title, name)
				}
			}
		}
	}
	if queried == 0 {
		t.Error("the dashboard queries no Weft series")
	}
}

// TestMetricNames pins the metric families a node exports and their
// labels (the node label is added to all of them): a rename or a label
// change must change this list, and the dashboards and alerts on it.
func TestMetricNames(t *testing.T) {
	var got []string
	for name, labels := range described(t) {
		got = append(got, name+"{"+labels+"}")
	}
	slices.Sort(got)
	want := strings.Fields(`
		weft_bgp_announced_prefixes{}
		weft_bgp_session_established{peer}
		weft_bgp_session_state{peer,state}
		weft_build_info{version}
		weft_dns_fail_open_total{}
		weft_dns_notifies_total{}
		weft_dns_queries_total{transport}
		weft_dns_rate_limited_total{}
		weft_dns_responses_total{rcode}
		weft_dns_slipped_total{}
		weft_dns_truncated_total{}
		weft_dns_zone_transfers_total{}
		weft_gossip_health_score{}
		weft_gossip_members{state}
		weft_gossip_messages_dropped_total{}
		weft_gossip_messages_duplicate_total{}
		weft_gossip_messages_received_total{}
		weft_gossip_messages_sent_total{}
		weft_gossip_queued_messages{}
		weft_health_check_duration_seconds{pool,member}
		weft_health_checks_total{pool,member,result}
		weft_health_member_up{pool,member}
		weft_health_probe_state{pool,member,state}
		weft_health_view_changes_total{}
		weft_l4_arp_replies_total{}
		weft_l4_backend_active_flows{lb,listener,backend}
		weft_l4_backend_bytes_total{backend}
		weft_l4_backend_drops_total{backend,reason}
		weft_l4_backend_new_flows_total{backend}
		weft_l4_backend_packets_total{backend}
		weft_l4_conntrack_entries{table}
		weft_l4_conntrack_max_entries{table}
		weft_l4_drops_total{reason}
		weft_l4_flow_redirects_total{direction}
		weft_l4_flow_sync_events_total{}
		weft_l4_flow_sync_lost_total{}
		weft_l4_fullnat_ports_in_use{local}
		weft_l4_listener_active_flows{lb,listener}
		weft_l4_listener_bytes_total{lb,listener}
		weft_l4_listener_drops_total{lb,listener,reason}
		weft_l4_listener_new_flows_total{lb,listener}
		weft_l4_listener_packets_total{lb,listener}
		weft_l7_connections{lb,listener}
		weft_l7_http2_streams_total{lb,listener}
		weft_l7_member_connect_errors_total{pool,member}
		weft_l7_member_ejected{pool,member}
		weft_l7_member_idle_connections{pool,member}
		weft_l7_member_in_flight_requests{pool,member}
		weft_l7_member_request_duration_seconds_total{pool,member}
		weft_l7_member_requests_total{pool,member,class}
		weft_l7_member_response_errors_total{pool,member}
		weft_l7_member_retries_total{pool,member}
		weft_l7_request_duration_seconds{lb,listener}
		weft_l7_requests_total{lb,listener,class}
		weft_l7_route_request_duration_seconds{lb,listener,route}
		weft_l7_route_requests_total{lb,listener,route,class}
		weft_l7_tls_handshakes_total{lb,listener,resumed}
		weft_l7_websocket_upgrades_total{lb,listener}
		weft_raft_applied_index{}
		weft_raft_apply_duration_seconds{}
		weft_raft_commit_index{}
		weft_raft_last_log_index{}
		weft_raft_leader_changes_total{}
		weft_raft_snapshot_index{}
		weft_raft_snapshot_size_bytes{}
		weft_raft_state{state}
		weft_raft_term{}
		weft_reconcile_applied_index{subsystem}
		weft_reconcile_apply_duration_seconds{subsystem}
		weft_reconcile_apply_failures_total{subsystem}
	`)
	if !slices.Equal(got, want) {
		t.Errorf("metric families changed:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}
