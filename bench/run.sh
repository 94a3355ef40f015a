#!/usr/bin/env bash
# Runs Headway's benchmarks and assembles bench/results.md: machine info, the
# date, and one section of figures per benchmark.
#
# It builds nothing: it expects bin/headway (or $HEADWAY_BIN). `make bench`
# builds the binary, then runs this script.
#
# Adding a benchmark: write a run_<name> function that writes its markdown
# figures to the file given as $1, then add "<name>|<title>" to SECTIONS.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export HEADWAY_BIN=${HEADWAY_BIN:-$ROOT/bin/headway}
RESULTS=${RESULTS:-$ROOT/bench/results.md}

if [[ ! -x $HEADWAY_BIN ]]; then
	echo "bench/run.sh: no headway binary at $HEADWAY_BIN (run 'make build' or set HEADWAY_BIN)" >&2
	exit 1
fi

# name|title, in the order they run and appear in results.md.
SECTIONS=(
	"apiserver|API server (bolt store)"
	"agent|Node agent: pod start and memory per pod (process and CRI runtimes)"
	"statefulset|StatefulSet and EndpointSlice controllers"
	"dns|Cluster DNS (Headway vs CoreDNS)"
	"proxy|Service proxy (nftables and userspace)"
	"discovery|Client-side discovery: headwaytest start, resolver vs DNS update latency"
	"cluster|More than one machine: etcd vs bolt, leader fail-over, cross-node latency"
)

# The in-process benchmarks, then the real binary's start and idle memory
# with --runtime none; as root also with the node agent (--runtime process,
# in the benchmark's own network and mount namespaces, where the agent's
# bridge and rules stay).
run_apiserver() {
	go run ./bench/apiserver -bin "$HEADWAY_BIN" -out "$1"
	local agent
	agent=$(mktemp)
	if [[ $(id -u) != 0 ]]; then
		echo "skipped: the start with the node agent needs root (network namespaces)" >"$agent"
	else
		go run ./bench/apiserver -bin "$HEADWAY_BIN" -start-only -netns -server-args "--runtime process" -out "$agent" >/dev/null
	fi
	{
		echo
		echo "With the node agent (\`--runtime process\`):"
		echo
		cat "$agent"
	} >>"$1"
	rm -f "$agent"
}

# Needs root (network namespaces, containerd); otherwise says so instead of
# failing. Runs the real binary with --runtime process, then --runtime cri
# (skipped with a note where containerd or the test images' packages are
# missing); a few minutes on 2 cores.
run_agent() {
	if [[ $(id -u) != 0 ]]; then
		echo "skipped: the node agent benchmark needs root (network namespaces, containerd)" >"$1"
		return 0
	fi
	go run ./bench/agent -bin "$HEADWAY_BIN" -out "$1"
}

run_dns() {
	bench/dns/run.sh "$1"
}

run_statefulset() {
	go run ./bench/statefulset -out "$1"
}

# Needs root (network namespaces, nftables inside them); otherwise says so.
run_proxy() {
	if [[ $(id -u) != 0 ]]; then
		echo "skipped: the proxy benchmark needs root (network namespaces, nftables)" >"$1"
		return 0
	fi
	go run ./bench/proxy -out "$1"
}

run_discovery() {
	go run ./bench/discovery -out "$1"
}

# etcd vs bolt and the fail-over need etcd; the cross-node latency needs
# root (network namespaces); each part says so in the table when skipped.
run_cluster() {
	go run ./bench/cluster -bin "$HEADWAY_BIN" -out "$1"
}

machine_info() {
	local cpu mem
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
	mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	echo "| | |"
	echo "| --- | --- |"
	echo "| date | $(date -u '+%Y-%m-%d %H:%M:%S UTC') |"
	echo "| commit | $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)') |"
	echo "| CPUs (nproc) | $(nproc) |"
	echo "| CPU model | ${cpu:-unknown} |"
	echo "| memory | ${mem:-unknown} |"
	echo "| kernel | $(uname -sr) |"
	echo "| go | $(go version | sed 's/^go version //') |"
	echo "| headway | $("$HEADWAY_BIN" version 2>/dev/null | head -n1 || echo unknown) |"
	echo "| load average before the run | $(cut -d' ' -f1-3 /proc/loadavg) |"
}

# In bench/results-<name>.md, the line that starts the notes kept between runs.
NOTES_MARK='<!-- bench/run.sh keeps everything below this line between runs (dated notes and earlier measurements); everything above it is the output of the last run -->'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

{
	echo "# Headway benchmark results"
	echo
	echo "Produced by \`bench/run.sh\` (\`make bench\`); see bench/README.md for what each figure measures and the targets."
	echo
	echo "## Machine"
	echo
	machine_info
} >"$tmp/header.md"

# BENCH_ONLY=apiserver,agent runs those sections alone; the others keep what
# the last results.md has for them (the machine table is this run's).
only=",${BENCH_ONLY:-},"
kept() { # the section titled $1 in the current results.md
	[[ -f $RESULTS ]] && awk -v t="## $1" '$0 == t { f = 1; print ""; print; next } f && /^## / { exit } f' "$RESULTS"
}

status=0
for section in "${SECTIONS[@]}"; do
	name=${section%%|*}
	title=${section#*|}
	if [[ $only != ",," && $only != *",$name,"* ]]; then
		if ! kept "$title" >"$tmp/$name.md" || [[ ! -s $tmp/$name.md ]]; then
			printf '\n## %s\n\n(not run)\n' "$title" >"$tmp/$name.md"
		fi
		continue
	fi
	echo "bench/run.sh: running $name" >&2
	out=$ROOT/bench/results-$name.md
	# Dated notes below the marker line survive the run; the figures above
	# it are replaced.
	notes=$tmp/$name.notes
	: >"$notes"
	[[ -f $out ]] && awk -v m="$NOTES_MARK" 'f || $0 == m { f = 1; print }' "$out" >"$notes"
	rm -f "$out"
	{
		echo
		echo "## $title"
		echo
	} >"$tmp/$name.md"
	if "run_$name" "$out"; then
		cat "$out" >>"$tmp/$name.md"
	else
		status=1
		echo "bench/run.sh: $name failed" >&2
		echo "**failed** (see the run's output)" >>"$tmp/$name.md"
		[[ -s $out ]] && cat "$out" >>"$tmp/$name.md"
	fi
	if [[ -s $notes ]]; then
		{
			echo
			cat "$notes"
		} >>"$out"
	fi
done

cat "$tmp/header.md" >"$RESULTS"
for section in "${SECTIONS[@]}"; do
	cat "$tmp/${section%%|*}.md" >>"$RESULTS"
done
echo "bench/run.sh: wrote $RESULTS" >&2
exit $status
