#!/bin/sh
# tests/e2e/snapshot.sh: snapshots in a snapfs mount, end to end, with the
# snapvm command and ordinary tools.
#
# A hello guest is snapshotted into the mount and called from there (same
# answers as the live sandbox), sealed, derived for three generations
# (each storing only the pages that changed, by the store's own figures),
# copied out with cp, rsync and tar (still loadable from plain disk),
# copied back in (deduplicated again), derived from the mount onto plain
# disk and back (copied, not cloned, holes kept), cut short by a file size
# limit (nothing left behind), and broken in each way a snapshot can be
# broken (each refused with a message naming the file).
# Needs /dev/kvm and /dev/fuse: suite kvm.
. "$(dirname "$0")/lib.sh"

SNAPVM=$BUILD/host/snapvm
HELLO=$BUILD/guest/hello.elf

need_kvm

stat_of() {	# stat_of FIELD: one figure of the store's committed state
	# (read with sed: a Python start costs seconds in the emulated VM)
	"$ADMIN" stats --json "$STORE" | sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p"
}
xattr() {	# xattr NAME FILE
	getfattr --only-values -n "$1" "$2" 2>/dev/null
}
expect_out() {	# expect_out NAME WANT COMMAND...: ok if COMMAND prints exactly WANT
	name=$1 want=$2
	shift 2
	got=$("$@" 2>&1)
	if [ "$got" = "$want" ]; then ok "$name" 0; else ok "$name" 1 "want: $want
got: $got"; fi
}

fs_mount || exit 1
M=$MNT

# --- snapshot and call from the mount ----------------------------------------
out=$("$SNAPVM" snapshot -q "$HELLO" "$M/h1" --call counter --call counter --call add "2 3" 2>&1)
ok "snapvm snapshot writes into the mount" $? "$out"
expect_out "live sandbox answered while being prepared" "counter: 1
counter: 2
add: 5" printf '%s\n' "$(printf '%s\n' "$out" | grep -v '^snapvm:')"
expect_out "call from the mount continues the live state" 3 "$SNAPVM" call -q "$M/h1" counter
expect_out "call from the mount gives the live sandbox's result" \
	"$("$SNAPVM" call -q "$HELLO" add "40 2")" "$SNAPVM" call -q "$M/h1" add "40 2"
expect_out "8 sandboxes from one snapshot each start from it" "$(for i in 0 1 2 3 4 5 6 7; do echo "sandbox $i: 3"; done)" \
	"$SNAPVM" call -q -N 8 "$M/h1" counter
check "the snapshot verifies" "$SNAPVM" verify "$M/h1"
expect_out "the snapshot is sealed" 1 xattr user.snapfs.sealed "$M/h1"
check_fails "a sealed region file cannot be written" sh -c 'echo x >>"$1/heap.mem"' sh "$M/h1"
check_fails "a sealed snapshot cannot lose a file" rm -f "$M/h1/cpu"
check "a sealed snapshot's files are unchanged by all this" "$SNAPVM" verify "$M/h1"
heap_pages=$(xattr user.snapfs.pages "$M/h1/heap.mem")
ok "an all-zero heap stores no page ($heap_pages)" $([ "$heap_pages" = 0 ] && echo 0 || echo 1)
check_fails "snapshots are never overwritten" "$SNAPVM" snapshot -q "$HELLO" "$M/h1"
ok "no half-written snapshot is left beside it" $(ls -A "$M" | grep -q partial && echo 1 || echo 0)

# --- derived snapshots: three generations ------------------------------------
u0=$(stat_of unique_pages)
"$SNAPVM" snapshot -q "$M/h1" "$M/h2" --call counter >/dev/null 2>&1
ok "derived snapshot of h1" $?
u1=$(stat_of unique_pages)
"$SNAPVM" snapshot -q "$M/h2" "$M/h3" --call counter >/dev/null 2>&1
ok "derived snapshot of h2" $?
u2=$(stat_of unique_pages)
expect_out "generation 3 carries the state of all calls" 5 "$SNAPVM" call -q "$M/h3" counter
expect_out "generation 3 records its parent" "parent h2" grep '^parent' "$M/h3/manifest"
for f in text.mem data.mem heap.mem; do
	expect_out "$f of generation 3 is the same content as generation 1" \
		"$(xattr user.snapfs.digest "$M/h1/$f")" xattr user.snapfs.digest "$M/h3/$f"
done
mem=$(awk '$1 == "region" { s += $4 } END { print s }' "$M/h3/manifest")
d1=$((u1 - u0)) d2=$((u2 - u1))
# a derived snapshot changes a few pages: the counter's page, stack, call
# buffer, cpu and manifest; guest memory is tens of MiB
ok "each derived generation stores only changed pages ($d1 and $d2 new pages; guest memory $((mem / 4096)) pages)" \
	$([ $d1 -gt 0 ] && [ $d1 -le 16 ] && [ $d2 -gt 0 ] && [ $d2 -le 16 ] && echo 0 || echo 1)

