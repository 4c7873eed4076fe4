# Shared by scripts/bench.sh and scripts/bench-candidates.sh (sourced, not run): installs
# what the benchmarks need, and runs weave-runtime's own benchmark so that everything it
# starts is stopped again, also on failure.

# Installs the peers, Docker 26 (unless BENCH_SKIP_DOCKER=1), GNU time and the plot's font.
bench_deps() {
	scripts/deps-runc.sh
	scripts/deps-podman.sh
	[ "${BENCH_SKIP_DOCKER:-0}" = 1 ] || scripts/deps-docker.sh
	local extra=() p
	for p in time fonts-dejavu-core; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || extra+=("$p")
	done
	if [ "${#extra[@]}" -gt 0 ]; then
		echo "bench: installing ${extra[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${extra[@]}"
	fi
}

# The scratch directory (on tmpfs, as /run, weave-hook's default state dir, is on a systemd
# host) and the pid of a running weave-runtime benchmark, for bench_cleanup.
bench_work=
bench_shim_pid=

bench_cleanup() {
	local status=$?
	if [ -n "$bench_shim_pid" ]; then
		# weave-runtime's benchmark names its throwaway host namespaces wvt<its pid>x<n> and
		# keeps its dockerd's files under TMPDIR (the scratch directory): every process it
		# left (dockerd, containerd, shims, a half-started container's `runc init`) names the
		# scratch directory in its command line or its environment. Twice: a dying parent
		# may have just started a child.
		kill "$bench_shim_pid" 2>/dev/null || true
		bench_reap "^wvt${bench_shim_pid}x[0-9]+$" cmdline environ
	fi
	[ -z "$bench_work" ] || rm -rf "$bench_work"
	exit "$status"
}

# bench_reap NETNS-REGEX PROC-FILE...: kills every process (but this shell) whose
# /proc/PID/PROC-FILE (cmdline, environ) names the scratch directory, twice (a dying parent
# may have just started a child), then deletes the named network namespaces matching
# NETNS-REGEX (grep -E).
bench_reap() {
	local pattern=$1 kind pid ns files
	shift
	for _ in 1 2; do
		files=()
		for kind in "$@"; do files+=(/proc/[0-9]*/"$kind"); done
		for pid in $(grep -l -s -F "$bench_work" "${files[@]}" | cut -d/ -f3 | sort -u); do
			[ "$pid" = $$ ] || kill -KILL "$pid" 2>/dev/null || true
		done
		sleep 1
	done
	for ns in $(ip netns list | awk '{print $1}' | grep -E "$pattern" || true); do
		ip netns del "$ns" || true
	done
}

# Makes the scratch directory and arms the cleanup.
bench_start() {
	bench_work=$(mktemp -d /dev/shm/wvbench.XXXXXX)
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

# bench_shim_cost TARGET_DIR SOURCE_DIR OUT: builds weave-runtime's benchmark (shim_cost) in
# SOURCE_DIR against TARGET_DIR's release binaries and runs its Docker part, output to OUT.
# Run by its path (not through cargo) so that its pid, and its namespaces' names, are known.
bench_shim_cost() {
	local target=$1 src=$2 out=$3 exe
	exe=$(cd "$src" && CARGO_TARGET_DIR=$target cargo bench -p weave-runtime --bench shim_cost --no-run --message-format=json 2>/dev/null |
		jq -r 'select(.reason == "compiler-artifact" and .target.name == "shim_cost") | .executable')
	[ -x "$exe" ] || { echo "bench: cannot build weave-runtime's benchmark in $src" >&2; return 1; }
	TMPDIR=$bench_work WEAVE_BENCH_BIN_DIR=${WEAVE_BENCH_BIN_DIR:-} "$exe" --bench "${@:4}" >"$out" &
	bench_shim_pid=$!
	wait "$bench_shim_pid"
	bench_shim_pid=
	cat "$out"
}
