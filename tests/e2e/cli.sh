#!/bin/sh
# tests/e2e/cli.sh: the snapfs command line and the ways a mount starts and
# ends: --help/--version, store creation and refusal, going to the
# background, fusermount3 -u, SIGTERM, mount -t fuse.snapfs through
# mount.fuse3 and an fstab line, mount -o remount, snapfs-admin beside
# a live mount, and what fsck says of a damaged store.
. "$(dirname "$0")/lib.sh"

check "--help names the usage" sh -c '"$1" --help | grep -q "STORE MOUNTPOINT"' sh "$SNAPFS"
check "--version prints the version first" sh -c '"$1" --version | head -n 1 | grep -q "^snapfs version"' sh "$SNAPFS"
check_fails "no arguments is an error" "$SNAPFS"

# Refusals: a file, and a folder that holds something else.
echo hello >"$T/afile"
out=$("$SNAPFS" "$T/afile" "$MNT" -f 2>&1)
st=$?
ok "a file as STORE is refused with its name" $([ $st -ne 0 ] && echo "$out" | grep -q "$T/afile" && echo 0 || echo 1) "$out"
mkdir "$T/other"
echo x >"$T/other/notes.txt"
out=$("$SNAPFS" "$T/other" "$MNT" -f 2>&1)
st=$?
ok "a non-empty non-store folder is refused with a message" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "$T/other" && echo 0 || echo 1) "$out"
ok "the refused folder is left untouched" $([ "$(ls "$T/other")" = notes.txt ] && echo 0 || echo 1)
out=$("$SNAPFS" "$T/never" "$T/no-such-mountpoint" 2>&1)
st=$?
ok "a missing mount point is refused, naming it, and creates no store" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "no-such-mountpoint" && [ ! -e "$T/never" ] && echo 0 || echo 1) "$out"
# Option values out of range or not numbers are refused, quoted as given.
for o in readahead=-5 readahead=99999999999 read_size=2 read_size=4k timeout=-1 timeout=nan \
	sealed_timeout=soon busy_poll=-1 busy_poll=1001 busy_poll=50us; do
	out=$("$SNAPFS" -o "$o" "$T/never" "$MNT" 2>&1)
	st=$?
	ok "-o $o is refused, quoting it, and creates no store" \
		$([ $st -ne 0 ] && echo "$out" | grep -q "^snapfs: $o: must be a number" &&
			[ ! -e "$T/never" ] && echo 0 || echo 1) "$out"
done
# A store the mount would cover deadlocks the daemon on its own files
# (each access a request to itself): refused before anything is made.
mkdir "$T/mp"
ln -s "$T/mp" "$T/mp-link"
out=$(timeout 20 "$SNAPFS" "$T/mp" "$T/mp" -f 2>&1)
st=$?
ok "the mount point as its own store is refused, saying why, and left empty" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "store $T/mp is the mount point itself" &&
		[ -z "$(ls -A "$T/mp")" ] && echo 0 || echo 1) "$out"
out=$(timeout 20 "$SNAPFS" "$T/mp/store" "$T/mp" -f 2>&1)
st=$?
ok "a store inside the mount point is refused, naming both, and not created" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "store $T/mp/store is inside the mount point $T/mp" &&
		[ ! -e "$T/mp/store" ] && echo 0 || echo 1) "$out"
out=$(timeout 20 "$SNAPFS" "$T/mp-link/store" "$T/mp" -f 2>&1)
st=$?
ok "... also when reached through a symlink" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "is inside the mount point" && [ ! -e "$T/mp/store" ] &&
		echo 0 || echo 1) "$out"
# ... nor a store whose packs folder is a symlink into the mount point.
mkdir "$T/ls" "$T/lm"
"$SNAPFS" "$T/ls" "$T/lm" && echo data >"$T/lm/f" && umount "$T/lm"
STORE=$T/ls wait_store_free
mv "$T/ls/packs" "$T/mp/packs" && ln -s "$T/mp/packs" "$T/ls/packs"
out=$(timeout 20 "$SNAPFS" "$T/ls" "$T/mp" -f 2>&1)
st=$?
ok "a store whose packs lead into the mount point is refused, naming both" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "store $T/ls: its packs leads to $T/mp/packs, inside the mount point $T/mp" &&
		echo 0 || echo 1) "$out"
rm "$T/ls/packs" && mv "$T/mp/packs" "$T/ls/packs"
"$SNAPFS" "$T/ls" "$T/lm"
check "... and with its packs back in place it mounts, its file intact" \
	sh -c '[ "$(cat "$1/f")" = data ]' sh "$T/lm"
umount "$T/lm"
STORE=$T/ls wait_store_free
# A store as the mount point would be hidden under the mount; `snapfs fsck
# STORE`, meant for snapfs-admin, would make a store "fsck" to do that.
out=$(timeout 20 "$SNAPFS" "$T/new" "$T/ls" -f 2>&1)
st=$?
ok "a store as the mount point is refused, pointing at snapfs-admin, and creates no store" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "mount point $T/ls is a store: a mount there would hide it" &&
		echo "$out" | grep -q "snapfs-admin" && [ ! -e "$T/new" ] && echo 0 || echo 1) "$out"
out=$(cd "$T" && timeout 20 "$SNAPFS" fsck "$T/lm" -f 2>&1)
st=$?
ok "'snapfs fsck FOLDER' is refused, naming 'snapfs-admin fsck STORE', and makes no store fsck" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "no store fsck here; to run the command: snapfs-admin fsck STORE" &&
		[ ! -e "$T/fsck" ] && echo 0 || echo 1) "$out"
(cd "$T" && timeout 20 "$SNAPFS" ./fsck "$T/lm")
st=$?
[ $st -eq 0 ] && umount "$T/lm" && (STORE=$T/fsck; wait_store_free)
ok "... while 'snapfs ./fsck FOLDER' makes and mounts a store by that name" \
	$([ $st -eq 0 ] && [ -f "$T/fsck/index.db" ] && echo 0 || echo 1) "status $st"
mkdir "$T/bound"
E2E_UMOUNT_AFTER=$T/bound
if mount --bind "$T/mp" "$T/bound" 2>"$T/bind.err"; then
	out=$(timeout 20 "$SNAPFS" "$T/bound/store" "$T/mp" -f 2>&1)
	st=$?
	umount "$T/bound"
	ok "... and when reached through a bind mount of the mount point" \
		$([ $st -ne 0 ] && echo "$out" | grep -q "is inside the mount point" &&
			[ ! -e "$T/mp/store" ] && echo 0 || echo 1) "$out"
else
	ok "bind-mount the mount point's folder (needs root)" 1 "$(cat "$T/bind.err")"
fi
E2E_UMOUNT_AFTER=
ok "nothing was mounted by refusals" $(is_mounted && echo 1 || echo 0)

