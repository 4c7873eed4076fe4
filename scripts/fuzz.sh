#!/usr/bin/env bash
# Fuzzes every parser that sees untrusted input, each for a bounded time (default 60 s per
# target; FUZZ_SECONDS=N to change). Needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly && cargo install cargo-fuzz`). A crash is saved under
# fuzz/artifacts/<target>/ and the script exits non-zero: turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
for target in cidr oci_state runc_args config_edit dns_query; do
	echo "== fuzz $target for ${seconds}s"
	# Seeds are copied so the committed corpus stays small; new inputs go to a scratch dir.
	work=$(mktemp -d)
	cp -r "corpus/$target/." "$work/"
	cargo +nightly fuzz run "$target" "$work" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048
	rm -rf "$work"
done
