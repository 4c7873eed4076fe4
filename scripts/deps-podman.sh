#!/usr/bin/env bash
# Installs what the podman end-to-end tests need on a Debian 12 machine (see shared/MACHINE.md):
# podman 4.3 and netavark (podman's network backend), runc (podman's crun 1.8 refuses these VMs' hybrid cgroups),
# busybox-static (the test image's rootfs), iproute2, and containernetworking-plugins
# (the CNI bridge/host-local peers a benchmark compares against), and catatonit (the init of the
# pause image podman builds for a pod's infra container: `podman kube play`).
# Idempotent: installs nothing and skips `apt-get update` when every package is present.
# Waits for the dpkg lock: other deps scripts may run apt-get at the same time.
set -euo pipefail

packages=(podman netavark runc busybox-static iproute2 containernetworking-plugins catatonit)

. "$(dirname "$0")/apt-lib.sh"
apt_install_missing deps-podman "${packages[@]}"
command -v podman >/dev/null
echo "deps-podman: $(podman --version)"