# A mount point whose daemon died: the refusal says how to clear it.
mkdir "$T/dead"
"$SNAPFS" "$T/deadstore" "$T/dead"
dpid=$(pgrep -f "^$SNAPFS $T/deadstore $T/dead\$" | head -n 1)
[ -n "$dpid" ] && kill -9 "$dpid"
i=0
while [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
out=$(timeout 20 "$SNAPFS" "$T/s3" "$T/dead" -f 2>&1)
st=$?
fusermount3 -u "$T/dead"
ok "a mount point whose daemon died is refused, saying to run fusermount3 -u" \
	$([ -n "$dpid" ] && [ $st -ne 0 ] &&
		echo "$out" | grep -q "its daemon is gone: fusermount3 -u $T/dead first" &&
		[ ! -e "$T/s3" ] && echo 0 || echo 1) "$out"

# A missing store is created with mode 0700 (daemon mode: parent exits 0
# only once the mount exists).  Started with a low soft limit on open
# files, which it raises.
(ulimit -S -n 256 && exec "$SNAPFS" "$STORE" "$MNT")
ok "snapfs goes to the background and returns 0" $?
ok "the mount exists when snapfs returns" $(is_mounted && echo 0 || echo 1)
ok "the store was created with mode 0700" $([ "$(stat -c %a "$STORE")" = 700 ] && echo 0 || echo 1)
check "/proc/mounts shows fsname STORE and type fuse.snapfs" grep -q "^$STORE $MNT fuse.snapfs " /proc/mounts
echo data >"$MNT/kept"
mkdir "$T/mnt2"
out=$(timeout 20 "$SNAPFS" "$STORE" "$T/mnt2" 2>&1)
st=$?
ok "a second snapfs on a mounted store is refused, naming where it is mounted" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "store $STORE is already mounted at $MNT" &&
		! mountpoint -q "$T/mnt2" && echo 0 || echo 1) "$out"
out=$(timeout 20 "$SNAPFS" "$T/s2" "$MNT" -f 2>&1)
st=$?
ok "a mount at a snapfs mount point is refused, naming the store there, and creates no store" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "mount point $MNT has store $STORE mounted already" &&
		[ ! -e "$T/s2" ] && [ "$(grep -c " $MNT fuse" /proc/mounts)" = 1 ] && echo 0 || echo 1) "$out"
dev=$(awk -v m="$MNT" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n 1)
check "read_ahead_kb of the mount is raised to 4096" sh -c '[ "$(cat /sys/class/bdi/$1/read_ahead_kb)" = 4096 ]' sh "$dev"
pid=$(pgrep -f "^$SNAPFS $STORE $MNT\$" | head -n 1)
ok "the daemon raised its soft limit on open files to the hard one (every pack stays open)" \
	$(awk '/^Max open files/ { exit !($4 == $5) }' "/proc/$pid/limits" && echo 0 || echo 1) \
	"$(grep "^Max open files" "/proc/$pid/limits")"
fusermount3 -u "$MNT"
ok "fusermount3 -u unmounts" $(is_mounted && echo 1 || echo 0)
"$SNAPFS" -o readahead=8192 "$STORE" "$MNT"
dev=$(awk -v m="$MNT" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n 1)
check "-o readahead=8192 sets read_ahead_kb to 8192 (not cut to the default's 4096)" \
	sh -c '[ "$(cat /sys/class/bdi/$1/read_ahead_kb)" = 8192 ]' sh "$dev"
