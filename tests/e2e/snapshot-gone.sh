#!/bin/sh
# tests/e2e/snapshot-gone.sh: the store going away under a process that
# runs sandboxes from one of its snapshots.
#
# A hello guest is snapshotted into a snapfs mount and a long-lived
# process (e2e-snapcaller) starts two sandboxes from it.  Then the mount
# goes away, once by the daemon being killed (SIGKILL: every access to
# the mount fails with ENOTCONN) and once by a lazy unmount (umount -l:
# the mount is detached from the tree, open files keep working).  Each
# time the process must go on answering right from what it mapped, or
# fail the call with a message, and never die of a signal; even after the
# page cache is dropped (so guest memory must be read again); a new snapvm
# call must fail naming the snapshot's path; and once the store is
# mounted again, fsck is clean and the snapshot verifies and loads.
# Needs /dev/kvm and /dev/fuse: suite kvm.
. "$(dirname "$0")/lib.sh"

SNAPVM=$BUILD/host/snapvm
HELLO=$BUILD/guest/hello.elf
CALLER=$BUILD/tests/e2e-snapcaller

need_kvm

CPID=
caller_start() {	# caller_start SNAPSHOT N: run e2e-snapcaller, wait for "ready"
	rm -f "$T/in" "$T/out" "$T/err"
	mkfifo "$T/in"
	# the child opens out only after the fifo is open at both ends, so
	# it must exist before caller_wait reads it
	: >"$T/out"
	"$CALLER" "$1" "$2" <"$T/in" >"$T/out" 2>"$T/err" &
	CPID=$!
	exec 3>"$T/in"
	OUTN=1
	caller_wait 1
}
caller_wait() {	# caller_wait LINES: until $T/out has LINES lines or the caller is gone
	i=0
	while [ "$(wc -l <"$T/out")" -lt "$1" ] && kill -0 "$CPID" 2>/dev/null && [ $i -lt 12000 ]; do
		sleep 0.05
		i=$((i + 1))
	done
}
caller_ask() {	# caller_ask N LINE: send LINE, set GOT to the N answer lines
	echo "$2" >&3
	caller_wait $((OUTN + $1))
	GOT=$(sed -n "$((OUTN + 1)),$((OUTN + $1))p" "$T/out")
	OUTN=$((OUTN + $1))
}
caller_stop() {	# close its input; ok if it exits 0 with a clean stderr
	exec 3>&-
	wait "$CPID"
	st=$?
	CPID=
	if [ $st -ne 0 ] || grep -qE "Sanitizer|runtime error" "$T/err"; then
		ok "$1: the process exits normally" 1 "status $st; $(tail -n 40 "$T/err")"
	else
		ok "$1: the process exits normally" 0
	fi
}
answers_or_errors() {	# answers_or_errors NAME WANT GOT: each line "sandbox K: WANT" or an error with a message
	bad=$(printf '%s\n' "$3" | grep -vE "^sandbox [0-9]+: ($2|error: .+)$")
	n=$(printf '%s\n' "$3" | grep -c '^sandbox')
	if [ -z "$bad" ] && [ "$n" = 2 ] && kill -0 "$CPID" 2>/dev/null; then
		ok "$1" 0
		printf '%s\n' "$3" | sed 's/^/#   /'
	else
		ok "$1" 1 "got: $3
alive: $(kill -0 "$CPID" 2>/dev/null && echo yes || echo no)
stderr: $(tail -n 20 "$T/err")"
	fi
}
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
}
after_remount() {	# after_remount HOW: the store survived
	wait_store_free
	check "$1: fsck of the store is clean" "$ADMIN" fsck "$STORE"
	fs_mount || exit 1
	check "$1: the snapshot verifies" "$SNAPVM" verify "$MNT/h1"
	out=$("$SNAPVM" call -q "$MNT/h1" counter 2>&1)
	ok "$1: the snapshot loads and answers as before ($out)" $([ "$out" = 2 ] && echo 0 || echo 1)
}

fs_mount || exit 1
check "snapshot into the mount" "$SNAPVM" snapshot -q "$HELLO" "$MNT/h1" --call counter

# --- the daemon is killed --------------------------------------------------
caller_start "$MNT/h1" 2
ok "killed: a process runs two sandboxes from the snapshot" \
	$(sed -n 1p "$T/out" | grep -qx ready && echo 0 || echo 1) "$(cat "$T/err")"
expect_out_lines="sandbox 0: 2
sandbox 1: 2"
caller_ask 2 counter
got=$GOT
ok "killed: both answer before" $([ "$got" = "$expect_out_lines" ] && echo 0 || echo 1) "$got"
kill -KILL "$DPID"
wait "$DPID" 2>/dev/null
DPID=
check_fails "killed: the mount answers ENOTCONN" ls "$MNT/h1"
caller_ask 2 counter
answers_or_errors "killed: sandboxes go on or fail the call" "3" "$GOT"
drop_caches
caller_ask 2 counter
answers_or_errors "killed: after the page cache is dropped" "4" "$GOT"
caller_ask 2 "new counter"
answers_or_errors "killed: new sandboxes from the open snapshot" "2" "$GOT"
expect_refused "killed: a new snapvm call fails naming the snapshot" "$MNT/h1" \
	"$SNAPVM" call -q "$MNT/h1" counter
caller_stop killed
umount -l "$MNT"
after_remount killed

# --- lazy unmount ------------------------------------------------------------
caller_start "$MNT/h1" 2
caller_ask 2 counter
got=$GOT
ok "detached: both answer before" $([ "$got" = "$expect_out_lines" ] && echo 0 || echo 1) "$got"
umount -l "$MNT"
ok "detached: the mount is gone from the tree" $(is_mounted && echo 1 || echo 0)
caller_ask 2 counter
answers_or_errors "detached: sandboxes go on or fail the call" "3" "$GOT"
drop_caches
caller_ask 2 counter
answers_or_errors "detached: after the page cache is dropped" "4" "$GOT"
caller_ask 2 "new counter"
answers_or_errors "detached: new sandboxes from the open snapshot" "2" "$GOT"
expect_refused "detached: a new snapvm call fails naming the snapshot" "$MNT/h1" \
	"$SNAPVM" call -q "$MNT/h1" counter
caller_stop detached
# the last user gone, the daemon sees the unmount and exits
wait "$DPID"
st=$?
DPID=
ok "detached: the daemon exits cleanly once the process is gone" \
	$([ $st = 0 ] && ! grep -qE "Sanitizer|runtime error" "$T/daemon.log" && echo 0 || echo 1) \
	"status $st; $(tail -n 20 "$T/daemon.log")"
after_remount detached
fs_umount
wait_store_free
finish
