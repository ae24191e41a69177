#!/usr/bin/env python3
# tests/e2e/nsops.py: a tree on the mount and a reference tree on another
# filesystem take the same random mix of namespace operations, and must
# fail or succeed alike and hold the same tree after every few of them.
# The mix: mkdir, rmdir, create, writes, unlink, rename (also over files and
# empty folders, and RENAME_NOREPLACE and RENAME_EXCHANGE), hard links,
# symlinks (dangling ones too), chmod, truncate, and setting and removing
# user xattrs; names come from a small pool so that they collide often.
# The trees are compared by type, permission bits, link count (of files),
# size, content, symlink target, user xattrs, which names share an inode,
# and the file type readdir reports.
#
# The tree on the mount must also hold together: a folder's link count is
# 2 plus its subfolders, a file's is the number of names it has.
#
# usage: nsops.py MOUNT_DIR REF_DIR SEED OPS     (exit 0: all alike)
# With OPS 0 it only compares the trees, as after a remount.  With REF_DIR
# "-", every run with any SEED works on the same tree, MOUNT_DIR/race, with
# no reference: run several at once to race each other, outcomes ignored,
# then once with OPS 0 to check that the tree holds together.
import ctypes
import errno
import hashlib
import os
import random
import stat
import sys

mount_dir, ref_dir, seed, nops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
NAMES = ["a", "b", "c", "dir", "f"]
MODES = [0o700, 0o755, 0o741, 0o777, 0o1700]
racing = ref_dir == "-"
if racing:
    bases = [os.path.join(mount_dir, "race")]
else:
    bases = [os.path.join(d, "ns%d" % seed) for d in (mount_dir, ref_dir)]
for b in bases:
    os.makedirs(b, exist_ok=True)


def fail(what):
    print("nsops seed %d: %s" % (seed, what), file=sys.stderr)
    sys.exit(1)


def entries(base, rel=""):
    """(relative path, DirEntry, lstat result) of every entry under base."""
    with os.scandir(os.path.join(base, rel)) as it:
        found = list(it)
    for e in found:
        r = os.path.join(rel, e.name) if rel else e.name
        st = os.lstat(e.path)
        yield r, e, st
        if stat.S_ISDIR(st.st_mode):
            yield from entries(base, r)


def listing(base):
    """Every entry under base: relative path -> its description."""
    out, inodes = {}, {}
    for r, e, st in entries(base):
        kind = stat.S_IFMT(st.st_mode)
        typed = (e.is_symlink(), e.is_dir(follow_symlinks=False))
        if typed != (stat.S_ISLNK(kind), stat.S_ISDIR(kind)):
            fail("%s: readdir reports another file type than lstat" % e.path)
        d = [kind, stat.S_IMODE(st.st_mode), st.st_nlink]
        if stat.S_ISREG(kind):
            with open(e.path, "rb") as f:
                d += [st.st_size, hashlib.sha256(f.read()).hexdigest()]
        elif stat.S_ISLNK(kind):
            d += [st.st_size, os.readlink(e.path)]
        if not stat.S_ISLNK(kind):
            xs = sorted(x for x in os.listxattr(e.path) if not x.startswith("user.snapfs."))
            d += [(x, os.getxattr(e.path, x)) for x in xs]
        out[r] = d
        inodes.setdefault(st.st_ino, []).append(r)
    return out, sorted(sorted(v) for v in inodes.values())


def holds_together(tag, base, tree, groups):
    for k, d in list(tree.items()) + [("", [stat.S_IFDIR, 0, os.lstat(base).st_nlink])]:
        if stat.S_ISDIR(d[0]):
            sub = sum(1 for c, e in tree.items() if os.path.dirname(c) == k and stat.S_ISDIR(e[0]))
            if d[2] != 2 + sub:
                fail("%s: %s/%s has %d links and %d subfolders" % (tag, base, k, d[2], sub))
    for g in groups:
        if not stat.S_ISDIR(tree[g[0]][0]) and tree[g[0]][2] != len(g):
            fail("%s: %s has %d links and %d names: %r" % (tag, base, tree[g[0]][2], len(g), g))


def verify(tag):
    if racing:
        holds_together(tag, bases[0], *listing(bases[0]))
        return
    (lm, gm), (lr, gr) = listing(bases[0]), listing(bases[1])
    holds_together(tag, bases[0], lm, gm)
    # A folder's link count is checked above, on the mount only: some
    # filesystems the reference may be on (btrfs) count 1 for every folder.
    for tree in (lm, lr):
        for d in tree.values():
            if stat.S_ISDIR(d[0]):
                d[2] = None
    if lm != lr:
        diff = sorted(k for k in set(lm) | set(lr) if lm.get(k) != lr.get(k))
        k = diff[0]
        fail("%s: trees differ at %s: %r, reference %r" % (tag, k, lm.get(k), lr.get(k)))
    if gm != gr:
        fail("%s: names sharing an inode differ: %r, reference %r" % (tag, gm, gr))