fusermount3 -u "$MNT"
i=0
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
ok "the daemon exits after fusermount3 -u" $([ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && echo 0 || echo 1) "pid '$pid'"

# -o busy_poll: between short requests that come one after another the
# listening worker polls the device instead of sleeping in read(), so a
# program making one call after another (here getxattr of a name that is
# not there, a round trip each) no longer costs the daemon a wake-up per
# call: counted as the daemon's voluntary context switches, all threads.
# The caller works for 200 us between calls (a program doing something
# with each answer): with no gap, a caller quicker than the daemon's way
# back to read() would often have the next request queued before the
# daemon sleeps, and on some machines nearly always (1 wake-up in 1000
# calls was seen), so the count without polling would say nothing.
# A round in which the host stole the virtual CPUs (steal time in
# /proc/stat) does not count: a request held up that way looks slow to
# the daemon, which then hands the device on rather than poll, as it
# does for a store on a slow disk.
echo x >"$T/poll-file"
daemon_switches() {	# daemon_switches PID: voluntary context switches of all its threads
	cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}
daemon_cpu() {	# daemon_cpu PID: its user and system time, in clock ticks
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/"$1"/stat 2>/dev/null || echo 0
}
steal() {	# the time the host has stolen from this machine's CPUs, in clock ticks
	awk '/^cpu / { print $9 + 0 }' /proc/stat
}
# poll_round OPTION [-s]: mount with -o OPTION (and -s), make the 1000
# calls, and set switches (the daemon's wake-ups meanwhile), got (0 if
# every call was answered ENODATA by a daemon that was found), workers
# (its worker threads) and stolen (steal ticks meanwhile); diag says
# what was seen.
poll_round() {
	"$SNAPFS" -o "$1" "$STORE" "$MNT" ${2:+"$2"}
	cp "$T/poll-file" "$MNT/poll-file"
	pid=$(pgrep -f "^$SNAPFS -o $1 $STORE $MNT${2:+ $2}\$" | head -n 1)
	before=$(daemon_switches "$pid")
	cpu=$(daemon_cpu "$pid")
	stolen=$(steal)
	python3 -c 'import errno, os, sys, time
for _ in range(1000):
    until = time.perf_counter() + 0.0002
    while time.perf_counter() < until:
        pass
    try:
        os.getxattr(sys.argv[1], "user.absent")
    except OSError as e:
        if e.errno != errno.ENODATA:
            sys.exit("getxattr: %s" % e)' "$MNT/poll-file"
	got=$?
	[ -n "$pid" ] || got=1
	stolen=$(($(steal) - stolen))
	switches=$(($(daemon_switches "$pid") - before))
	workers=$(cat /proc/"$pid"/task/*/comm 2>/dev/null | grep -c '^snapfs-worker$')
	diag="$diag
-o $1 ${2:-}: daemon '$pid', python exit $got, $switches wake-ups, $(($(daemon_cpu "$pid") - cpu)) ticks of CPU, $(ls /proc/"$pid"/task 2>/dev/null | wc -l) threads ($workers workers), $stolen ticks stolen"
	rm "$MNT/poll-file"
	fusermount3 -u "$MNT"
	i=0
	while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}
# ok_measured NAME STATUS LIMIT DETAIL: ok NAME (and DETAIL) with STATUS if
# some round of the measurement ran with at most LIMIT ticks stolen by the
# host (clean: how many did), else skip it; $round rounds ran, $diag says
# what was seen.
ok_measured() {
	if [ $clean -eq 0 ]; then
		skip "$1)" "the host stole more than $3 ticks of CPU time in each of $round rounds" "$diag"
	else
		ok "$1$4)" "$2" "$diag"
	fi
}
# Up to five rounds of the pair, until one that the host left alone
# (at most 10 ticks stolen during the pair's calls: 3 to 25 were seen
# here in five pairs while the host was busy) shows the difference; a
# busy_poll that does nothing fails them all.
diag='' answered=0 fewer=1 round=0 clean=0
while [ $round -lt 5 ] && [ $fewer -ne 0 ]; do
	round=$((round + 1))
	poll_round busy_poll=0
	unpolled=$switches unpolled_stolen=$stolen
	answered=$((answered | got))
	poll_round busy_poll=1000
	answered=$((answered | got))
	[ $((unpolled_stolen + stolen)) -le 10 ] || continue
	clean=$((clean + 1))
	[ "$unpolled" -ge 500 ] && [ $((2 * switches)) -lt "$unpolled" ] && fewer=0
done
ok "-o busy_poll=0 and =1000: every getxattr call answered ENODATA" $answered "$diag"
ok_measured "-o busy_poll=1000 takes under half the daemon's wake-ups of busy_poll=0 (about one per call" \
	$fewer 10 "; $switches against $unpolled, round $round"
# -s serves on one worker thread, which polls as the pool's listener does.
diag='' answered=0 one=0 polled_s=1 round=0 clean=0
while [ $round -lt 3 ] && [ $polled_s -ne 0 ]; do
	round=$((round + 1))
	poll_round busy_poll=1000 -s
	answered=$((answered | got))
	[ "$workers" = 1 ] || one=1
	[ "$stolen" -le 5 ] && clean=$((clean + 1)) && [ "$switches" -lt 500 ] && polled_s=0
done
ok "-s: one worker thread answered every call" $((answered | one)) "$diag"
ok_measured "-s: the worker polled (under 500 wake-ups for the 1000 calls" $polled_s 5 ": $switches"
# ... and serves the slow kinds (a large write, fsync) on that thread too.
head -c 24M /dev/urandom >"$T/s-data"
"$SNAPFS" "$T/s-store" "$MNT" -s
check "-s: a large write with fsync, read back whole, a listing and an unlink" \
	sh -c 'dd if="$1" of="$2/s-data" bs=1M conv=fsync status=none && cmp "$1" "$2/s-data" &&
		ls -l "$2" | grep -q " s-data\$" && rm "$2/s-data" && [ ! -e "$2/s-data" ]' sh "$T/s-data" "$MNT"
fusermount3 -u "$MNT"
STORE=$T/s-store wait_store_free
rm -r "$T/s-data" "$T/s-store"

# A mount point inside the store would hide part of it.
out=$(timeout 20 "$SNAPFS" "$STORE" "$STORE/packs" -f 2>&1)
st=$?
ok "a mount point inside the store is refused, saying so" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "mount point $STORE/packs is inside the store" &&
		! grep -q " $STORE/packs " /proc/mounts && echo 0 || echo 1) "$out"

# An empty folder becomes a store too.
mkdir "$T/empty"
chmod 755 "$T/empty"
"$SNAPFS" "$T/empty" "$MNT" && fusermount3 -u "$MNT"
ok "an empty folder becomes a store, mode 0700" \
	$([ -f "$T/empty/index.db" ] && [ "$(stat -c %a "$T/empty")" = 700 ] && echo 0 || echo 1)

# SIGTERM unmounts cleanly; the data written before is there next time.
fs_mount || exit 1
check "data survives a remount" grep -qx data "$MNT/kept"
echo more >"$MNT/more"
kill -TERM "$DPID"
wait "$DPID"
st=$?
DPID=
ok "SIGTERM: daemon exits with status 0" $st "$(tail -n 20 "$T/daemon.log")"
ok "SIGTERM: the mount is gone" $(is_mounted && echo 1 || echo 0)

# mount.fuse3 and fstab.  mount.fuse3 finds snapfs through PATH, here a
# temporary folder.  mount(8) runs helpers without the caller's PATH (the
# shell's default applies), so for mount -t and fstab a private mount
# namespace puts the temporary folder over /usr/local/sbin.
mkdir "$T/bin"
ln -s "$SNAPFS" "$T/bin/snapfs"
PATH="$T/bin:$PATH" mount.fuse3 "$STORE" "$MNT" -t snapfs -o rw 2>"$T/mount.err"
ok "mount.fuse3 STORE MOUNTPOINT -t snapfs" $? "$(cat "$T/mount.err")"
check "mounted through mount.fuse3, data readable" grep -qx more "$MNT/more"
umount "$MNT"
ok "umount unmounts" $(is_mounted && echo 1 || echo 0)
echo "$STORE $MNT fuse.snapfs defaults 0 0" >"$T/fstab"
wait_store_free
unshare -m --propagation private sh -c '
	T=$1 STORE=$2 MNT=$3
	mount --bind "$T/bin" /usr/local/sbin || exit 10
	mount -t fuse.snapfs "$STORE" "$MNT" || exit 11
	grep -qx more "$MNT/more" || exit 12
	umount "$MNT" || exit 13
	wait_store_free	# the daemon may still be closing the store
	mount -T "$T/fstab" "$MNT" || exit 14
	grep -qx data "$MNT/kept" || exit 15
	grep -q "^$STORE $MNT fuse.snapfs " /proc/self/mounts || exit 16
	umount "$MNT" || exit 17
' sh "$T" "$STORE" "$MNT" >"$T/ns.log" 2>&1
st=$?
ok "mount -t fuse.snapfs and an fstab line 'STORE MOUNTPOINT fuse.snapfs defaults 0 0' (step $st)" $st "$(cat "$T/ns.log")"
wait_store_free

# mount -o remount runs `snapfs STORE MOUNTPOINT -o remount,...` through
# mount.fuse3; snapfs changes the live mount's flags.  The daemon follows
# them: a read-only mount stops atime updates, even after strictatime.
# (stat waits out the 1 s attribute timeout to see the daemon's atime.)
unshare -m --propagation private sh -c '
	T=$1 STORE=$2 MNT=$3
	mount --bind "$T/bin" /usr/local/sbin || exit 10
	mount -t fuse.snapfs "$STORE" "$MNT" || exit 11
	echo before >"$MNT/remount-file" || exit 12
	mount -o remount,ro "$MNT" || exit 13
	grep -q " $MNT ro," /proc/self/mountinfo || exit 14
	if (echo x >"$MNT/remount-new") 2>"$T/erofs.err"; then exit 15; fi
	grep -q "Read-only file system" "$T/erofs.err" || exit 16
	grep -qx before "$MNT/remount-file" || exit 17
	mount -o remount,rw,strictatime "$MNT" || exit 18
	a0=$(stat -c %X "$MNT/remount-file")
	sleep 1.2; cat "$MNT/remount-file" >/dev/null; sleep 1.2
	a1=$(stat -c %X "$MNT/remount-file")
	[ "$a1" -gt "$a0" ] || exit 19
	mount -o remount,ro "$MNT" || exit 20
	sleep 1.2; cat "$MNT/remount-file" >/dev/null; sleep 1.2
	[ "$(stat -c %X "$MNT/remount-file")" = "$a1" ] || exit 21
	mount -o remount,rw "$MNT" || exit 22
	echo after >"$MNT/remount-after" || exit 23
	[ "$(pgrep -c -f -- "snapfs $STORE $MNT")" = 1 ] || exit 24
	umount "$MNT" || exit 25
' sh "$T" "$STORE" "$MNT" >"$T/remount.log" 2>&1
st=$?
ok "mount -o remount,ro and back to rw change the live mount; ro stops atime updates (step $st)" \
	$st "$(cat "$T/remount.log")"
wait_store_free
"$SNAPFS" "$STORE" "$MNT" || exit 1
grep -qx after "$MNT/remount-after"
ok "a write after remounting rw is kept" $?
out=$("$SNAPFS" "$T/empty" "$MNT" -o remount,ro 2>&1)
st=$?
ok "remount with another store is refused, naming the mounted one" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "mounts the store $STORE, not" && echo 0 || echo 1) "$out"
out=$("$SNAPFS" "$STORE" "$T" -o remount,ro 2>&1)
st=$?
ok "remount of a folder that is no snapfs mount is refused" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "$T is not a snapfs mount point" && echo 0 || echo 1) "$out"
ok "... and the mount stays writable" $(echo x >"$MNT/remount-new" && echo 0 || echo 1)

# Admin commands beside the live mount: stats and fsck work, and gc is
# run by the daemon, with a reader going on meanwhile.
check "snapfs-admin stats works on a mounted store" sh -c '"$1" stats "$2" | grep -q "dedup ratio"' sh "$ADMIN" "$STORE"
check "snapfs-admin stats --json is JSON" sh -c '"$1" stats --json "$2" | python3 -c "import json,sys; d=json.load(sys.stdin); assert d[\"files\"] >= 2"' sh "$ADMIN" "$STORE"
check "snapfs-admin fsck works on a mounted store" "$ADMIN" fsck "$STORE"
# JSON is UTF-8: a path byte that is not UTF-8 comes out as U+FFFD, and
# quotes and backslashes are escaped (the store reached by a symlink).
ODD="$T/odd-$(printf '\303\251\377"\\x')"
ln -s "$STORE" "$ODD"
check "stats --json names a store whose path is not UTF-8 in strict JSON" \
	sh -c '"$1" stats --json "$2" | python3 -c "
import json, os, sys
d = json.loads(sys.stdin.buffer.read())
assert d[\"store\"] == os.fsencode(sys.argv[1]).decode(\"utf-8\", \"replace\"), d[\"store\"]
assert d[\"store\"].endswith(\"odd-\u00e9\ufffd\\\"\\\\x\")
" "$2"' sh "$ADMIN" "$ODD"
rm "$ODD"
check "snapfs-admin stats STORE --json: the option may follow STORE" \
	sh -c '"$1" stats "$2" --json | python3 -c "import json,sys; json.load(sys.stdin)"' sh "$ADMIN" "$STORE"
# Wrong arguments: exit 2, saying what is wrong before the usage.
for args in ":no command given" "frob $STORE:unknown command 'frob'" \
	"stats --json:snapfs-admin stats: STORE is missing" \
	"stats --jsn $STORE:unexpected argument '--jsn'" "fsck $STORE extra:unexpected argument 'extra'"; do
	out=$("$ADMIN" ${args%%:*} 2>&1)
	st=$?
	ok "snapfs-admin ${args%%:*}: exit 2, \"${args#*:}\"" \
		$([ $st -eq 2 ] && echo "$out" | head -n 1 | grep -qF "${args#*:}" &&
			echo "$out" | grep -q "^usage:" && echo 0 || echo 1) "$out"
done
# What is not a store is refused, named, and left as it was (snapfs-admin
# never makes or mends a store it cannot read).
N="$T/not-a-store"
mkdir "$N" "$N/empty" "$N/other" "$N/junk" "$N/junk/packs" "$N/nover" "$N/nover/packs"
echo notes >"$N/other/notes.txt"
echo junk >"$N/junk/index.db"
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("CREATE TABLE t(a)")' \
	"$N/nover/index.db"
contents() { (cd "$1" && find . | sort && find . -type f -exec sha256sum {} + | sort); }
for d in "empty:empty folder, not a store" "other:holds no index.db: not a store" \
	"junk:reading the schema version: file is not a database" \
	"nover:index.db has no schema version (not a store?)"; do
	before=$(contents "$N/${d%%:*}")
	out=$("$ADMIN" fsck "$N/${d%%:*}" 2>&1)
	st=$?
	ok "snapfs-admin fsck of a folder that is no store (${d%%:*}) exits 2, saying \"${d#*:}\" of it, and leaves it" \
		$([ $st -eq 2 ] && echo "$out" | grep -qF "${d#*:}" && echo "$out" | grep -qF "$N/${d%%:*}" &&
			[ "$(contents "$N/${d%%:*}")" = "$before" ] && echo 0 || echo 1) "$out"
done
# Given the mount point instead of the store, snapfs-admin uses the store
# mounted there and says so on stderr; stdout is what the store gives.
out=$("$ADMIN" stats "$MNT" 2>"$T/admin.err")
st=$?
ok "snapfs-admin stats MOUNTPOINT reports the store mounted there" \
	$([ $st -eq 0 ] && [ "$out" = "$("$ADMIN" stats "$STORE")" ] && echo 0 || echo 1) "$out"
ok "... and says on stderr that it used the store" \
	$(grep -q "$MNT is where snapfs mounts the store $STORE" "$T/admin.err" && echo 0 || echo 1) \
	"$(cat "$T/admin.err")"
out=$("$ADMIN" fsck "$MNT" 2>/dev/null)
st=$?
ok "snapfs-admin fsck MOUNTPOINT checks the store" \
	$([ $st -eq 0 ] && echo "$out" | grep -q "^$STORE: .* 0 problems" && echo 0 || echo 1) "$out"
head -c 4194304 /dev/urandom >"$T/keep"
cp "$T/keep" "$MNT/keep"
head -c 4194304 /dev/urandom >"$MNT/garbage"
rm "$MNT/garbage"
sync
before=$(store_bytes)
# O_DIRECT, so that each read goes to the daemon, not the page cache.
( while [ ! -e "$T/gc-done" ]; do
	dd if="$MNT/keep" iflag=direct bs=1M status=none | cmp -s - "$T/keep" || echo bad >>"$T/reader"
	echo >>"$T/reads"
done ) &
reader=$!
out=$("$ADMIN" gc "$STORE" 2>&1)
st=$?
touch "$T/gc-done"
wait $reader
ok "snapfs-admin gc of a mounted store runs in the daemon and frees the deleted file's pages" \
	$([ $st -eq 0 ] && echo "$out" | grep -q ": 1024 pages freed" && echo 0 || echo 1) "$out"
ok "the packs shrank by the deleted file" $([ $((before - $(store_bytes))) -ge 4194304 ] && echo 0 || echo 1) \
	"$before -> $(store_bytes)"
ok "a reader during the gc always read the file whole" $([ ! -e "$T/reader" ] && echo 0 || echo 1) \
	"$(wc -l <"$T/reads") reads"

check "the file reads back after the gc" cmp "$T/keep" "$MNT/keep"
check "the mount's root shows the last gc's figures" \
	sh -c '[ "$(getfattr --only-values -n user.snapfs.gc "$1" | cut -d" " -f1)" = 1024 ]' sh "$MNT"
check_fails "user.snapfs.gc below the root is refused" setfattr -n user.snapfs.gc -v 1 "$MNT/kept"
# gc through the mount while a writer changes files in every way.
mkdir "$MNT/mix" "$T/mixref"
python3 "$(dirname "$0")/mixops.py" "$MNT/mix" "$T/mixref" 7 1500 &
mixer=$!
gcs=0
while kill -0 $mixer 2>/dev/null && [ $gcs -lt 20 ]; do
	"$ADMIN" gc "$STORE" >/dev/null || echo "gc failed" >>"$T/gc-errors"
	gcs=$((gcs + 1))
done
wait $mixer
st=$?
ok "a writer beside $gcs gc runs through the mount always matches its reference" \
	$([ $st -eq 0 ] && [ ! -e "$T/gc-errors" ] && echo 0 || echo 1)
check "fsck is clean after the gc through the mount" "$ADMIN" fsck "$STORE"
# Without /proc (a chroot or a container may lack it) the mount table
# cannot be read, and what needs it stops, saying so: gc of this busy
# store, and a mount, whose checks against covering a store need it.
# (Under ASan, LeakSanitizer cannot run without /proc either, and ends
# the run with a status of its own: only the message is compared.)
noproc() {	# noproc COMMAND...: run it where /proc is an empty tmpfs
	unshare -m sh -c 'mount -t tmpfs snapfs-e2e-noproc /proc && exec timeout 20 "$@"' sh "$@"
}
if unshare -m true 2>"$T/unshare.err"; then
	expect_refused "without /proc, gc of a busy store stops, saying it cannot read the mount table" \
		"gc $STORE: the store is busy, and the mount table (/proc/self/mountinfo) cannot be read" \
		noproc "$ADMIN" gc "$STORE"
	mkdir "$T/np"
	expect_refused "without /proc, a mount stops, saying it cannot read the mount table" \
		"mount point $T/np: cannot read the mount table (/proc/self/mountinfo)" \
		noproc "$SNAPFS" "$T/np-store" "$T/np" -f
	ok "... and makes no store" $([ ! -e "$T/np-store" ] && echo 0 || echo 1)
else
	ok "a mount namespace of its own (needs root)" 1 "$(cat "$T/unshare.err")"
fi
umount "$MNT"
check "snapfs-admin gc right after the unmount waits for the daemon to let go" "$ADMIN" gc "$STORE"
# A store held a little longer (by a daemon still closing, say) is
# waited for: here something else holds its lock for two seconds.
flock "$STORE/lock" sleep 2 &
holder=$!
i=0	# until the holder has the lock: on a loaded machine that takes a while
while flock -n "$STORE/lock" true && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
check "snapfs waits for a store held for a moment, then mounts it" "$SNAPFS" "$STORE" "$MNT"
wait $holder
umount "$MNT"
wait_store_free
flock "$STORE/lock" sleep 8 &
holder=$!
i=0	# until the holder has the lock: on a loaded machine that takes a while
while flock -n "$STORE/lock" true && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
out=$("$ADMIN" gc "$STORE" 2>&1)
st=$?
ok "snapfs-admin gc of a store another process holds, unmounted, is refused, saying why" \
	$([ $st -eq 2 ] && echo "$out" | grep -q "in use by another process (pid $holder, flock," &&
		echo 0 || echo 1) "$out"
wait $holder
wait_store_free
check "snapfs-admin gc runs once unmounted" "$ADMIN" gc "$STORE"
check "fsck is clean after gc" "$ADMIN" fsck "$STORE"
check "on a terminal, fsck shows its progress" sh -c 'script -qec "\"$1\" fsck \"$2\"" /dev/null | grep -q "(100%)"' sh "$ADMIN" "$STORE"
check "without a terminal, fsck prints no progress" sh -c '! "$1" fsck "$2" 2>&1 | grep -q "%)"' sh "$ADMIN" "$STORE"

# Without root: snapfs mounts through fusermount3, keeps the kernel's
# read-ahead without a word (only root may write it in sysfs), says so when
# a readahead was asked for, and fusermount3 -u unmounts.  The binary is
# copied, since the build folder may be closed to other users.
U=$T/user
mkdir -p "$U/mnt"
cp "$SNAPFS" "$U/snapfs"
chmod 755 "$T"
chown -R 65534:65534 "$U"
asuser() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
E2E_UMOUNT_AFTER=$U/mnt
out=$(asuser "$U/snapfs" "$U/store" "$U/mnt" 2>&1)
st=$?
ok "a user who is not root mounts a store" \
	$([ $st -eq 0 ] && grep -q " $U/mnt fuse.snapfs " /proc/mounts && echo 0 || echo 1) "$out"
ok "... with no warning about read_ahead_kb" $(echo "$out" | grep -q read_ahead && echo 1 || echo 0) "$out"
check "... writes and reads back a file" \
	asuser sh -c 'echo hi >"$1/f" && [ "$(cat "$1/f")" = hi ]' sh "$U/mnt"
check "... and unmounts it with fusermount3 -u" asuser fusermount3 -u "$U/mnt"
out=$(asuser "$U/snapfs" -o readahead=2048 "$U/store" "$U/mnt" 2>&1)
st=$?
ok "a readahead asked for without root: mounted, saying it cannot set it" \
	$([ $st -eq 0 ] && echo "$out" | grep -q "cannot set read_ahead_kb=2048: Permission denied" &&
		echo 0 || echo 1) "$out"
check "... and the file written before is there" \
	asuser sh -c '[ "$(cat "$1/f")" = hi ]' sh "$U/mnt"
asuser fusermount3 -u "$U/mnt"
E2E_UMOUNT_AFTER=
# A store folder its user may not write cannot be read either (SQLite
# must make index.db-shm): the message says so.  Once the daemon is gone:
# until then its index.db-wal and -shm are still there to be used.
STORE=$U/store wait_store_free
cp "$ADMIN" "$U/snapfs-admin"
chmod 555 "$U/store"
out=$(asuser "$U/snapfs-admin" stats "$U/store" 2>&1)
st=$?
ok "stats of a store folder its user may not write says why it cannot open it" \
	$([ $st -eq 2 ] && echo "$out" | grep -q "not writable by this user" && echo 0 || echo 1) "$out"
chmod 700 "$U/store"

# A store an older snapfs left (schema version 4) is migrated when it is
# mounted, and the mount says so while it waits for that.
mkdir "$T/old" "$T/mold"
head -c 3000000 /dev/urandom >"$T/old-f"
"$SNAPFS" "$T/old" "$T/mold" && cp "$T/old-f" "$T/mold/f" && umount "$T/mold"
STORE=$T/old wait_store_free
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA user_version = 4")' \
	"$T/old/index.db"
out=$("$ADMIN" stats "$T/old" 2>&1)
st=$?
ok "snapfs-admin stats refuses it, saying how to migrate it" \
	$([ $st -ne 0 ] && echo "$out" | grep -q "schema version 4 is older than" &&
		echo "$out" | grep -q "mount it with snapfs, or run snapfs-admin gc on it, once" &&
		echo 0 || echo 1) "$out"
out=$("$SNAPFS" "$T/old" "$T/mold" 2>&1)
st=$?
ok "a store of schema version 4 is migrated at mount, saying when it starts and ends" \
	$([ $st -eq 0 ] &&
		echo "$out" | grep -q "^snapfs: store $T/old: migrating the schema from version 4 to " &&
		echo "$out" | grep -q "^snapfs: store $T/old: migrated to schema version " &&
		echo 0 || echo 1) "$out"
check "... and its file reads back byte for byte" cmp "$T/old-f" "$T/mold/f"
umount "$T/mold"
STORE=$T/old wait_store_free
out=$("$SNAPFS" "$T/old" "$T/mold" 2>&1)
ok "... and says nothing at the next mount" $([ -z "$out" ] && echo 0 || echo 1) "$out"
umount "$T/mold"

# A pack cut short behind the store's back: reading the file fails with
# EIO, spliced or copied, and never reads as a shorter file.
mkdir "$T/cut" "$T/mcut"
"$SNAPFS" "$T/cut" "$T/mcut"
head -c 1048576 /dev/urandom >"$T/mcut/g"
umount "$T/mcut"
"$SNAPFS" "$T/cut" "$T/mcut"	# waits for the daemon to let go
umount "$T/mcut"
truncate -s 200000 "$T"/cut/packs/*.pack
for o in splice nosplice; do
	if [ $o = splice ]; then "$SNAPFS" "$T/cut" "$T/mcut"; else "$SNAPFS" -o nosplice "$T/cut" "$T/mcut"; fi
	out=$(cat "$T/mcut/g" 2>&1 >/dev/null)
	st=$?
	ok "a pack cut short ($o): reading the file fails with EIO" \
		$([ $st -ne 0 ] && echo "$out" | grep -q "Input/output error" && echo 0 || echo 1) "$out"
	check "a pack cut short ($o): the bytes before the cut still read" \
		sh -c '[ "$(head -c 100000 "$1" | wc -c)" = 100000 ]' sh "$T/mcut/g"
	umount "$T/mcut"
done
byte_at() {	# byte_at FILE AT: the byte at offset AT of FILE, in decimal
	od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '
}
flip_byte() {	# flip_byte FILE AT: every bit of that byte inverted, in place
	printf "$(printf '\\%03o' $(($(byte_at "$1" "$2") ^ 255)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# fsck of that store, with a byte changed too: each damaged page is named
# by file, page, pack and byte; the count is right; the status is 1.
# The byte is flipped, not overwritten with a fixed one: the page is
# random, and a fixed byte is already there once in 256 runs.
STORE=$T/cut wait_store_free
pack=$(ls "$T"/cut/packs/*.pack)
at=$((3 * 4096 + 100))
byte=$(byte_at "$pack" "$at")
flip_byte "$pack" "$at"
ok "... a byte of a page in it is changed ($byte to $((byte ^ 255)))" \
	$([ "$(byte_at "$pack" "$at")" = $((byte ^ 255)) ] && echo 0 || echo 1)
out=$("$ADMIN" fsck "$T/cut" 2>&1)
st=$?
lost=$(echo "$out" | grep -c "^$T/cut: /g page [0-9]* (page [0-9a-f]*\.\.\.): page damaged at packs/[0-9]*\.pack byte 0x[0-9a-f]*000: unreadable: past the end of its pack, or a read error$")
ok "fsck names every damaged page by file, page, pack and byte, counts them, and exits 1" \
	$([ $st = 1 ] && [ "$lost" = 208 ] &&
		echo "$out" | grep -q "^$T/cut: /g page [0-9]* (page [0-9a-f]*\.\.\.): page damaged at packs/[0-9]*\.pack byte 0x3000: its bytes do not match its hash$" &&
		echo "$out" | grep -q "^$T/cut: 1 file with stored pages, 256 pages checked, 209 problems$" &&
		echo 0 || echo 1) "status $st, $lost pages named lost: $out"
# A byte of a pack changed behind the store's back: an ordinary mount
# serves it as the file's (fsck is what finds it); under -o verify every
# read that takes the page fails with EIO, mapped too (SIGBUS), the log
# names the inode, byte and pack position once, and the rest reads.
saved_store=$STORE saved_mnt=$MNT
STORE=$T/ver MNT=$T/mver
mkdir "$MNT"
"$SNAPFS" "$STORE" "$MNT"
head -c 1048576 /dev/urandom >"$T/ver-g"
cp "$T/ver-g" "$MNT/g"
umount "$MNT"
wait_store_free
pack=$(ls "$STORE"/packs/*.pack)
at=$((3 * 4096 + 100))	# the file's pages went in order
byte=$(byte_at "$pack" "$at")
flip_byte "$pack" "$at"
"$SNAPFS" "$STORE" "$MNT"
ok "without -o verify the changed byte reads as the file's" \
	$([ "$(byte_at "$MNT/g" "$at")" = $((byte ^ 255)) ] && echo 0 || echo 1)
umount "$MNT"
wait_store_free
: >"$T/daemon.log"
if fs_mount -o verify; then
	out=$(cat "$MNT/g" 2>&1 >/dev/null)
	ok "-o verify: reading the changed page fails with EIO" \
		$([ "$out" = "cat: $MNT/g: Input/output error" ] && echo 0 || echo 1) "$out"
	out=$(dd if="$MNT/g" bs=100 skip=123 count=1 iflag=direct 2>&1 >/dev/null)
	ok "... a read of 100 bytes of it too" \
		$(echo "$out" | grep -q "Input/output error" && echo 0 || echo 1) "$out"
	python3 -c 'import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    m[3 * 4096 + 100]' "$MNT/g" 2>/dev/null
	st=$?
	ok "... and touching it mapped raises SIGBUS" $([ $st = 135 ] && echo 0 || echo 1) "status $st"
	check "... while the pages before it read as written" \
		cmp -n 12288 "$MNT/g" "$T/ver-g"
	check "... and those after it" \
		sh -c 'cmp "$1" "$2" 16384 16384' sh "$MNT/g" "$T/ver-g"
	fs_umount
	ok "... and the log names the inode, the byte and where in which pack, once" \
		$([ "$(grep -c "^snapfs: store $STORE: inode [0-9]*: the page at byte 12288 does not match its hash (at packs/[0-9a-f]*\.pack byte 0x3000): a pack file is damaged; run snapfs-admin fsck$" "$T/daemon.log")" = 1 ] &&
			[ "$(grep -c "does not match" "$T/daemon.log")" = 1 ] && echo 0 || echo 1) "$(cat "$T/daemon.log")"
fi
STORE=$saved_store MNT=$saved_mnt
# Damage to index.db itself (a page of it zeroed, found by the symlink
# target it holds): fsck names the page on a line of its own, "STORE:
# index.db: ...", and exits 2; the mount serves the rest, and the call that
# meets the damage fails with EUCLEAN while the log says what was hit.
saved_store=$STORE saved_mnt=$MNT
STORE=$T/dmg MNT=$T/mdmg
mkdir "$MNT"
"$SNAPFS" "$STORE" "$MNT"
echo intact >"$MNT/f"
ln -s snapfs-damage-marker-0123456789 "$MNT/lnk"
umount "$MNT"
wait_store_free
at=$(grep -obUa snapfs-damage-marker-0123456789 "$STORE/index.db" | head -n 1 | cut -d: -f1)
page=$((${at:-0} / 4096 + 1))
[ -n "$at" ] && dd if=/dev/zero of="$STORE/index.db" bs=4096 seek=$((page - 1)) count=1 \
	conv=notrunc status=none
out=$("$ADMIN" fsck "$STORE" 2>&1)
st=$?
ok "fsck of a damaged index.db names the page on its own line and exits 2" \
	$([ -n "$at" ] && [ $st = 2 ] && echo "$out" | grep -q "^$STORE: index.db: Page $page: " &&
		! echo "$out" | grep -qF -e "::" -e "***" && echo 0 || echo 1) "status $st, page $page: $out"
ok "... and names the symlink it hits, not the file beside it" \
	$(echo "$out" | grep -q "^$STORE: /lnk: its target cannot be read: database disk image is malformed$" &&
		! echo "$out" | grep -q "^$STORE: /f" && echo 0 || echo 1) "$out"
: >"$T/daemon.log"
if fs_mount; then
	out=$(readlink -v "$MNT/lnk" 2>&1)
	st=$?
	readlink "$MNT/lnk" >/dev/null 2>&1	# meets the damage again: no second log line
	ok "the symlink on the damaged page fails to read with EUCLEAN" \
		$([ $st -ne 0 ] && [ "$out" = "readlink: $MNT/lnk: Structure needs cleaning" ] &&
			echo 0 || echo 1) "status $st: $out"
	check "... while the rest of the store reads" sh -c '[ "$(cat "$1")" = intact ]' sh "$MNT/f"
	fs_umount
	ok "the log names the store, the damage and the lookup that met it, once" \
		$([ "$(grep -c "^snapfs: store $STORE: index.db is damaged: database disk image is malformed (in: SELECT target FROM symlink WHERE ino = [0-9]*); calls that need that part of it fail; run snapfs-admin fsck$" "$T/daemon.log")" = 1 ] &&
			[ "$(grep -c "index.db is" "$T/daemon.log")" = 1 ] && echo 0 || echo 1) "$(cat "$T/daemon.log")"
fi
# salvage: a new index.db of what SQLite can still read of the damaged one
# (the old kept beside it), then fsck --repair; fsck points to it.
out=$("$ADMIN" fsck "$STORE" 2>&1)
ok "fsck of a malformed index.db points to salvage" \
	$(echo "$out" | grep -q "^snapfs-admin: 'snapfs-admin salvage $STORE' makes a new index.db of what can still be read$" &&
		echo 0 || echo 1) "$out"
out=$("$ADMIN" salvage "$STORE" 2>&1)
st=$?
ok "salvage keeps every row it can read, the old index, and repairs what the lost ones left" \
	$([ $st = 1 ] && [ -f "$STORE/index.db.damaged" ] &&
		echo "$out" | grep -q "^$STORE: salvaged symlink: 0 rows, 1 damaged stretch skipped$" &&
		echo "$out" | grep -q "^$STORE: salvaged inode: 3 rows$" &&
		echo "$out" | grep -q "^$STORE: repaired: removed 1 symlink whose target was lost, and its names$" &&
		echo 0 || echo 1) "status $st: $out"
out=$("$ADMIN" fsck "$STORE" 2>&1)
st=$?
ok "... after which fsck finds the store clean" $([ $st = 0 ] && echo 0 || echo 1) "status $st: $out"
if fs_mount; then
	check "... and the file beside the symlink reads" sh -c '[ "$(cat "$1")" = intact ] && [ ! -e "$2" ]' \
		sh "$MNT/f" "$MNT/lnk"
	fs_umount
fi
# A page map changed inside its row, which SQLite cannot see (the second
# 512 KiB of a made a copy of b's first): a's checksum catches it, and
# reading there fails with EUCLEAN rather than giving b's bytes as a's.
rm -rf "$STORE"
"$SNAPFS" "$STORE" "$MNT"
head -c 1048576 /dev/urandom >"$T/dmg-a"
head -c 524288 /dev/urandom >"$T/dmg-b"
cp "$T/dmg-a" "$MNT/a"
cp "$T/dmg-b" "$MNT/b"
ia=$(stat -c %i "$MNT/a") ib=$(stat -c %i "$MNT/b")
umount "$MNT"
wait_store_free
python3 - "$STORE/index.db" "$ia" "$ib" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE chunk SET (locs, hashes) = (SELECT locs, hashes FROM chunk"
           " WHERE ino = ? AND idx = 0) WHERE ino = ? AND idx = 1", (sys.argv[3], sys.argv[2]))
db.commit()
PY
: >"$T/daemon.log"
if fs_mount; then
	out=$(cat "$MNT/a" 2>&1 >/dev/null)
	ok "a page map that fails its checksum: reading there fails with EUCLEAN" \
		$([ "$out" = "cat: $MNT/a: Structure needs cleaning" ] && echo 0 || echo 1) "$out"
	check "... the part of the file before it reads as written" \
		cmp -n 524288 "$MNT/a" "$T/dmg-a"
	check "... and so does the file whose map it copied" cmp "$MNT/b" "$T/dmg-b"
	fs_umount
	ok "... and the log names the inode and the bytes" \
		$(grep -q "^snapfs: store $STORE: index.db is damaged: the page map of inode $ia for bytes 524288 to 1048575 does not match its checksum; calls that need it fail; run snapfs-admin fsck$" "$T/daemon.log" &&
			echo 0 || echo 1) "$(cat "$T/daemon.log")"
	out=$("$ADMIN" fsck "$STORE" 2>&1)
	ok "... and fsck names the row" \
		$([ $? = 1 ] && echo "$out" | grep -q "^$STORE: /a page 128: page-map row 1 does not match its checksum$" &&
			echo 0 || echo 1) "$out"
	out=$("$ADMIN" fsck --repair "$STORE" 2>&1)
	ok "fsck --repair with a damaged page map repairs no reference count, and says why" \
		$([ $? = 1 ] && echo "$out" | grep -q "^$STORE: reference counts not repaired: index.db or a page map is damaged, so the references cannot be counted$" &&
			echo 0 || echo 1) "$out"
	# Deleting a keeps the pages its damaged row named (their counts
	# stay): once no damaged row is left, --repair counts them right,
	# and gc frees them.
	if fs_mount; then
		rm "$MNT/a"
		out=$("$ADMIN" fsck --repair "$STORE" 2>&1)
		ok "fsck --repair of a mounted store is refused, saying to unmount it" \
			$([ $? = 2 ] && [ "$out" = "snapfs-admin: fsck --repair $STORE: the store is mounted at $MNT; unmount it first" ] &&
				echo 0 || echo 1) "$out"
		fs_umount
	fi
	out=$("$ADMIN" fsck "$STORE" 2>&1)
	ok "after a is deleted, fsck finds its damaged row's 128 pages counted but unused" \
		$([ $? = 1 ] && [ "$(echo "$out" | grep -c "reference count 1, but 0 references$")" = 128 ] &&
			echo 0 || echo 1) "$out"
	out=$("$ADMIN" fsck --repair "$STORE" 2>&1)
	ok "fsck --repair sets their counts right" \
		$([ $? = 1 ] && echo "$out" | grep -q "^$STORE: repaired: the reference counts of 128 pages (gc frees those no file uses)$" &&
			echo 0 || echo 1) "$out"
	check "... fsck is then clean" "$ADMIN" fsck "$STORE"
	out=$("$ADMIN" gc "$STORE" 2>&1)
	ok "... and gc frees them, with those of a's good row: b's 128 pages are all that stay" \
		$(echo "$out" | grep -q "^$STORE: 256 pages freed, packs [0-9]* -> 524288 bytes$" &&
			echo 0 || echo 1) "$out"
	if fs_mount; then
		check "... while b reads as written" cmp "$MNT/b" "$T/dmg-b"
		ln "$MNT/b" "$MNT/b2"
		mkdir -p "$MNT/d/e"
		cp "$T/dmg-b" "$MNT/c"
		ic=$(stat -c %i "$MNT/c")
		fs_umount
	fi
	# repair_says NAME PATTERN...: fsck --repair finds problems, and prints
	# a line matching each pattern; a plain fsck then finds none.
	repair_says() {
		name=$1
		shift
		out=$("$ADMIN" fsck --repair "$STORE" 2>&1)
		st=$?
		for pat in "$@"; do
			echo "$out" | grep -q -- "$pat" || st=0
		done
		ok "$name" $([ $st = 1 ] && echo 0 || echo 1) "$out"
		check "... fsck is then clean" "$ADMIN" fsck "$STORE"
	}
	# Names and inodes out of step: b, with two names, counted unlinked,
	# d's link count wrong, e recording the root as its parent, an entry
	# naming no inode (whose name cannot be used), c's only entry gone.
	# --repair makes the inodes agree with the names, and gives c one in
	# lost+found.
	python3 - "$STORE/index.db" "$ib" "$ic" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE inode SET nlink = 0 WHERE ino = ?", (sys.argv[2],))
db.execute("DELETE FROM dentry WHERE ino = ?", (sys.argv[3],))
db.execute("UPDATE inode SET parent = 1 WHERE ino = (SELECT ino FROM dentry WHERE name = 'e')")
db.execute("UPDATE inode SET nlink = 9 WHERE ino = (SELECT ino FROM dentry WHERE name = 'd')")
db.execute("INSERT INTO dentry(parent, name, ino) VALUES (1, 'ghost', 987654)")
db.commit()
PY
	repair_says "fsck --repair sets link counts right, removes an entry naming no inode, names a lost file" \
		"link count 0, but 2 names$" \
		"^$STORE: repaired: removed 1 entry naming missing inodes$" \
		"^$STORE: repaired: put 1 file or folder no path reached in /lost+found, named #INODE$" \
		"^$STORE: repaired: the link counts of 3 inodes$" \
		"^$STORE: repaired: the recorded parents of 1 directory$"
	if fs_mount; then
		check "... b reads as written under both names" \
			sh -c 'cmp "$1/b" "$2" && cmp "$1/b2" "$2" && [ "$(stat -c %h "$1/b")" = 2 ]' \
			sh "$MNT" "$T/dmg-b"
		check "... and d counts its subfolder" sh -c '[ "$(stat -c %h "$1/d")" = 3 ]' sh "$MNT"
		check "... and c reads as written in lost+found" cmp "$MNT/lost+found/#$ic" "$T/dmg-b"
		check "... and the name the entry held can be used again" \
			sh -c 'echo x >"$1/ghost" && [ "$(cat "$1/ghost")" = x ]' sh "$MNT"
		id=$(stat -c %i "$MNT/d")
		fs_umount
	fi
	# Page maps and folders out of step: c's inode gone (its map and its
	# name kept), b recording 1 stored page and a bit of a location in
	# its map flipped, d and e each in the other.  --repair makes c a
	# file again, sets b's count, rebuilds its map's locations from its
	# hashes, opens the cycle at d.
	python3 - "$STORE/index.db" "$ib" "$ic" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE inode SET pages = 1 WHERE ino = ?", (sys.argv[2],))
locs = bytearray(db.execute("SELECT locs FROM chunk WHERE ino = ? AND idx = 0", (sys.argv[2],)).fetchone()[0])
locs[8 * 9] ^= 0x20
db.execute("UPDATE chunk SET locs = ? WHERE ino = ? AND idx = 0", (bytes(locs), sys.argv[2]))
db.execute("DELETE FROM inode WHERE ino = ?", (sys.argv[3],))
db.execute("UPDATE dentry SET parent = (SELECT ino FROM dentry WHERE name = 'e') WHERE name = 'd'")
db.commit()
PY
	repair_says "fsck --repair makes a file again for a map without inode, sets page counts, rebuilds a row, opens a cycle" \
		"page map of missing inode $ic (128 stored pages)$" \
		"^$STORE: repaired: made 1 file again from page maps whose inode was missing$" \
		"^$STORE: repaired: the recorded page counts of 1 file$" \
		"^$STORE: repaired: rebuilt 1 page-map row to match its checksum$" \
		"^$STORE: repaired: put 1 file or folder no path reached in /lost+found, named #INODE$"
	if fs_mount; then
		check "... c reads as written under its name, owner-only" \
			sh -c 'cmp "$1/lost+found/#$2" "$3" && [ "$(stat -c %a "$1/lost+found/#$2")" = 600 ]' \
			sh "$MNT" "$ic" "$T/dmg-b"
		check "... b reads as written and counts its 128 pages in blocks" \
			sh -c 'cmp "$1/b" "$2" && [ "$(stat -c %b "$1/b")" = 1024 ]' sh "$MNT" "$T/dmg-b"
		check "... and d is in lost+found with e in it" test -d "$MNT/lost+found/#$id/e"
		fs_umount
	fi
	# c's inode made a folder (its mode changed), its page map kept:
	# --repair moves the map to a new file in lost+found.
	python3 - "$STORE/index.db" "$ic" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE inode SET mode = 16877 WHERE ino = ?", (sys.argv[2],))
db.commit()
PY
	repair_says "fsck --repair moves the page map of a folder to a new file" \
		"page map of inode $ic, which is not a file (128 stored pages)$" \
		"^$STORE: repaired: moved the page map of 1 inode that is not a file to a new file in lost+found$"
	if fs_mount; then
		check "... c's bytes are a new file in lost+found, and c an empty folder" \
			sh -c 'n=0; for f in "$1"/lost+found/"#"*; do
				[ -f "$f" ] && cmp -s "$f" "$3" && n=$((n + 1)); done
				[ $n = 1 ] && [ -z "$(ls -A "$1/lost+found/#$2")" ]' sh "$MNT" "$ic" "$T/dmg-b"
		fs_umount
	fi
fi
STORE=$saved_store MNT=$saved_mnt

# A test script killed with SIGKILL takes its daemons with it, one gone
# to the background too (lib.sh: a PID namespace per script, as root).
# The script below mounts a store in daemon mode and sleeps; it is killed
# from here, where its daemon is seen, as it would be by a test runner.
if [ -n "${SNAPFS_E2E_NS:-}" ]; then
	lib=$(cd "$(dirname "$0")" && pwd)/lib.sh
	printf '#!/bin/sh\n. "%s"\n"$SNAPFS" "$STORE" "$MNT" && echo "$STORE" >"$1"\nexec sleep 600\n' \
		"$lib" >"$T/killed.sh"
	chmod +x "$T/killed.sh"
	env -u SNAPFS_E2E_NS "$T/killed.sh" "$T/killed.store" &
	kpid=$!
	i=0
	while [ ! -s "$T/killed.store" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	kstore=$(cat "$T/killed.store" 2>/dev/null)
	kt=$(dirname "$kstore")
	dpid=$(pgrep -f "^$SNAPFS $kstore $kt/mnt\$" | head -n 1)
	kill -9 "$kpid"
	wait "$kpid" 2>/dev/null
	i=0
	while [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
	ok "a script killed with SIGKILL ends the daemon it left in the background" \
		$([ -n "$kstore" ] && [ -n "$dpid" ] && ! kill -0 "$dpid" 2>/dev/null &&
			flock -n "$kstore/lock" true && echo 0 || echo 1) "store '$kstore', daemon pid '$dpid'"
	# Had it survived: stop it here.
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && fusermount3 -u "$kt/mnt" 2>/dev/null
	[ -n "$kstore" ] && rm -rf "$kt"
else
	ok "a script killed with SIGKILL ends its daemons # SKIP no PID namespace (not root)" 0
fi
finish
