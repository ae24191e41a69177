#!/bin/sh
# tests/e2e/dedup.sh: what the store keeps, seen from outside: ten copies
# of one file cost about one copy, a file of zeros costs nothing, cp within
# the mount (copy_file_range) shares pages instead of copying them, and
# a deleted file's pages are given back once its last user lets go.
# Figures come from snapfs-admin stats --json beside the live mount.
. "$(dirname "$0")/lib.sh"

# CLONE_MIB: size of the file cp clones inside the mount (1 GiB by
# default; the sanitizer build passes a smaller one to stay quick).
CLONE_MIB=${SNAPFS_E2E_CLONE_MIB:-1024}

stat_of() {	# stat_of FIELD: one figure of the store's committed state
	"$ADMIN" stats --json "$STORE" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

fs_mount || exit 1
M=$MNT
base=$(stat_of stored_bytes)

head -c 64M /dev/urandom >"$T/r64"
for i in 0 1 2 3 4 5 6 7 8 9; do
	cp "$T/r64" "$M/copy$i" || break
done
ok "ten copies of a 64 MiB file written" $?
check "every copy reads back identical" sh -c 'for i in 0 1 2 3 4 5 6 7 8 9; do cmp "$1/copy$i" "$2" || exit 1; done' sh "$M" "$T/r64"
grown=$(($(stat_of stored_bytes) - base))
ok "ten copies store about one copy ($grown bytes for 64 MiB)" \
	$([ $grown -ge 67108864 ] && [ $grown -le $((67108864 + 67108864 / 10)) ] && echo 0 || echo 1)
logical=$(stat_of logical_bytes)
ok "logical bytes count all ten copies" $([ "$logical" -ge $((10 * 67108864)) ] && echo 0 || echo 1) "$logical"

before=$(stat_of stored_bytes)
head -c 32M /dev/zero >"$M/zeros"
check "a file of zeros reads back as zeros" cmp "$M/zeros" /dev/zero -n 33554432
ok "a file of zeros stores nothing" $([ "$(stat_of stored_bytes)" = "$before" ] && echo 0 || echo 1)
check "du of a file of zeros is 0" sh -c '[ "$(du -k "$1/zeros" | cut -f1)" = 0 ]' sh "$M"

# coreutils cp inside the mount: copy_file_range shares the pages.
dd if=/dev/urandom of="$M/big" bs=1M count="$CLONE_MIB" status=none
ok "a ${CLONE_MIB} MiB file written" $?
before=$(stat_of stored_bytes)
cp "$M/big" "$M/big-copy"
ok "cp of the ${CLONE_MIB} MiB file within the mount" $?
after=$(stat_of stored_bytes)
ok "cp within the mount duplicates no pages (store grew $((after - before)) bytes)" \
	$([ $((after - before)) -le 1048576 ] && echo 0 || echo 1)
check "the clone reads back identical" cmp "$M/big" "$M/big-copy"
check "the clone's pages are all shared" sh -c '[ "$(getfattr --only-values -n user.snapfs.shared_pages "$1/big-copy")" = "$(getfattr --only-values -n user.snapfs.pages "$1/big-copy")" ]' sh "$M"
check "du counts the clone's pages as its own" sh -c '[ "$(du -k "$1/big-copy" | cut -f1)" = $(($2 * 1024)) ]' sh "$M" "$CLONE_MIB"

# A file written after a clone does not disturb the original.
printf 'patch' | dd of="$M/big-copy" bs=1 seek=12345 conv=notrunc status=none
check "writing the clone leaves the original as it was" sh -c '! cmp -s "$1/big" "$1/big-copy" && [ "$(cmp "$1/big" "$1/big-copy" | wc -l)" = 1 ]' sh "$M"

# Deleting: pages are referenced until the last user is gone.
refs=$(stat_of referenced_pages)
rm "$M/big" "$M/big-copy"
# The kernel forgets the unlinked inodes asynchronously; give it a moment.
i=0
while gone=$((refs - $(stat_of referenced_pages))) && [ $gone -lt $((2 * CLONE_MIB * 256)) ] && [ $i -lt 50 ]; do
	sleep 0.1
	i=$((i + 1))
done
ok "deleting the file and its clone drops their page references ($gone)" \
	$([ $gone -ge $((2 * CLONE_MIB * 256)) ] && echo 0 || echo 1)
fs_umount
before=$(stat_of pack_bytes)
check "gc after deleting" "$ADMIN" gc "$STORE"
freed=$((before - $(stat_of pack_bytes)))
ok "gc frees the deleted file's space ($freed bytes)" $([ $freed -ge $((CLONE_MIB * 1048576)) ] && echo 0 || echo 1)
check "fsck clean" "$ADMIN" fsck "$STORE"
fs_mount || exit 1
check "the ten copies survive gc" sh -c 'for i in 0 9; do cmp "$1/copy$i" "$2" || exit 1; done' sh "$M" "$T/r64"
fs_umount

# bench/bench-disk.sh, small: it mounts stores of its own, checks the file
# it reads back (cmp) and reports what the packs hold after copying the
# same 8 MiB in twice, which must be one copy.
out=$("$(dirname "$0")/../../bench/bench-disk.sh" -x "$SNAPFS" -s 8 -n 1 "$T" 2>&1)
ok "bench-disk.sh runs through and stores the twice-copied file once" \
	$(printf '%s\n' "$out" | grep -qx "stored after both copy-ins: 8 MiB in packs for 8 MiB written twice" &&
		echo 0 || echo 1) "$out"
finish
