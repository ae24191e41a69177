#!/usr/bin/env python3
# tests/e2e/mixops.py: a file on the mount and a reference copy on another
# filesystem take the same random mix of operations, and must read the same
# after every few of them.  The mix: writes at any offset and length (random,
# zero and repeated bytes), small appends (the held last page), truncates,
# punched holes, copy_file_range clones from another file on the mount,
# reads and reads through a shared mapping, writes through a shared writable
# mapping, fsync, and reopening with other access modes.  The file on the
# mount is written through one handle and read through another.
#
# usage: mixops.py MOUNT_DIR REF_DIR SEED OPS      (exit 0: all equal)
import ctypes
import mmap
import os
import random
import sys

mount_dir, ref_dir, seed, nops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
PUNCH_HOLE = 0x01 | 0x02  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
MAX_SIZE = 3 << 20

path_m = os.path.join(mount_dir, "mix%d" % seed)
path_r = os.path.join(ref_dir, "mix%d" % seed)
src_m = os.path.join(mount_dir, "mixsrc%d" % seed)
source = rng.randbytes(1 << 20)
with open(src_m, "wb") as f:
    f.write(source)
for p in (path_m, path_r):
    open(p, "wb").close()

fds = {}


def reopen():
    for fd in fds.values():
        os.close(fd)
    fds["m"] = os.open(path_m, rng.choice([os.O_RDWR, os.O_WRONLY]))
    fds["mr"] = os.open(path_m, os.O_RDONLY)
    fds["r"] = os.open(path_r, os.O_RDWR)


def fail(what):
    print("mixops seed %d: %s" % (seed, what), file=sys.stderr)
    sys.exit(1)


def verify(tag):
    size = os.fstat(fds["r"]).st_size
    if os.fstat(fds["mr"]).st_size != size:
        fail("%s: size %d, reference %d" % (tag, os.fstat(fds["mr"]).st_size, size))
    a = os.pread(fds["mr"], size + 10, 0)
    b = os.pread(fds["r"], size + 10, 0)
    if a != b:
        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        fail("%s: contents differ from byte %d" % (tag, first))


def punch(fd, off, n):
    if libc.fallocate(fd, PUNCH_HOLE, off, n) != 0:
        fail("fallocate: %s" % os.strerror(ctypes.get_errno()))


reopen()
for op in range(nops):
    k = rng.random()
    size = os.fstat(fds["r"]).st_size
    tag = "op %d" % op
    if k < 0.30:
        off = rng.randrange(MAX_SIZE)
        n = rng.choice([1, 100, 4096, 5000, 10240, 65536, rng.randrange(1, 300000)])
        kind = rng.random()
        data = rng.randbytes(n) if kind < 0.7 else bytes(n) if kind < 0.85 else source[:n]
        os.pwrite(fds["m"], data, off)
        os.pwrite(fds["r"], data, off)
        tag += " write %d+%d" % (off, n)
    elif k < 0.45:
        data = rng.randbytes(rng.choice([1, 100, 3000, 4096, 10240]))
        os.pwrite(fds["m"], data, size)
        os.pwrite(fds["r"], data, size)
        tag += " append %d" % len(data)
    elif k < 0.55:
        to = rng.randrange(MAX_SIZE) if rng.random() < 0.5 else rng.randrange(size + 1)
        os.ftruncate(fds["m"], to)
        os.ftruncate(fds["r"], to)
        tag += " truncate %d" % to
    elif k < 0.62:
        if size == 0:
            continue
        off, n = rng.randrange(size), rng.randrange(1, 200000)
        punch(fds["m"], off, n)
        punch(fds["r"], off, n)
        tag += " punch %d+%d" % (off, n)
    elif k < 0.70:
        src_off = rng.choice([0, 4096, 12288, 777])
        dst_off = rng.randrange(MAX_SIZE)
        if rng.random() < 0.5:
            dst_off &= ~4095
        n = rng.choice([4096, 65536, 500000, 12345])
        sfd = os.open(src_m, os.O_RDONLY)
        got = os.copy_file_range(sfd, fds["m"], n, src_off, dst_off)
        os.close(sfd)
        os.pwrite(fds["r"], source[src_off:src_off + got], dst_off)
        tag += " copy_file_range %d->%d+%d" % (src_off, dst_off, got)
    elif k < 0.78:
        if size == 0:
            continue
        m = mmap.mmap(fds["mr"], size, mmap.MAP_SHARED, mmap.PROT_READ)
        off = rng.randrange(size)
        n = min(rng.randrange(1, 100000), size - off)
        if m[off:off + n] != os.pread(fds["r"], n, off):
            fail("%s: a shared mapping reads other bytes at %d+%d" % (tag, off, n))
        m.close()
        tag += " mapped read"
    elif k < 0.83:
        if size == 0:
            continue
        fd = os.open(path_m, os.O_RDWR)
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        off = rng.randrange(size)
        n = min(rng.randrange(1, 20000), size - off)
        data = rng.randbytes(n)
        m[off:off + n] = data
        os.pwrite(fds["r"], data, off)
        if rng.random() < 0.5:
            m.flush()
        m.close()
        os.close(fd)
        tag += " mapped write %d+%d" % (off, n)
    elif k < 0.88:
        os.fsync(fds["m"])
        tag += " fsync"
    elif k < 0.93:
        reopen()
        tag += " reopen"
    else:
        off, n = rng.randrange(size + 1), rng.randrange(1, 300000)
        if os.pread(fds["mr"], n, off) != os.pread(fds["r"], n, off):
            fail("%s: read of %d+%d differs" % (tag, off, n))
        tag += " read"
    if op % 10 == 0:
        verify(tag)
reopen()
verify("at the end")
for fd in fds.values():
    os.close(fd)
