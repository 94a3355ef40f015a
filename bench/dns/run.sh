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

# The cost of one endpoint change in the index (issue 20: O(changed records),
# under 100 µs on a 1,000-endpoint Service; it was 3.7 ms when one change
# rebuilt the whole Service's names).
update_cost() {
	local outp
	outp=$(go test -run X -bench 'IndexUpdate' -benchtime 3000x -count 3 ./internal/dns 2>&1) || { echo "$outp" >&2; return 1; }
	echo "### DNS update cost"
	echo
	echo "One endpoint of a 1,000-endpoint headless Service (10 slices of 100) flips readiness: the index is updated and published (\`IndexUpdate\`), and then also the changed name asked over UDP (\`IndexUpdateAnswer\`). \`go test -run X -bench IndexUpdate -benchtime 3000x -count 3 ./internal/dns\`, median of 3:"
	echo
	echo "| benchmark | time per change | CPU per change | target |"
	echo "| --- | --- | --- | --- |"
	echo "$outp" | awk '
		/^BenchmarkIndexUpdate/ {
			name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
			for (i = 2; i < NF; i++) { if ($(i+1) == "ns/op") ns[name] = ns[name] " " $i; if ($(i+1) == "cpu-µs/op") cpu[name] = cpu[name] " " $i }
		}
		function med(s,   a, n, i, j, t) { n = split(s, a, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return a[int((n + 1) / 2)] }
		END {
			split("IndexUpdate IndexUpdateAnswer", order, " ")
			for (i = 1; i <= 2; i++) {
				k = order[i]
				if (!(k in ns)) continue
				m = med(ns[k]) / 1000; c = med(cpu[k])
				printf "| %s | %.1f µs | %.1f µs | %s |\n", k, m, c, (k == "IndexUpdate" ? ("< 100 µs: " (m < 100 ? "yes" : "no")) : "")
			}
		}'
	echo
	echo "Reference: 3.7 ms per change before the index was updated per slice (the whole Service's names rebuilt)."
	echo
}

# The in-pod path (root: network namespaces): dnsperf inside a process pod
# against the DNS Service address, beside the host path to the same server.
inpod() {
	if [[ $(id -u) != 0 ]]; then
		echo "### In-pod DNS path"
		echo
		echo "skipped: needs root (network namespaces)"
		echo
		return 0
	fi
	local outp ratio
	outp=$(bench/dns/inpod.sh 8 3 2>&1) || { echo "$outp" >&2; return 1; }
	ratio=$(echo "$outp" | sed -n 's/^in-pod \/ host: \([0-9]*\)%.*/\1/p')
	echo "### In-pod DNS path"
	echo
	echo "dnsperf inside a process pod's network namespace against the DNS Service address (198.19.0.10:53), beside dnsperf on the host path to the same server (127.0.0.1:10053), \`bench/dns/inpod.sh 8 3\`: three rounds of 8 s on each path, alternating, medians (the server unpinned, 4 dnsperf clients):"
	echo
	echo "$outp" | grep '^|'
	echo
	echo "$outp" | grep -v '^|' | grep -v '^in-pod / host' | sed 's/^/- /'
	echo "- In-pod / host queries/s: **${ratio:-?} %** (target ≥ 90 %: $([[ -n $ratio && $ratio -ge 90 ]] && echo yes || echo no))."
	echo
}

if [[ -n $out ]]; then
	{ update_cost; inpod; } >>"$out"
else
	update_cost
	inpod
fi
