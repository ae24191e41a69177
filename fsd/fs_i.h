/*
 * fsd/fs_i.h: what the files of the filesystem module share privately
 * (fs.c and fs_file.c handlers, fs_xattr.c attributes, fs_inode.c table).
 */
#ifndef SNAPFS_FS_I_H
#define SNAPFS_FS_I_H

#include <linux/capability.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "fs.h"
#include "fs_inode.h"
#include "store.h"

/* Reads and writes are at most this large (the kernel's ceiling is 1 MiB). */
#define FS_READ_MAX (1u << 20)
#define FS_WRITE_MAX FS_READ_MAX

struct fs_handle;

struct fs {
	struct store *store;
	struct fs_config cfg;
	struct fs_inode_table inodes;
	/* Open file handles, so that fs_free frees those the kernel never
	 * released (the session ended with files still open). */
	pthread_mutex_t handles_lock;
	struct fs_handle *handles;
	/* Held shared by opens for writing, from their check that the file
	 * is not sealed until they count as writers (by creates from the
	 * file's making), and exclusively while a tree is sealed, which no
	 * writer may be in. */
	pthread_rwlock_t seal_lock;
	/* The figures of the last gc run through the mount (user.snapfs.gc). */
	pthread_mutex_t gc_lock;
	bool gc_ran;
	struct store_gc_result gc_last;
	/* POSIX ACLs are on (the kernel takes FUSE_POSIX_ACL and leaves
	 * the umask to us): set by init, before any other request. */
	bool acl;
	/* Some inode may have an ACL (atomic; once set, stays set): until
	 * then ACL reads and inheritance need no look at the index. */
	bool acl_any;
};

static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* Does the caller of req hold capability cap (CAP_FSETID, ...) in its
 * effective set?  Read from /proc/PID/status, as libfuse reads a caller's
 * groups; where that cannot be read (the caller is gone, no /proc), root
 * stands in for a caller that holds it. */
bool fs_caller_capable(fuse_req_t req, unsigned cap);

/* Log a store failure in debug mode; the kernel only sees the errno. */
void fs_log_err(struct fs *fs, const char *what, uint64_t ino, int r);

/* Entry and attribute timeout for an inode with attributes a, in seconds. */
double fs_timeout(const struct fs *fs, const struct store_attr *a);

/* The time now, as file times are stamped. */
void fs_now(struct timespec *ts);

/*
 * An access to a (a file opened for reading, a directory opened to be
 * listed): update its atime as the mount's flags say.  The daemon sees
 * opens but not reads the kernel answers from its page cache, so the open
 * is what counts.  Sealed content is immutable and keeps its times.  A
 * failure only loses the access time, so the open goes on.
 */
void fs_accessed(struct fs *fs, const struct store_attr *a);

/*
 * Whether an access at now updates the atime of an inode with attributes
 * a.  Relatime, as the kernel decides for local filesystems: when atime
 * is not after mtime or ctime (the first access since a change), or is a
 * day old.  Strict: unless atime is now already.
 */
bool fs_atime_due(enum fs_atime rule, const struct store_attr *a, struct timespec now);

/* Fill a struct stat from store attributes (st_blocks from pages stored). */
void fs_attr_to_stat(const struct store_attr *a, struct stat *st);

/* Drop n kernel lookups of ino; tells the store when the last one goes. */
void fs_forget_ino(struct fs *fs, uint64_t ino, uint64_t n);

/* Undo an open: free the handle fh, release the store's file, and the
 * inode if nothing holds it any more. */
void fs_release_file(struct fs *fs, uint64_t ino, uint64_t fh);

/* Release the handles the kernel never released (the session ended
 * with files still open), as it would have. */
void fs_release_handles(struct fs *fs);

/* Mark the handle of fi (if any) written, so that its close commits;
 * handlers may race, and any of them setting it is enough. */
void fs_handle_dirty(const struct fuse_file_info *fi);

/* The handlers for open files (fs_file.c), as struct fuse_lowlevel_ops
 * names them; each replies to req exactly once. */
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);
void fs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi);
void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			   struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			   struct fuse_file_info *fi_out, size_t len, int flags);

