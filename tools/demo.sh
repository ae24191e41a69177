#!/bin/sh
# tools/demo.sh: the whole snapfs story in one command.
#
# Builds the project, creates a store in a temporary folder, mounts it with
# snapfs, snapshots the warm guest (after its expensive init) into the
# mount, shows the snapshot with ls and du, starts several sandboxes from
# the mount path, takes a derived snapshot, shows the store's figures, and
# unmounts.  Where this machine has no usable /dev/kvm, the story part runs
# inside the project's QEMU VM harness (tests/vm/run-in-vm).
#
# usage: tools/demo.sh [--vm]      (--vm: run the story in the VM anyway)
# environment: SNAPFS_DEMO_BUILD   build folder (default build)
#              SNAPFS_DEMO_KIB     size of warm's table in KiB (default 32768)
set -eu
cd "$(dirname "$0")/.."
BUILD=${SNAPFS_DEMO_BUILD:-build}
KIB=${SNAPFS_DEMO_KIB:-32768}

story() {
	SNAPFS=$BUILD/fsd/snapfs ADMIN=$BUILD/fsd/snapfs-admin SNAPVM=$BUILD/host/snapvm
	WARM=$BUILD/guest/warm.elf
	T=$(mktemp -d "${TMPDIR:-/tmp}/snapfs-demo.XXXXXX")
	STORE=$T/store MNT=$T/mnt
	mkdir -p "$MNT"
	# /bin/sh runs no EXIT trap when a signal kills it: Ctrl-C exits.
	trap 'fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null; rm -rf "$T"' EXIT
	trap 'exit 130' INT TERM HUP
	step() { printf '\n== %s\n' "$*"; }
	run() { printf '$ %s\n' "$*"; "$@"; }

	step "Create a store in $STORE and mount it at $MNT"
	run "$SNAPFS" "$STORE" "$MNT"

	step "Boot the warm guest, run its expensive init (a $KIB KiB table), snapshot it into the mount"
	run "$SNAPVM" snapshot "$WARM" "$MNT/warm" --init init "$KIB"

	step "The snapshot is a directory of plain files; zero pages are holes that cost nothing"
	run ls -l "$MNT/warm"
	run du -h --apparent-size "$MNT/warm"
	run du -h "$MNT/warm"
	run cat "$MNT/warm/manifest"

	step "Start 4 sandboxes from the mount path: each answers from the table init built"
	run "$SNAPVM" call -q -N 4 "$MNT/warm" query 4242
	run "$SNAPVM" call -q "$MNT/warm" init "$KIB"

	step "Derived snapshot: one call in a sandbox from warm, then snapshot again (region files are clones)"
	run "$SNAPVM" snapshot "$MNT/warm" "$MNT/warm-2" --call query 7
	printf 'heap digest  warm:   %s\n' "$(getfattr --only-values -n user.snapfs.digest "$MNT/warm/heap.mem" 2>/dev/null)"
	printf 'heap digest  warm-2: %s\n' "$(getfattr --only-values -n user.snapfs.digest "$MNT/warm-2/heap.mem" 2>/dev/null)"
	run grep '^parent' "$MNT/warm-2/manifest"
	run "$SNAPVM" verify "$MNT/warm-2"

	step "Store figures: logical bytes (what the files hold) vs stored bytes (what the disk holds)"
	run "$ADMIN" stats "$STORE"

	step "Unmount"
	run fusermount3 -u "$MNT"
	trap - EXIT
	rm -rf "$T"
	printf '\n== done\n'
}

if [ "${1:-}" = --story ]; then
	story
	exit 0
fi

force_vm=0
case ${1:-} in
'') ;;
--vm) force_vm=1 ;;
*) echo "usage: tools/demo.sh [--vm]" >&2; exit 2 ;;
esac
need_vm=0
if [ "$force_vm" = 1 ] || ! tools/kvm-usable; then need_vm=1; fi
if [ "$need_vm" = 1 ]; then tools/setup.sh --vm; else tools/setup.sh; fi
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
meson compile -C "$BUILD" >/dev/null

if [ "$need_vm" = 1 ]; then
	echo "== /dev/kvm is not usable here: running the story inside the QEMU VM harness"
	exec tests/vm/run-in-vm --mem 3072 --cpus 1 -- env SNAPFS_DEMO_BUILD="$BUILD" SNAPFS_DEMO_KIB="$KIB" \
		tools/demo.sh --story
fi
story
