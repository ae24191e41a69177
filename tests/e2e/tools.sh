#!/bin/sh
# tests/e2e/tools.sh: ordinary tools on a snapfs mount, every result
# checked byte for byte: cp -a in and out, rsync -a and tar round trips,
# diff -r, cmp, sha256sum, find, du, df, stat, mv, rm -rf, ln, ln -s,
# getfattr/setfattr, setfacl/getfacl with cp -a, tar --acls and rsync -A,
# truncate, fallocate --punch-hole, cp --sparse=always,
# SEEK_DATA/SEEK_HOLE, mmap, random writes, parallel readers and writers,
# a random mix of operations against reference copies (mixops.py), one of
# namespace operations against reference trees (nsops.py), and a file
# deleted while open and mapped.
. "$(dirname "$0")/lib.sh"

# A source tree with the shapes that matter: sizes around page edges,
# sparse files, empty files, symlinks, hard links, odd names, modes, times.
SRC=$T/src
mkdir -p "$SRC/d1/d2/d3" "$SRC/empty-dir" "$SRC/with space"
for n in 0 1 4095 4096 4097 8191 65536 1000000 3000001; do
	head -c $n /dev/urandom >"$SRC/d1/f$n"
done
head -c 200000 /dev/urandom >"$SRC/d1/d2/d3/deep"
: >"$SRC/empty"
echo "text file" >"$SRC/with space/a b.txt"
truncate -s 10M "$SRC/sparse"
printf 'middle' | dd of="$SRC/sparse" bs=1 seek=5000000 conv=notrunc 2>/dev/null
ln -s d1/f4096 "$SRC/link-rel"
ln -s /nonexistent/target "$SRC/link-dangling"
ln "$SRC/d1/f65536" "$SRC/hardlink"
chmod 0640 "$SRC/d1/f1"
chmod 0755 "$SRC/d1/f4097"
touch -d "2001-02-03 04:05:06" "$SRC/d1/f0"
setfattr -n user.color -v blue "$SRC/d1/f1"

fs_mount || exit 1
M=$MNT

cp -a "$SRC" "$M/cp"
ok "cp -a into the mount" $?
check "diff -r after cp -a in" diff -r --no-dereference "$SRC" "$M/cp"
check "cmp of a 3 MB file" cmp "$SRC/d1/f3000001" "$M/cp/d1/f3000001"
(cd "$SRC" && find . -type f -exec sha256sum {} + | sort -k2) >"$T/sums"
check "sha256sum of every file" sh -c 'cd "$1" && sha256sum --quiet -c "$2"' sh "$M/cp" "$T/sums"
check "find lists the same tree" sh -c '(cd "$1" && find . | sort) >"$3/f1"; (cd "$2" && find . | sort) >"$3/f2"; cmp "$3/f1" "$3/f2"' sh "$SRC" "$M/cp" "$T"
# (Directory sizes are each filesystem's own business: not compared.)
check "stat: modes, sizes, mtimes and link counts kept" sh -c '(cd "$1" && find . -type f -exec stat -c "%n %a %s %Y %h" {} + && find . -type d -exec stat -c "%n %a %Y %h" {} +) | sort >"$3/s1"; (cd "$2" && find . -type f -exec stat -c "%n %a %s %Y %h" {} + && find . -type d -exec stat -c "%n %a %Y %h" {} +) | sort >"$3/s2"; diff "$3/s1" "$3/s2"' sh "$SRC" "$M/cp" "$T"
check "symlink targets kept" sh -c '[ "$(readlink "$1/link-rel")" = d1/f4096 ] && [ "$(readlink "$1/link-dangling")" = /nonexistent/target ] && cmp "$1/link-rel" "$1/d1/f4096"' sh "$M/cp"
check "hard link kept as one inode" sh -c '[ "$(stat -c %i "$1/hardlink")" = "$(stat -c %i "$1/d1/f65536")" ] && [ "$(stat -c %h "$1/hardlink")" = 2 ]' sh "$M/cp"
check "user xattr copied by cp -a" sh -c '[ "$(getfattr --only-values -n user.color "$1/d1/f1")" = blue ]' sh "$M/cp"

