#!/bin/sh
# bench/bench-disk.sh: snapfs with its store on a disk, against the same
# filesystem without snapfs, in the same run.  bench-fs keeps the store on
# tmpfs to measure the filesystem alone; this is what a store on a real
# disk costs a user:
#
#   copy-in   dd of a file of random bytes into a fresh store, fsync'ed
#             (the store's pack and index reach the disk), vs dd of the
#             same bytes to a new file on DIR, fsync'ed; and the same bytes
#             copied in again under another name (every page already stored)
#   cold read dd of the copied-in file out through the mount with the page
#             cache of it and of the whole store dropped, vs dd of the file
#             on DIR with its cache dropped
#   stored    what the pack files take on DIR after both copy-ins
#
# Each run mounts a new store; the file read back is compared with its
# source (cmp) before the store is unmounted.  Min and median over the runs;
# ratios are the baseline's best time over snapfs's best, and the same of
# the medians (above 1: snapfs is faster); a disk's times spread widely
# from run to run, so read both.  Caches are dropped per file (dd
# iflag=nocache), so root is not needed; on a virtual machine the "disk"
# may itself be cached by the host.
#
# usage: bench/bench-disk.sh [-b BUILD | -x SNAPFS] [-s MIB] [-n RUNS] [DIR]
#        (builds snapfs in BUILD, default build; -x: run that snapfs binary
#        and build nothing; DIR: where the store and the baseline file go,
#        default BUILD, so the disk the checkout is on; MIB default 1024,
#        RUNS 3)
set -eu
cd "$(dirname "$0")/.."
build=build size=1024 runs=3 snapfs=
while getopts b:x:s:n: o; do
	case $o in
	b) build=$OPTARG ;;
	x) snapfs=$OPTARG ;;
	s) size=$OPTARG ;;
	n) runs=$OPTARG ;;
	*) echo "usage: $0 [-b BUILD | -x SNAPFS] [-s MIB] [-n RUNS] [DIR]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
case $size$runs in *[!0-9]*) echo "$0: -s and -n take whole numbers" >&2; exit 2 ;; esac
if [ "$size" -eq 0 ] || [ "$runs" -eq 0 ]; then
	echo "$0: -s and -n must be above 0" >&2
	exit 2
fi
if [ -z "$snapfs" ]; then
	[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
	meson compile -C "$build" fsd/snapfs >/dev/null
	snapfs=$build/fsd/snapfs
fi
case $snapfs in /*) ;; *) snapfs=$(pwd)/$snapfs ;; esac
[ -x "$snapfs" ] || { echo "$0: $snapfs: not an executable" >&2; exit 2; }
dir=${1:-$build}
[ -d "$dir" ] || { echo "$0: $dir: not a directory" >&2; exit 2; }

work=$(mktemp -d "$dir/bench-disk.XXXXXX")
work=$(cd "$work" && pwd)
mnt=$(mktemp -d /tmp/bench-disk-mnt.XXXXXX)
# The source lives in memory where there is room, so reading it costs the
# same in every copy and no disk time.
src_dir=/dev/shm
[ -d "$src_dir" ] && [ -w "$src_dir" ] || src_dir=$work
src=$(mktemp "$src_dir/bench-disk-src.XXXXXX")
cleanup() {
	mountpoint -q "$mnt" && fusermount3 -u "$mnt"
	rmdir "$mnt" 2>/dev/null || true
	rm -rf "$work" "$src"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

head -c "$((size * 1048576))" /dev/urandom >"$src"

# Seconds the command takes.
timed() {
	t0=$(date +%s.%N)
	"$@"
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
copy() { dd if="$1" of="$2" bs=1M conv=fsync status=none; }
drop() { for f in "$@"; do dd if="$f" iflag=nocache count=0 status=none; done; }
read_out() { dd if="$1" of=/dev/null bs=1M status=none; }
# Seconds commands $2 and $3 take, in t1 and t2: in run $1, the first one
# first if the run is odd, else the second, so that neither always finds
# the disk busy with the other's writeback.
turns() {
	if [ $(($1 % 2)) = 1 ]; then
		t1=$(timed "$2")
		t2=$(timed "$3")
	else
		t2=$(timed "$3")
		t1=$(timed "$2")
	fi
}
write_plain() { copy "$src" "$work/plain"; }
write_new() { copy "$src" "$mnt/a"; }
read_plain() { read_out "$work/plain"; }
read_cold() { read_out "$mnt/a"; }
# min and median of the numbers on stdin
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%s %s\n", v[1], v[int((NR + 1) / 2)] }'; }

echo "bench-disk: $size MiB, $runs runs, store and baseline in $work ($(df --output=fstype "$work" | tail -n 1))"
: >"$work/times"
for r in $(seq "$runs"); do
	mkdir "$work/store"
	"$snapfs" "$work/store" "$mnt"
	turns "$r" write_plain write_new
	plain_w=$t1 new_w=$t2
	again_w=$(timed copy "$src" "$mnt/b")
	sync -f "$work/store"
	drop "$work/plain" "$mnt/a"
	find "$work/store" -type f | while read -r f; do drop "$f"; done
	turns "$r" read_plain read_cold
	plain_r=$t1 cold_r=$t2
	cmp "$src" "$mnt/a"
	stored=$(du -sk "$work/store/packs" | cut -f1)
	echo "$plain_w $new_w $again_w $plain_r $cold_r $stored" >>"$work/times"
	printf '  run %d: write %s s, copy-in %s s, again %s s; read %s s, cold read %s s\n' \
		"$r" "$plain_w" "$new_w" "$again_w" "$plain_r" "$cold_r"
	fusermount3 -u "$mnt"
	rm -rf "$work/store" "$work/plain"
done

col() { cut -d' ' -f"$1" "$work/times" | stats; }
# shellcheck disable=SC2046 # each gives two numbers, split on purpose
set -- $(col 1) $(col 2) $(col 3) $(col 4) $(col 5)
line() { # what min median [baseline-min baseline-median]
	awk -v w="$1" -v mn="$2" -v md="$3" -v b="${4:-}" -v bm="${5:-}" -v mib="$size" 'BEGIN {
		printf "%-38s min %7.3f s %6.0f MiB/s  median %7.3f s", w, mn, mib / mn, md
		if (b != "") printf "  ratio %.2f (medians %.2f)", b / mn, bm / md
		printf "\n" }'
}
line "write to a new file (fsync)" "$1" "$2"
line "snapfs copy-in, new pages (fsync)" "$3" "$4" "$1" "$2"
line "snapfs copy-in, pages stored (fsync)" "$5" "$6" "$1" "$2"
line "cold read of the file" "$7" "$8"
line "snapfs cold read (store cache dropped)" "$9" "${10}" "$7" "$8"
stored=$(cut -d' ' -f6 "$work/times" | sort -n | tail -n 1)	# the run that stored most
awk -v k="$stored" -v mib="$size" 'BEGIN {
	printf "stored after both copy-ins: %.0f MiB in packs for %d MiB written twice\n", k / 1024, mib }'
