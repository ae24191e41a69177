/*
 * fsd/fs.c: the FUSE request handlers of snapfs (libfuse3 low-level API).
 *
 * Every handler turns one kernel request into store calls and replies
 * exactly once.  Inode numbers are the store's ids (the root is 1 in both),
 * so the kernel sees numbers that stay the same across mounts.  The store
 * enforces sealing and POSIX semantics of names; the kernel checks
 * permissions (default_permissions).  What is decided here:
 *
 *  - caching: sealed inodes get long entry/attribute timeouts and always
 *    keep their page cache; other files keep it unless they are open for
 *    writing or changed since the cache was last kept.  Every change comes
 *    through this mount's kernel, which updates or drops the cached pages
 *    it affects itself (writes go through the page cache; truncate, punch
 *    hole and copy_file_range drop the range), so no change needs a
 *    fuse_lowlevel_notify_inval_inode().  The one change that does not
 *    come through the kernel, a full-disk recovery dropping what was not
 *    committed, shows as the committed size and mtime again, and the
 *    kernel drops the cached pages when it sees that at the next
 *    attribute refresh (auto_inval_data, which libfuse asks for);
 *  - reads: splice from the pack files (fd buffers, zeros from memory),
 *    or copy through store_read when splicing is off or unavailable;
 *  - lifetime: the inode table counts lookups so that the store learns
 *    when the kernel forgets an inode, which is when an unlinked file's
 *    pages go (see fs_inode.h);
 *  - the user.snapfs.* attributes (fs_xattr.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"

/* Reads and writes are at most this large (the kernel's ceiling is 1 MiB). */
#define FS_READ_MAX (1u << 20)
#define FS_WRITE_MAX FS_READ_MAX
#define FS_EXT_MAX (FS_READ_MAX / STORE_PAGE_SIZE + 2)

/* Zeros for holes in spliced replies. */
static const char fs_zeros[FS_READ_MAX];

/* Log a store failure in debug mode; the kernel only sees the errno. */
static void fs_log_err(struct fs *fs, const char *what, uint64_t ino, int r)
{
	if (fs->cfg.debug)
		fuse_log(FUSE_LOG_DEBUG, "snapfs: %s of inode %llu: %s\n", what,
			 (unsigned long long)ino, strerror(-r));
}

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

void fs_attr_to_stat(const struct store_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_rdev = a->rdev;
	/* The preferred I/O size: cp and stdio size their buffers by it,
	 * and each write is a round trip to the daemon that hashes its
	 * pages on two threads, so 1 MiB writes (the largest the mount
	 * takes) cost far less per byte than 4 KiB or 128 KiB ones. */
	st->st_blksize = FS_WRITE_MAX;
	st->st_blocks = (blkcnt_t)(a->pages * (STORE_PAGE_SIZE / 512));
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

static double fs_timeout(const struct fs *fs, const struct store_attr *a)
{
	return (a->flags & STORE_INODE_SEALED) ? fs->cfg.sealed_timeout : fs->cfg.timeout;
}

/*
 * Reply with an entry for a, counting the kernel's new lookup first (a
 * forget can only come after the reply, never before the count); spare:
 * as for fs_inode_lookup.
 */
static void fs_reply_entry(fuse_req_t req, const struct store_attr *a, struct fs_inode **spare)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e = { 0 };
	if (fs_inode_lookup(&fs->inodes, a->ino, 1, spare) < 0)
		return (void)fuse_reply_err(req, ENOMEM);
	e.ino = a->ino;
	e.generation = 1;
	fs_attr_to_stat(a, &e.attr);
	e.attr_timeout = e.entry_timeout = fs_timeout(fs, a);
	if (fuse_reply_entry(req, &e) != 0)
		fs_forget_ino(fs, a->ino, 1);
}

void fs_forget_ino(struct fs *fs, uint64_t ino, uint64_t n)
{
	if (fs_inode_forget(&fs->inodes, ino, n)) {
		int r = store_inode_release(fs->store, ino);
		if (r < 0 && r != -ENOENT)
			fs_log_err(fs, "release", ino, r);
	}
}

