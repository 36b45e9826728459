#!/usr/bin/env bash
# The single-node demo, which `make demo` runs where the lab demo cannot (not
# root): one node on loopback, config applied through the CLI and read back,
# then real traffic through a VIP served by the node's userspace dataplane,
# a hot pool change, and a clean stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
WEFT=./bin/weft
DATA=$(mktemp -d /tmp/weft-demo-XXXXXX)
ADDR=127.0.0.1:7400
SERVERS=()
cleanup() {
	for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
	[[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$DATA"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start a one-node cluster (weft agent --init) in $DATA"
$WEFT agent --init --name demo --zone a --data-dir "$DATA" --api-addr $ADDR --raft-addr 127.0.0.1:7401 --dataplane userspace \
  >"$DATA/agent.out" 2>"$DATA/agent.log" &
PID=$!
for _ in $(seq 100); do [[ -s "$DATA/admin-token" ]] && grep -q '^cluster CA' "$DATA/agent.out" && break; sleep 0.1; done
sed 's/\(token[^:]*: \).*/\1<printed once, hidden here>/' "$DATA/agent.out"

export WEFT_ADDR=$ADDR WEFT_CA_FILE=$DATA/tls/ca.crt WEFT_TOKEN=$(cat "$DATA/admin-token")
step "weft status"
$WEFT status

step "weft apply -f deploy/examples/web.yaml"
cat deploy/examples/web.yaml
echo
$WEFT apply -f deploy/examples/web.yaml

step "apply again: nothing changes"
$WEFT apply -f deploy/examples/web.yaml

step "weft get lb / weft get pools"
$WEFT get lb
$WEFT get pools

step "weft describe lb web (defaults filled in, version = Raft index)"
$WEFT describe lb web

step "bad input is refused with the field named, and changes nothing"
$WEFT delete pool web || true
sed 's/port: 80,/port: 0,/' deploy/examples/web.yaml | $WEFT apply -f - || true

step "the API speaks JSON over HTTP too (curl)"
curl -sS --cacert "$WEFT_CA_FILE" -H "Authorization: Bearer $WEFT_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"web"}' https://$ADDR/weft.v1.LoadBalancerService/GetPool
echo

step "traffic: three real servers behind VIP 127.0.100.10:8080 (the node's userspace dataplane, Maglev)"
go build -o "$DATA/labserver" ./deploy/lab/labserver
for i in 1 2 3; do
	"$DATA/labserver" -name "server$i" -addr "127.0.0.1:1808$i" 2>/dev/null &
	SERVERS+=($!)
done
traffic() {
	cat <<YAML
kind: Pool
metadata: {name: demo}
spec:
  members: [$1]
---
kind: LoadBalancer
metadata: {name: demo}
spec:
  vip: 127.0.100.10
  listeners: [{port: 8080, protocol: tcp, pool: demo}]
YAML
}
members="{address: 127.0.0.1, port: 18081}, {address: 127.0.0.1, port: 18082}, {address: 127.0.0.1, port: 18083}"
traffic "$members" | $WEFT apply -f -
sleep 0.5
echo "30 new connections through the VIP, answered by:"
for _ in $(seq 30); do curl -s -m 2 http://127.0.100.10:8080/; done | sort | uniq -c

step "hot change: drain server2 (no restart, open connections unaffected)"
traffic "{address: 127.0.0.1, port: 18081}, {address: 127.0.0.1, port: 18082, drain: true}, {address: 127.0.0.1, port: 18083}" | $WEFT apply -f -
sleep 0.5
for _ in $(seq 30); do curl -s -m 2 http://127.0.100.10:8080/; done | sort | uniq -c
$WEFT status | grep -E '^(node|applied|dataplane)'

step "stop the node"
kill "$PID"; wait "$PID" || true; PID=
echo "done: a node formed a cluster, took config through the API, validated and stored it in Raft."
