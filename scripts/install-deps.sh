#!/usr/bin/env bash
# Installs (through apt) what Headway needs on a Debian machine, or prints
# exactly what to install when it cannot. One list for everyone: `make run`
# and `make test` call it, and so does CI (.ci/run).
#
#   scripts/install-deps.sh run    what `headway server` uses: containerd,
#                                  runc, crun, CNI plugins, catatonit (the pause
#                                  image), iproute2, busybox
#   scripts/install-deps.sh test   that, and what the tests use: nft (to
#                                  read the rules Headway programs through
#                                  netlink), dig, tmux, python3, nginx (the
#                                  test images), ...
#   scripts/install-deps.sh bench  that, and what `make bench` compares
#                                  with: dnsperf (CoreDNS itself is a Go
#                                  install, in the Makefile's deps-bench)
#
# Root runs apt-get directly; other users through sudo. HEADWAY_NO_INSTALL=1
# only checks and prints.
set -euo pipefail

what="${1:-run}"
run_pkgs=(iproute2 containerd runc crun containernetworking-plugins catatonit busybox ca-certificates curl)
test_pkgs=(nftables make git dnsutils tmux python3 tar nginx etcd-server etcd-client)
bench_pkgs=(dnsperf util-linux)
pkgs=("${run_pkgs[@]}")
[[ "$what" == test || "$what" == bench ]] && pkgs+=("${test_pkgs[@]}")
[[ "$what" == bench ]] && pkgs+=("${bench_pkgs[@]}")

if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
	echo "install-deps: not a Debian machine; install these (or your distribution's equivalents) yourself: ${pkgs[*]}" >&2
	exit 0
fi
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0

cmd=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}")
if [[ -n "${HEADWAY_NO_INSTALL:-}" ]]; then
	echo "install-deps: missing Debian packages: ${missing[*]}" >&2
	echo "install them with: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "install-deps: missing Debian packages: ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
		exit 1
	fi
	sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
# Packages with services (nginx, containerd) must not start them: Headway
# runs its own containerd, and the tests only take nginx's files.
policy=/usr/sbin/policy-rc.d
own_policy=
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
	"${sudo[@]}" chmod 755 "$policy"
	own_policy=1
fi
cleanup() { [[ -n "$own_policy" ]] && "${sudo[@]}" rm -f "$policy"; true; }
trap cleanup EXIT
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" "${cmd[@]}" >/dev/null