/* ---- lifetime ----------------------------------------------------------- */

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	/*
	 * Replies to reads are spliced from the pack files.  Moving pages
	 * (FUSE_CAP_SPLICE_MOVE) is not asked for: the kernel would steal
	 * them from the pack file's page cache, which other files' reads of
	 * the same shared page still want.
	 */
	if (fs->cfg.splice && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	else
		conn->want &= ~FUSE_CAP_SPLICE_WRITE;
	conn->want &= ~FUSE_CAP_SPLICE_MOVE;
	/*
	 * No writeback caching: with it close() would return before the data
	 * reached the store (so "closed" would no longer mean "committed"
	 * when the daemon dies), the kernel would own sizes and times, and
	 * pages of shared mappings would be written back behind our back.
	 */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
	/*
	 * File handles (name_to_handle_at, open_by_handle_at) name an inode
	 * by its number, which the store never reuses, so they stay valid
	 * across mounts: the kernel finds an inode it no longer holds by
	 * looking up "." in it (and a directory's parent by ".."), which
	 * store_lookup answers.
	 */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	conn->max_write = FS_WRITE_MAX;
	conn->max_readahead = fs->cfg.max_readahead > FS_READ_MAX ? fs->cfg.max_readahead
								  : FS_READ_MAX;
	conn->max_read = fs->cfg.max_read;
}

static void fs_op_destroy(void *userdata)
{
	struct fs *fs = userdata;
	struct err e = { 0 };
	int r = store_sync(fs->store, &e);
	if (r < 0)
		fuse_log(FUSE_LOG_ERR, "snapfs: %s\n", err_str(&e, r));
}

/* Inodes a batch of forgets may name and still be short work. */
#define FORGET_SHORT 16

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_forget_ino(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	/* Each may look the inode up in the index, or delete it. */
	if (count > FORGET_SHORT)
		fs_loop_blocking();
	for (size_t i = 0; i < count; i++)
		fs_forget_ino(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- names -------------------------------------------------------------- */

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct store_attr a;
	int r = store_lookup(fs->store, parent, name, &a);
	if (r == -ENOENT) {
		/*
		 * A missing name is cached like a present one (a negative
		 * entry: no inode, no lookup counted).  Names only appear
		 * through this mount's kernel, which replaces the negative
		 * entry itself; in a sealed directory none can appear.
		 */
		struct fuse_entry_param e = { .entry_timeout = fs->cfg.timeout };
		if (a.ino == parent && (a.flags & STORE_INODE_SEALED))
			e.entry_timeout = fs->cfg.sealed_timeout;
		return (void)fuse_reply_entry(req, &e);
	}
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	fs_reply_entry(req, &a, NULL);
}

/*
 * The calls that add a name take the memory their reply needs first: once
 * the store has the new name, a failed allocation would answer ENOMEM for
 * a call that did happen (a mkdir that fails and leaves the folder).
 */
static void fs_reply_new_entry(fuse_req_t req, int r, const struct store_attr *a,
			       struct fs_inode **spare)
{
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fs_reply_entry(req, a, spare);
	free(*spare);
}

static void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct store_attr a;
	struct fs_inode *spare = fs_inode_spare();
	if (!spare)
		return (void)fuse_reply_err(req, ENOMEM);
	int r = store_mknod(fs_of(req)->store, parent, name, mode, rdev, c->uid, c->gid, &a);
	fs_reply_new_entry(req, r, &a, &spare);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct store_attr a;
	struct fs_inode *spare = fs_inode_spare();
	if (!spare)
		return (void)fuse_reply_err(req, ENOMEM);
	int r = store_mkdir(fs_of(req)->store, parent, name, mode, c->uid, c->gid, &a);
	fs_reply_new_entry(req, r, &a, &spare);
}

static void fs_op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
			  const char *name)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct store_attr a;
	struct fs_inode *spare = fs_inode_spare();
	if (!spare)
		return (void)fuse_reply_err(req, ENOMEM);
	int r = store_symlink(fs_of(req)->store, parent, name, target, c->uid, c->gid, &a);
	fs_reply_new_entry(req, r, &a, &spare);
}

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct store_attr a;
	struct fs_inode *spare = fs_inode_spare();
	if (!spare)
		return (void)fuse_reply_err(req, ENOMEM);
	int r = store_link(fs_of(req)->store, ino, newparent, newname, &a);
	fs_reply_new_entry(req, r, &a, &spare);
}

static void fs_op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[STORE_SYMLINK_MAX + 1];
	int r = store_readlink(fs_of(req)->store, ino, buf, sizeof(buf));
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	fuse_reply_readlink(req, buf);
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -store_unlink(fs_of(req)->store, parent, name, NULL));
}

static void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -store_rmdir(fs_of(req)->store, parent, name, NULL));
}

