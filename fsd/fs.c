/*
 * fsd/fs.c: the FUSE request handlers of snapfs (libfuse3 low-level API)
 * for the session, names, attributes, directories and extended
 * attributes, and the table of all handlers; open files and their data
 * are fs_file.c's.
 *
 * Every handler turns one kernel request into store calls and replies
 * exactly once.  Inode numbers are the store's ids (the root is 1 in both),
 * so the kernel sees numbers that stay the same across mounts.  The store
 * enforces sealing and POSIX semantics of names; the kernel checks
 * permissions (default_permissions).  What is decided here:
 *
 *  - caching: sealed inodes get long entry/attribute timeouts (and their
 *    files keep their page cache, see fs_file.c);
 *  - lifetime: the inode table counts lookups so that the store learns
 *    when the kernel forgets an inode, after which an unlinked file's
 *    pages go, in a batch with others (see fs_inode.h, store.h);
 *  - the user.snapfs.* attributes (fs_xattr.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs_i.h"

void fs_log_err(struct fs *fs, const char *what, uint64_t ino, int r)
{
	if (fs->cfg.debug)
		fuse_log(FUSE_LOG_DEBUG, "snapfs: %s of inode %llu: %s\n", what,
			 (unsigned long long)ino, strerror(-r));
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

double fs_timeout(const struct fs *fs, const struct store_attr *a)
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
		int r = store_inode_forget(fs->store, ino);
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
	/*
	 * POSIX ACLs, checked by the kernel, kept by us (fs_acl.c), so that
	 * cp -a, tar --acls and rsync -A keep a file's ACL.  The kernel then
	 * leaves the umask to us (DONT_MASK): a folder's default ACL takes
	 * its place.
	 */
	if (fs->cfg.acl && (conn->capable & FUSE_CAP_POSIX_ACL) &&
	    (conn->capable & FUSE_CAP_DONT_MASK)) {
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
		fs->acl = true;
	}
	/* The kernel asks for the ACL of every file ls -l shows; in a
	 * store without any, the answer needs no lookup.  (Without ACLs,
	 * listxattr leaves out those a store has.) */
	fs->acl_any = store_xattr_any(fs->store, "system.posix_acl_") != 0;
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
	/* Each may look the inode up in the index (and rarely delete it:
	 * deletions wait for a batch, see store_inode_forget). */
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
	struct fs_acl_new acl;
	struct store_new n = { .mode = mode, .rdev = rdev, .uid = c->uid, .gid = c->gid };
	fs_acl_new(fs_of(req), parent, c->umask, &acl, &n);
	int r = store_make(fs_of(req)->store, parent, name, &n, false, &a);
	fs_reply_new_entry(req, r, &a, &spare);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct store_attr a;
	struct fs_inode *spare = fs_inode_spare();
	if (!spare)
		return (void)fuse_reply_err(req, ENOMEM);
	struct fs_acl_new acl;
	struct store_new n = { .mode = S_IFDIR | (mode & 07777), .uid = c->uid, .gid = c->gid };
	fs_acl_new(fs_of(req), parent, c->umask, &acl, &n);
	int r = store_make(fs_of(req)->store, parent, name, &n, false, &a);
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

void fs_now(struct timespec *ts)
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

void fs_accessed(struct fs *fs, const struct store_attr *a)
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
	/* A file with an access ACL has its bits changed with the ACL. */
	if ((mask & STORE_SET_MODE) && fs->acl) {
		int r = fs_acl_chmod_file(fs, ino, in.mode & 07777);
		if (r < 0 && r != -ENODATA)
			return (void)fuse_reply_err(req, -r);
		if (!r)
			mask &= ~(unsigned)STORE_SET_MODE;
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

/* ---- extended attributes ------------------------------------------------ */

/* Is the caller of req in group gid (its own or a supplementary one)? */
static bool fs_caller_in_group(fuse_req_t req, gid_t gid)
{
	if (fuse_req_ctx(req)->gid == gid)
		return true;
	gid_t groups[64];
	int n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

bool fs_caller_capable(fuse_req_t req, unsigned cap)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	char path[64], status[4096];
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)c->pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, status, sizeof(status) - 1);
	if (fd >= 0)
		close(fd);
	const char *line = NULL;
	if (n > 0) {
		status[n] = 0;
		line = strstr(status, "\nCapEff:");
	}
	unsigned long long eff;
	if (!line || sscanf(line, "\nCapEff: %llx", &eff) != 1)
		return c->uid == 0;
	return cap < 64 && (eff >> cap & 1);
}

static void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			   size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	if (!fs_acl_name(name))
		return (void)fuse_reply_err(req, -fs_xattr_set(fs, ino, name, value, size, flags));
	/* As chmod does: an ACL set by someone neither in the file's group
	 * nor holding CAP_FSETID drops S_ISGID (the kernel leaves this to
	 * us). */
	struct store_attr a;
	int r = store_getattr(fs->store, ino, &a);
	bool kill_sgid = !r && (a.mode & S_ISGID) && !fs_caller_in_group(req, a.gid) &&
			 !fs_caller_capable(req, CAP_FSETID);
	if (!r)
		r = fs_acl_set(fs, &a, name, value, size, kill_sgid);
	fuse_reply_err(req, -r);
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
	fs_release_handles(fs);
	pthread_mutex_destroy(&fs->handles_lock);
	pthread_rwlock_destroy(&fs->seal_lock);
	pthread_mutex_destroy(&fs->gc_lock);
	fs_inode_table_destroy(&fs->inodes, fs_free_one, fs);
	free(fs);
}
