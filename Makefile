# Conveniences over the README's two commands (hack/run.sh, hack/test.sh).
GO      ?= go
PKG     := github.com/accel-cri/accel-cri
# A release tag v<semver> on HEAD names the version; without one the binary
# reports 0.0.0-dev+<commit>, always a semantic version, which kubelet needs
# (internal/version).
VERSION ?= $(shell git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null | sed 's/^v//')
COMMIT  ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X $(PKG)/internal/version.Version=$(VERSION)) $(if $(COMMIT),-X $(PKG)/internal/version.Commit=$(COMMIT))
export PATH := /usr/local/go/bin:/usr/local/sbin:/usr/local/bin:$(PATH)

.PHONY: all build deps run test unit e2e cluster-e2e cluster cluster-down critest fuzz chaos chaos-ci soak docs bench bench-small clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/accel-cri ./cmd/accel-cri

deps:
	bash hack/install-deps.sh --test

run:
	bash hack/run.sh

test:
	bash hack/test.sh

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

e2e:
	$(GO) test -count=1 -v ./test/e2e/...

# A one-node Kubernetes cluster on accel-cri (test/e2e/cluster; docs/kubelet.md):
# etcd and the control plane built by hack/build-k8s.sh, the kubelet, kubectl and
# client-go through the API server. Built with the cluster tag; `make test`
# (hack/test.sh) runs it after the other suites.
cluster-e2e:
	$(GO) test -tags cluster -count=1 -v -timeout 40m ./test/e2e/cluster

# The same cluster, kept running for you (hack/cluster; README "Try it on a
# cluster"): prints the kubeconfig, kubectl and the local registry's images;
# the node offers a fake Intel GPU (accel-cri.io/intel-gpu). cluster-down
# stops it and checks that nothing of it is left. State dir:
# /run/accel-cri-cluster ($ACCEL_CRI_CLUSTER_STATE moves it).
cluster:
	$(GO) run ./hack/cluster up

cluster-down:
	$(GO) run ./hack/cluster down

# The CRI conformance suite, critest v1.37.0, against accel-cri (part of
# `make test` and `make e2e`; docs/conformance.md). CRITEST_FOCUS=<regexp>
# runs only matching specs, CRITEST_SEED=<n> repeats an order,
# CRITEST_REPORT_DIR=<dir> keeps critest's JSON and JUnit reports and output.
critest:
	$(GO) test -count=1 -v -timeout 30m -run 'TestCritest$$' ./test/e2e/critest

# A/B benchmark, accel-cri against containerd's own CRI (docs/benchmarks.md):
# about 13 minutes on 2 cores; results.md, results.json, latency.svg in docs/bench.
BENCH_ARGS ?= -pods 100 -concurrency 1,8 -rounds 3 -list-pods 100 -list-iterations 200
bench:
	$(GO) test -tags bench -count=1 -v -timeout 90m ./test/bench -args $(BENCH_ARGS) -out $(CURDIR)/docs/bench

# The same at a size that only proves it works (CI; under a minute), into a temp dir.
bench-small:
	$(GO) test -tags bench -count=1 -v -timeout 10m ./test/bench -args -pods 4 -concurrency 1,8 -rounds 1 -list-pods 10 -list-iterations 20

# Every fuzz target for FUZZTIME (default 5s) each; see hack/fuzz.sh.
fuzz:
	bash hack/fuzz.sh

# Chaos suite (docs/reliability.md): pod churn while accel-cri and its
# containerd are SIGKILLed. Sizes: CHAOS_PODS, CHAOS_CONCURRENCY, CHAOS_KILLS,
# CHAOS_GAP, CHAOS_LEAK_PODS, CHAOS_SEED.
chaos:
	$(GO) test -tags chaos -count=1 -timeout 60m -v -run 'TestChaos$$' ./test/chaos

# The small size CI runs (< 4 minutes, still >= 20 kills).
chaos-ci:
	CHAOS_PODS=60 CHAOS_CONCURRENCY=4 CHAOS_KILLS=20 CHAOS_GAP=1s CHAOS_LEAK_PODS=20 \
		$(GO) test -tags chaos -count=1 -timeout 20m -v -run 'TestChaos$$' ./test/chaos

# Soak: churn without kills for SOAK_DURATION (default 30m), RSS and fds of
# accel-cri and its containerd sampled every SOAK_INTERVAL (10s), slopes printed.
soak:
	$(GO) test -tags soak -count=1 -timeout 0 -v -run 'TestSoak$$|TestSlopePerMinute' ./test/chaos

# Regenerate the default config block of docs/configuration.md.
docs: build
	@python3 -c 'import re,subprocess,sys; p="docs/configuration.md"; s=open(p).read(); c=subprocess.check_output(["bin/accel-cri","config","default"],text=True); open(p,"w").write(re.sub(r"```toml\n.*?```", lambda m: "```toml\n"+c+"```", s, count=1, flags=re.S))'

clean:
	rm -rf bin