static void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			 fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return (void)fuse_reply_err(req, EINVAL);
	unsigned sf = 0;
	if (flags & RENAME_NOREPLACE)
		sf |= STORE_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		sf |= STORE_RENAME_EXCHANGE;
	fuse_reply_err(req, -store_rename(fs_of(req)->store, parent, name, newparent, newname, sf,
					  NULL));
}

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

/* Mark the handle written; handlers may race, and any of them setting it is enough. */
static void fs_handle_dirty(const struct fuse_file_info *fi)
{
	if (fi && fi->fh)
		__atomic_store_n(&fs_handle(fi)->dirty, true, __ATOMIC_RELAXED);
}

/* ---- attributes --------------------------------------------------------- */

static void fs_reply_attr(fuse_req_t req, const struct store_attr *a)
{
	struct stat st;
	fs_attr_to_stat(a, &st);
	fuse_reply_attr(req, &st, fs_timeout(fs_of(req), a));
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct store_attr a;
	int r = store_getattr(fs_of(req)->store, ino, &a);
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	fs_reply_attr(req, &a);
}

static void fs_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static int fs_ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	return a.tv_nsec < b.tv_nsec ? -1 : a.tv_nsec > b.tv_nsec;
}

bool fs_atime_due(enum fs_atime rule, const struct store_attr *a, struct timespec now)
{
	switch (rule) {
	case FS_ATIME_NONE:
		return false;
	case FS_ATIME_STRICT:
		return fs_ts_cmp(a->atime, now) != 0;
	case FS_ATIME_RELATIME:
		break;
	}
	return fs_ts_cmp(a->atime, a->mtime) <= 0 || fs_ts_cmp(a->atime, a->ctime) <= 0 ||
	       now.tv_sec - a->atime.tv_sec >= 24 * 60 * 60;
}

/*
 * An access to a (a file opened for reading, a directory opened to be
 * listed): update its atime as the mount's flags say.  The daemon sees
 * opens but not reads the kernel answers from its page cache, so the open
 * is what counts.  Sealed content is immutable and keeps its times.  A
 * failure only loses the access time, so the open goes on.
 */
static void fs_accessed(struct fs *fs, const struct store_attr *a)
{
	bool diratime = __atomic_load_n(&fs->cfg.diratime, __ATOMIC_RELAXED);
	if ((a->flags & STORE_INODE_SEALED) || (S_ISDIR(a->mode) && !diratime))
		return;
	struct timespec now;
	fs_now(&now);
	if (!fs_atime_due(__atomic_load_n(&fs->cfg.atime, __ATOMIC_RELAXED), a, now))
		return;
	int r = store_set_atime(fs->store, a->ino, now);
	if (r < 0)
		fs_log_err(fs, "access time", a->ino, r);
}

static void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct store_attr in = { 0 }, out;
	unsigned mask = 0;
	if (to_set & FUSE_SET_ATTR_MODE) {
		in.mode = attr->st_mode;
		mask |= STORE_SET_MODE;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		in.uid = attr->st_uid;
		mask |= STORE_SET_UID;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		in.gid = attr->st_gid;
		mask |= STORE_SET_GID;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		in.size = (uint64_t)attr->st_size;
		mask |= STORE_SET_SIZE;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
		fs_now(&in.atime);
		mask |= STORE_SET_ATIME;
	} else if (to_set & FUSE_SET_ATTR_ATIME) {
		in.atime = attr->st_atim;
		mask |= STORE_SET_ATIME;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		fs_now(&in.mtime);
		mask |= STORE_SET_MTIME;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		in.mtime = attr->st_mtim;
		mask |= STORE_SET_MTIME;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		in.ctime = attr->st_ctim;
		mask |= STORE_SET_CTIME;
	}
	int r = store_setattr(fs->store, ino, &in, mask, &out);
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	if (mask & STORE_SET_SIZE) {
		fs_inode_mark_changed(&fs->inodes, ino);
		/*
		 * A new size is a change of the file's data, which the store
		 * commits in the background.  ftruncate's handle commits it
		 * at close, like a write; truncate(2) has no close, so it is
		 * committed before the call returns (and reports its errors).
		 */
		if (fi && fi->fh) {
			fs_handle_dirty(fi);
		} else {
			struct err e = { 0 };
			r = store_flush(fs->store, ino, false, &e);
			if (r < 0) {
				if (fs->cfg.debug)
					fuse_log(FUSE_LOG_DEBUG, "snapfs: truncate: %s\n",
						 err_str(&e, r));
				return (void)fuse_reply_err(req, -r);
			}
		}
	}
	fs_inode_note_mode(&fs->inodes, ino, out.mode);
	fs_reply_attr(req, &out);
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct store_statfs s;
	int r = store_statfs(fs_of(req)->store, &s);
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	struct statvfs v = { 0 };
	v.f_bsize = v.f_frsize = STORE_PAGE_SIZE;
	v.f_bfree = s.free_bytes / STORE_PAGE_SIZE;
	v.f_bavail = s.avail_bytes / STORE_PAGE_SIZE;
	v.f_blocks = (s.stored_bytes + s.free_bytes) / STORE_PAGE_SIZE;
	/* Inodes are rows: as many as the host filesystem has room for. */
	v.f_files = s.inodes + v.f_bfree;
	v.f_ffree = v.f_favail = v.f_bfree;
	v.f_namemax = STORE_NAME_MAX;
	fuse_reply_statfs(req, &v);
}

