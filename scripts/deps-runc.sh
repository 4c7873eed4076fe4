#!/usr/bin/env bash
# Installs what weave-hook's demo and runc tests need on Debian: runc, busybox-static (the
# containers' root filesystem), iproute2, iptables, util-linux (nsenter), jq, time (the
# load test measures the hook's peak RSS with /usr/bin/time) and dnsmasq-base (the weave DNS
# tests' own upstream resolver and the DNS benchmark's peer; no service is installed).
# Idempotent: installs nothing and skips `apt-get update` when every package is present.
set -euo pipefail

packages=(runc busybox-static iproute2 iptables util-linux jq time dnsmasq-base)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps-runc: already installed: ${packages[*]}"
	exit 0
fi
echo "deps-runc: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"
