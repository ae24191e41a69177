#!/bin/sh
# tools/setup.sh: make sure the Debian packages snapfs needs are installed.
#
# As root it installs what is missing with apt-get; otherwise it prints the
# exact command to run and fails, so nothing half-works later.
#
# usage: tools/setup.sh [--vm]     (--vm adds what the KVM-in-QEMU harness needs)
set -eu

pkgs="build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libsqlite3-dev
libssl-dev libelf-dev libcmocka-dev attr acl rsync python3 clang libclang-rt-14-dev"
vmpkgs="qemu-system-x86 linux-image-amd64 busybox-static cpio kmod"

want=$pkgs
[ "${1:-}" = --vm ] && want="$pkgs $vmpkgs"

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "snapfs needs these Debian packages:$missing" >&2
	echo "install them with:" >&2
	echo "  sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "setup: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || apt-get update
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