/* ---- directories -------------------------------------------------------- */

struct fs_dirbuf {
	fuse_req_t req;
	struct fs *fs;
	bool plus;
	char *buf;
	size_t size, used;
	int err;
};

static int fs_dir_fill(void *arg, const char *name, const struct store_attr *attr,
		       uint64_t next_cookie)
{
	struct fs_dirbuf *d = arg;
	char *p = d->buf + d->used;
	size_t room = d->size - d->used;
	size_t n;
	if (d->plus) {
		struct fuse_entry_param e = { 0 };
		bool dot = !strcmp(name, ".") || !strcmp(name, "..");
		fs_attr_to_stat(attr, &e.attr);
		if (!dot) {
			e.ino = attr->ino;
			e.generation = 1;
			e.attr_timeout = e.entry_timeout = fs_timeout(d->fs, attr);
		}
		n = fuse_add_direntry_plus(d->req, p, room, name, &e, (off_t)next_cookie);
		if (n > room)
			return 1;
		/* The kernel takes a lookup for every entry but "." and "..". */
		if (!dot && fs_inode_lookup(&d->fs->inodes, attr->ino, 1, NULL) < 0) {
			d->err = -ENOMEM;
			return 1;
		}
	} else {
		struct stat st = { .st_ino = attr->ino, .st_mode = attr->mode };
		n = fuse_add_direntry(d->req, p, room, name, &st, (off_t)next_cookie);
		if (n > room)
			return 1;
	}
	d->used += n;
	return 0;
}

static void fs_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct fs *fs = fs_of(req);
	struct fs_dirbuf d = { .req = req, .fs = fs, .plus = plus, .size = size };
	d.buf = malloc(size);
	if (!d.buf)
		return (void)fuse_reply_err(req, ENOMEM);
	int r = store_readdir(fs->store, ino, (uint64_t)off, fs_dir_fill, &d);
	if (r == 0 && d.err)
		r = d.err;
	if (r < 0 && d.used == 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	(void)fi;
	fs_readdir_common(req, ino, size, off, false);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			      struct fuse_file_info *fi)
{
	(void)fi;
	fs_readdir_common(req, ino, size, off, true);
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct store_attr a;
	int r = store_getattr(fs_of(req)->store, ino, &a);
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	if (!S_ISDIR(a.mode))
		return (void)fuse_reply_err(req, ENOTDIR);
	/* A sealed directory's listing cannot change. */
	fi->cache_readdir = fi->keep_cache = !!(a.flags & STORE_INODE_SEALED);
	fs_accessed(fs_of(req), &a);
	fuse_reply_open(req, fi);
}

static void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	(void)ino, (void)datasync, (void)fi;
	struct fs *fs = fs_of(req);
	struct err e = { 0 };
	int r = store_sync(fs->store, &e);
	if (r < 0 && fs->cfg.debug)
		fuse_log(FUSE_LOG_DEBUG, "snapfs: fsyncdir: %s\n", err_str(&e, r));
	fuse_reply_err(req, -r);
}

/* ---- files -------------------------------------------------------------- */

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
 * the capability, so a caller other than root stands in for one without
 * it.  The kernel refreshes the mode at the next stat, since a write
 * invalidates the attributes it holds.
 *
 * fs_drops_setid: clear in *mode what req's caller must not keep; false
 * if that leaves it as it was.
 */
