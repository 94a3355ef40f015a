#!/usr/bin/env bash
# Cluster DNS benchmark: Headway's DNS against CoreDNS' kubernetes plugin,
# both following one Headway API server. Installs what it needs when it can
# (dnsperf from Debian, CoreDNS with go install), then runs bench/dns and
# bench/dnsparser.
#
#   bench/dns/run.sh [results.md]      (HEADWAY_BIN: the headway binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-}
HEADWAY_BIN=${HEADWAY_BIN:-$PWD/bin/headway}
COREDNS_VERSION=v1.14.7

if ! command -v dnsperf >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		apt-get install -y dnsperf >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y dnsperf >/dev/null 2>&1; } ||
			echo "bench/dns: could not install dnsperf" >&2
	else
		echo "bench/dns: dnsperf is missing (apt-get install dnsperf)" >&2
	fi
fi
coredns=$(command -v coredns || true)
if [[ -z $coredns ]]; then
	coredns=$(go env GOPATH)/bin/coredns
	if [[ ! -x $coredns ]] || ! "$coredns" -version 2>/dev/null | grep -q "${COREDNS_VERSION#v}"; then
		echo "bench/dns: installing CoreDNS $COREDNS_VERSION (go install; a few minutes)" >&2
		go install "github.com/coredns/coredns@$COREDNS_VERSION" || { echo "bench/dns: could not install CoreDNS; Headway only" >&2; coredns=""; }
	fi
fi
args=(-bin "$HEADWAY_BIN")
[[ -n $coredns && -x $coredns ]] && args+=(-coredns "$coredns")
[[ -n $out ]] && args+=(-out "$out")
go run ./bench/dns "${args[@]}" ${BENCH_DNS_FLAGS:-}

# The query parser: hand-written against miekg/dns Msg.Unpack in the same
# server loop (bench/dnsparser; dnsperf when installed, else its Go load
# generator), appended to the same figures.
if [[ -n $out ]]; then
	go run ./bench/dnsparser -out "$out.parser" ${BENCH_DNSPARSER_FLAGS:-}
	cat "$out.parser" >>"$out"
	rm -f "$out.parser"
else
	go run ./bench/dnsparser ${BENCH_DNSPARSER_FLAGS:-}
fi