/*
 * Extended attributes as the filesystem shows them (fs_xattr.c).  user.*
 * names are kept in the store.  user.snapfs.* are the filesystem's own:
 * "sealed" (setting it seals, see store_seal(); it reads "1" once set;
 * removing it from the top of a sealed tree unseals it, see store_unseal(),
 * for uid 0 only: anyone else, and any other directory, gets -EPERM),
 * and, on regular files, the read-only figures "digest" (hex), "pages",
 * "shared_pages" and "zero_pages" (decimal).  Setting "gc" on the root
 * runs store_gc() on the live store (every other call waits meanwhile)
 * and reading it there gives the last run's pages freed and pack bytes
 * before and after, in decimal, separated by spaces.  They can be read by name but
 * are not listed, so tools that copy xattrs (cp -a, rsync -X, tar
 * --xattrs) do not carry them to other files.  POSIX ACLs are below;
 * other namespaces are not supported.  All return -errno on failure; get
 * and list return the value's length (size 0: only the length; -ERANGE
 * if size is too small).
 */
ssize_t fs_xattr_get(struct fs *fs, uint64_t ino, const char *name, char *buf, size_t size);
ssize_t fs_xattr_list(struct fs *fs, uint64_t ino, char *buf, size_t size);
int fs_xattr_set(struct fs *fs, uint64_t ino, const char *name, const char *value, size_t size,
		 int flags);
/* uid: the user asking (unsealing needs 0). */
int fs_xattr_remove(struct fs *fs, uint64_t ino, const char *name, uint32_t uid);

/*
 * POSIX ACLs (fs_acl.c), kept as the xattrs FS_ACL_ACCESS and
 * FS_ACL_DEFAULT in the kernel's format, at most FS_ACL_MAX bytes.
 *   fs_acl_check    0 if value is a valid ACL, else -EINVAL
 *   fs_acl_mode     mode with its rwx bits set from the access ACL value;
 *                   *equiv: the ACL says no more than those bits
 *   fs_acl_chmod    rewrite the access ACL value for a chmod to mode
 *   fs_acl_inherit  turn a copy of a folder's default ACL into the access
 *                   ACL of a new inode asked to have *mode, which it limits;
 *                   false if the result says no more than *mode's bits
 * fs_acl_set and fs_acl_new (fs_xattr.c) apply them to the store.
 */
#define FS_ACL_ACCESS "system.posix_acl_access"
#define FS_ACL_DEFAULT "system.posix_acl_default"
#define FS_ACL_MAX 4096
bool fs_acl_name(const char *name);
int fs_acl_check(const void *value, size_t size);
uint32_t fs_acl_mode(const void *value, size_t size, uint32_t mode, bool *equiv);
void fs_acl_chmod(void *value, size_t size, uint32_t mode);
bool fs_acl_inherit(void *value, size_t size, uint32_t *mode);

/* Set one of the ACL xattrs on the inode whose attributes are a;
 * kill_sgid: the caller is neither in the file's group nor root, so an
 * access ACL also drops S_ISGID. */
int fs_acl_set(struct fs *fs, const struct store_attr *a, const char *name, const void *value,
	       size_t size, bool kill_sgid);

/* A chmod of ino to mode (07777 bits) that has an access ACL: both
 * changed together.  -ENODATA if ino has no access ACL. */
int fs_acl_chmod_file(struct fs *fs, uint64_t ino, uint32_t mode);

/* The ACLs a new inode inherits, which its struct store_new points to. */
struct fs_acl_new {
	uint8_t acl[FS_ACL_MAX], def[FS_ACL_MAX];
	struct store_xattr xattrs[2];
};

/* Ready n (its mode, with S_IFMT, as the caller with umask asked for it)
 * to be made in parent: its permission bits, and the ACLs it inherits,
 * kept in acl.  With ACLs off the kernel has applied the umask: the mode
 * as it is.  Without a default ACL on parent, the umask applies; with
 * one, the default ACL limits the mode instead and is the source of the
 * new inode's access ACL (if it says more than the bits) and, for a
 * folder, of its default ACL. */
void fs_acl_new(struct fs *fs, uint64_t parent, uint32_t umask, struct fs_acl_new *acl,
		struct store_new *n);

#endif
