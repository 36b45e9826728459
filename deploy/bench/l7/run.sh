#!/usr/bin/env bash
# L7 benchmark: Weft's l7 beside nginx, HAProxy and Caddy (Debian packages),
# on the same backend with the same CPU limit. Each proxy runs pinned to one
# core (taskset -c $PROXY_CPU, one worker/thread/P); the backend (nginx
# static) and the load generators share the other core. For each proxy and
# each workload it prints requests/s, p99 latency and the proxy's CPU time
# per request (utime+stime of its processes from /proc, before and after),
# each the median of ROUNDS rounds (the proxies take turns in each round, so
# the machine's drift falls on all of them) and also as a ratio to nginx's
# median. Bounded: every run has a fixed duration and everything started
# here is stopped on exit.
#
#   deploy/bench/l7/run.sh            # all proxies, all workloads
#   DURATION=5 ROUNDS=1 PROXIES="weft nginx" deploy/bench/l7/run.sh
#   PROFILE=1 deploy/bench/l7/run.sh  # also write a CPU profile of Weft
#   WEFT_GC=400 deploy/bench/l7/run.sh  # Weft's GOGC (default 100)
set -euo pipefail

DURATION=${DURATION:-8}          # seconds per wrk run
ROUNDS=${ROUNDS:-${BENCH_COUNT:-3}}
CONNS=${CONNS:-32}               # concurrent connections
H2_REQUESTS=${H2_REQUESTS:-60000}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PROXIES=${PROXIES:-"nginx haproxy caddy weft"}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=$(mktemp -d /tmp/weft-l7-bench.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
BACKEND=127.0.0.1:18000

# need installs a missing tool's Debian package (as root), so a fresh
# machine needs no set-up by hand.
need() {
	command -v "$1" >/dev/null && return
	[[ $(id -u) == 0 ]] || { echo "missing $1: apt-get install -y $2" >&2; exit 1; }
	[[ -n ${APT_UPDATED:-} ]] || { apt-get update -qq; APT_UPDATED=1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need nginx nginx; need haproxy haproxy; need caddy caddy; need wrk wrk; need h2load nghttp2-client
need openssl openssl; need taskset util-linux; need go golang

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# Backend: nginx returning a small static body, keep-alive, on the load core.
mkdir -p "$WORK/backend"
cat >"$WORK/backend/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log error;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen $BACKEND reuseport backlog=4096;
    location / { return 200 "hello from the backend\n"; }
  }
}
CONF
taskset -c "$LOAD_CPU" nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" &
PIDS+=($!)

start_nginx() {
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log error;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream backend { server $BACKEND; keepalive 64; }
  server {
    listen 127.0.0.1:18081 backlog=4096;
    listen 127.0.0.1:18441 ssl http2;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
CONF
	taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
	PROXY_PID=$!; HTTP_PORT=18081; HTTPS_PORT=18441
}

start_haproxy() {
	cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
	cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend http
  bind 127.0.0.1:18082
  bind 127.0.0.1:18442 ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server b1 $BACKEND
CONF
	taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" &
	PROXY_PID=$!; HTTP_PORT=18082; HTTPS_PORT=18442
}

start_caddy() {
	cat >"$WORK/Caddyfile" <<CONF
{
  admin off
  auto_https off
  default_sni bench.test
}
http://127.0.0.1:18083 {
  reverse_proxy $BACKEND
}
https://127.0.0.1:18443 {
  tls $WORK/cert.pem $WORK/key.pem
  reverse_proxy $BACKEND
}
CONF
	GOMAXPROCS=1 taskset -c "$PROXY_CPU" caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
	PROXY_PID=$!; HTTP_PORT=18083; HTTPS_PORT=18443
}

start_weft() {
	(cd "$ROOT" && go build -o "$WORK/l7bench" ./l7/cmd/l7bench)
	local prof=()
	[[ -n "${PROFILE:-}" ]] && prof=(-cpuprofile "${PROFILE_OUT:-/tmp/weft-l7.pprof}")
	taskset -c "$PROXY_CPU" "$WORK/l7bench" -procs 1 -gc "${WEFT_GC:-100}" -http 127.0.0.1:18084 -https 127.0.0.1:18444 \
		-backend "$BACKEND" -cert "$WORK/cert.pem" -key "$WORK/key.pem" "${prof[@]}" &
	PROXY_PID=$!; HTTP_PORT=18084; HTTPS_PORT=18444
}

