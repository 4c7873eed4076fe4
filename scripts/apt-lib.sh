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
