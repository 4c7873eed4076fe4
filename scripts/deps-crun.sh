#!/usr/bin/env bash
# Installs crun from Debian trixie (1.21; bookworm's 1.8 is too old) for the crun end-to-end
# tests. `--no-install-recommends` matters: with its recommends, trixie's crun replaces
# bookworm's gnutls, nettle, criu and more. crun refuses these VMs' hybrid cgroup layout; the
# tests run it in a private mount namespace without /sys/fs/cgroup/unified (tests/src/lib.rs).
# Idempotent: installs nothing and skips `apt-get update` when crun is present.
set -euo pipefail

if dpkg-query -W -f='${Status}' crun 2>/dev/null | grep -q '^install ok installed$'; then
	echo "deps-crun: already installed: $(crun --version | head -n1)"
	exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
	echo "deps-crun: must run as root to install crun" >&2
	exit 1
fi

. "$(dirname "$0")/apt-lib.sh"
apt_trixie_source
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends -t trixie crun
echo "deps-crun: $(crun --version | head -n1)"
