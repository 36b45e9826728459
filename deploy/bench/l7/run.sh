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
#   WORKLOADS="body tls" deploy/bench/l7/run.sh  # a subset (default: ka close h2 h2c100 body tls)
#
# h2, h2c100: h2load over TLS 1.3 (-c 10 -m 10 and -c 100 -m 1, the
# shapes of issue 16), H2_REQUESTS requests each.
#
# body: a 1 GiB download and a 1 GiB upload (curl, HTTP/1.1, one at a
# time) through each proxy to the sink backend (deploy/bench/l7/sink):
# MB/s, the proxy's CPU ms per GiB and its peak RSS (VmHWM, the round's
# largest process, read right after). Every proxy streams both ways
# (nginx with proxy_request_buffering off and no temp files).
# tls: new connections per second (deploy/bench/l7/tlsload, TLS_CONNS
# workers each connecting, handshaking, sending one request and closing)
# with full handshakes and with resumed ones (session tickets), TLS 1.3
# and 1.2, ECDSA P-256 and RSA-2048 certificates (each its own port), and
# the proxy's CPU us per connection.
set -euo pipefail

DURATION=${DURATION:-8}          # seconds per wrk run
ROUNDS=${ROUNDS:-${BENCH_COUNT:-3}}
CONNS=${CONNS:-32}               # concurrent connections
H2_REQUESTS=${H2_REQUESTS:-60000}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PROXIES=${PROXIES:-"nginx haproxy caddy weft"}
WORKLOADS=${WORKLOADS:-"ka close h2 h2c100 body tls"}
BODY_BYTES=${BODY_BYTES:-1073741824} # 1 GiB
TLS_DURATION=${TLS_DURATION:-4}      # seconds per tlsload run
TLS_CONNS=${TLS_CONNS:-16}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=$(mktemp -d /tmp/weft-l7-bench.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
BACKEND=127.0.0.1:18000
SINK=127.0.0.1:18001

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
# cgo: Weft's RSA signatures are libcrypto's (l7/internal/osslrsa).
need gcc gcc


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
# Its own name: Caddy picks certificates by SNI, not by port.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
	-subj /CN=rsa.bench.test -addext subjectAltName=DNS:rsa.bench.test \
	-keyout "$WORK/rsa-key.pem" -out "$WORK/rsa-cert.pem" 2>/dev/null

# The sink (large bodies) and the TLS load generator.
(cd "$ROOT" && go build -o "$WORK/sink" ./deploy/bench/l7/sink && go build -o "$WORK/tlsload" ./deploy/bench/l7/tlsload)
taskset -c "$LOAD_CPU" "$WORK/sink" -addr "$SINK" &
PIDS+=($!)
sleep 0.2
kill -0 "${PIDS[-1]}" || { echo "the sink did not start on $SINK" >&2; exit 1; }
truncate -s "$BODY_BYTES" "$WORK/body.bin"

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
  upstream sink { server $SINK; keepalive 16; }
  ssl_protocols TLSv1.2 TLSv1.3; # 1.22's default lacks 1.3
  server {
    listen 127.0.0.1:18081 backlog=4096;
    listen 127.0.0.1:18441 ssl http2;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    location /sink/ {
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
      client_max_body_size 0;
    }
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
  server {
    listen 127.0.0.1:18451 ssl;
    ssl_certificate $WORK/rsa-cert.pem;
    ssl_certificate_key $WORK/rsa-key.pem;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
CONF
	taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
	PROXY_PID=$!; HTTP_PORT=18081; HTTPS_PORT=18441; RSA_PORT=18451
}

start_haproxy() {
	cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
	cat "$WORK/rsa-cert.pem" "$WORK/rsa-key.pem" >"$WORK/haproxy-rsa.pem"
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
  bind 127.0.0.1:18452 ssl crt $WORK/haproxy-rsa.pem alpn h2,http/1.1
  use_backend sink if { path_beg /sink/ }
  default_backend be
backend be
  server b1 $BACKEND
backend sink
  server s1 $SINK
CONF
	taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" &
	PROXY_PID=$!; HTTP_PORT=18082; HTTPS_PORT=18442; RSA_PORT=18452
}

start_caddy() {
	cat >"$WORK/Caddyfile" <<CONF
{
  admin off
  auto_https off
  default_sni bench.test
}
http://127.0.0.1:18083 {
  reverse_proxy /sink/* $SINK
  reverse_proxy $BACKEND
}
https://127.0.0.1:18443 {
  tls $WORK/cert.pem $WORK/key.pem
  reverse_proxy $BACKEND
}
https://127.0.0.1:18453 {
  tls $WORK/rsa-cert.pem $WORK/rsa-key.pem
  reverse_proxy $BACKEND
}
CONF
	GOMAXPROCS=1 taskset -c "$PROXY_CPU" caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
	PROXY_PID=$!; HTTP_PORT=18083; HTTPS_PORT=18443; RSA_PORT=18453
}

start_weft() {
	# With cgo, or the build fails: without it RSA would sign with crypto/rsa.
	(cd "$ROOT" && CGO_ENABLED=1 go build -o "$WORK/l7bench" ./l7/cmd/l7bench)
	local prof=()
	[[ -n "${PROFILE:-}" ]] && prof=(-cpuprofile "${PROFILE_OUT:-/tmp/weft-l7.pprof}")
	taskset -c "$PROXY_CPU" "$WORK/l7bench" -procs 1 -gc "${WEFT_GC:-100}" -http 127.0.0.1:18084 -https 127.0.0.1:18444 \
		-backend "$BACKEND" -cert "$WORK/cert.pem" -key "$WORK/key.pem" "${prof[@]}" -sink "$SINK" \
		-https-rsa 127.0.0.1:18454 -cert-rsa "$WORK/rsa-cert.pem" -key-rsa "$WORK/rsa-key.pem" &
	PROXY_PID=$!; HTTP_PORT=18084; HTTPS_PORT=18444; RSA_PORT=18454
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

# run_h2load runs h2load over TLS 1.3 with conns connections of streams
# concurrent streams each; p99 is over every request's time from its
# request to its response (the log file's third column, in us).
run_h2load() { # name key url conns streams
	local name=$1 key=$2 url=$3 t0 t1 out reqs
	rm -f "$WORK/h2.log" # h2load appends to it
	t0=$(cpu_ticks "$PROXY_PID")
	out=$(taskset -c "$LOAD_CPU" h2load -n"$H2_REQUESTS" -c"$4" -m"$5" --log-file="$WORK/h2.log" "$url")
	t1=$(cpu_ticks "$PROXY_PID")
	reqs=$(awk '/^requests:/ {print $4}' <<<"$out")
	RPS[$name.$key.$ROUND]=$(awk '/^finished in/ {printf "%.0f", $4}' <<<"$out")
	P99[$name.$key.$ROUND]=$(cut -f3 "$WORK/h2.log" | sort -n | awk '{a[NR]=$1} END{printf "%.0f", a[int(NR*0.99)]}')
	CPU[$name.$key.$ROUND]=$(awk -v d=$((t1 - t0)) -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN{printf "%.1f", d/hz*1e6/n}')
}

# peak_rss_mib is the largest VmHWM of a process and its children (nginx's
# worker), in MiB.
peak_rss_mib() {
	local peak=0 p v
	for p in "$1" $(pgrep -P "$1" || true); do
		v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		((v > peak)) && peak=$v
	done
	awk -v k="$peak" 'BEGIN{printf "%.0f", k/1024}'
}

declare -A MBS BCPU RSS TPS TCPU
run_body() { # name key url [curl args]
	local name=$1 key=$2 url=$3; shift 3
	local t0 t1 out
	t0=$(cpu_ticks "$PROXY_PID")
	out=$(taskset -c "$LOAD_CPU" curl -sS -o /dev/null --max-time 120 -w '%{speed_download} %{speed_upload} %{size_download} %{http_code}' "$@" "$url")
	t1=$(cpu_ticks "$PROXY_PID")
	read -r down up size code <<<"$out"
	[[ $code == 200 ]] || { echo "$name $key: status $code" >&2; return 1; }
	if [[ $key == download ]]; then
		[[ $size == "$BODY_BYTES" ]] || { echo "$name download: $size bytes, want $BODY_BYTES" >&2; return 1; }
		MBS[$name.$key.$ROUND]=$(awk -v v="$down" 'BEGIN{printf "%.0f", v/1e6}')
	else
		MBS[$name.$key.$ROUND]=$(awk -v v="$up" 'BEGIN{printf "%.0f", v/1e6}')
	fi
	BCPU[$name.$key.$ROUND]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v b="$BODY_BYTES" 'BEGIN{printf "%.0f", d/hz*1e3/(b/2^30)}')
}

run_tls() { # name key port sni version resume
	local name=$1 key=$2 port=$3 sni=$4 version=$5 resume=$6 t0 t1 out n
	t0=$(cpu_ticks "$PROXY_PID")
	out=$(taskset -c "$LOAD_CPU" "$WORK/tlsload" -addr "127.0.0.1:$port" -sni "$sni" -c "$TLS_CONNS" -d "${TLS_DURATION}s" -tls "$version" -resume="$resume")
	t1=$(cpu_ticks "$PROXY_PID")
	n=$(awk '{print $2}' <<<"$out")
	if [[ $resume == true ]] && ! awk '{exit !($(NF-1)+0 >= 90)}' <<<"$out"; then
		echo "$name $key: $out: sessions were not resumed" >&2
	fi
	TPS[$name.$key.$ROUND]=$(awk '{printf "%.0f", $5}' <<<"$out")
	TCPU[$name.$key.$ROUND]=$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN{printf "%.0f", d/hz*1e6/n}')
}

TLS_KEYS=(ecdsa-1.3-full ecdsa-1.3-resumed ecdsa-1.2-full ecdsa-1.2-resumed rsa-1.3-full rsa-1.3-resumed rsa-1.2-full rsa-1.2-resumed)
has() { [[ " $WORKLOADS " == *" $1 "* ]]; }

wait_port "http://$BACKEND/"
for ROUND in $(seq "$ROUNDS"); do
	for name in $PROXIES; do
		echo "== round $ROUND: $name" >&2
		"start_$name"
		PIDS+=("$PROXY_PID")
		wait_port "http://127.0.0.1:$HTTP_PORT/"
		wait_port "https://127.0.0.1:$HTTPS_PORT/"
		if has body; then
			run_body "$name" download "http://127.0.0.1:$HTTP_PORT/sink/bytes/$BODY_BYTES"
			run_body "$name" upload "http://127.0.0.1:$HTTP_PORT/sink/upload" -T "$WORK/body.bin"
			RSS[$name.body.$ROUND]=$(peak_rss_mib "$PROXY_PID")
			echo "   download ${MBS[$name.download.$ROUND]} MB/s, upload ${MBS[$name.upload.$ROUND]} MB/s, peak RSS ${RSS[$name.body.$ROUND]} MiB" >&2
		fi
		has ka && run_wrk "$name" ka "http://127.0.0.1:$HTTP_PORT/"
		has close && run_wrk "$name" close "http://127.0.0.1:$HTTP_PORT/" -H "Connection: close"
		has h2 && run_h2load "$name" h2 "https://127.0.0.1:$HTTPS_PORT/" 10 10
		has h2c100 && run_h2load "$name" h2c100 "https://127.0.0.1:$HTTPS_PORT/" 100 1
		if has tls; then
			for key in "${TLS_KEYS[@]}"; do
				IFS=- read -r cert version mode <<<"$key"
				port=$HTTPS_PORT sni=bench.test
				[[ $cert == rsa ]] && port=$RSA_PORT sni=rsa.bench.test
				resume=false; [[ $mode == resumed ]] && resume=true
				run_tls "$name" "$key" "$port" "$sni" "$version" "$resume"
			done
			echo "   tls 1.3 ecdsa ${TPS[$name.ecdsa-1.3-full.$ROUND]} full, ${TPS[$name.ecdsa-1.3-resumed.$ROUND]} resumed conn/s" >&2
		fi
		kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
		has ka && echo "   keep-alive ${RPS[$name.ka.$ROUND]} req/s, p99 ${P99[$name.ka.$ROUND]} us, ${CPU[$name.ka.$ROUND]} us cpu/req" >&2
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
for key in ka close h2 h2c100; do
	has "$key" || continue
	case $key in
	ka) label="http/1.1 keep-alive";; close) label="http/1.1 conn/request"
		;; h2) label="h2 -c10 -m10";; h2c100) label="h2 -c100 -m1";;
	esac
	for name in $PROXIES; do
		rps=$(median RPS "$name.$key") p99=$(median P99 "$name.$key") cpu=$(median CPU "$name.$key")
		printf '%-8s %-22s %10s %6s %10s %6s %12s %6s\n' "$name" "$label" \
			"$rps" "$(ratio "$rps" "$(median RPS "nginx.$key")")" \
			"$p99" "$(ratio "$p99" "$(median P99 "nginx.$key")")" \
			"$cpu" "$(ratio "$cpu" "$(median CPU "nginx.$key")")"
	done
done
if has body; then
	printf '\n%-8s %-22s %10s %6s %12s %6s %10s\n' proxy workload MB/s x cpu_ms/GiB x rss_MiB
	for key in download upload; do
		for name in $PROXIES; do
			mbs=$(median MBS "$name.$key") cpu=$(median BCPU "$name.$key")
			printf '%-8s %-22s %10s %6s %12s %6s %10s\n' "$name" "1 GiB $key" \
				"$mbs" "$(ratio "$mbs" "$(median MBS "nginx.$key")")" \
				"$cpu" "$(ratio "$cpu" "$(median BCPU "nginx.$key")")" "$(median RSS "$name.body")"
		done
	done
fi
if has tls; then
	printf '\n%-8s %-22s %10s %6s %12s %6s\n' proxy workload conn/s x cpu_us/conn x
	for key in "${TLS_KEYS[@]}"; do
		for name in $PROXIES; do
			tps=$(median TPS "$name.$key") cpu=$(median TCPU "$name.$key")
			printf '%-8s %-22s %10s %6s %12s %6s\n' "$name" "tls $key" \
				"$tps" "$(ratio "$tps" "$(median TPS "nginx.$key")")" \
				"$cpu" "$(ratio "$cpu" "$(median TCPU "nginx.$key")")"
		done
	done
fi