cp -a "$M/cp" "$T/out"
ok "cp -a out of the mount" $?
check "diff -r after cp -a out" diff -r --no-dereference "$SRC" "$T/out"

rsync -a "$SRC/" "$M/rs/"
ok "rsync -a into the mount" $?
rsync -a "$M/rs/" "$T/rs-back/"
ok "rsync -a out of the mount" $?
check "rsync round trip is identical" diff -r --no-dereference "$SRC" "$T/rs-back"
check "rsync again finds nothing to do" sh -c '[ -z "$(rsync -ai "$1/" "$2/")" ]' sh "$SRC" "$M/rs"

(cd "$SRC" && tar cf - .) | (mkdir "$M/tar" && cd "$M/tar" && tar xf -)
ok "tar c | tar x into the mount" $?
(cd "$M/tar" && tar cf - .) | (mkdir "$T/tar-back" && cd "$T/tar-back" && tar xf -)
ok "tar c | tar x out of the mount" $?
check "tar round trip is identical" diff -r --no-dereference "$SRC" "$T/tar-back"

# du counts stored pages only; holes are free.
check "du of a 10 MB sparse file is one page" sh -c '[ "$(du -k "$1/cp/sparse" | cut -f1)" = 4 ]' sh "$M"
check "st_blocks of a 1000000-byte file is 245 pages" sh -c '[ "$(stat -c %b "$1/cp/d1/f1000000")" = $((245 * 8)) ]' sh "$M"
check "st_blksize is 1 MiB, the largest write the mount takes" sh -c '[ "$(stat -c %o "$1/cp/d1/f1000000")" = 1048576 ]' sh "$M"
check "df shows a snapfs filesystem with a size" sh -c 'df -k "$1" | awk "NR==2 { exit !(\$2 > 0) }"' sh "$M"

# Namespace changes.
check "mv renames a file" sh -c 'mv "$1/cp/d1/f4096" "$1/cp/d1/moved" && cmp "$1/cp/d1/moved" "$2/d1/f4096" && [ ! -e "$1/cp/d1/f4096" ]' sh "$M" "$SRC"
check "mv moves a directory" sh -c 'mv "$1/cp/d1/d2" "$1/cp/d2moved" && cmp "$1/cp/d2moved/d3/deep" "$2/d1/d2/d3/deep"' sh "$M" "$SRC"
check "mv over an existing file replaces it" sh -c 'mv "$1/cp/d1/f1" "$1/cp/d1/f0" && cmp "$1/cp/d1/f0" "$2/d1/f1"' sh "$M" "$SRC"
check "ln makes a hard link" sh -c 'ln "$1/cp/d1/f8191" "$1/hl" && [ "$(stat -c %h "$1/hl")" = 2 ] && cmp "$1/hl" "$2/d1/f8191"' sh "$M" "$SRC"
check "ln -s makes a symlink" sh -c 'ln -s cp/d1/f8191 "$1/sl" && cmp "$1/sl" "$2/d1/f8191"' sh "$M" "$SRC"
check "rm of one link keeps the other" sh -c 'rm "$1/cp/d1/f8191" && cmp "$1/hl" "$2/d1/f8191"' sh "$M" "$SRC"
check "chmod and chown" sh -c 'chmod 0600 "$1/hl" && chown 1234:5678 "$1/hl" && [ "$(stat -c "%a %u %g" "$1/hl")" = "600 1234 5678" ]' sh "$M"
check "touch -d sets mtime" sh -c 'touch -d "2010-01-01 00:00:00" "$1/hl" && [ "$(stat -c %Y "$1/hl")" = "$(date -d "2010-01-01 00:00:00" +%s)" ]' sh "$M"
check_fails "rmdir of a non-empty directory fails" rmdir "$M/cp/d2moved"
check "rm -rf removes a tree" sh -c 'rm -rf "$1/tar" && [ ! -e "$1/tar" ]' sh "$M"

