# kvfs — the Makefile is CI's only entry point (.ci/run calls `make test`
# and `make test-integration`).
#
#   make run               build kvfs and mount it at $(MOUNTPOINT) with the embedded etcd on ./data
#   make test              lint, unit + embedded etcd + separate etcd process tests, -race on core packages
#   make test-integration  3-member etcd cluster, fault suite and many-trial tests
#   make soak              the fault suite's etcd faults in a random schedule for SOAK (default 30m),
#                          on a 3-member cluster; summary table in soak-results/ (not in CI)
#   make bench             side-by-side benchmarks (native SQLite, LiteFS, kvfs on embedded/separate/3-member
#                          etcd, raw etcd); writes bench-results/bench-DATE[-quick].{json,md}; BENCH_QUICK=1:
#                          about 5 min. Builds LiteFS into bin/litefs with go install when it is missing.
#   make bench-go          Go micro-benchmarks (ltx, etcdstore, pager); results in bench-out/
#   make test-sqlite       SQLite's own TCL test suite (testfixture of the distribution's sqlite3
#                          source) on a kvfs mount and on a local directory, side by side; writes
#                          .sqlite-suite/results-DATE.md; SQLITE_TESTS="trans wal" picks test files.
#                          Not part of `make test`; tests/sqlite-suite/run.sh --help
#
# Integration-tier tests have "Cluster" or "Integration" in their names and
# skip unless KVFS_INTEGRATION=1; TestSustainedLoad runs a short load in
# `make test` and 20,000 commits in the integration tier.

SHELL        := /bin/bash
export PATH  := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO           ?= go
BIN          := $(CURDIR)/bin
DATA_DIR     ?= $(CURDIR)/data
MOUNTPOINT   ?= /mnt/kvfs
TEST_TIMEOUT ?= 15m
CORE_PKGS    := ./etcdstore/... ./ltx/... ./pager/... ./fence/... ./fuse/...
STATICCHECK_VERSION := v0.8.2
SUDO         := $(if $(filter 0,$(shell id -u)),,sudo)
export KVFS_ETCD_BIN := $(BIN)/etcd-server

.PHONY: all build run deps test test-unit test-race test-integration soak bench bench-go test-sqlite lint sweep clean install

all: build

build: $(BIN)/kvfs $(BIN)/etcd-server

$(BIN)/kvfs: FORCE
	$(GO) build -o $@ ./cmd/kvfs

$(BIN)/etcd-server: go.mod go.sum tests/etcd-server/main.go
	$(GO) build -o $@ ./tests/etcd-server

FORCE:

# deps installs the system packages kvfs and its tests need, when missing.
deps:
	@missing=""; \
	command -v sqlite3 >/dev/null || missing="$$missing sqlite3"; \
	command -v fusermount3 >/dev/null || missing="$$missing fuse3"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v $(GO) >/dev/null || { echo "Go is not installed (need Go 1.26: /usr/local/go/bin/go)"; exit 1; }

# run mounts kvfs at $(MOUNTPOINT) in the foreground, with the embedded
# etcd on $(DATA_DIR); Ctrl-C unmounts.
run: deps build sweep
	@mkdir -p $(MOUNTPOINT)
	$(BIN)/kvfs mount --data-dir $(DATA_DIR) --spool-dir $(DATA_DIR) $(MOUNTPOINT)

test: deps sweep lint test-unit test-race

# test-unit names each test as it runs and keeps failures, seeds, HANG
# reports (tests/helpers_test.go) and, on a timeout, the tests still running.
TEST_FILTER := '^(=== RUN|--- |PASS|FAIL|ok|panic)|seed|_test.go|running tests|^[[:space:]]+Test|HANG'

test-unit: $(BIN)/etcd-server
	$(GO) test -v -count=1 -timeout $(TEST_TIMEOUT) ./... 2>&1 | grep -E $(TEST_FILTER); exit $${PIPESTATUS[0]}

test-race: $(BIN)/etcd-server
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(CORE_PKGS)

test-integration: deps sweep $(BIN)/etcd-server
	KVFS_INTEGRATION=1 $(GO) test -count=1 -timeout 30m -run 'Cluster|Integration|TestSustainedLoad' -v ./... 2>&1 | \
		grep -E $(TEST_FILTER); exit $${PIPESTATUS[0]}

SOAK ?= 30m
soak: deps sweep $(BIN)/etcd-server
	KVFS_SOAK=$(SOAK) $(GO) test -count=1 -timeout 24h -run '^TestSoak$$' -v ./tests 2>&1 | \
		grep -E $(TEST_FILTER)'|fault|soak|lost|^ *\|'; exit $${PIPESTATUS[0]}

bench: deps sweep build
	BENCH_QUICK=$(BENCH_QUICK) $(GO) run ./tests/benchrun -kvfs $(BIN)/kvfs -etcd $(BIN)/etcd-server -litefs $(BIN)/litefs -out bench-results

bench-go: $(BIN)/etcd-server
	@mkdir -p bench-out
	$(GO) test -run '^$$' -bench . -benchtime $${BENCHTIME:-2s} -count $${BENCHCOUNT:-1} ./ltx ./etcdstore ./pager | tee bench-out/go-bench.txt

# test-sqlite runs SQLite's TCL test files with testfixture twice, in a fresh
# local directory and in a fresh directory on a fresh kvfs mount, and prints
# errors/tests of both side by side (issue 19). The sqlite3 source package and
# the testfixture built from it are cached in $(SQLITE_SUITE_DIR).
SQLITE_SUITE_DIR ?= $(CURDIR)/.sqlite-suite

test-sqlite: deps build
	SQLITE_SUITE_DIR=$(SQLITE_SUITE_DIR) KVFS_BIN=$(BIN)/kvfs $(SHELL) tests/sqlite-suite/run.sh

# install puts kvfs, its systemd unit and (if absent) the example config in place.
install: build
	install -m 0755 $(BIN)/kvfs /usr/local/bin/kvfs
	install -m 0644 systemd/kvfs.service /etc/systemd/system/kvfs.service
	test -e /etc/kvfs/kvfs.yaml || install -m 0640 -D systemd/kvfs.yaml /etc/kvfs/kvfs.yaml
	systemctl daemon-reload 2>/dev/null || true

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if [ ! -x $(BIN)/staticcheck ]; then \
		GOBIN=$(BIN) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) || \
		echo "staticcheck unavailable; skipped"; \
	fi
	@if [ -x $(BIN)/staticcheck ]; then $(BIN)/staticcheck ./...; fi

# sweep lazily unmounts kvfs FUSE mounts left by crashed runs.
sweep:
	@awk '$$3 ~ /^fuse\.kvfs/ || $$1 == "kvfs" {print $$2}' /proc/mounts | while read -r m; do \
		echo "unmounting stale $$m"; $(SUDO) umount -l "$$m" || true; done

clean:
	rm -rf $(BIN) bench-out
