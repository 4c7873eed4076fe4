#!/usr/bin/env bash
# Reproduces every number of BENCHMARKS.md, in one run on this machine. Run as root on
# Debian 12:
#   1. installs the peers (containernetworking-plugins' bridge + host-local, podman's
#      netavark, iproute2) and Docker 26 for the end-to-end figures, GNU time and a font;
#   2. builds weave-bench in release mode, weave-hook and weave-runtime as users install them
#      (scripts/build-release.sh: release, statically linked);
#   3. weave-bench run: attach/detach latency of weave-hook vs the CNI bridge plugin, netavark,
#      a pipework-style script and the netlink floor; scale; concurrency; peak RSS;
#   3b. weave-bench mesh: the weave mesh on simulated hosts with real weave-mesh agents and
#      etcd (attach with vs without the agent, joining hosts, RTT and TCP across hosts, 20 hosts);
#   4. weave-runtime's own benchmark (cargo bench -p weave-runtime), on the static builds:
#      per-call passthrough cost; `docker run --rm --network none` with weave at Docker's
#      default settings vs runc (and via runtimeArgs, and vs Docker's default bridge);
#      `podman run --rm --network none` with weave's hooks.d file vs without vs netavark;
#   5. weave-bench report: BENCHMARKS.md's tables, the README's generated block (Benchmarks)
#      and bench/results/latency.png.
#
# SAMPLES=N (default 200) sets the samples per method; BENCH_SKIP_DOCKER=1 skips step 4.
# weave-bench works only in anonymous network namespaces that die with its processes.
# Everything else this script creates (its scratch directory, the Docker daemon of step 4 and
# that daemon's namespace) is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: run as root (network namespaces, bridges, veths)" >&2
	exit 1
fi

samples=${SAMPLES:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bin=$CARGO_TARGET_DIR/release
. scripts/bench-lib.sh
. scripts/bench-mesh.sh

bench_deps
bench_mesh_deps
bench_start
# The mesh benchmark's leftovers first, then the rest (with the exit status kept).
trap 'st=$?; bench_mesh_cleanup; (exit $st); bench_cleanup' EXIT

echo "bench: building (release)"
cargo build --release --quiet -p weave-bench -p weave-mesh
# What users install: the static builds of scripts/build-release.sh.
static=$(scripts/build-release.sh weave-hook weave-runtime weave-setup | tail -n 1)
mkdir -p bench/results
echo "bench: load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

TMPDIR=$bench_work "$bin/weave-bench" run --work "$bench_work/run" --out bench/results --samples "$samples" \
	--hook "$static/weave-hook" --runtime "$static/weave-runtime"

echo "bench: the mesh (weave-bench mesh: simulated hosts, real weave-mesh agents and etcd)"
bench_mesh "$bin/weave-bench" "$static/weave-hook" "$bin/weave-mesh" bench/results

shim_cost=()
if [ "${BENCH_SKIP_DOCKER:-0}" != 1 ]; then
	echo "bench: weave-runtime's benchmark (cargo bench -p weave-runtime)"
	WEAVE_BENCH_BIN_DIR=$static bench_shim_cost "$CARGO_TARGET_DIR" "$PWD" bench/results/shim-cost.txt
	shim_cost=(--shim-cost bench/results/shim-cost.txt)
fi

"$bin/weave-bench" report --results bench/results "${shim_cost[@]}" \
	--benchmarks BENCHMARKS.md --readme README.md
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