# Extended attributes.
check "setfattr/getfattr user xattr" sh -c 'setfattr -n user.k -v v1 "$1/hl" && [ "$(getfattr --only-values -n user.k "$1/hl")" = v1 ]' sh "$M"
check "getfattr -d lists user xattrs" sh -c 'getfattr -d "$1/hl" | grep -q "user.k=\"v1\""' sh "$M"
check "setfattr -x removes it" sh -c 'setfattr -x user.k "$1/hl" && ! getfattr -n user.k "$1/hl" 2>/dev/null' sh "$M"
check_fails "user.snapfs.pages is read-only" setfattr -n user.snapfs.pages -v 7 "$M/hl"
check "user.snapfs.pages counts stored pages" sh -c '[ "$(getfattr --only-values -n user.snapfs.pages "$1/cp/d1/f1000000")" = 245 ]' sh "$M"
check "user.snapfs.digest equal for equal content, different otherwise" sh -c '
	a=$(getfattr --only-values -n user.snapfs.digest "$1/cp/d1/f3000001")
	b=$(getfattr --only-values -n user.snapfs.digest "$1/rs/d1/f3000001")
	c=$(getfattr --only-values -n user.snapfs.digest "$1/rs/d1/f1000000")
	[ ${#a} = 64 ] && [ "$a" = "$b" ] && [ "$a" != "$c" ]' sh "$M"
check "user.snapfs.shared_pages sees the copies" sh -c '[ "$(getfattr --only-values -n user.snapfs.shared_pages "$1/cp/d1/f1000000")" = 245 ]' sh "$M"

# POSIX ACLs, through the acl tools and the tools that copy them.
A=$T/acl
mkdir -p "$A/shared/sub"
echo one >"$A/shared/f"
setfacl -m u:65534:rw,g:65534:r "$A/shared/f" &&
	setfacl -d -m u:65534:rwx "$A/shared" &&
	setfacl -m u:65534:rx "$A/shared/sub"
ok "setfacl on the source tree" $?
# (Each file's ACLs in name order: getfacl -R follows the directory order.)
acls_of() { (cd "$1" && find . -print0 | sort -z | xargs -0 getfacl -n); }
acls_of "$A" >"$T/acl.want"
acl_same() { acls_of "$1" | diff "$T/acl.want" -; }
cp -a "$A" "$M/acl-cp"
ok "cp -a of files with ACLs into the mount" $?
check "cp -a keeps access and default ACLs" acl_same "$M/acl-cp"
check "ls -l marks a file with an ACL" sh -c '[ "$(ls -l "$1" | cut -c1-11)" = "-rw-rw-r--+" ]' sh "$M/acl-cp/shared/f"
(cd "$A" && tar --acls -cf - .) | (mkdir "$M/acl-tar" && cd "$M/acl-tar" && tar --acls -xf -)
ok "tar --acls into the mount" $?
check "tar --acls keeps them" acl_same "$M/acl-tar"
rsync -aA "$A/" "$M/acl-rs/"
ok "rsync -aA into the mount" $?
check "rsync -A keeps them" acl_same "$M/acl-rs"
cp -a "$M/acl-cp" "$T/acl-out"
ok "cp -a of files with ACLs out of the mount" $?
check "and out again unchanged" acl_same "$T/acl-out"
check "a new file takes its folder's default ACL" sh -c 'touch "$1/new" && getfacl -c -n "$1/new" | grep -qx "user:65534:rwx.*"' sh "$M/acl-cp/shared"
check "chmod moves the mask" sh -c 'chmod 600 "$1" && getfacl -c -n "$1" | grep -qx "mask::---"' sh "$M/acl-cp/shared/f"
check "setfacl -b leaves only the bits" sh -c 'setfacl -b "$1" && [ "$(ls -l "$1" | cut -c1-11)" = "-rw------- " ] && [ -z "$(getfattr -m - -d "$1" 2>/dev/null)" ]' sh "$M/acl-cp/shared/f"

# Sizes, holes, sparse copies.
head -c 1000000 /dev/urandom >"$T/r1"
cp "$T/r1" "$M/t1"
truncate -s 300000 "$M/t1"
truncate -s 300000 "$T/r1"
check "truncate shrinks" cmp "$M/t1" "$T/r1"
truncate -s 900000 "$M/t1"
truncate -s 900000 "$T/r1"
check "truncate grows with zeros" cmp "$M/t1" "$T/r1"
# Opening with O_TRUNC empties the file: a shell redirection, and cp
# over a longer file, leave nothing of the old content behind.
printf 'short' >"$M/t1"
check "> over a longer file truncates it" sh -c '[ "$(cat "$1")" = short ] && [ "$(stat -c %s "$1")" = 5 ]' sh "$M/t1"
head -c 5000 /dev/urandom >"$T/r3"
cp "$T/r1" "$M/t3"
cp "$T/r3" "$M/t3"
check "cp over a longer file leaves only the new bytes" cmp "$M/t3" "$T/r3"
head -c 1048576 /dev/urandom >"$T/r2"
cp "$T/r2" "$M/p"
fallocate --punch-hole --offset 4096 --length 12288 "$M/p"
fallocate --punch-hole --offset 4096 --length 12288 "$T/r2"
check "fallocate --punch-hole zeroes the range" cmp "$M/p" "$T/r2"
check "punched pages are holes (st_blocks, SEEK_HOLE)" sh -c '[ "$(stat -c %b "$1/p")" = $(((256 - 3) * 8)) ] && [ "$(stat -c %s "$1/p")" = 1048576 ]' sh "$M"
fallocate --punch-hole --offset 10 --length 100 "$M/p"
fallocate --punch-hole --offset 10 --length 100 "$T/r2"
check "punching part of a page zeroes just those bytes" cmp "$M/p" "$T/r2"
cp --sparse=always "$SRC/sparse" "$M/sp"
check "cp --sparse=always in: same bytes, holes kept" sh -c 'cmp "$1/sp" "$2/sparse" && [ "$(du -k "$1/sp" | cut -f1)" -le 8 ]' sh "$M" "$SRC"
cp --sparse=always "$M/sp" "$T/sp-out"
check "cp --sparse=always out: same bytes" cmp "$T/sp-out" "$SRC/sparse"
check "SEEK_DATA/SEEK_HOLE: data found at the one stored page" python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
d = os.lseek(fd, 0, os.SEEK_DATA)
h = os.lseek(fd, d, os.SEEK_HOLE)
assert (d, h) == (4997120, 5001216), (d, h)
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
try:
    os.lseek(fd, h, os.SEEK_DATA)
    raise AssertionError("SEEK_DATA after the last data page found data")
except OSError as e:
    assert e.errno == 6, e  # ENXIO
' "$M/sp"

# Programs: mmap, random writes, concurrency, unlink while open.
check "mmap shared and private reads equal the file" "$PROBE" mmap "$M/cp/d1/f3000001" "$SRC/d1/f3000001"
check "mmap of a sparse file" "$PROBE" mmap "$M/sp" "$SRC/sparse"
check "random writes at any offset match a reference file" "$PROBE" randwrite "$M/rw" "$T/rw-ref" 42 400
check "parallel readers and writers never see torn pages" "$PROBE" parallel "$M/par" 3 3 40
# A random mix of writes, appends, truncates, holes, clones and mapped
# reads and writes, three files at once, each against a reference copy.
mkdir "$M/mix" "$T/mixref"
check "mixed operations, three files at once, always match a reference copy" sh -c '
	pids=""
	for s in 1 2 3; do python3 "$1" "$2" "$3" $s 500 & pids="$pids $!"; done
	st=0; for p in $pids; do wait $p || st=1; done; exit $st' sh "$(dirname "$0")/mixops.py" "$M/mix" "$T/mixref"
# A random mix of namespace operations (mkdir, rmdir, create, unlink,
# rename with its flags, links, symlinks, chmod, truncate, xattrs), three
# trees at once, each against a reference tree: same outcomes, same trees.
mkdir "$M/ns" "$T/nsref"
check "namespace operations, three trees at once, always match a reference tree" sh -c '
	pids=""
	for s in 1 2 3; do python3 "$1" "$2" "$3" $s 300 & pids="$pids $!"; done
	st=0; for p in $pids; do wait $p || st=1; done; exit $st' sh "$(dirname "$0")/nsops.py" "$M/ns" "$T/nsref"
# The same operations, four programs racing in one tree: it must hold
# together (link counts against names and subfolders).
check "four programs racing namespace operations in one tree leave it consistent" sh -c '
	pids=""
	for s in 1 2 3 4; do python3 "$1" "$2" - $s 1000 >/dev/null & pids="$pids $!"; done
	st=0; for p in $pids; do wait $p || st=1; done
	[ $st = 0 ] && python3 "$1" "$2" - 0 0' sh "$(dirname "$0")/nsops.py" "$M"
cp "$T/r1" "$M/doomed"
check "a file unlinked while open and mapped stays readable" "$PROBE" unlinked "$M/doomed" "$T/r1"
check "write-only writers bypass the page cache and leave no stale pages" "$PROBE" cache "$M"
check "copy_file_range within the mount" sh -c '"$1" cfr "$2/cp/d1/f3000001" "$2/clone" && cmp "$2/clone" "$3/d1/f3000001"' sh "$PROBE" "$M" "$SRC"

stat -c %i "$M/hl" >"$T/ino"
fs_umount
# Remount with reads copied instead of spliced, and every request served
# in one thread (-s): the same bytes come back.
fs_mount -o nosplice -s || exit 1
check "nosplice: a file read through the copying path is identical" cmp "$M/cp/d1/f3000001" "$SRC/d1/f3000001"
check "nosplice: a sparse file read through the copying path is identical" cmp "$M/sp" "$SRC/sparse"
check "after a remount the tree is still identical" diff -r "$SRC/d1/d2/d3" "$M/cp/d2moved/d3"
check "inode numbers are stable across mounts" sh -c '[ "$(stat -c %i "$1/hl")" = "$2" ]' sh "$M" "$(cat "$T/ino")"
check "after a remount the mixed-operation files still match their references" \
	sh -c 'for s in 1 2 3; do cmp "$1/mix$s" "$2/mix$s" || exit 1; done' sh "$M/mix" "$T/mixref"
check "after a remount the namespace-operation trees still match their references" \
	sh -c 'for s in 1 2 3; do python3 "$1" "$2" "$3" $s 0 || exit 1; done' sh "$(dirname "$0")/nsops.py" "$M/ns" "$T/nsref"
check "after a remount the raced tree still holds together" python3 "$(dirname "$0")/nsops.py" "$M" - 0 0
# One thread serves programs that each wait on it: none of them may wait
# for another's request.
check "in one thread: mixed, namespace and racing operations side by side" sh -c '
	pids=""
	for s in 4 5; do
		python3 "$1" "$3/mix" "$4/mixref" $s 300 & pids="$pids $!"
		python3 "$2" "$3/ns" "$4/nsref" $s 200 >/dev/null & pids="$pids $!"
		python3 "$2" "$3" - $s 500 >/dev/null & pids="$pids $!"
	done
	st=0; for p in $pids; do wait $p || st=1; done
	[ $st = 0 ] && python3 "$2" "$3" - 0 0' sh "$(dirname "$0")/mixops.py" "$(dirname "$0")/nsops.py" "$M" "$T"
fs_umount
check "fsck is clean" "$ADMIN" fsck "$STORE"
finish