def existing(want=None):
    """A random entry of the reference tree of file type want (any if None;
    "" is the top folder), or None.  Racing, any path of the name pool."""
    if racing:
        return os.path.join(*[rng.choice(NAMES[:3]) for _ in range(rng.randrange(1, 3))])
    cands = [r for r, _, st in entries(bases[1])
             if want is None or stat.S_IFMT(st.st_mode) == want]
    if want == stat.S_IFDIR:
        cands.append("")
    return rng.choice(cands) if cands else None


def anypath():
    """An existing entry, or a new name in an existing folder."""
    if rng.random() < 0.5:
        p = existing()
        if p:
            return p
    d = existing(stat.S_IFDIR)
    return os.path.join(d, rng.choice(NAMES)) if d else rng.choice(NAMES)


def source(want=None):
    """Mostly an existing entry (of file type want): for operations on one."""
    p = existing(want) if rng.random() < 0.85 else None
    return p if p else anypath()


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


outcomes = {}


def both(tag, fn):
    """Run fn on the mount's tree, then on the reference; the outcomes must match."""
    res = []
    for b in bases:
        try:
            fn(b)
            res.append(0)
        except OSError as e:
            res.append(e.errno)
    if not racing and res[0] != res[1]:
        name = lambda r: errno.errorcode.get(r, "success") if r else "success"
        again = ""
        if res[0]:
            # A failure on the mount is tried once more, to tell a
            # passing state (of the kernel's caches, say) from the tree's.
            try:
                fn(bases[0])
                again = " (success when tried again)"
            except OSError as e:
                again = " (%s when tried again)" % name(e.errno)
        fail("%s: %s on the mount%s, %s on the reference"
             % (tag, name(res[0]), again, name(res[1])))
    op = tag.split()[0] + ("" if res[0] else " ok")
    outcomes[op] = outcomes.get(op, 0) + 1


def write_file(b, rel, off, data, create):
    flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(os.path.join(b, rel), flags, 0o644)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)


for op in range(nops):
    k = rng.random()
    j = lambda b, p: os.path.join(b, p)
    if k < 0.12:
        p = anypath()
        tag = "mkdir %s" % p
        both(tag, lambda b: os.mkdir(j(b, p)))
    elif k < 0.20:
        p = source(stat.S_IFDIR)
        tag = "rmdir %s" % p
        both(tag, lambda b: os.rmdir(j(b, p)))
    elif k < 0.35:
        p, data = anypath(), rng.randbytes(rng.choice([0, 1, 4096, 5000, 12000]))
        tag = "create %s" % p
        both(tag, lambda b: write_file(b, p, 0, data, True))
    elif k < 0.43:
        p, off, data = source(), rng.randrange(10000), rng.randbytes(rng.randrange(1, 6000))
        tag = "write %s at %d" % (p, off)
        both(tag, lambda b: write_file(b, p, off, data, False))
    elif k < 0.52:
        p = source()
        tag = "unlink %s" % p
        both(tag, lambda b: os.unlink(j(b, p)))
    elif k < 0.72:
        a, c = source(), anypath()
        flags = rng.choice([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])
        tag = "rename %s %s flags %d" % (a, c, flags)
        both(tag, lambda b: renameat2(j(b, a), j(b, c), flags))
    elif k < 0.78:
        a, c = source(rng.choice([stat.S_IFREG, stat.S_IFLNK, None])), anypath()
        tag = "link %s %s" % (a, c)
        both(tag, lambda b: os.link(j(b, a), j(b, c), follow_symlinks=False))
    elif k < 0.84:
        t, p = rng.choice(NAMES + ["dir/f", "/nonexistent/x"]), anypath()
        tag = "symlink %s %s" % (t, p)
        both(tag, lambda b: os.symlink(t, j(b, p)))
    elif k < 0.89:
        p, m = source(), rng.choice(MODES)
        tag = "chmod %s %o" % (p, m)
        both(tag, lambda b: os.chmod(j(b, p), m))
    elif k < 0.94:
        p, n = source(), rng.choice([0, 1, 4095, 4096, 9000, 20000])
        tag = "truncate %s %d" % (p, n)
        both(tag, lambda b: os.truncate(j(b, p), n))
    else:
        p, x = source(), "user." + rng.choice(NAMES[:3])
        if rng.random() < 0.5:
            v = rng.randbytes(rng.randrange(0, 40))
            tag = "setxattr %s %s" % (p, x)
            both(tag, lambda b: os.setxattr(j(b, p), x, v))
        else:
            tag = "removexattr %s %s" % (p, x)
            both(tag, lambda b: os.removexattr(j(b, p), x))
    if op % 10 == 0 and not racing:
        verify("op %d %s" % (op, tag))
if not racing or not nops:
    verify("at the end")
if nops:
    print("nsops seed %d: %s" % (seed, ", ".join("%s %d" % kv for kv in sorted(outcomes.items()))))
