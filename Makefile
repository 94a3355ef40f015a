# Headway build. `make build` stamps versions into the binary.
SHELL := /bin/bash
GO ?= go
K8S_VERSION := $(shell sed -n 's/^\tk8s.io\/client-go v0\.\([0-9]*\)\.\([0-9]*\).*/v1.\1.\2/p' go.mod)
K8S_MINOR := $(shell echo $(K8S_VERSION) | cut -d. -f2)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG := github.com/headway/headway/internal/version
LDFLAGS := -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Kubernetes=$(K8S_VERSION) -X $(PKG).BuildDate=$(BUILD_DATE) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/client-go/pkg/version.gitCommit=$(COMMIT) -X k8s.io/client-go/pkg/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.buildDate=$(BUILD_DATE) \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(K8S_MINOR) \
	-X k8s.io/component-base/version.gitCommit=$(COMMIT) -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=$(BUILD_DATE)

.PHONY: build run test test-short bench ldflags lint deps deps-test

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/headway ./cmd/headway

# Debian packages (apt, as root or through sudo; or a list of what to install).
deps:
	bash scripts/install-deps.sh run

deps-test:
	bash scripts/install-deps.sh test

# Start a server with the embedded defaults (root for pods: sudo make run).
run: deps build
	./bin/headway server

# The whole suite: unit, integration and end-to-end (e2e needs root for
# network namespaces; it skips those parts with a message otherwise).
test: deps-test build
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above"; exit 1)
	$(GO) vet ./...
	HEADWAY_BIN=$(CURDIR)/bin/headway $(GO) test -race -count=1 -timeout 30m ./...

test-short:
	$(GO) test -count=1 ./internal/...

bench: build
	HEADWAY_BIN=$(CURDIR)/bin/headway ./bench/run.sh

ldflags:
	@echo '$(LDFLAGS)'
