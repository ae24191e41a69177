/*
 * fsd/fs_file.c: the FUSE request handlers for open files (libfuse3
 * low-level API): opening, creating, closing and syncing them, reading,
 * writing, fallocate, lseek and copy_file_range.
 *
 *  - caching: sealed files always keep their page cache; other files
 *    keep it unless they are open for writing or changed since the cache
 *    was last kept.  Every change comes through this mount's kernel, which
 *    updates or drops the cached pages it affects itself (writes go
 *    through the page cache; truncate, punch hole and copy_file_range
 *    drop the range), so no change needs a
 *    fuse_lowlevel_notify_inval_inode().  The one change that does not
 *    come through the kernel, a full-disk recovery dropping what was not
 *    committed, shows as the committed size and mtime again, and the
 *    kernel drops the cached pages when it sees that at the next
 *    attribute refresh (auto_inval_data, which libfuse asks for);
 *  - reads: splice from the pack files (fd buffers, zeros from memory),
 *    or copy through store_read when splicing is off or unavailable;
 *  - commits: a file written through a handle is committed when that
 *    handle is closed (flush), and synced to disk by fsync.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

#define FS_EXT_MAX (FS_READ_MAX / STORE_PAGE_SIZE + 2)

/* Zeros for holes in spliced replies. */
static const char fs_zeros[FS_READ_MAX];

/* ---- open file handles -------------------------------------------------- */

/*
 * What fi->fh of an open file points to.  fi itself is a per-request copy,
 * so state that outlives a request lives here.
 */
struct fs_handle {
	bool writer;		/* opened for writing */
	bool dirty;		/* written through: flush commits */
	bool direct;		/* opened with direct_io: writes bypass the page cache */
	uint64_t ino;
	struct fs_handle *prev, *next;	/* in fs->handles */
};

