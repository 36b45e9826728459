#!/usr/bin/env bash
# build.sh builds the etcd and kube-apiserver binaries the controller's tests
# run, from the Go module proxy, into a cache kept by version:
#   ${WEFT_K8S_CACHE:-$HOME/.cache/weft-k8s}/etcd-v3.7.3/etcd
#   ${WEFT_K8S_CACHE:-$HOME/.cache/weft-k8s}/kube-apiserver-v1.37.2/kube-apiserver
# Only the first run on a machine builds (kube-apiserver: about 10 min on two
# cores, 2.8 GB); later runs find the binaries and return at once. The
# wrapper modules beside this script pin the versions (go.mod, go.sum), and
# `make k8s-bins` and the tests (k8s/testenv) both call this script, so the
# flags, and so the cache, are the same. A lock lets `make test` start the
# build early in the background while the tests that need it wait for it.
# `build.sh -p` prints the cache directory and builds nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PATH="$PATH:/usr/local/go/bin"
ETCD_VERSION=v3.7.3
KUBE_VERSION=v1.37.2
cache="${WEFT_K8S_CACHE:-$HOME/.cache/weft-k8s}"
if [ "${1:-}" = "-p" ]; then echo "$cache"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

build() { # name version package ldflags
	local name=$1 version=$2 pkg=$3 ldflags=$4
	local out="$cache/$name-$version/$name"
	[ -x "$out" ] && return 0
	echo "k8s/testenv: building $name $version (once per machine) into $out" >&2
	mkdir -p "$(dirname "$out")"
	(cd "$here/$name" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
	mv "$out.tmp" "$out"
}

build etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
	"-X go.etcd.io/etcd/api/v3/version.GitSHA=weft"
kv=${KUBE_VERSION#v}
build kube-apiserver "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver \
	"-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=${kv%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$kv" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean"
