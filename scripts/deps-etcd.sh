#!/usr/bin/env bash
# Installs etcd (Debian's etcd-server and etcd-client) and openssl for weave-mesh's tests, which
# start real etcd members themselves (there is no systemd here: installing starts nothing).
# bookworm gives etcd 3.4.23, whose v3 JSON gateway needs `--enable-grpc-gateway` on every
# member (tests/src/etcd.rs passes it; 3.5 has the gateway on by default and accepts the flag).
# Idempotent: installs nothing and skips `apt-get update` when all are present.
set -euo pipefail

if [[ "$(id -u)" -ne 0 ]]; then
	if command -v etcd >/dev/null && command -v openssl >/dev/null; then
		echo "deps-etcd: not root, but etcd and openssl are present"
		exit 0
	fi
	echo "deps-etcd: must run as root to install etcd-server, etcd-client and openssl" >&2
	exit 1
fi

. "$(dirname "$0")/apt-lib.sh"
apt_install_missing deps-etcd etcd-server etcd-client openssl
echo "deps-etcd: $(etcd --version 2>/dev/null | head -n1)"