static void fs_handle_link(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles;
	if (h->next)
		h->next->prev = h;
	fs->handles = h;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void fs_handle_unlink(struct fs *fs, struct fs_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

static struct fs_handle *fs_handle(const struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

void fs_handle_dirty(const struct fuse_file_info *fi)
{
	if (fi && fi->fh)
		__atomic_store_n(&fs_handle(fi)->dirty, true, __ATOMIC_RELAXED);
}

/* ---- opening and closing ------------------------------------------------ */

static bool fs_open_writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/* Keep seals out (see fs->seal_lock) until fs_seal_let_in. */
static void fs_seal_keep_out(struct fs *fs)
{
	if (pthread_rwlock_tryrdlock(&fs->seal_lock)) {
		fs_loop_blocking();	/* a seal runs */
		pthread_rwlock_rdlock(&fs->seal_lock);
	}
}

static void fs_seal_let_in(struct fs *fs)
{
	pthread_rwlock_unlock(&fs->seal_lock);
}

/* Shared by open and create, once the store counts the open (which this
 * releases on failure): count the handle h (a new one, which this frees
 * on failure) and choose caching.  spare: as for fs_inode_open.
 * seals_out: the caller keeps seals out already. */
static int fs_open_file(struct fs *fs, const struct store_attr *a, struct fuse_file_info *fi,
			struct fs_handle *h, struct fs_inode **spare, bool seals_out)
{
	bool writer = fs_open_writes(fi->flags);
	int r;
	h->writer = writer;
	/* A writer counts before a seal may look, and finds the file
	 * sealed if a seal came first. */
	int writers;
	if (writer) {
		struct store_attr now;
		if (!seals_out)
			fs_seal_keep_out(fs);
		r = store_getattr(fs->store, a->ino, &now);
		if (r == 0 && (now.flags & STORE_INODE_SEALED))
			r = -EPERM;
		writers = r < 0 ? r : fs_inode_open(&fs->inodes, a->ino, writer, spare);
		if (!seals_out)
			fs_seal_let_in(fs);
	} else {
		writers = fs_inode_open(&fs->inodes, a->ino, writer, spare);
	}
	if (writers < 0) {
		free(h);
		store_file_release(fs->store, a->ino);
		return writers;
	}
	h->ino = a->ino;
	fs_handle_link(fs, h);
	fi->fh = (uintptr_t)h;
	/*
	 * A write-only handle that is the file's only writer bypasses the
	 * kernel's page cache: cp, tar and snapshot writes then cost one copy
	 * into the daemon instead of a copy into newly allocated cache pages
	 * plus a copy out of them, and the kernel drops cached pages of the
	 * written range itself.  With another writer (perhaps a shared
	 * writable mapping whose dirty pages are still to be written back)
	 * writes keep going through the cache so the two cannot reorder.
	 */
	fi->direct_io = (fi->flags & O_ACCMODE) == O_WRONLY && writers == 1;
	h->direct = fi->direct_io;
	fs_inode_note_mode(&fs->inodes, a->ino, a->mode);
	if (a->flags & STORE_INODE_SEALED)
		fi->keep_cache = 1;
	else if (writers > 0)
		fi->keep_cache = 0;
	else
		fi->keep_cache = fs_inode_take_keep_cache(&fs->inodes, a->ino);
	/* Nothing to commit when a read-only handle is closed, unless its
	 * open emptied the file (O_RDONLY|O_TRUNC truncates on Linux), which
	 * is committed at close like a write. */
	fi->noflush = !writer && !(fi->flags & O_TRUNC);
	return 0;
}

/*
 * A write or truncation by a caller without CAP_FSETID clears setuid, and
 * setgid with group execute, before it changes the file, so that nobody
 * can plant code in a program that runs with another's rights.  Writes
 * through the page cache arrive with the bits already cleared: the kernel
 * sends the setattr itself.  Direct writes (write-only handles) and
 * O_TRUNC (done by open here) leave it to the filesystem, and libfuse
 * 3.14 does not pass on the kernel's flag saying whether the writer has
 * the capability, so the caller's is read (fs_caller_capable).  The
 * kernel refreshes the mode at the next stat, since a write invalidates
 * the attributes it holds.
 *
 * fs_drops_setid: clear in *mode what req's caller must not keep; false
 * if that leaves it as it was.
 */
static bool fs_drops_setid(fuse_req_t req, uint32_t *mode)
{
	uint32_t m = fs_mode_setid_cleared(*mode);
	if (m == *mode || fs_caller_capable(req, CAP_FSETID))
		return false;
	*mode = m;
	return true;
}

/* Before a direct write to ino, whose last mode noted has the bits. */
static int fs_kill_setid(fuse_req_t req, struct fs *fs, fuse_ino_t ino)
{
	struct store_attr in, out;
	int r = store_getattr(fs->store, ino, &in);
	if (r || !fs_drops_setid(req, &in.mode))
		return r;
	r = store_setattr(fs->store, ino, &in, STORE_SET_MODE, &out);
	if (!r)
		fs_inode_note_mode(&fs->inodes, ino, out.mode);
	return r;
}

/*
 * O_TRUNC on open: libfuse asks the kernel for atomic O_TRUNC, so the
 * kernel sends no separate truncate and the open itself must empty the
 * file, stamping mtime and ctime as open(2) says.  A sealed file refuses.
 */
static int fs_open_truncate(fuse_req_t req, struct fs *fs, fuse_ino_t ino, struct store_attr *a)
{
	struct store_attr in = { .size = 0, .mode = a->mode };
	fs_now(&in.mtime);
	unsigned mask = STORE_SET_SIZE | STORE_SET_MTIME;
	if (fs_drops_setid(req, &in.mode))
		mask |= STORE_SET_MODE;
	int r = store_setattr(fs->store, ino, &in, mask, a);
	if (r == 0) {
		fs_inode_mark_changed(&fs->inodes, ino);
		fs_inode_note_mode(&fs->inodes, ino, a->mode);
	}
	return r;
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct store_attr a;
	int r = store_getattr(fs->store, ino, &a);
	if (r == 0 && S_ISDIR(a.mode))
		r = -EISDIR;
	/* The handle first: a writer counts from then on, so a seal of the
	 * tree comes before it (and the open fails with the file untouched)
	 * or waits until it is closed, rather than sealing the file between
	 * the truncation and the open. */
	if (r == 0) {
		struct fs_handle *h = calloc(1, sizeof(*h));
		r = h ? store_file_open(fs->store, ino) : -ENOMEM;
		if (r == 0)
			r = fs_open_file(fs, &a, fi, h, NULL, false);
		else
			free(h);
	}
	if (r == 0 && (fi->flags & O_TRUNC)) {
		r = fs_open_truncate(req, fs, ino, &a);
		if (r < 0)
			fs_release_file(fs, ino, fi->fh);
	}
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	if (fi->flags & O_TRUNC)
		fs_handle_dirty(fi);	/* the emptied file is committed at close */
	if ((fi->flags & O_ACCMODE) != O_WRONLY)
		fs_accessed(fs, &a);
	if (fuse_reply_open(req, fi) != 0)
		fs_release_file(fs, ino, fi->fh);
}

void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			 struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct store_attr a;
	/* The handle and the inode's entry first, as for mkdir (see
	 * fs_reply_new_entry); the entry, taken by the open, then has
	 * the lookup counted without another allocation. */
	struct fs_handle *h = calloc(1, sizeof(*h));
	struct fs_inode *spare = fs_inode_spare();
	if (!h || !spare) {
		free(h);
		free(spare);
		return (void)fuse_reply_err(req, ENOMEM);
	}
	/* No seal between the file's making and its open, which would
	 * then fail and leave the file behind. */
	fs_seal_keep_out(fs);
	struct fs_acl_new acl;
	struct store_new n = { .mode = S_IFREG | (mode & 07777), .uid = c->uid, .gid = c->gid };
	fs_acl_new(fs, parent, c->umask, &acl, &n);
	int r = store_make(fs->store, parent, name, &n, true, &a);
	if (r < 0) {
		fs_seal_let_in(fs);
		free(h);
		free(spare);
		return (void)fuse_reply_err(req, -r);
	}
	r = fs_open_file(fs, &a, fi, h, &spare, true);
	fs_seal_let_in(fs);
	free(spare);
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	/* Cannot fail: the handle's count keeps the entry, which the
	 * lookup only adds to. */
	fs_inode_lookup(&fs->inodes, a.ino, 1, NULL);
	struct fuse_entry_param e = { .ino = a.ino, .generation = 1 };
	fs_attr_to_stat(&a, &e.attr);
	e.attr_timeout = e.entry_timeout = fs_timeout(fs, &a);
	if (fuse_reply_create(req, &e, fi) != 0) {
		fs_release_file(fs, a.ino, fi->fh);
		fs_forget_ino(fs, a.ino, 1);
	}
}

void fs_release_file(struct fs *fs, uint64_t ino, uint64_t fh)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fh;
	bool writer = h && h->writer;
	if (h)
		fs_handle_unlink(fs, h);
	free(h);
	int r = store_file_release(fs->store, ino);
	if (r < 0)
		fs_log_err(fs, "commit at release", ino, r);
	if (fs_inode_release(&fs->inodes, ino, writer)) {
		r = store_inode_release(fs->store, ino);
		if (r < 0 && r != -ENOENT)
			fs_log_err(fs, "release", ino, r);
	}
}

void fs_release_handles(struct fs *fs)
{
	while (fs->handles)
		fs_release_file(fs, fs->handles->ino, (uintptr_t)fs->handles);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_release_file(fs_of(req), ino, fi->fh);
	fuse_reply_err(req, 0);
}

/*
 * close(2) waits for flush but not for release, so a file that was
 * written and closed is committed here: after close returns, a crash of
 * the daemon cannot lose it.  Only fsync also syncs the commit to disk,
 * as on a local filesystem: a tar of thousands of small files would
 * otherwise wait for an fsync of the index per file.
 */
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	int r = 0;
	if (fi->fh && __atomic_load_n(&fs_handle(fi)->dirty, __ATOMIC_RELAXED)) {
		struct err e = { 0 };
		r = store_flush(fs->store, ino, false, &e);
		if (r < 0 && fs->cfg.debug)
			fuse_log(FUSE_LOG_DEBUG, "snapfs: flush: %s\n", err_str(&e, r));
	}
	fuse_reply_err(req, -r);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync, (void)fi;
	struct fs *fs = fs_of(req);
	struct err e = { 0 };
	int r = store_flush(fs->store, ino, true, &e);
	if (r < 0 && fs->cfg.debug)
		fuse_log(FUSE_LOG_DEBUG, "snapfs: fsync: %s\n", err_str(&e, r));
	fuse_reply_err(req, -r);
}

