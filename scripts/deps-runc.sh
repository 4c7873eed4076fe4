#!/usr/bin/env bash
# Installs what weave-hook's demo and runc tests need on Debian: runc, busybox-static (the
# containers' root filesystem), iproute2, iptables, util-linux (nsenter), jq, time (the
# load test measures the hook's peak RSS with /usr/bin/time) and dnsmasq-base (the weave DNS
# tests' own upstream resolver and the DNS benchmark's peer; no service is installed), python3
# (a test sends a router advertisement from a container through a raw socket), nftables
# (weave-hook writes its table with `nft -f -`), iputils-ping (the mesh MTU test: `ping -M do`).
# Idempotent: installs nothing and skips `apt-get update` when every package is present.
set -euo pipefail

packages=(runc busybox-static iproute2 iptables util-linux jq time dnsmasq-base python3 nftables iputils-ping)

. "$(dirname "$0")/apt-lib.sh"
apt_install_missing deps-runc "${packages[@]}"
