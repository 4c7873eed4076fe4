#!/usr/bin/env bash
# Reproduces every number of BENCHMARKS.md, in one run on this machine. Run as root on
# Debian 12:
#   1. installs the peers (containernetworking-plugins' bridge + host-local, podman's
#      netavark, iproute2) and Docker 26 for the end-to-end figures, GNU time and a font;
#   2. builds weave-hook, weave-runtime and weave-bench in release mode;
#   3. weave-bench run: attach/detach latency of weave-hook vs the CNI bridge plugin, netavark,
#      a pipework-style script and the netlink floor; scale; concurrency; peak RSS;
#   4. weave-runtime's own benchmark (cargo bench -p weave-runtime): per-call passthrough
#      cost and `docker run --rm` with --runtime weave vs runc;
#   5. weave-bench report: BENCHMARKS.md's tables, bench/README-section.md and
#      bench/results/latency.png.
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

scripts/deps-runc.sh
scripts/deps-podman.sh
[ "${BENCH_SKIP_DOCKER:-0}" = 1 ] || scripts/deps-docker.sh
extra=()
for p in time fonts-dejavu-core; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || extra+=("$p")
done
if [ "${#extra[@]}" -gt 0 ]; then
	echo "bench: installing ${extra[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${extra[@]}"
fi

work=$(mktemp -d /tmp/wvbench.XXXXXX)
shim_pid=
cleanup() {
	local status=$?
	if [ -n "$shim_pid" ]; then
		# weave-runtime's benchmark names its throwaway host namespaces wvt<its pid>x<n> and
		# keeps its dockerd's files under TMPDIR (our scratch directory): stop what is left.
		kill "$shim_pid" 2>/dev/null || true
		for pid in $(grep -l -s -F "$work" /proc/[0-9]*/cmdline | cut -d/ -f3); do
			kill -KILL "$pid" 2>/dev/null || true
		done
		for ns in $(ip netns list | awk '{print $1}' | grep -E "^wvt${shim_pid}x[0-9]+$" || true); do
			ip netns del "$ns" || true
		done
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building (release)"
cargo build --release --quiet -p weave-hook -p weave-runtime -p weave-bench
mkdir -p bench/results
echo "bench: load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

TMPDIR=$work "$bin/weave-bench" run --work "$work/run" --out bench/results --samples "$samples"

shim_cost=()
if [ "${BENCH_SKIP_DOCKER:-0}" != 1 ]; then
	echo "bench: weave-runtime's benchmark (cargo bench -p weave-runtime)"
	# Built by cargo, run here so that its pid, and so its namespaces' names, are known.
	exe=$(cargo bench -p weave-runtime --bench shim_cost --no-run --message-format=json 2>/dev/null |
		jq -r 'select(.reason == "compiler-artifact" and .target.name == "shim_cost") | .executable')
	TMPDIR=$work "$exe" --bench >bench/results/shim-cost.txt &
	shim_pid=$!
	wait "$shim_pid"
	shim_pid=
	cat bench/results/shim-cost.txt
	shim_cost=(--shim-cost bench/results/shim-cost.txt)
fi

"$bin/weave-bench" report --results bench/results "${shim_cost[@]}" \
	--benchmarks BENCHMARKS.md --readme-section bench/README-section.md
echo "bench: load after: $(cut -d' ' -f1-3 /proc/loadavg)"