/* ---- reading and writing ------------------------------------------------ */

/* Copying read: the fallback when splicing is off or impossible. */
static void fs_read_copy(fuse_req_t req, struct fs *fs, fuse_ino_t ino, size_t size, off_t off)
{
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return (void)fuse_reply_err(req, ENOMEM);
	ssize_t n = store_read(fs->store, ino, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct fs *fs = fs_of(req);
	if (size > FS_READ_MAX)
		size = FS_READ_MAX;
	if (!fs->cfg.splice)
		return fs_read_copy(req, fs, ino, size, off);

	/* A fuse_bufvec with room for FS_EXT_MAX buffers. */
	union {
		struct fuse_bufvec v;
		char room[sizeof(struct fuse_bufvec) + FS_EXT_MAX * sizeof(struct fuse_buf)];
	} bv;
	struct fuse_bufvec *v = &bv.v;
	struct store_extent ext[FS_EXT_MAX];
	size_t covered = 0;
	int n = store_map(fs->store, ino, (uint64_t)off, size, ext, FS_EXT_MAX, &covered);
	if (n == -EOPNOTSUPP)
		return fs_read_copy(req, fs, ino, size, off);
	if (n < 0)
		return (void)fuse_reply_err(req, -n);

	memset(&bv, 0, sizeof(bv));
	v->count = n ? (size_t)n : 1;	/* past the end: one empty buffer */
	v->buf[0].mem = (void *)fs_zeros;
	for (int i = 0; i < n; i++) {
		struct fuse_buf *b = &v->buf[i];
		b->size = ext[i].len;
		if (ext[i].fd < 0) {
			b->mem = (void *)fs_zeros;
		} else {
			b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			b->fd = ext[i].fd;
			b->pos = (off_t)ext[i].pos;
		}
	}
	fuse_reply_data(req, v, FUSE_BUF_SPLICE_MOVE);
	store_map_done(fs->store);
}

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (fi->fh && fs_handle(fi)->direct && fs_inode_setid(&fs->inodes, ino)) {
		int r = fs_kill_setid(req, fs, ino);
		if (r < 0)
			return (void)fuse_reply_err(req, -r);
	}
	ssize_t n = store_write_lent(fs->store, ino, buf, size, (uint64_t)off, fs_loop_lend(size));
	if (n < 0)
		return (void)fuse_reply_err(req, (int)-n);
	fs_handle_dirty(fi);
	fs_inode_mark_changed(&fs->inodes, ino);
	fuse_reply_write(req, (size_t)n);
}

