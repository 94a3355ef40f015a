#!/usr/bin/env bash
# The in-pod DNS path: dnsperf inside a process pod's network namespace
# against the DNS Service address (198.19.0.10:53), next to dnsperf on the
# host path to the same server (127.0.0.1:10053), in one run. The server runs
# in a network namespace this script makes (root; removed at the end).
#
#   bench/dns/inpod.sh [seconds [rounds]]   (HEADWAY_BIN: the headway binary; default bin/headway)
#
# Prints queries per second and average latency for both paths and the
# in-pod share of the host figure: the medians of ROUNDS (default 3)
# rounds, each a pod run then a host run of SECONDS (default 8), so that
# both paths meet the same moments of a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
HEADWAY_BIN=${HEADWAY_BIN:-$PWD/bin/headway}
secs=${1:-8}
rounds=${2:-3}
[[ $(id -u) == 0 ]] || { echo "bench/dns/inpod.sh: needs root (network namespaces)" >&2; exit 1; }
command -v dnsperf >/dev/null || { echo "bench/dns/inpod.sh: dnsperf is missing (apt-get install dnsperf)" >&2; exit 1; }

ns=hwbenchdns$$
dir=$(mktemp -d)
pid=
cleanup() {
	[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" "$HEADWAY_BIN" server --data-dir "$dir/data" --listen 127.0.0.1:6443 --store memory \
	--dns-listen 127.0.0.1:10053 --dns-upstream none --runtime process >"$dir/server.log" 2>&1 &
pid=$!
k() { ip netns exec "$ns" "$HEADWAY_BIN" kubectl --kubeconfig "$dir/data/kubeconfig" "$@"; }
for _ in $(seq 300); do
	k get --raw /readyz >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; exit 1; }
	sleep 0.1
done
k run dnsclient --image=busybox:1.28 -- sleep 3600 >/dev/null
k wait --for=condition=Ready pod/dnsclient --timeout=60s >/dev/null
# The pod's first process (a child of the server) is in the pod's network namespace.
podpid=$(ps -o pid= --ppid "$pid" | head -1 | tr -d ' ')
printf 'kubernetes.default.svc.cluster.local A\nkube-dns.kube-system.svc.cluster.local A\n' >"$dir/queries"

run() {
	"$@" -d "$dir/queries" -l "$secs" -c 4 -Q 200000 2>&1 |
		awk '/Queries per second/ {q=$4} /Average Latency/ {l=$4} END {printf "%.0f %.3f\n", q, l*1000}'
}
# Where the pod's queries are answered: a socket bound to 198.19.0.10:53 in
# the pod's own namespace (over its loopback), or only the node's (through
# the veth and the bridge, whose packet count then grows with the queries).
insock=$(nsenter -t "$podpid" -n ss -Hlun 'sport = :53' | grep -c '198\.19\.0\.10:53' || true)
brpkts() { ip netns exec "$ns" cat /sys/class/net/headway0/statistics/rx_packets; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
br=0
pqs=() pls=() hqs=() hls=()
for r in $(seq "$rounds"); do
	br0=$(brpkts)
	read -r q l < <(run nsenter -t "$podpid" -n dnsperf -s 198.19.0.10 -p 53)
	br=$((br + $(brpkts) - br0))
	pqs+=("$q") pls+=("$l")
	read -r q l < <(run ip netns exec "$ns" dnsperf -s 127.0.0.1 -p 10053)
	hqs+=("$q") hls+=("$l")
	echo "round $r: in a pod ${pqs[-1]} q/s (${pls[-1]} ms), host $q q/s ($l ms)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
pq=$(median "${pqs[@]}") pl=$(median "${pls[@]}") hq=$(median "${hqs[@]}") hl=$(median "${hls[@]}")
echo "| path | QPS | average latency |"
echo "| --- | --- | --- |"
echo "| in a pod, 198.19.0.10:53 (median of $rounds) | $pq | $pl ms |"
echo "| host, 127.0.0.1:10053 (median of $rounds) | $hq | $hl ms |"
echo "DNS socket in the pod's namespace: $([[ $insock -gt 0 ]] && echo yes || echo "no (the node's, through the bridge)"); bridge packets during the pod runs: $br"
echo "in-pod / host: $(awk -v a="$pq" -v b="$hq" 'BEGIN {printf "%.0f%%", 100*a/b}')"
# The agent's table keeps the DNS address's port 53 traffic out of
# conntrack: 0 here; the host path's flows (127.0.0.1:10053) are tracked.
ct() { ip netns exec "$ns" cat /proc/net/nf_conntrack 2>/dev/null | grep -c "$1" || true; }
echo "conntrack entries: pod DNS flows $(ct 'dst=198.19.0.10 .*dport=53 '), host path flows $(ct 'dport=10053 ')"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
