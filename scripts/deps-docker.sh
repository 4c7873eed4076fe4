#!/usr/bin/env bash
# Installs Docker >= 24 (needed for `docker run --annotation`) on Debian bookworm.
#
# bookworm's own docker.io is 20.10, too old. Debian trixie's docker.io installs cleanly on
# bookworm when trixie is added at a low pin priority (100), so that nothing else is upgraded
# from trixie unless asked for with `-t trixie`. The trixie source reuses the mirror URI of the
# machine's bookworm source, so the script works behind whatever mirror the machine uses.
#
# Idempotent: exits 0 at once when dockerd already reports version >= 24.
set -euo pipefail

MIN_MAJOR=24

dockerd_major() {
	# `dockerd --version` prints e.g. "Docker version 26.1.5+dfsg1, build a72d7cd".
	dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p'
}

major="$(dockerd_major || true)"
if [[ -n "$major" && "$major" -ge "$MIN_MAJOR" ]]; then
	echo "deps-docker: $(dockerd --version) already installed"
	exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
	echo "deps-docker: must run as root to install Docker" >&2
	exit 1
fi

. "$(dirname "$0")/apt-lib.sh"
apt_trixie_source

export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y -t trixie docker.io
# The busybox rootfs for test images and the tools the tests use.
apt-get -o DPkg::Lock::Timeout=600 install -y runc busybox-static iproute2 iptables

major="$(dockerd_major || true)"
if [[ -z "$major" || "$major" -lt "$MIN_MAJOR" ]]; then
	echo "deps-docker: installed dockerd is not >= $MIN_MAJOR: $(dockerd --version 2>&1)" >&2
	exit 1
fi
echo "deps-docker: $(dockerd --version) installed"
