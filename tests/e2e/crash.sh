#!/bin/sh
# tests/e2e/crash.sh: kill -9 of the daemon in the middle of a large
# copy-in.  After remounting, fsck must be clean and every file whose copy
# completed (cp returned, so close() had returned) must be intact.
. "$(dirname "$0")/lib.sh"

kill_daemon() {	# kill -9 the daemon mid-work; its clients then fail or are ended by the caller
	kill -9 "$DPID"
	wait "$DPID" 2>/dev/null
	DPID=
}

clear_dead_mount() {	# the killed daemon's mount, once its clients are gone
	fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"
}

fs_mount || exit 1
M=$MNT
mkdir "$T/src"
for i in $(seq 1 40); do
	head -c $((1048576 + i * 4099)) /dev/urandom >"$T/src/f$i"
done
(cd "$T/src" && sha256sum f* >"$T/sums")

: >"$T/done"
# Copy file by file, logging each completed copy, and kill the daemon
# while the copy goes on.
(
	for i in $(seq 1 40); do
		cp "$T/src/f$i" "$M/f$i" 2>/dev/null || exit 0
		echo "f$i" >>"$T/done"
	done
) &
cpid=$!
i=0
while [ "$(wc -l <"$T/done")" -lt 12 ] && [ $i -lt 600 ]; do
	sleep 0.02
	i=$((i + 1))
done
kill_daemon
wait $cpid
clear_dead_mount
ndone=$(wc -l <"$T/done")
ok "the daemon was killed during the copy ($ndone of 40 files completed)" \
	$([ "$ndone" -ge 12 ] && [ "$ndone" -lt 40 ] && echo 0 || echo 1)

check "fsck is clean after kill -9" "$ADMIN" fsck "$STORE"
fs_mount || exit 1
bad=0
for f in $(cat "$T/done"); do
	cmp -s "$T/src/$f" "$M/$f" || { bad=1; echo "# $f differs"; }
done
ok "every completed file is intact after kill -9 and remount" $bad
check "the store takes new files after recovery" sh -c 'cp "$1/f40" "$2/after" && cmp "$1/f40" "$2/after"' sh "$T/src" "$M"

# fsync() alone must be enough: a file written and fsync()ed, still open
# (nothing else commits meanwhile) when the daemon is killed.
head -c 3000000 /dev/urandom >"$T/synced-ref"
python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, open(sys.argv[2], "rb").read())
os.fsync(fd)
open(sys.argv[3], "w").close()
time.sleep(60)
' "$M/synced" "$T/synced-ref" "$T/synced-ready" 2>/dev/null &
wpid=$!
i=0
while [ ! -e "$T/synced-ready" ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i + 1)); done
kill_daemon
kill "$wpid" 2>/dev/null
wait "$wpid" 2>/dev/null
clear_dead_mount
fs_mount || exit 1
check "a file fsync()ed but never closed is intact after kill -9" cmp "$T/synced-ref" "$M/synced"

# A new size is a change of data too.  Truncations whose call returned
# (truncate(2)) or whose descriptor was closed (ftruncate, open with
# O_TRUNC) survive kill -9, even while another descriptor keeps each file
# open, so that no release commits them.
for f in t1 t2 t3 t4; do head -c 1000000 /dev/urandom >"$M/$f"; done
sleep 600 <"$M/t1" & h1=$!
sleep 600 <"$M/t2" & h2=$!
sleep 600 <"$M/t3" & h3=$!
sleep 600 <"$M/t4" & h4=$!
truncate -s 5000 "$M/t1"
python3 -c 'import os, sys; os.truncate(sys.argv[1], 4096)' "$M/t2"
: >"$M/t3"
python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_TRUNC))' "$M/t4"
kill_daemon
kill $h1 $h2 $h3 $h4 2>/dev/null
wait $h1 $h2 $h3 $h4 2>/dev/null
clear_dead_mount
fs_mount || exit 1
check "ftruncate and close survive kill -9" test "$(stat -c %s "$M/t1")" = 5000
check "truncate(2) survives kill -9" test "$(stat -c %s "$M/t2")" = 4096
check "open with O_TRUNC and close survives kill -9" test "$(stat -c %s "$M/t3")" = 0
check "open with O_RDONLY|O_TRUNC and close survives kill -9" test "$(stat -c %s "$M/t4")" = 0

# kill -9 while four programs race namespace operations in one tree and
# two mix writes, clones and mapped writes into files: each change is
# whole or absent, so fsck is clean and the raced tree holds together
# (link counts against names and subfolders) after a remount.
mkdir "$M/mix" "$T/mixref"
pids=""
for s in 1 2 3 4; do
	python3 "$(dirname "$0")/nsops.py" "$M" - $s 1000000 >/dev/null 2>&1 &
	pids="$pids $!"
done
for s in 1 2; do
	python3 "$(dirname "$0")/mixops.py" "$M/mix" "$T/mixref" $s 1000000 >/dev/null 2>&1 &
	pids="$pids $!"
done
# Let them get going (under a sanitizer on a busy machine that can take
# a while): the kill must land amid changes, not before the first.
i=0
while [ "$(find "$M/race" 2>/dev/null | wc -l)" -le 5 ] && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
sleep 2
kill_daemon
for p in $pids; do wait "$p" 2>/dev/null; done
clear_dead_mount
check "fsck is clean after kill -9 amid racing namespace and data operations" "$ADMIN" fsck "$STORE"
fs_mount || exit 1
check "the racers had changed the tree before the kill" sh -c '[ "$(find "$1/race" | wc -l)" -gt 5 ]' sh "$M"
check "the raced tree holds together after kill -9 and remount" \
	python3 "$(dirname "$0")/nsops.py" "$M" - 0 0
fs_umount
check "fsck is clean at the end" "$ADMIN" fsck "$STORE"
finish
