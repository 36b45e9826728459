# Weft. `make demo` and `make test` are the quick start; both install what
# they need (Debian packages as root, Go tools into ./bin).

SHELL := /bin/bash
# Go from the official tarball is in /usr/local/go/bin, which sudo's
# secure_path and login shells without a profile for it leave out; what the
# targets run (go run, go generate, the tests' go build) needs it too.
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := $(CURDIR)/bin
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
CONNECT_VERSION := v1.21.1
# h2spec's newest version the module proxy serves (its later tags are not
# valid module versions).
H2SPEC_VERSION := v2.2.1+incompatible
GOFLAGS_TEST ?=
# Lab and cluster tests start real processes and namespaces; one package at a
# time keeps them inside two cores.
TEST_PARALLEL ?= 2

.PHONY: all build test unit-test test-tools k8s-bins test-k8s check-generate generate tools bpf-tools cc-tools lint bench demo fuzz clean

all: build

# VERSION is what `weft version` and each node in `weft status` report;
# when empty the binary falls back to the Go toolchain's VCS stamp.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

build: cc-tools
	$(GO) build -ldflags "-X github.com/weftlb/weft/version.version=$(VERSION)" -o $(BIN)/weft ./cmd/weft

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(CONNECT_VERSION)
$(BIN)/h2spec:
	GOBIN=$(BIN) $(GO) install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)

# The XDP program is compiled by bpf2go (a go tool in go.mod) with clang.
bpf-tools:
	@command -v clang >/dev/null && command -v llvm-strip >/dev/null && [ -e /usr/include/bpf/bpf_helpers.h ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev linux-libc-dev)

# cgo needs a C compiler: l7/internal/osslrsa has libcrypto (dlopened, so
# no OpenSSL headers) make the RSA signatures of TLS handshakes. Go turns
# cgo off when it finds no compiler, and the binary then signs with
# crypto/rsa at about three times the CPU; as root a missing gcc, libc
# headers or libcrypto.so.3 are installed, as bpf-tools installs clang.
cc-tools:
	@if ! command -v gcc >/dev/null || [ ! -e /usr/include/dlfcn.h ] || ! /sbin/ldconfig -p | grep -q 'libcrypto\.so\.3 '; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev libssl3; \
		else echo "cc-tools: gcc, libc6-dev or libssl3 is missing and this is not root: RSA certificates sign with crypto/rsa" >&2; fi; fi

generate: tools bpf-tools
	cd proto && $(BIN)/buf lint && $(BIN)/buf generate
	$(GO) generate ./dataplane/xdp

# check-generate fails when committed generated code differs from what
# `make generate` produces (connect-go's checkgenerate pattern).
check-generate: generate
	@if [ -n "$$(git status --porcelain -- proto dataplane/xdp)" ]; then \
		echo "generated code is stale; run 'make generate' and commit:"; \
		git status --porcelain -- proto dataplane/xdp; git diff --stat -- proto dataplane/xdp; exit 1; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The patched memberlist (third_party/memberlist/WEFT.md) is a module of its
# own: its queue tests cover the patch. osslrsa's C calls run under the race
# detector too.
unit-test:
	$(GO) test -count=1 -timeout 20m -p $(TEST_PARALLEL) $(GOFLAGS_TEST) ./...
	$(GO) test -count=1 -race ./l7/internal/osslrsa
	cd third_party/memberlist && $(GO) test -count=1 -run 'TestTransmitLimited|TestLimitedBroadcast' .

# fuzz runs every fuzz target briefly (longer: FUZZTIME=2000000x, or 5m).
# A count, not a duration: a time limit can end a run mid-minimisation
# with a spurious "context deadline exceeded" failure.
FUZZTIME ?= 20000x
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg; \
		done; done

test: lint check-generate cc-tools test-tools k8s-bins unit-test fuzz

# k8s-bins builds the etcd and kube-apiserver that the Kubernetes
# controller's tests (e2e/k8s_test.go, e2e/lab_k8s_test.go) run, from the Go
# module proxy, once per machine: they are cached by version under
# ~/.cache/weft-k8s (k8s/testenv/build.sh; 10 to 20 minutes the first time
# on 2 cores, nothing after). `make test` builds them before the tests, not
# beside them: a build on both cores would starve the lab's timed tests.
k8s-bins:
	./k8s/testenv/build.sh
test-k8s: k8s-bins
	$(GO) test -count=1 -run 'TestK8s_' -v ./e2e

# test-tools installs the clients unit tests drive (the l7 tests run curl
# and h2spec, the metrics tests promtool, from Debian's prometheus, the
# console's test headless chromium), so that CI, as root on a fresh machine,
# runs them rather than skipping; the lab tests install their own tools
# (deploy/lab.EnsureTools).
test-tools: $(BIN)/h2spec
	@command -v curl >/dev/null && command -v promtool >/dev/null && command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			curl prometheus chromium fonts-liberation)

# bench runs every benchmark side by side (deploy/bench/run.sh) and prints
# medians; BENCH_COUNT=5 for more runs.
bench: build
	./deploy/bench/run.sh

# demo runs Weft on the lab (deploy/demo: three XDP nodes, BGP, a node
# killed mid-traffic) and leaves it running until demo-down; without root it
# runs the single-node userspace demo (deploy/demo/dev.sh) instead.
demo: build
	$(GO) run ./deploy/demo -weft $(BIN)/weft

.PHONY: demo-down
demo-down:
	$(GO) run ./deploy/demo -down

clean:
	rm -rf $(BIN)