static bool fs_drops_setid(fuse_req_t req, uint32_t *mode)
{
	uint32_t m = fs_mode_setid_cleared(*mode);
	if (m == *mode || fuse_req_ctx(req)->uid == 0)
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

static void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
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
	int r = store_create(fs->store, parent, name, mode, c->uid, c->gid, &a);
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

static void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
static void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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

static void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync, (void)fi;
	struct fs *fs = fs_of(req);
	struct err e = { 0 };
	int r = store_flush(fs->store, ino, true, &e);
	if (r < 0 && fs->cfg.debug)
		fuse_log(FUSE_LOG_DEBUG, "snapfs: fsync: %s\n", err_str(&e, r));
	fuse_reply_err(req, -r);
}

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

static void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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

static void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	if (fi->fh && fs_handle(fi)->direct && fs_inode_setid(&fs->inodes, ino)) {
		int r = fs_kill_setid(req, fs, ino);
		if (r < 0)
			return (void)fuse_reply_err(req, -r);
	}
	ssize_t n = store_write(fs->store, ino, buf, size, (uint64_t)off);
	if (n < 0)
		return (void)fuse_reply_err(req, (int)-n);
	fs_handle_dirty(fi);
	fs_inode_mark_changed(&fs->inodes, ino);
	fuse_reply_write(req, (size_t)n);
}

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
static void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
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

static void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
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

static void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
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

/* ---- extended attributes ------------------------------------------------ */

static void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	fuse_reply_err(req, -fs_xattr_set(fs_of(req), ino, name, value, size, flags));
}

/* Reply to getxattr/listxattr: r is the length or -errno. */
static void fs_reply_xattr(fuse_req_t req, const char *buf, size_t size, ssize_t r)
{
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)r);
	else
		fuse_reply_buf(req, buf, (size_t)r);
}

static void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf)
		return (void)fuse_reply_err(req, ENOMEM);
	ssize_t r = fs_xattr_get(fs_of(req), ino, name, buf, size);
	fs_reply_xattr(req, buf, size, r);
	free(buf);
}

static void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf)
		return (void)fuse_reply_err(req, ENOMEM);
	ssize_t r = fs_xattr_list(fs_of(req), ino, buf, size);
	fs_reply_xattr(req, buf, size, r);
	free(buf);
}

static void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	fuse_reply_err(req, -fs_xattr_remove(fs_of(req), ino, name, ctx->uid));
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.destroy = fs_op_destroy,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.readlink = fs_op_readlink,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.symlink = fs_op_symlink,
	.rename = fs_op_rename,
	.link = fs_op_link,
	.open = fs_op_open,
	.create = fs_op_create,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = fs_op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
	.fallocate = fs_op_fallocate,
	.lseek = fs_op_lseek,
	.copy_file_range = fs_op_copy_file_range,
};

const struct fuse_lowlevel_ops *fs_lowlevel_ops(void)
{
	return &fs_ops;
}

/* ---- setup and teardown ------------------------------------------------- */

int fs_new(struct store *store, const struct fs_config *cfg, struct fs **out)
{
	struct fs *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->store = store;
	fs->cfg = *cfg;
	int r = fs_inode_table_init(&fs->inodes);
	if (r < 0) {
		free(fs);
		return r;
	}
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_rwlock_init(&fs->seal_lock, NULL);
	pthread_mutex_init(&fs->gc_lock, NULL);
	*out = fs;
	return 0;
}

void fs_set_atime(struct fs *fs, enum fs_atime atime, bool diratime)
{
	/* Called again from another thread when the mount is remounted. */
	__atomic_store_n(&fs->cfg.atime, atime, __ATOMIC_RELAXED);
	__atomic_store_n(&fs->cfg.diratime, diratime, __ATOMIC_RELAXED);
}

static void fs_free_one(uint64_t ino, void *arg)
{
	struct fs *fs = arg;
	store_inode_release(fs->store, ino);
}

void fs_free(struct fs *fs)
{
	if (!fs)
		return;
	/* Handles the kernel never released (the session ended first) are
	 * released as it would have. */
	while (fs->handles)
		fs_release_file(fs, fs->handles->ino, (uintptr_t)fs->handles);
	pthread_mutex_destroy(&fs->handles_lock);
	pthread_rwlock_destroy(&fs->seal_lock);
	pthread_mutex_destroy(&fs->gc_lock);
	fs_inode_table_destroy(&fs->inodes, fs_free_one, fs);
	free(fs);
}
