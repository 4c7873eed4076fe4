#!/usr/bin/env bash
# Runs every test: installs what they need (runc, Docker 26, podman, crun, etcd), checks formatting and
# lints, then runs the whole workspace's tests against the real runtimes. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || echo "test: not root: root-only tests will skip (in CI they fail)" >&2
if [ "$(id -u)" -eq 0 ]; then
	scripts/deps-runc.sh
	scripts/deps-docker.sh
	scripts/deps-podman.sh
	scripts/deps-crun.sh
	scripts/deps-etcd.sh
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p weave-hook --features failpoints --all-targets --quiet -- -D warnings
cargo build --workspace --quiet
cargo test --workspace
# Kills the hook at every step of attach, through failpoints only this feature builds in.
cargo test -p weave-hook --features failpoints --test faults
