#!/usr/bin/env bash
# make bench: every benchmark in one run, so figures measured on this shared
# machine can be compared with each other. Each part is bounded and stops by
# itself. Quote medians and ratios, not single runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${BENCH_COUNT:-3}
OUT=${BENCH_OUT:-/tmp/weft-bench}
mkdir -p "$OUT"

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

section "Raft: replicated writes on a 3-node loopback cluster (in-process, 16 writers)"
go test -run '^$' -bench 'BenchmarkApply' -benchtime 2000x -count "$COUNT" ./raftfsm | tee "$OUT/raft.txt"

section "Raft at 10,000 load balancers: snapshot size, persist and restore ms; a joining node's catch-up through InstallSnapshot (ms)"
go test -run '^$' -bench 'BenchmarkSnapshot' -count "$COUNT" ./raftfsm | tee -a "$OUT/raft.txt"
go test -run '^$' -bench 'BenchmarkCatchUp' -benchtime 2x -count "$COUNT" ./raftfsm | tee -a "$OUT/raft.txt"

section "API: acknowledged writes through weft agents (3 processes, 16 and 64 clients, leader and follower)"
go test -run '^$' -bench 'BenchmarkClusterWrites' -benchtime 2000x -count "$COUNT" -timeout 20m ./e2e | tee "$OUT/api.txt"

section "XDP program: ns per packet through BPF_PROG_TEST_RUN; Apply of one member change in a service of 100 and 1,000 backends, entries written (root)"
go test -run '^$' -bench '^BenchmarkXDP$' -count "$COUNT" ./dataplane/xdp | tee "$OUT/xdp.txt"
# The same packets while the metrics endpoint's reads run every second.
go test -run '^$' -bench '^BenchmarkXDPScraped$' -benchtime 5s -count "$COUNT" ./dataplane/xdp | tee -a "$OUT/xdp.txt"
go test -run '^$' -bench 'BenchmarkNATCapacity' -benchtime 1x -count "$COUNT" ./dataplane/xdp | tee -a "$OUT/xdp.txt"
go test -run '^$' -bench 'BenchmarkApplyMemberChange' -count "$COUNT" ./dataplane/xdp | tee -a "$OUT/xdp.txt"
go test -run '^$' -bench 'BenchmarkApplyServices|BenchmarkConntrackFull' -count "$COUNT" ./dataplane/xdp | tee -a "$OUT/xdp.txt"

section "L4 in the lab: Weft XDP FullNAT and DSR against nftables DNAT on the same node (root)"
go test -run '^$' -bench 'BenchmarkLab_L4' -benchtime 1x -count "$COUNT" -timeout 20m ./e2e | tee "$OUT/lab-l4.txt"

section "Fabric in the lab: apply -> applied on every node (p50/p99 ms); zone, node (SIGKILL) and host loss: takeover, withdraw and new-connection recovery ms; survival % of 200 DSR and 200 FullNAT long-lived connections through node, host and zone loss, node loss while the pool changes, and a rolling restart (root)"
go test -run '^$' -bench 'BenchmarkLab_Failover' -benchtime 1x -count "$COUNT" -timeout 20m ./e2e | tee "$OUT/lab-failover.txt"

section "Propagation in the lab at scale: apply -> applied on every node (p50/p99 ms over 30 changes) and the largest agent RSS with 1, 1,000 and 10,000 load balancers (root)"
go test -run '^$' -bench 'BenchmarkLab_Propagation' -benchtime 1x -count "$COUNT" -timeout 30m ./e2e | tee "$OUT/lab-propagation.txt"

section "Flow sync in the lab: new FullNAT connections/s with flow sync on and off, sync bytes per flow, kernel bytes per flow (root)"
go test -run '^$' -bench 'BenchmarkLab_FlowSync' -benchtime 1x -count "$COUNT" -timeout 20m ./e2e | tee "$OUT/lab-flowsync.txt"

section "Flow sync in Go: ns per reported flow sent (3 and 100 nodes) and per synced flow received"
go test -run '^$' -bench 'BenchmarkReport|BenchmarkInstall' -count "$COUNT" ./dataplane/flowsync | tee "$OUT/flowsync.txt"

