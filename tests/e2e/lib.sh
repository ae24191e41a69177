# tests/e2e/lib.sh: shared part of the snapfs end-to-end tests.
#
# Each test script sources this file, mounts a fresh store in a temporary
# folder with fs_mount, runs real tools against the mount, reports TAP
# lines through ok/check, and ends with finish.  The EXIT trap unmounts and
# removes the folder whatever happens, so a failing test leaves no mount.
# fs_umount insists that the daemon exits with status 0 and that its log
# holds no sanitizer report, so a leak at teardown fails the test.
#
# Environment: SNAPFS_BUILD_ROOT (set by meson) locates the binaries.
set -u

BUILD=${SNAPFS_BUILD_ROOT:?SNAPFS_BUILD_ROOT must point at the build folder}
SNAPFS=$BUILD/fsd/snapfs
ADMIN=$BUILD/fsd/snapfs-admin
PROBE=$BUILD/tests/e2e-probe

if [ ! -w /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
	echo "1..0 # SKIP no usable /dev/fuse or fusermount3"
	exit 0
fi

# As root, the script runs again in a PID and mount namespace of its own,
# as the first process there: when it ends, even by SIGKILL (when the
# EXIT trap below cannot run), the kernel ends every daemon it started,
# also those gone to the background, and their mounts go with the
# namespace.  (unshare --kill-child: the script dies with unshare.)
if [ -z "${SNAPFS_E2E_NS:-}" ] && [ "$(id -u)" = 0 ] &&
	unshare --pid --fork --kill-child --mount --mount-proc true 2>/dev/null; then
	export SNAPFS_E2E_NS=1
	exec unshare --pid --fork --kill-child --mount --mount-proc "$0" "$@"
fi

# need_kvm: skip the whole script (TAP) unless snapvm can run the hello
# guest here, or when SNAPFS_NO_KVM asks for it.
need_kvm() {
	if [ -n "${SNAPFS_NO_KVM:-}" ] && [ "${SNAPFS_NO_KVM}" != 0 ]; then
		echo "1..0 # SKIP SNAPFS_NO_KVM is set"
		exit 0
	fi
	if ! "$BUILD/host/snapvm" call -q "$BUILD/guest/hello.elf" add "1 1" >/dev/null 2>&1; then
		echo "1..0 # SKIP no usable /dev/kvm"
		exit 0
	fi
}

T=$(mktemp -d "${TMPDIR:-/tmp}/snapfs-e2e.XXXXXX")
STORE=$T/store
MNT=$T/mnt
mkdir -p "$MNT"
DPID=
tap_n=0
tap_failed=0

e2e_cleanup() {	# a test may set E2E_UMOUNT_AFTER: a folder in $T to unmount after the daemon ends
	# Every FUSE mount under $T, deepest first: $MNT, and those of daemons a
	# test started in daemon mode, which end once unmounted.  (A meson
	# timeout ends the script with SIGTERM, and this still runs.)
	awk -v t="$T/" '$3 ~ /^fuse/ && index($2, t) == 1 { print $2 }' /proc/mounts 2>/dev/null |
		sort -r | while read -r m; do
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		done
	if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
		kill "$DPID" 2>/dev/null
		wait "$DPID" 2>/dev/null
	fi
	if [ -n "${E2E_UMOUNT_AFTER:-}" ]; then
		umount "$E2E_UMOUNT_AFTER" 2>/dev/null || umount -l "$E2E_UMOUNT_AFTER" 2>/dev/null
	fi
	rm -rf "$T"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT TERM

ok() {	# ok NAME STATUS [DIAGNOSTIC]
	tap_n=$((tap_n + 1))
	if [ "$2" = 0 ]; then
		echo "ok $tap_n - $1"
	else
		echo "not ok $tap_n - $1"
		[ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/# /'
		# and on stderr, which meson's --print-errorlogs shows in the run's output
		{ echo "not ok $tap_n - $1"; [ -n "${3:-}" ] && printf '%s\n' "$3"; } | sed 's/^/# /' >&2
		tap_failed=$((tap_failed + 1))
	fi
}

skip() {	# skip NAME REASON [DIAGNOSTIC]: a check that cannot be made here, and why
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1 # SKIP $2"
	[ -n "${3:-}" ] && printf '%s\n' "$3" | sed 's/^/# /'
	return 0
}

check() {	# check NAME COMMAND...: ok if COMMAND succeeds; its output goes to diagnostics
	name=$1
	shift
	out=$("$@" 2>&1)
	ok "$name" $? "$out"
}

check_fails() {	# check_fails NAME COMMAND...: ok if COMMAND fails
	name=$1
	shift
	out=$("$@" 2>&1)
	if [ $? -ne 0 ]; then ok "$name" 0; else ok "$name" 1 "succeeded: $out"; fi
}

expect_refused() {	# expect_refused NAME NEEDLE COMMAND...: ok if COMMAND fails (not by a
			# signal) with a message containing NEEDLE, which is shown
	name=$1 needle=$2
	shift 2
	out=$("$@" 2>&1)
	st=$?
	case $out in
	*"$needle"*)
		if [ $st -ne 0 ] && [ $st -lt 128 ]; then
			ok "$name" 0
			printf '%s\n' "$out" | sed 's/^/#   /'
		else
			ok "$name" 1 "status $st: $out"
		fi ;;
	*) ok "$name" 1 "status $st, message lacks \"$needle\": $out" ;;
	esac
}

is_mounted() {
	grep -q " $MNT fuse.snapfs " /proc/mounts
}

fs_mount() {	# fs_mount [SNAPFS OPTIONS...]: serve $STORE at $MNT in the foreground, in the background
	# The daemon gets SIGTERM, and unmounts, should this script die
	# without its EXIT trap (SIGKILL).
	setpriv --pdeathsig TERM "$SNAPFS" "$STORE" "$MNT" -f "$@" >>"$T/daemon.log" 2>&1 &
	DPID=$!
	i=0
	while ! is_mounted; do
		if ! kill -0 "$DPID" 2>/dev/null || [ $i -ge 200 ]; then
			echo "# snapfs did not mount:"
			sed 's/^/# /' "$T/daemon.log"
			DPID=
			return 1
		fi
		sleep 0.05
		i=$((i + 1))
	done
}

fs_umount() {	# unmount, wait for the daemon; ok if it exited 0 with a clean log
	fusermount3 -u "$MNT"
	wait "$DPID"
	st=$?
	DPID=
	if [ $st -ne 0 ] || grep -qE "Sanitizer|runtime error|LeakSanitizer" "$T/daemon.log"; then
		ok "daemon exits cleanly at unmount" 1 "status $st; $(tail -n 40 "$T/daemon.log")"
		return 1
	fi
	ok "daemon exits cleanly at unmount" 0
}

wait_store_free() {	# wait until no daemon holds $STORE (after umount, it may still be closing)
	i=0
	while ! flock -n "$STORE/lock" true 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.05
		i=$((i + 1))
	done
}

store_bytes() {	# bytes of page data the store holds on disk
	du -sb --apparent-size "$STORE/packs" 2>/dev/null | cut -f1
}

finish() {
	echo "1..$tap_n"
	[ "$tap_failed" = 0 ]
	exit $?
}
