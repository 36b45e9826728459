#!/usr/bin/env bash
# Katran beside Weft: compiles Facebook Katran's balancer (vendored here,
# see README.md) and the harness floor (floor.bpf.c) into a temporary
# directory, then times both on BenchmarkXDP's harness (one
# BPF_PROG_TEST_RUN per packet on CPU 0, the kernel's ns/pkt):
# BenchmarkKatran (IPIP, one VIP, four reals: hit and miss per family) and
# BenchmarkFloor (one per-CPU array lookup and XDP_TX). Root only.
#
#   deploy/bench/katran/run.sh                 # BENCH_COUNT runs (3)
#   BENCH_COUNT=5 deploy/bench/katran/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
COUNT=${BENCH_COUNT:-3}
OBJ=$(mktemp -d /tmp/weft-katran.XXXXXX)
trap 'rm -rf "$OBJ"' EXIT

command -v llc >/dev/null || make -C "$ROOT" bpf-tools >&2
# Katran's own build (katran/lib/Makefile-bpf): clang to LLVM IR for the
# host (its includes are the host's glibc and kernel headers), then llc
# for BPF. Its -DDEBUG is left out (no code reads it). MAX_CONN_RATE,
# Katran's per-CPU new-flow rate above which it stops writing its LRU, is
# raised beyond what the benchmark reaches so that every miss takes the
# path of a new flow under normal load: a lookup in the ring and an LRU
# insert, as Weft's miss does.
clang -I"$HERE" -D__KERNEL__ -DMAX_CONN_RATE=1000000000 \
	-Wno-unused-value -Wno-pointer-sign -Wno-compare-distinct-pointer-types \
	-O2 -emit-llvm -c -g "$HERE/katran/lib/bpf/balancer.bpf.c" -o - |
	llc -march=bpf -filetype=obj -o "$OBJ/balancer.o"
clang -O2 -g -Wall -Werror -target bpf -I/usr/include/x86_64-linux-gnu \
	-c "$HERE/floor.bpf.c" -o "$OBJ/floor.o"

cd "$ROOT"
KATRAN_BENCH_OBJ="$OBJ" go test -tags katranbench -run '^$' \
	-bench 'BenchmarkKatran|BenchmarkFloor' -count "$COUNT" ./dataplane/xdp
