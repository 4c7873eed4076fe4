# Sourced by the deps-*.sh scripts.
# apt_install_missing NAME PACKAGE...: installs those of the packages that are not installed,
# running `apt-get update` only then; waits for the dpkg lock, since deps scripts may run
# apt-get at the same time.
apt_install_missing() {
	local name=$1 missing=() p
	shift
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			missing+=("$p")
		fi
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		echo "$name: already installed: $*"
		return 0
	fi
	echo "$name: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"
}

# apt_trixie_source: adds Debian trixie as an apt source at pin priority 100, so that nothing
# comes from trixie unless asked for with `-t trixie` (bookworm's docker.io and crun are too
# old). The source reuses the mirror URI of the machine's bookworm source, so it works behind
# whatever mirror the machine uses. Rewriting the same two files makes it idempotent.
apt_trixie_source() {
	local src=/etc/apt/sources.list.d/debian.sources uri=""
	if [[ -r "$src" ]]; then
		# First "URIs:" line of the deb822 file is the main Debian archive.
		uri="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$src" | head -n1)"
	fi
	uri="${uri:-http://deb.debian.org/debian}"
	cat >/etc/apt/sources.list.d/trixie.sources <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	cat >/etc/apt/preferences.d/trixie <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
}
