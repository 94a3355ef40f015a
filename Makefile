# Headway build. `make build` stamps versions into the binary.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# The Kubernetes version needs no stamp: internal/version takes it from the
# module build info (client-go v0.X.Y serves v1.X.Y), and
# internal/version/kubeversion hands it to kubectl and client-go, so a plain
# `go build` or `go install` reports it too.
PKG := github.com/headway/headway/internal/version
LDFLAGS := -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).BuildDate=$(BUILD_DATE)
# kubectl's kustomize (apply -k) imports package plugin for Go .so plugins.
# In a cgo build that alone makes the linker keep every exported method and
# export every symbol (-rdynamic: 24 MB of .dynsym/.dynstr): the binary grows
# from 138 to 176 MB and an idle server maps 28 MB more of it
# (bench/results-apiserver.md). The tag drops that import; upstream kubectl
# is built without cgo, so it cannot load Go plugins either.
TAGS := kustomize_disable_go_plugin_support

.PHONY: build init run test test-short bench reliability ldflags tags lint deps deps-test deps-bench

# The process runtime's container init, embedded in headway (see
# internal/agent/runtime/process/initbin): a 2 MB static binary that starts
# in a fifth of the CPU time of headway itself. headway is stamped with its
# digest and uses it only when the embedded file matches.
INITBIN := internal/agent/runtime/process/initbin/bin/headway-init
INITPKG := github.com/headway/headway/internal/agent/runtime/process/initbin

# The linker's output is copied into place rather than run as written: the
# page cache the linker leaves behind (it writes through a memory map) makes
# every later start of that file map about 14 MB more of it (idle RSS 66 MB
# against 52 MB for the same bytes written by cp, or read back from disk
# after a reboot; bench/results-apiserver.md). The copy costs a fraction of
# a second. (Written in 2 MiB writes instead, the file's page cache is in
# 2 MiB folios: a start maps them whole and reached /readyz ~30 ms sooner
# (171 vs 204 ms, 12 interleaved starts), but an idle server maps a whole
# folio back for each page it touches again: idle RSS 66 / 104 MB without
# and with the agent, over the 60 MB target.)
build: init
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS) -X $(INITPKG).SHA256='"$$(sha256sum $(INITBIN) | cut -d' ' -f1)" -o bin/.headway.linked ./cmd/headway
	cp bin/.headway.linked bin/.headway.new && mv -f bin/.headway.new bin/headway && rm -f bin/.headway.linked

init:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(INITBIN) ./cmd/headway-init

# Debian packages (apt, as root or through sudo; or a list of what to install).
deps:
	bash scripts/install-deps.sh run

deps-test:
	bash scripts/install-deps.sh test

# What the benchmarks compare with: dnsperf (apt) and CoreDNS (a Go install,
# the version the DNS tests compare answers with).
deps-bench:
	bash scripts/install-deps.sh bench
	command -v coredns >/dev/null || test -x "$$($(GO) env GOPATH)/bin/coredns" || $(GO) install github.com/coredns/coredns@v1.14.7

# Start a server with the embedded defaults (root for pods: sudo make run).
run: deps build
	./bin/headway server

# The whole suite: unit, integration and end-to-end (e2e needs root for
# network namespaces; it skips those parts with a message otherwise).
test: deps-test lint build
	HEADWAY_BIN=$(CURDIR)/bin/headway $(GO) test -race -count=1 -timeout 30m ./...

# gofmt, go vet, and go.mod/go.sum as `go mod tidy` leaves them.
lint:
	@files=$$(gofmt -l .); if [ -n "$$files" ]; then echo "$$files"; echo "gofmt needed on the files above (gofmt -w FILE)"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result (the diff is above)"; exit 1; }

test-short:
	$(GO) test -count=1 ./internal/...

# The reliability suite, long form (make test runs a short one): kill -9
# rounds under 16 writers, store faults and their recovery, bad input.
reliability: build
	HEADWAY_BIN=$(CURDIR)/bin/headway HEADWAY_RELIABILITY=full $(GO) test -count=1 -v -run 'TestReliability$$' ./test/e2e/ 2>&1 | grep -E -A4 'reliability summary|^(--- |FAIL|ok)'

bench: deps-bench build
	HEADWAY_BIN=$(CURDIR)/bin/headway ./bench/run.sh

# What the e2e's own build passes (after `make init`).
ldflags:
	@echo '$(LDFLAGS) -X $(INITPKG).SHA256='"$$(sha256sum $(INITBIN) 2>/dev/null | cut -d' ' -f1)"

tags:
	@echo '$(TAGS)'