/* ---- ranges ------------------------------------------------------------- */

/* Bytes of [off, end) of ino that are holes (past the end: all), or
 * -errno. */
static int64_t fs_hole_bytes(struct fs *fs, fuse_ino_t ino, uint64_t off, uint64_t end)
{
	uint64_t holes = 0, pos = off;
	while (pos < end) {
		int64_t d = store_seek_data(fs->store, ino, pos);
		if (d == -ENXIO || (d >= 0 && (uint64_t)d >= end))
			return (int64_t)(holes + end - pos);
		if (d < 0)
			return d;
		holes += (uint64_t)d - pos;
		int64_t h = store_seek_hole(fs->store, ino, (uint64_t)d);
		if (h < 0)
			return h;
		pos = (uint64_t)h;
	}
	return (int64_t)holes;
}

/*
 * Allocating cannot reserve space here: a hole costs nothing until it is
 * written, and what is written may turn out to be stored already.  So
 * fallocate only grows the size, but it refuses (ENOSPC, as a local
 * filesystem would) a range whose holes alone exceed the free space, so
 * that whoever preallocates learns at once that the data cannot fit.
 */
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (off < 0 || len <= 0)
		return (void)fuse_reply_err(req, EINVAL);
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return (void)fuse_reply_err(req, EOPNOTSUPP);
	struct store_attr a;
	int r = store_getattr(fs->store, ino, &a);
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	if (a.flags & STORE_INODE_SEALED)
		return (void)fuse_reply_err(req, EPERM);
	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		r = store_punch(fs->store, ino, (uint64_t)off, (uint64_t)len);
		if (r < 0)
			return (void)fuse_reply_err(req, -r);
	}
	uint64_t end = (uint64_t)off + (uint64_t)len;
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		if (end > STORE_MAX_FILE_SIZE)
			return (void)fuse_reply_err(req, EFBIG);
		struct store_statfs sf;
		int64_t holes = fs_hole_bytes(fs, ino, (uint64_t)off, end);
		r = holes < 0 ? (int)holes : store_statfs(fs->store, &sf);
		if (r < 0)
			return (void)fuse_reply_err(req, -r);
		if ((uint64_t)holes > sf.avail_bytes)
			return (void)fuse_reply_err(req, ENOSPC);
	}
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > a.size) {
		r = store_truncate(fs->store, ino, end);
		if (r < 0)
			return (void)fuse_reply_err(req, -r);
	}
	fs_handle_dirty(fi);
	fs_inode_mark_changed(&fs->inodes, ino);
	fuse_reply_err(req, 0);
}

void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
			struct fuse_file_info *fi)
{
	(void)fi;
	struct fs *fs = fs_of(req);
	if (off < 0)
		return (void)fuse_reply_err(req, ENXIO);
	int64_t r;
	if (whence == SEEK_DATA) {
		r = store_seek_data(fs->store, ino, (uint64_t)off);
	} else if (whence == SEEK_HOLE) {
		r = store_seek_hole(fs->store, ino, (uint64_t)off);
	} else {
		r = -EINVAL;
	}
	if (r < 0)
		return (void)fuse_reply_err(req, (int)-r);
	fuse_reply_lseek(req, (off_t)r);
}

void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
				  struct fuse_file_info *fi_in, fuse_ino_t ino_out,
				  off_t off_out, struct fuse_file_info *fi_out, size_t len,
				  int flags)
{
	(void)fi_in;
	struct fs *fs = fs_of(req);
	if (flags != 0 || off_in < 0 || off_out < 0)
		return (void)fuse_reply_err(req, EINVAL);
	ssize_t n = store_clone(fs->store, ino_in, (uint64_t)off_in, ino_out, (uint64_t)off_out,
				len);
	if (n < 0)
		return (void)fuse_reply_err(req, (int)-n);
	fs_handle_dirty(fi_out);
	fs_inode_mark_changed(&fs->inodes, ino_out);
	fuse_reply_write(req, (size_t)n);
}
