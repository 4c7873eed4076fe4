#!/usr/bin/env bash
# Builds the release binaries, statically linked (glibc static-pie): a hook is a process per
# container start, and without the dynamic loader and libgcc_s's constructor it starts
# 0.16-0.30 ms sooner here (BENCHMARKS.md). With --install [DIR] (default /usr/local/bin),
# also installs them there.
#
#   scripts/build-release.sh [--install [DIR]] [PACKAGE...]   # default: all five binaries
#
# The explicit --target keeps crt-static off build scripts and proc-macros, which must stay
# dynamic. Prints the directory holding the binaries on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

install_dir=
if [ "${1:-}" = --install ]; then
	shift
	install_dir=/usr/local/bin
	case "${1:-}" in /*) install_dir=$1; shift ;; esac
fi
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(weave-hook weave-runtime weave-setup weave-dns weave-mesh)

triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
args=()
for p in "${packages[@]}"; do args+=(-p "$p"); done
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release --quiet --target "$triple" "${args[@]}"
out=$target_dir/$triple/release

if [ -n "$install_dir" ]; then
	for p in "${packages[@]}"; do
		install -m 0755 "$out/$p" "$install_dir/$p"
		echo "build-release: installed $install_dir/$p"
	done
fi
echo "$out"