section "L7 proxy in-process: one kept-alive HTTP/1.1 request (ns and allocations per request)"
go test -run '^$' -bench 'BenchmarkProxyKeepAlive' -benchtime 20000x -count "$COUNT" ./l7 | tee "$OUT/l7-inproc.txt"
# The same while the metrics endpoint reads the proxy's Stats every second.
go test -run '^$' -bench 'BenchmarkProxyScraped' -benchtime 3s -count "$COUNT" ./l7 | tee -a "$OUT/l7-inproc.txt"

section "Metrics: one scrape of /metrics (collect and encode) on a node with 1,000 load balancers of 10 members: l4, the XDP dataplane with 100k live flows (root); l7, the proxy with 1,000 http listeners"
go test -run '^$' -bench 'BenchmarkScrape' -count "$COUNT" ./node | tee "$OUT/metrics.txt"

section "DNS in-process: one UDP query through the GSLB's datagram path (ns and allocations per query)"
go test -run '^$' -bench 'BenchmarkHandleUDP' -benchtime 200000x -count "$COUNT" ./gslb | tee "$OUT/dns-inproc.txt"

section "DNS: dnsperf against Weft and PowerDNS Authoritative (equivalent Lua records), each pinned to CPU 1, dnsperf on CPU 0: queries/s, p99 ms at 5000 queries/s (root)"
go test -run '^$' -bench 'BenchmarkDNS' -benchtime 1x -count "$COUNT" -timeout 20m ./e2e | tee "$OUT/dns.txt"

section "Reconciler: one pool change with 1, 1,000 and 10,000 load balancers committed (FSM, health, dataplane, BGP rounds; ms each)"
go test -run '^$' -bench 'BenchmarkReconcileChange' -benchtime 10x -count "$COUNT" ./node | tee "$OUT/reconcile.txt"

section "Maglev table build and lookup"
go test -run '^$' -bench . -count "$COUNT" ./dataplane/maglev | tee "$OUT/maglev.txt"

# Each deploy/bench/<name>/run.sh (e.g. katran: Katran's XDP program and
# the harness floor beside BenchmarkXDP) writes $OUT/<name>.txt, which the
# medians include.
extras=()
for extra in deploy/bench/*/run.sh; do
	[[ -x "$extra" ]] || continue
	section "$extra"
	extras+=("$OUT/$(basename "$(dirname "$extra")").txt")
	"$extra" | tee "${extras[-1]}"
done

# The ratios put Weft's XDP program beside Katran's (same frames, same
# harness) and the floor (one array lookup and XDP_TX).
section "medians"
go run ./deploy/bench/median -base BenchmarkLab_L4=nftables-dnat -base BenchmarkLab_FlowSync=sync-off -base BenchmarkDNS=powerdns \
	-ratio BenchmarkXDP/dsr/ipv4/hit=BenchmarkKatran/ipip-v4-hit -ratio BenchmarkXDP/dsr/ipv4/hit=BenchmarkFloor/array-lookup-tx \
	-ratio BenchmarkXDP/dsr/ipv4/miss=BenchmarkKatran/ipip-v4-miss \
	-ratio BenchmarkXDP/dsr/ipv6/hit=BenchmarkKatran/ipip-v6-hit -ratio BenchmarkXDP/dsr/ipv6/miss=BenchmarkKatran/ipip-v6-miss \
	-ratio BenchmarkKatran/ipip-v4-hit=BenchmarkFloor/array-lookup-tx \
	-ratio BenchmarkXDPScraped/fullnat/ipv4/hit/scraped=BenchmarkXDPScraped/fullnat/ipv4/hit/idle \
	-ratio BenchmarkXDPScraped/dsr/ipv4/miss/scraped=BenchmarkXDPScraped/dsr/ipv4/miss/idle \
	-ratio BenchmarkProxyScraped/scraped=BenchmarkProxyScraped/idle \
	"$OUT"/raft.txt "$OUT"/api.txt "$OUT"/xdp.txt "$OUT"/lab-l4.txt "$OUT"/lab-failover.txt "$OUT"/lab-propagation.txt "$OUT"/lab-flowsync.txt "$OUT"/flowsync.txt "$OUT"/l7-inproc.txt "$OUT"/metrics.txt "$OUT"/dns-inproc.txt "$OUT"/dns.txt "$OUT"/reconcile.txt "$OUT"/maglev.txt "${extras[@]}"
