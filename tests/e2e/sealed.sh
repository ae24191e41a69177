#!/bin/sh
# tests/e2e/sealed.sh: setting user.snapfs.sealed on a directory makes it
# and everything below it immutable: every kind of change fails with EPERM
# and the content stays as it was, across a remount too; only root can
# remove the seal, and only from the top of the sealed tree.
. "$(dirname "$0")/lib.sh"

fs_mount || exit 1
M=$MNT
S=$M/snap
mkdir -p "$S/sub"
head -c 300000 /dev/urandom >"$S/mem"
echo manifest >"$S/manifest"
echo inner >"$S/sub/inner"
ln -s mem "$S/link"
setfattr -n user.note -v kept "$S/mem"
mkdir "$M/outside"
echo free >"$M/outside/file"
(cd "$S" && find . -type f -exec sha256sum {} + | sort) >"$T/before"

check "sealing a directory" setfattr -n user.snapfs.sealed -v 1 "$S"
check "the seal reads back" sh -c '[ "$(getfattr --only-values -n user.snapfs.sealed "$1")" = 1 ]' sh "$S"
check "files below are sealed too" sh -c '[ "$(getfattr --only-values -n user.snapfs.sealed "$1/sub/inner")" = 1 ]' sh "$S"

eperm() {	# eperm NAME COMMAND...: the command fails and says EPERM
	name=$1
	shift
	out=$("$@" 2>&1)
	st=$?
	if [ $st -ne 0 ] && echo "$out" | grep -q "Operation not permitted"; then
		ok "sealed: $name fails with EPERM" 0
	else
		ok "sealed: $name fails with EPERM" 1 "status $st: $out"
	fi
}
eperm "write" sh -c 'echo x >>"$1/mem"' sh "$S"
eperm "overwrite in place" dd if=/dev/zero of="$S/mem" bs=1 count=1 conv=notrunc status=none
eperm "truncate" truncate -s 0 "$S/mem"
eperm "overwrite by > (O_TRUNC)" sh -c ': >"$1/mem"' sh "$S"
eperm "O_RDONLY|O_TRUNC open" python3 -c 'import os, sys; os.open(sys.argv[1], os.O_RDONLY | os.O_TRUNC)' "$S/mem"
eperm "create inside" touch "$S/new"
eperm "create inside a subdirectory" sh -c 'echo x >"$1/sub/new"' sh "$S"
eperm "mkdir inside" mkdir "$S/newdir"
eperm "symlink inside" ln -s x "$S/newlink"
eperm "hard link into" ln "$M/outside/file" "$S/hl"
eperm "rename inside" mv "$S/mem" "$S/mem2"
eperm "rename out" mv "$S/manifest" "$M/outside/stolen"
eperm "rename in" mv "$M/outside/file" "$S/file"
eperm "rename of the sealed directory" mv "$S" "$M/snap2"
eperm "replace by rename" mv "$M/outside/file" "$S/manifest"
eperm "unlink" rm -f "$S/manifest"
eperm "unlink a symlink" rm -f "$S/link"
eperm "rmdir" rmdir "$S/sub" 
eperm "rm -rf" rm -rf "$S"
eperm "chmod" chmod 0777 "$S/mem"
eperm "chown" chown 1:1 "$S/mem"
eperm "touch (utimens)" touch "$S/mem"
eperm "setfattr" setfattr -n user.x -v y "$S/mem"
eperm "setfattr replacing" setfattr -n user.note -v changed "$S/mem"
eperm "removexattr" setfattr -x user.note "$S/mem"
eperm "removing the seal of an inner directory" setfattr -x user.snapfs.sealed "$S/sub"
eperm "removing a seal that is not there" setfattr -x user.snapfs.sealed "$M/outside"
eperm "fallocate --punch-hole" fallocate --punch-hole --offset 0 --length 4096 "$S/mem"
eperm "cp onto a sealed file" cp "$M/outside/file" "$S/mem"

