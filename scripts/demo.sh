#!/usr/bin/env bash
# The demo: two containers on plain runc, attached to a weave bridge by weave-hook before
# their first instruction, pinging each other. Run as root on a fresh Debian machine.
#
# It uses a bridge and state directory of its own (weavedemo, /run/weave-demo) so it never
# touches a real weave installation, and removes everything it made when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (the hook changes the host's network)" >&2; exit 1; }
scripts/deps-runc.sh
HOOK="$(scripts/build-release.sh weave-hook | tail -n 1)/weave-hook"
FLAGS=(--bridge weavedemo --state-dir /run/weave-demo)

work=$(mktemp -d /tmp/weave-demo.XXXXXX)
cleanup() {
	runc --root "$work/runc" delete --force server >/dev/null 2>&1 || true
	"$HOOK" "${FLAGS[@]}" reset || true
	rm -rf "$work"
}
trap cleanup EXIT

# A busybox root filesystem, shared read-only by both containers.
mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev" "$work/rootfs/etc"
cp /bin/busybox "$work/rootfs/bin/"
for applet in sh ip ping sleep; do ln -s busybox "$work/rootfs/bin/$applet"; done

# bundle NAME CIDR ARGS...: runc's default config plus the annotation and the two hooks.
bundle() {
	local name=$1 cidr=$2; shift 2
	mkdir -p "$work/$name"
	(cd "$work/$name" && runc spec)
	local args hook_args
	args=$(printf '%s\n' "$@" | jq -R . | jq -s .)
	hook_args=$(printf '%s\n' weave-hook "${FLAGS[@]}" | jq -R . | jq -s .)
	jq --arg rootfs "$work/rootfs" --arg cidr "$cidr" --arg hook "$HOOK" \
		--argjson args "$args" --argjson hargs "$hook_args" '
		.root = {path: $rootfs, readonly: true}
		| .process.terminal = false | .process.args = $args
		| .process.capabilities |= with_entries(.value += ["CAP_NET_RAW"])
		| .annotations = {"weave.cidr": $cidr}
		| .hooks = {createRuntime: [{path: $hook, args: ($hargs + ["attach"])}],
		            poststop: [{path: $hook, args: ($hargs + ["detach"])}]}' \
		"$work/$name/config.json" >"$work/$name/config.tmp"
	mv "$work/$name/config.tmp" "$work/$name/config.json"
}

bundle server 10.2.0.1/24 sleep 60
bundle client net:10.2.0.0/24 sh -c 'echo "client: my first instruction sees:"; ip -o -4 addr show ethwe; ping -c 3 10.2.0.1'

echo "== runc run -d server   (weave.cidr=10.2.0.1/24)"
runc --root "$work/runc" run --detach --bundle "$work/server" server </dev/null >/dev/null
echo "== weave-hook ps"
"$HOOK" "${FLAGS[@]}" ps
echo "== runc run client      (weave.cidr=net:10.2.0.0/24)"
runc --root "$work/runc" run --bundle "$work/client" client </dev/null
echo "== weave-hook ps (the client's poststop hook detached it)"
"$HOOK" "${FLAGS[@]}" ps
echo "== runc delete server"
runc --root "$work/runc" kill server KILL
for _ in $(seq 50); do runc --root "$work/runc" delete server 2>/dev/null && break; sleep 0.1; done
echo "== weave-hook ps (empty) and host veths left (none):"
"$HOOK" "${FLAGS[@]}" ps
# detach deletes a host veth that is still there from a background child: give it a moment.
for _ in $(seq 20); do ip -br link | grep -q vethwe || break; sleep 0.1; done
ip -br link | grep vethwe || echo "(no vethwe* links)"
echo "demo: OK"
