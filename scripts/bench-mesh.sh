# Sourced by scripts/bench.sh: the mesh benchmark (`weave-bench mesh`), its dependencies
# (etcd, openssl, iperf3) and its cleanup.
#
# weave-bench mesh removes everything it made when it ends, also on an error or a panic.
# Killed (Ctrl-C reaches bench.sh, not a background job), it cannot: bench_mesh_cleanup then
# stops it (it is still this shell's unwaited child), every process it left (agents, etcd
# members: each names the scratch directory in its command line), and deletes the named
# network namespaces it made, which all carry its pid (wvt<pid>x<n>, wvul..., wvbme...).

bench_mesh_pid=

bench_mesh_deps() {
	scripts/deps-etcd.sh
	. scripts/apt-lib.sh
	apt_install_missing bench-mesh iperf3 iproute2 iputils-ping
}

bench_mesh_cleanup() {
	[ -n "$bench_mesh_pid" ] || return 0
	kill "$bench_mesh_pid" 2>/dev/null || true
	wait "$bench_mesh_pid" 2>/dev/null || true
	bench_reap "^(wvt|wvul|wvbme|wvbmp|wve|wvu)${bench_mesh_pid}x[0-9]+$" cmdline
	bench_mesh_pid=
}

# bench_mesh WEAVE-BENCH WEAVE-HOOK WEAVE-MESH OUT [ARGS...]: runs `weave-bench mesh` with
# results in OUT/mesh.json.
bench_mesh() {
	local bench=$1 hook=$2 mesh=$3 out=$4
	shift 4
	TMPDIR=$bench_work "$bench" mesh --work "$bench_work/mesh" --out "$out" \
		--hook "$hook" --mesh "$mesh" "$@" &
	bench_mesh_pid=$!
	local status=0
	wait "$bench_mesh_pid" || status=$?
	# Waited for: its pid may be reused from now on.
	bench_mesh_pid=
	return "$status"
}