# --- copied out to plain disk and back ----------------------------------------
mkdir -p "$T/out"
check "cp -a out of the mount" cp -a "$M/h3" "$T/out/cp"
check "rsync -a out of the mount" rsync -a "$M/h3/" "$T/out/rsync/"
check "tar out of the mount" sh -c 'mkdir "$2/tar" && tar -C "$1" -cf - . | tar -C "$2/tar" -xf -' sh "$M/h3" "$T/out"
for how in cp rsync tar; do
	check "the $how copy verifies on plain disk" "$SNAPVM" verify "$T/out/$how"
	expect_out "the $how copy loads from plain disk" 5 "$SNAPVM" call -q "$T/out/$how" counter
done
u3=$(stat_of unique_pages)
check "copied back into the mount" cp -a "$T/out/cp" "$M/back"
expect_out "the copy brought back loads" 5 "$SNAPVM" call -q "$M/back" counter
ok "copied back in, it deduplicates again ($u3 -> $(stat_of unique_pages) unique pages)" \
	$([ "$(stat_of unique_pages)" = "$u3" ] && echo 0 || echo 1)

# --- derived across filesystems ----------------------------------------------------
# copy_file_range cannot clone between the mount and plain disk: snapvm
# copies the region files instead, leaving their zero pages as holes.
out=$("$SNAPVM" snapshot -q "$M/h1" "$T/out/derived" --call counter 2>&1)
ok "a snapshot in the mount derives one on plain disk" $? "$out"
check "... which verifies" "$SNAPVM" verify "$T/out/derived"
expect_out "... and carries its parent's state and its own call" 4 "$SNAPVM" call -q "$T/out/derived" counter
ok "... with the zero pages of its heap left as holes ($(stat -c '%b blocks of %B bytes, size %s' "$T/out/derived/heap.mem"))" \
	$([ $(($(stat -c '%b * %B' "$T/out/derived/heap.mem"))) -lt "$(stat -c %s "$T/out/derived/heap.mem")" ] && echo 0 || echo 1)
u4=$(stat_of unique_pages)
out=$("$SNAPVM" snapshot -q "$T/out/derived" "$M/from-disk" --call counter 2>&1)
ok "a snapshot on plain disk derives one in the mount" $? "$out"
expect_out "... which carries the state of both calls" 5 "$SNAPVM" call -q "$M/from-disk" counter
u5=$(stat_of unique_pages)
ok "... and stores only the pages the store lacked ($((u5 - u4)) new pages)" \
	$([ $((u5 - u4)) -gt 0 ] && [ $((u5 - u4)) -le 16 ] && echo 0 || echo 1)

# --- a snapshot that cannot be written whole ---------------------------------------
# A file size limit stops the writes as a full disk would (EFBIG, with
# SIGXFSZ ignored): the error names the file, and nothing is left behind.
before=$(ls -A "$T/out")
out=$(sh -c 'trap "" XFSZ; ulimit -f 64; exec "$@"' sh "$SNAPVM" snapshot -q "$HELLO" "$T/out/toobig" 2>&1)
st=$?
ok "a snapshot that cannot be written whole fails, naming the file" \
	$([ $st -ne 0 ] && [ $st -lt 128 ] && echo "$out" | grep -q "^snapvm: $T/out/toobig/[a-z.]*: .*File too large$" &&
		echo 0 || echo 1) "status $st: $out"
ok "... and leaves nothing behind" $([ "$(ls -A "$T/out")" = "$before" ] && echo 0 || echo 1) "$(ls -A "$T/out")"

# --- malformed snapshots --------------------------------------------------------
bad() {	# bad NAME: a fresh writable copy of h1 on plain disk
	rm -rf "${T:?}/bad/$1"
	mkdir -p "$T/bad"
	cp -a "$M/h1" "$T/bad/$1" && chmod -R u+w "$T/bad/$1"
	echo "$T/bad/$1"
}
d=$(bad manifest); sed -i 's/^entry .*/entry nowhere/' "$d/manifest"
expect_refused "broken manifest refused, naming file and line" "manifest:5:" "$SNAPVM" call -q "$d" counter
d=$(bad cpu); sed -i 's/^rip .*/rip 0xzz/' "$d/cpu"
expect_refused "broken cpu file refused, naming the file" "/cpu:" "$SNAPVM" call -q "$d" counter
d=$(bad missing); rm "$d/data.mem"
expect_refused "missing region file refused, naming it" "data.mem: open: No such file" "$SNAPVM" call -q "$d" counter
d=$(bad size); truncate -s 8192 "$d/text.mem"
expect_refused "region file of the wrong size refused" "text.mem: 8192 bytes, the manifest says 4096" "$SNAPVM" call -q "$d" counter
d=$(bad digest); printf 'X' | dd of="$d/data.mem" bs=1 seek=100 conv=notrunc 2>/dev/null
expect_refused "verify names a region whose digest differs" "data.mem: FAILED: " "$SNAPVM" verify "$d"
d=$(bad scratch); printf 'X' | dd of="$d/scratch.img" bs=1 seek=100 conv=notrunc 2>/dev/null
expect_refused "a scratch image whose digest differs is refused at load" "scratch.img: digest mismatch" "$SNAPVM" call -q "$d" counter
expect_refused "a directory that is not a snapshot is refused" "manifest" "$SNAPVM" call -q "$T/out" counter

check "the store's snapshots all still verify" sh -c 'for s in h1 h2 h3 back; do "$1" verify "$2/$s" >/dev/null || exit 1; done' sh "$SNAPVM" "$M"
fs_umount
wait_store_free
check "fsck of the store is clean" "$ADMIN" fsck "$STORE"
finish
