#!/usr/bin/env bash
# make demo (until the lab exists): one dev node on loopback, an example
# load balancer applied through the CLI and read back, then a clean stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
WEFT=./bin/weft
DATA=$(mktemp -d /tmp/weft-demo-XXXXXX)
ADDR=127.0.0.1:7400
cleanup() { [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start a one-node cluster (weft agent --init) in $DATA"
$WEFT agent --init --name demo --zone a --data-dir "$DATA" --api-addr $ADDR --raft-addr 127.0.0.1:7401 \
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

step "stop the node"
kill "$PID"; wait "$PID" || true; PID=
echo "done: a node formed a cluster, took config through the API, validated and stored it in Raft."
