#!/bin/sh
# tests/e2e/full.sh: a store on a full disk.  The store lives on a 32 MiB
# tmpfs; copying in more than fits fails with "No space left on device"
# at write or close, the daemon says what happened, files written before
# stay intact, and once the failed file is deleted the filesystem takes
# new files again without a remount; fsck is clean at the end.  Then the
# disk fills up from outside the store: making files and directories
# (index.db changes, no page data) fails with "No space left on device",
# the daemon logs it, and once space is free again changes succeed,
# still without a remount.  Then a file open for reading and writing
# loses its uncommitted change to a full disk: the handle sees the
# committed bytes again and its close says what happened.  Last, gc on
# a full disk frees the space of a deleted file without needing
# room to copy.  Last, the disk is filled through the mount with small
# files: deleting one still works.
. "$(dirname "$0")/lib.sh"

SMALL=$T/small
mkdir -p "$SMALL"
E2E_UMOUNT_AFTER=$SMALL
if ! mount -t tmpfs -o size=32m snapfs-e2e-full "$SMALL" 2>"$T/mount.err"; then
	echo "not ok 1 - mount a 32 MiB tmpfs for the store (needs root): $(cat "$T/mount.err")"
	echo "1..1"
	exit 1
fi
STORE=$SMALL/store

used_kib() {	# KiB used on the small tmpfs
	df -k --output=used "$SMALL" | tail -n 1 | tr -d ' '
}

fs_mount || exit 1
head -c 8M /dev/urandom >"$T/kept"
head -c 64M /dev/urandom >"$T/big"
head -c 8M /dev/urandom >"$T/again"

check "an 8 MiB file fits" cp "$T/kept" "$MNT/kept"
out=$(cp "$T/big" "$MNT/big" 2>&1)
st=$?
ok "copying 64 MiB onto the 32 MiB disk fails" $([ $st -ne 0 ] && echo 0 || echo 1) "$out"
ok "... with No space left on device" $(printf '%s' "$out" | grep -q "No space left on device" && echo 0 || echo 1) "$out"
check "the file written before is intact" cmp "$T/kept" "$MNT/kept"
ok "the daemon logs the failure, the store and what it dropped" \
	$(grep "snapfs: store $STORE: .*No space left on device.*dropped" "$T/daemon.log" >/dev/null && echo 0 || echo 1) \
	"$(cat "$T/daemon.log")"
check "the failed file can be deleted" rm "$MNT/big"
used=$(used_kib)
ok "the space the failed copy took is free again (${used} KiB used)" $([ "$used" -lt 16384 ] && echo 0 || echo 1)
check "a new file is taken without a remount" cp "$T/again" "$MNT/again"
check "and reads back" cmp "$T/again" "$MNT/again"
check "a directory can be made" mkdir "$MNT/dir"
fs_umount
wait_store_free
out=$("$ADMIN" fsck "$STORE" 2>&1)
ok "fsck is clean" $? "$out"
fs_mount || exit 1
check "after a remount the first file is intact" cmp "$T/kept" "$MNT/kept"
check "and so is the one written after the failure" cmp "$T/again" "$MNT/again"
check "the failed file is gone" test ! -e "$MNT/big"

# Fill what is left of the disk with a file beside the store.
check "a directory for names" mkdir "$MNT/names"
dd if=/dev/zero of="$SMALL/filler" bs=64k 2>/dev/null
i=0 made=0 out=
while [ $i -lt 5000 ]; do
	if ! out=$(touch "$MNT/names/a-file-with-a-rather-long-name-$i" 2>&1); then
		break
	fi
	made=$((made + 1))
	i=$((i + 1))
done
ok "making files on the full disk fails after $made" $([ $i -lt 5000 ] && echo 0 || echo 1)
ok "... with No space left on device" $(printf '%s' "$out" | grep -q "No space left on device" && echo 0 || echo 1) "$out"
ok "the daemon logs which store could not take the change" \
	$(grep "snapfs: store $STORE: a change could not be written to index.db" "$T/daemon.log" >/dev/null && echo 0 || echo 1) \
	"$(cat "$T/daemon.log")"
n=$(ls "$MNT/names" | wc -l)
ok "every file made before the failure is listed ($n of $made)" $([ "$n" -eq "$made" ] && echo 0 || echo 1)
check "committed data is intact on the full disk" cmp "$T/kept" "$MNT/kept"
rm -f "$SMALL/filler"
check "with space free again a file can be made without a remount" touch "$MNT/names/after"
check "and a directory removed" rm -r "$MNT/names"

# A file changed through a read-write handle when the disk fills: its
# uncommitted change is dropped, and the kernel's cached copy with it.
out=$("$PROBE" lost "$MNT/rw" "$T/big" "$MNT/big" 2>&1)
ok "a read-write handle sees its dropped change go, and close reports it" $? "$out"
check "the space is free again afterwards" test "$(used_kib)" -lt 24576

# gc on a full disk: there is no room to copy the live pages out of the
# half-dead pack, so gc punches the dead ones out of it in place.
head -c 8M /dev/urandom >"$T/kept2"
check "another 8 MiB file fits" cp "$T/kept2" "$MNT/kept2"
check "a file is deleted, leaving dead pages in a pack" rm "$MNT/again"
sync
free=$(df -k --output=avail "$SMALL" | tail -n 1 | tr -d ' ')
dd if=/dev/zero of="$SMALL/filler" bs=1k count=$((free - 3072)) 2>/dev/null
before=$(used_kib)
check "gc on the full disk succeeds" setfattr -n user.snapfs.gc -v 1 "$MNT"
after=$(used_kib)
ok "it freed the deleted file's 8 MiB ($before KiB used before, $after after)" \
	$([ "$after" -lt $((before - 7168)) ] && echo 0 || echo 1)
check "the files are intact after it" sh -c 'cmp "$1/kept" "$2/kept" && cmp "$1/kept2" "$2/kept2"' sh "$T" "$MNT"
check "and the freed space takes a new file" cp "$T/again" "$MNT/again"
check "which reads back" cmp "$T/again" "$MNT/again"
rm -f "$SMALL/filler"

# Filled by the mount itself, file after file until one fails: page data
# stops short of the index's reserve, so the deletes that free space, and
# other changes of names, still go through.
mkdir "$MNT/many"
i=0
while [ $i -lt 1000 ] && head -c 200000 /dev/urandom >"$MNT/many/f$i" 2>/dev/null; do
	i=$((i + 1))
done
ok "small files fill the disk until one fails ($i fitted)" $([ $i -ge 5 ] && [ $i -lt 1000 ] && echo 0 || echo 1)
check "a file on the disk filled through the mount can be deleted" rm "$MNT/many/f0"
check "a directory can be made there" mkdir "$MNT/many/dir"
check "and another file written" cp "$T/again" "$MNT/many/again"
check "which reads back" cmp "$T/again" "$MNT/many/again"
check "the whole folder can be removed" rm -r "$MNT/many"
fs_umount
wait_store_free
out=$("$ADMIN" fsck "$STORE" 2>&1)
ok "fsck is clean after the second full disk" $? "$out"
finish