# cpu_ticks sums utime+stime of a process and its children (nginx workers).
cpu_ticks() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		[[ -r /proc/$p/stat ]] || continue
		total=$((total + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
	done
	echo "$total"
}

wait_port() {
	for _ in $(seq 100); do
		curl -sk -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "no answer from $1" >&2; return 1
}

# to_us converts wrk's latency ("1.23ms", "850.00us", "1.2s") to microseconds.
to_us() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) m=1; else if (v ~ /ms$/) m=1000; else m=1000000; sub(/[a-z]+$/, "", v); printf "%.0f", v*m }'; }

declare -A RPS P99 CPU
run_wrk() { # name key url [extra wrk args]
	local name=$1 key=$2 url=$3; shift 3
	local t0 t1 out reqs
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "$@" "$url" >/dev/null 2>&1 || true # warm up
	t0=$(cpu_ticks "$PROXY_PID")
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "$url")
	t1=$(cpu_ticks "$PROXY_PID")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	RPS[$name.$key.$ROUND]=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
	P99[$name.$key.$ROUND]=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
	CPU[$name.$key.$ROUND]=$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", d/hz*1e6/n}')
}

run_h2load() { # name url
	local name=$1 url=$2 t0 t1 out reqs
	t0=$(cpu_ticks "$PROXY_PID")
	out=$(taskset -c "$LOAD_CPU" h2load -n"$H2_REQUESTS" -c"$CONNS" -m10 --log-file="$WORK/h2.log" "$url")
	t1=$(cpu_ticks "$PROXY_PID")
	reqs=$(awk '/^requests:/ {print $4}' <<<"$out")
	RPS[$name.h2.$ROUND]=$(awk '/^finished in/ {printf "%.0f", $4}' <<<"$out")
	P99[$name.h2.$ROUND]=$(cut -f3 "$WORK/h2.log" | sort -n | awk '{a[NR]=$1} END{printf "%.0f", a[int(NR*0.99)]}')
	CPU[$name.h2.$ROUND]=$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", d/hz*1e6/n}')
}

wait_port "http://$BACKEND/"
for ROUND in $(seq "$ROUNDS"); do
	for name in $PROXIES; do
		echo "== round $ROUND: $name" >&2
		"start_$name"
		PIDS+=("$PROXY_PID")
		wait_port "http://127.0.0.1:$HTTP_PORT/"
		wait_port "https://127.0.0.1:$HTTPS_PORT/"
		run_wrk "$name" ka "http://127.0.0.1:$HTTP_PORT/"
		run_wrk "$name" close "http://127.0.0.1:$HTTP_PORT/" -H "Connection: close"
		run_h2load "$name" "https://127.0.0.1:$HTTPS_PORT/"
		kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
		echo "   keep-alive ${RPS[$name.ka.$ROUND]} req/s, p99 ${P99[$name.ka.$ROUND]} us, ${CPU[$name.ka.$ROUND]} us cpu/req" >&2
	done
done

# median ARRAY KEY prints the median over the rounds of ARRAY[KEY.round].
median() {
	local -n values=$1
	local r
	for r in $(seq "$ROUNDS"); do echo "${values[$2.$r]:-}"; done | sort -g |
		awk '{a[NR]=$1} END{ if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }'; }
printf '\nmedians of %s rounds\n%-8s %-22s %10s %6s %10s %6s %12s %6s\n' "$ROUNDS" proxy workload req/s x p99_us x cpu_us/req x
for key in ka close h2; do
	case $key in ka) label="http/1.1 keep-alive";; close) label="http/1.1 conn/request";; h2) label="https http/2 (h2load)";; esac
	for name in $PROXIES; do
		rps=$(median RPS "$name.$key") p99=$(median P99 "$name.$key") cpu=$(median CPU "$name.$key")
		printf '%-8s %-22s %10s %6s %10s %6s %12s %6s\n' "$name" "$label" \
			"$rps" "$(ratio "$rps" "$(median RPS "nginx.$key")")" \
			"$p99" "$(ratio "$p99" "$(median P99 "nginx.$key")")" \
			"$cpu" "$(ratio "$cpu" "$(median CPU "nginx.$key")")"
	done
done