(cd "$S" && find . -type f -exec sha256sum {} + | sort) >"$T/after"
check "content unchanged after every attempt" cmp "$T/before" "$T/after"
check "xattr unchanged" sh -c '[ "$(getfattr --only-values -n user.note "$1/mem")" = kept ]' sh "$S"
check "reading sealed files works" "$PROBE" mmap "$S/mem" "$S/mem"
check "copying out of a sealed directory works" cp -a "$S" "$T/copy-out"
check "cloning out of a sealed directory works" sh -c 'cp "$1/mem" "$2/mem-copy" && cmp "$1/mem" "$2/mem-copy"' sh "$S" "$M/outside"
check "outside the seal, changes still work" sh -c 'echo y >>"$1/file" && rm "$1/file"' sh "$M/outside"
fs_umount
# Served with -d, the daemon logs every request: sealed names and
# attributes are cached past the ordinary 1 s timeout, others are not.
# (Counted: every LOOKUP, and GETATTR of anything but the root, which the
# permission check of a path walk refreshes.)
fs_mount -d || exit 1
stat "$S/mem" "$M/outside" >/dev/null
sleep 1.5
requests() { grep -E "opcode: (LOOKUP|GETATTR)" "$T/daemon.log" | grep -cv "GETATTR.*nodeid: 1,"; }
n0=$(requests)
stat "$S/mem" >/dev/null
n1=$(requests)
stat "$M/outside" >/dev/null
n2=$(requests)
ok "sealed: after the ordinary timeout, stat is answered from the kernel's cache" \
	$([ "$n1" = "$n0" ] && echo 0 || echo 1) "$n0 -> $n1 requests"
ok "unsealed: after the timeout, stat asks the daemon again" \
	$([ "$n2" -gt "$n1" ] && echo 0 || echo 1) "$n1 -> $n2 requests"
eperm "write after a remount" sh -c 'echo x >>"$1/mem"' sh "$S"
(cd "$S" && find . -type f -exec sha256sum {} + | sort) >"$T/after2"
check "content unchanged after a remount" cmp "$T/before" "$T/after2"
fs_umount

# Unsealing, like chattr -i: root removes user.snapfs.sealed from the top
# of the sealed tree and everything below it can change again.  Mounted
# with allow_other so that another user can try too.
chmod 0755 "$T"
fs_mount -o allow_other || exit 1
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
check "another user can read sealed files" nobody cmp "$S/mem" "$S/mem"
# A user's own sealed directory (so the kernel's permission check lets
# the request through): the seal stays theirs to keep, not to lift.
O=$M/theirs
mkdir "$O" && echo mine >"$O/f" && chown -R 65534:65534 "$O"
check "sealing a user's directory" setfattr -n user.snapfs.sealed -v 1 "$O"
eperm "removing the seal as its owner, not root" nobody setfattr -x user.snapfs.sealed "$O"
eperm "the owner cannot remove files below it" nobody rm -f "$O/f"
check "root lifts the seal of the user's directory" setfattr -x user.snapfs.sealed "$O"
check "then the owner can remove what is in it" sh -c 'setpriv --reuid=65534 --regid=65534 --clear-groups rm "$1/f" && rmdir "$1"' sh "$O"
eperm "removing the seal of an inner directory, as root" setfattr -x user.snapfs.sealed "$S/sub"
check "refused unseals leave it sealed" sh -c '[ "$(getfattr --only-values -n user.snapfs.sealed "$1/sub/inner")" = 1 ]' sh "$S"
check "root removes the seal from the top" setfattr -x user.snapfs.sealed "$S"
check "no seal is left below it" sh -c '! getfattr -n user.snapfs.sealed "$1/sub/inner" 2>/dev/null && ! getfattr -n user.snapfs.sealed "$1" 2>/dev/null' sh "$S"
check "an unsealed file can be written" sh -c 'echo more >>"$1/manifest" && [ "$(tail -n 1 "$1/manifest")" = more ]' sh "$S"
check "rm -rf of the unsealed directory" sh -c 'rm -rf "$1" && [ ! -e "$1" ]' sh "$S"
fs_umount
fs_mount || exit 1
check "gone after a remount" sh -c '[ ! -e "$1" ] && [ -f "$2/outside/file" ] || [ -d "$2/outside" ]' sh "$S" "$M"
fs_umount
finish
