/*
 * fsd/store.h: the snapfs page store, the library under the FUSE daemon.
 *
 * A store is a folder:
 *
 *	STORE/index.db        SQLite (WAL): inodes, names, xattrs, symlink
 *	                      targets, each file's page map, the page index
 *	STORE/packs/NNNNNNNN.pack  page data, every page at a 4 KiB-aligned offset
 *	STORE/lock            flock()ed by the one process that opens it writable
 *
 * File contents are kept as 4 KiB pages named by the SHA-256 of their bytes
 * and stored once however many files hold them.  An all-zero page is never
 * stored: it is a hole in the file's page map.
 *
 * Conventions for every function below:
 *  - Returns 0 (or a count where said) on success and a negative errno on
 *    failure.  Nothing prints, nothing exits.  Functions taking a struct err
 *    also describe the failure there (NULL is allowed).
 *  - Inode numbers are the store's own ids: stable for the life of the inode,
 *    never reused, root = STORE_ROOT_INO.
 *  - Names are single path components (no '/', not "." or ".."), at most
 *    STORE_NAME_MAX bytes; otherwise -EINVAL / -ENAMETOOLONG.
 *  - Changes to anything inside a sealed inode (STORE_INODE_SEALED) fail
 *    with -EPERM; see store_seal().
 *  - A store opened STORE_RDONLY answers every change with -EROFS.
 *
 * Durability: namespace changes (create, rename, setattr, xattrs...) are
 * committed to SQLite when the call returns.  File data and the size and
 * times that writes change are kept pending in memory and committed in
 * batches: by store_flush(), store_sync(), the last store_file_release() of
 * a file, and whenever enough pages are pending (by a thread the store
 * runs for that, so committing overlaps with writing).  Every read
 * sees pending writes.  A commit first makes the page data it refers to
 * durable (fdatasync of the packs), then commits one SQLite transaction, so
 * after a crash the store holds exactly its last committed state; data
 * appended to packs but never committed is garbage that store_gc() frees.
 * store_sync() and store_flush(durable) also make the commit durable
 * against power loss (an fsync of the WAL); a commit alone survives a
 * crash of the process, not of the machine, as close(2) on any local
 * filesystem does.
 *
 * Failures (a full disk, an I/O error): when writing page data or a commit
 * fails, the call that met it returns the error, and memory no longer
 * agrees with the last commit.  The next change recovers: it waits for
 * calls in progress, drops every change not yet committed (page data put
 * since the last commit is forgotten and its space given back), reloads
 * cached files from the database and goes on; the log callback (see
 * store_set_log) is told what happened.  Files that lost uncommitted
 * changes while open report the failure at their next store_flush().  What
 * was committed is never touched.  If recovery itself fails (or the backend
 * cannot recover) changes keep failing with -EIO; reads go on.
 *
 * Threads: one struct store may be used by many threads at once.  Namespace
 * changes and commits are serialised by a store-wide lock.  File data state
 * (page maps, pending pages) has its own short-held lock, and page hashing
 * runs outside every lock, so writers to different files hash in parallel;
 * a single large write (32 whole pages or more) also shares its hashing
 * with a helper thread the store runs, so it uses two cores.
 * Reads of page locations already cached in memory (store_read, store_map)
 * do not wait for a commit in progress; a read that must load a page map
 * from SQLite uses a separate connection and does not wait either.
 * store_gc() holds changes of file data off (not reads) while it forgets
 * dead pages, a batch at a time, commits while it points the index at
 * pages it moved, and everything else only while it frees space.
 */
#ifndef SNAPFS_STORE_H
#define SNAPFS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "err.h"

#define STORE_PAGE_SIZE 4096u
#define STORE_PAGE_SHIFT 12
#define STORE_HASH_SIZE 32u		/* SHA-256 */
#define STORE_ROOT_INO 1u
#define STORE_NAME_MAX 255u
#define STORE_SYMLINK_MAX 4095u
#define STORE_XATTR_NAME_MAX 255u
#define STORE_XATTR_SIZE_MAX 65536u
/* The most bytes a file's list of xattr names may take (each name with
 * its NUL): listxattr(2) refuses longer lists with E2BIG, which would
 * leave tools that copy xattrs unable to copy the file. */
#define STORE_XATTR_LIST_MAX 65536u
/* The largest file size: writes, truncates, allocations and clones that
 * would reach past it fail with EFBIG.  A cached file's page map is
 * indexed by an array of 8 bytes per 512 KiB of file, up to its last
 * stored page, and two bitmaps: one byte written at the end of a sparse
 * 4 TiB file costs the daemon 64 MiB of address space (memory only where
 * used) and 2 MiB of bitmaps while the file is cached; at 1 PiB it would
 * be 16 GiB and 512 MiB, which is no limit a single write should be able
 * to pass. */
#define STORE_MAX_FILE_SIZE (1ull << 42)

struct store;

/* ---- opening ------------------------------------------------------------ */

enum store_open_flags {
	/* Create a new store if dir is missing or an empty folder (mode 0700).
	 * Without it a missing store is -ENOENT.  A folder that is neither
	 * empty nor a store is -ENOTEMPTY, with a message, either way. */
	STORE_CREATE = 1 << 0,
	/* Open read-only: no lock is taken, so it works beside a live
	 * writer (fsck, stats); it sees the last committed state.  Orphan
	 * reclaim and migrations are not run. */
	STORE_RDONLY = 1 << 1,
	/* If another process holds the store, wait up to
	 * STORE_LOCK_WAIT_MS for it to let go before failing with -EBUSY:
	 * a daemon whose filesystem was just unmounted is still committing
	 * and closing, and a mount (or gc) run right after it should work. */
	STORE_LOCK_WAIT = 1 << 2,
	/* Check every page a read takes from a pack against its hash (one
	 * SHA-256 per page read), so that damage the pack files took after
	 * they were written fails the read with -EIO, naming the page in the
	 * log, instead of being returned as the file's bytes.  store_map is
	 * then refused (-EOPNOTSUPP): its extents bypass the check. */
	STORE_VERIFY = 1 << 3,
};

#define STORE_LOCK_WAIT_MS 5000

/*
 * Open (or create) the store in folder dir.
 * A writable open takes an exclusive flock on STORE/lock; if another
 * process holds it (still, after the wait STORE_LOCK_WAIT asks for) the
 * open fails with -EBUSY ("store X is in use by another process").  A
 * store whose schema version is newer than this program's is refused with
 * -EPROTONOSUPPORT and a message naming the store and both versions; an
 * older one is migrated, in one transaction (writable opens only; a
 * read-only open of an older store is refused the same way).  A writable
 * open also reclaims orphans: inodes with no links left by a crash.
 * On success *out is set; close it with store_close().
 */
int store_open(const char *dir, unsigned flags, struct store **out, struct err *e);

/* Where the store reports events nobody's call returns: recovery from a
 * failure (one line, naming the store, the cause and how many files lost
 * uncommitted changes), and the migration of an older store while it
 * opens (see store_open_log).  fn may be called from any of the store's
 * threads; NULL (the default) reports nothing. */
typedef void (*store_log_fn)(void *arg, const char *msg);
void store_set_log(struct store *st, store_log_fn fn, void *arg);

/* store_open with fn set as store_set_log would, from the start: opening
 * a store of an older schema version reports when its migration starts
 * and ends (on a large store it takes a while), or that it failed and
 * left the store as it was. */
int store_open_log(const char *dir, unsigned flags, store_log_fn fn, void *arg,
		   struct store **out, struct err *e);

/*
 * Commit everything pending and close.  Returns the commit's result (the
 * store is closed and freed either way).  NULL is allowed.
 * No other thread may use st during or after this call.
 */
int store_close(struct store *st, struct err *e);

/* Called by the thread of a call that is about to wait (for a lock held
 * by another thread, a commit, a disk sync, a busy database, the page
 * index being loaded) or to work for long (deleting a large file), before
 * it does: a server that serves short calls in the thread that reads the
 * requests lets another thread take over reading.  Any thread may call
 * it, with any of the store's locks held, so it must take none of them;
 * it must be cheap when repeated.  NULL (the default): nothing. */
typedef void (*store_block_fn)(void);
void store_set_block_hint(struct store *st, store_block_fn fn);

/* The thread that shares the hashing of large writes sleeps between
 * them, and on a virtual machine a sleeping CPU takes tens of
 * microseconds, sometimes milliseconds, to wake: meanwhile the writer
 * hashes alone.  With us > 0 it waits for the next write by polling
 * instead, for up to us microseconds, yielding its CPU to any other thread
 * that can run, as long as writes come in a stream (the last came within
 * us of the one before).  0 (the default): it sleeps at once.  Worth it
 * only with two CPUs or more. */
void store_set_hash_spin(struct store *st, unsigned us);

/* Inodes (about 200 bytes each) kept cached beyond those in use, open or
 * with changes to commit; past a quarter more, the cache is trimmed. */
#define STORE_CACHE_INODES 32768u
/* Page-map chunks (128 slots, about 5 KiB each) kept in memory; past a
 * quarter more, those of unused inodes are dropped, then those read by
 * files in use that have nothing to commit (they are read again when
 * needed). */
#define STORE_CACHE_CHUNKS 16384u

/* Figures of the store's memory, for tests and debugging: inodes and
 * page-map chunks cached, inodes listed as having changes to commit,
 * pages in the prefix set (every page stored, once the set is loaded),
 * and queries made for page-map rows since the store was opened. */
struct store_cache_info {
	uint64_t inodes, chunks, changed, known, map_reads;
};
void store_cache_info(struct store *st, struct store_cache_info *out);

/* The folder the store was opened from (for messages). */
const char *store_dir(const struct store *st);

/* The schema version this program writes (PRAGMA user_version). */
int store_schema_version(void);

/* The names of the store's own entries in its folder, NULL-ended: the
 * index with its SQLite journals, the lock file and the packs folder. */
extern const char *const store_entries[];

/* ---- inodes and the namespace ------------------------------------------- */

enum store_inode_flags {
	/* Immutable: see store_seal(). */
	STORE_INODE_SEALED = 1 << 0,
};

struct store_attr {
	uint64_t ino;
	uint32_t mode;		/* S_IFMT bits | permission bits */
	uint32_t nlink;
	uint32_t uid, gid;
	uint64_t size;		/* bytes (symlinks: target length) */
	uint64_t rdev;
	uint64_t pages;		/* pages stored for this file (holes excluded);
				 * st_blocks = pages * (STORE_PAGE_SIZE / 512) */
	struct timespec atime, mtime, ctime;
	uint32_t flags;		/* enum store_inode_flags */
};

/* Look up name in directory parent.  -ENOENT, -ENOTDIR.  "." is parent
 * itself (whatever its type; -ENOENT if it has no links) and ".." the
 * directory holding it, so that an inode can be found again by its
 * number alone (file handles).  When
 * a name is missing (-ENOENT) from a directory that exists, *out holds
 * the directory's attributes (out->ino == parent), so that a caller can
 * tell how long the miss holds without a second lookup. */
int store_lookup(struct store *st, uint64_t parent, const char *name, struct store_attr *out);

/* Attributes of ino, including size and times changed by pending writes.
 * -ENOENT if there is no such inode. */
int store_getattr(struct store *st, uint64_t ino, struct store_attr *out);

/*
 * Create name in directory parent: a regular file, directory, device,
 * fifo or socket as mode's S_IFMT says (S_IFLNK is refused: use
 * store_symlink).  rdev is used for devices only.  Times are set to now.
 * -EEXIST if name exists, -ENOTDIR, -ENOENT (no parent), -EPERM (sealed).
 * out (may be NULL) receives the new inode's attributes.
 */
int store_mknod(struct store *st, uint64_t parent, const char *name, uint32_t mode,
		uint64_t rdev, uint32_t uid, uint32_t gid, struct store_attr *out);

/* store_mknod(parent, name, S_IFDIR | (mode & 07777), 0, ...). */
int store_mkdir(struct store *st, uint64_t parent, const char *name, uint32_t mode,
		uint32_t uid, uint32_t gid, struct store_attr *out);

/* An extended attribute, as a new inode is made with it. */
struct store_xattr {
	const char *name;
	const void *value;
	size_t size;
};

/* What a new inode is made of, for store_make. */
struct store_new {
	uint32_t mode;		/* S_IFMT as store_mknod takes it, and 07777 */
	uint64_t rdev;		/* devices only */
	uint32_t uid, gid;
	/* Extended attributes set in the transaction that makes the inode
	 * (the ACLs it inherits from its folder): it never exists without
	 * them.  Checked as store_xattr_set checks them. */
	const struct store_xattr *xattrs;
	unsigned n_xattrs;
};

/* store_mknod of n, and if open (a regular file only) its store_file_open
 * in one: either all of it is done or, -ENOMEM included, nothing. */
int store_make(struct store *st, uint64_t parent, const char *name, const struct store_new *n,
	       bool open, struct store_attr *out);

/* Create a symlink name -> target (1..STORE_SYMLINK_MAX bytes), mode 0777. */
int store_symlink(struct store *st, uint64_t parent, const char *name, const char *target,
		  uint32_t uid, uint32_t gid, struct store_attr *out);

/* Copy the target of symlink ino into buf (NUL-terminated, truncated to
 * size-1).  Returns the target's full length; -EINVAL if not a symlink. */
int store_readlink(struct store *st, uint64_t ino, char *buf, size_t size);

/* New hard link newparent/newname to ino (not a directory: -EPERM).
 * -EEXIST, -EMLINK past 65000 links. */
int store_link(struct store *st, uint64_t ino, uint64_t newparent, const char *newname,
	       struct store_attr *out);

/*
 * Remove name (not a directory: -EISDIR) from parent.  If that was the
 * inode's last link, *gone (may be NULL) is set to its number, else to 0.
 * An inode without links is NOT deleted yet: its data stays readable and
 * writable until store_inode_release() (and the last store_file_release()).
 */
int store_unlink(struct store *st, uint64_t parent, const char *name, uint64_t *gone);

/* Remove empty directory name from parent: -ENOTDIR, -ENOTEMPTY,
 * -EBUSY for the root.  *gone as for store_unlink. */
int store_rmdir(struct store *st, uint64_t parent, const char *name, uint64_t *gone);

enum store_rename_flags {
	STORE_RENAME_NOREPLACE = 1 << 0,	/* = RENAME_NOREPLACE */
	STORE_RENAME_EXCHANGE = 1 << 1,		/* = RENAME_EXCHANGE */
};

/*
 * rename(2) / renameat2(2) semantics: replaces an existing target (a file
 * by a file, an empty directory by a directory; otherwise -EISDIR,
 * -ENOTDIR, -ENOTEMPTY); NOREPLACE fails with -EEXIST if the target exists;
 * EXCHANGE swaps the two names (target must exist: -ENOENT).  Moving a
 * directory into itself or below itself is -EINVAL.  Renaming a name onto
 * itself or onto another link of the same inode succeeds and does nothing.
 * If a replaced target lost its last link, *gone is set to its number
 * (see store_unlink), else 0.
 */
int store_rename(struct store *st, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags, uint64_t *gone);

/*
 * The filesystem no longer references ino (the kernel forgot it).  If the
 * inode has no links it is deleted now (or at its last store_file_release
 * if handles remain), and its pages are released.  Otherwise nothing
 * happens.  -ENOENT if no such inode.
 */
int store_inode_release(struct store *st, uint64_t ino);

/*
 * store_inode_release for the kernel's FORGET: an inode that has no links
 * and no handles can never be reached again, so it is deleted a little
 * later, with others in one transaction (rm -rf pays one transaction per
 * file, not two): by the store's committer thread, within milliseconds,
 * and at the latest by the next commit, store_sync, store_statfs or
 * store_close.  A crash before that leaves an orphan, which the next
 * store_open reclaims.  Returns what store_inode_release does.
 */
int store_inode_forget(struct store *st, uint64_t ino);

enum store_set {
	STORE_SET_MODE = 1 << 0,	/* permission bits only; type kept */
	STORE_SET_UID = 1 << 1,
	STORE_SET_GID = 1 << 2,
	STORE_SET_SIZE = 1 << 3,	/* as store_truncate() */
	STORE_SET_ATIME = 1 << 4,
	STORE_SET_MTIME = 1 << 5,
	STORE_SET_CTIME = 1 << 6,	/* else ctime = now on any change */
};

/* Record an access of ino at atime: only the access time changes (not
 * ctime, as for a read).  -EPERM on a sealed inode, -EROFS on a store
 * opened read-only. */
int store_set_atime(struct store *st, uint64_t ino, struct timespec atime);

/* Change the attributes selected by mask (enum store_set) to those in in;
 * out (may be NULL) receives the result.  -EPERM on a sealed inode,
 * -EISDIR for SIZE on a directory, -EINVAL for SIZE on other non-files. */
int store_setattr(struct store *st, uint64_t ino, const struct store_attr *in, unsigned mask,
		  struct store_attr *out);

/*
 * Seal directory ino and everything below it: sets STORE_INODE_SEALED,
 * after which every change to them fails with -EPERM (data, attributes,
 * xattrs, names inside sealed directories, renaming or unlinking them).
 * Pending data is committed first.  Sealing cannot be undone except by
 * store_unseal() on the top of the sealed tree.  Sealing a sealed
 * directory succeeds.  -ENOTDIR if ino is not a directory; -EBUSY, and
 * nothing sealed, if busy (unless NULL) says yes for an inode of the
 * tree (the caller's writers, whose changes sealing would cut off).
 */
int store_seal(struct store *st, uint64_t ino, bool (*busy)(void *arg, uint64_t ino), void *arg);

/*
 * Undo store_seal() on directory ino, the top of a sealed tree (its parent
 * is not sealed; the root counts as a top): clears STORE_INODE_SEALED on
 * ino and everything below it in one transaction.  -ENOTDIR if ino is not
 * a directory, -EINVAL if it is not sealed or its parent is sealed too
 * (only a whole sealed tree can be unsealed), -EROFS on a read-only store,
 * -ENOENT if there is no such inode.  Who may do this is the caller's
 * decision.
 */
int store_unseal(struct store *st, uint64_t ino);

/*
 * List directory ino from position cookie (0 = start).  For each entry,
 * "." and ".." first, cb is called with its name, attributes and the
 * cookie that resumes after it; a non-zero return from cb stops the
 * listing (the entry it was given counts as not delivered).  Cookies stay
 * valid while entries are added and removed.  Returns 0 or -errno
 * (-ENOTDIR).  cb must not call back into the store.
 */
typedef int (*store_readdir_fn)(void *arg, const char *name, const struct store_attr *attr,
				uint64_t next_cookie);
int store_readdir(struct store *st, uint64_t ino, uint64_t cookie, store_readdir_fn cb, void *arg);

/* ---- extended attributes (any name; the filesystem picks namespaces) ---- */

/* Value of name on ino into buf.  size 0: return the value's length only.
 * Returns the length, -ENODATA if absent, -ERANGE if size is too small. */
int store_xattr_get(struct store *st, uint64_t ino, const char *name, void *buf, size_t size);

/* flags: 0, XATTR_CREATE (-EEXIST if present) or XATTR_REPLACE (-ENODATA
 * if absent).  -ERANGE past STORE_XATTR_NAME_MAX or STORE_XATTR_SIZE_MAX;
 * -ENOSPC if a new name would take the list past STORE_XATTR_LIST_MAX. */
int store_xattr_set(struct store *st, uint64_t ino, const char *name, const void *value,
		    size_t size, int flags);

/* Names of ino's xattrs, each NUL-terminated, into buf.  size 0: return the
 * length needed.  Returns the length or -ERANGE. */
int store_xattr_list(struct store *st, uint64_t ino, char *buf, size_t size);

/* -ENODATA if absent. */
int store_xattr_remove(struct store *st, uint64_t ino, const char *name);

/* 1 if some inode has an xattr whose name begins with prefix, 0 if none
 * has (a scan of every xattr), or -errno. */
int store_xattr_any(struct store *st, const char *prefix);

/* Set name on ino to value (remove it if value is NULL; absent is fine)
 * and ino's permission bits (perm & 07777) in one change: the xattr and
 * the bits describe the same permissions (a POSIX ACL). */
int store_xattr_set_mode(struct store *st, uint64_t ino, const char *name, const void *value,
			 size_t size, uint32_t perm);

/* ---- filesystem figures ------------------------------------------------- */

struct store_statfs {
	uint64_t stored_bytes;		/* space the pack files take */
	uint64_t free_bytes;		/* free space of the host filesystem */
	uint64_t avail_bytes;		/* of which usable without privilege */
	uint64_t inodes;		/* inodes in the store */
};

int store_statfs(struct store *st, struct store_statfs *out);

/* ---- file data ------------------------------------------------------------
 * All of these act on regular files (-EISDIR / -EINVAL otherwise) and see
 * and produce pending state (see "Durability" above).
 */

/*
 * Keep ino cached while the file is open, with the parts of its page map
 * read so far, up to the cache's limit (optional: every data call works
 * without it).  Each store_file_open needs one
 * store_file_release; the last release commits the file's pending changes
 * (and the store's), and deletes the inode if it has no links and
 * store_inode_release was already called for it.
 */
int store_file_open(struct store *st, uint64_t ino);
int store_file_release(struct store *st, uint64_t ino);

/* store_make of a regular file, open (out must not be NULL). */
int store_create(struct store *st, uint64_t parent, const char *name, uint32_t mode,
		 uint32_t uid, uint32_t gid, struct store_attr *out);

/* Write len bytes at off (extending the file as needed).  Whole pages are
 * hashed and deduplicated; partial pages are read, patched and rehashed.
 * Returns len or -errno (-EFBIG beyond 2^50 bytes). */
ssize_t store_write(struct store *st, uint64_t ino, const void *buf, size_t len, uint64_t off);

/*
 * A caller's buffer whose pages the store may keep instead of copying
 * them out (store_write_lent): new pages then go from it to their pack
 * file, saving a copy of each.  The caller sets refs to 1 for its own
 * use; the store takes another reference for as long as it needs the
 * bytes.  Whoever drops the last one calls done(b): the store may, from
 * any of its threads and with its locks held, so done must neither
 * block nor call the store.  The caller must not change the buffer
 * while refs is above 1.
 */
struct store_lent {
	unsigned refs;		/* atomic */
	void (*done)(struct store_lent *b);
};

static inline void store_lent_get(struct store_lent *b)
{
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
}

static inline void store_lent_put(struct store_lent *b)
{
	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		b->done(b);
}

/* store_write of bytes in the buffer lent (NULL: the same as store_write). */
ssize_t store_write_lent(struct store *st, uint64_t ino, const void *buf, size_t len,
			 uint64_t off, struct store_lent *lent);

/* Read up to len bytes at off into buf; holes read as zeros.  Returns the
 * number of bytes read (short only at end of file, 0 past it). */
ssize_t store_read(struct store *st, uint64_t ino, void *buf, size_t len, uint64_t off);

/* One piece of a file range, for splicing: len bytes that are either zeros
 * (fd == -1) or at byte pos of the open file fd. */
struct store_extent {
	int fd;
	uint64_t pos;
	size_t len;
};

/*
 * Describe bytes [off, off+len) of ino (clipped at end of file) as at most
 * max extents, merging neighbours that are contiguous in one pack.  Returns
 * the number of extents; *covered (may be NULL) receives the number of
 * bytes they describe, which is the whole clipped range if max >=
 * len / STORE_PAGE_SIZE + 2.  The fds belong to the store: do not close
 * them.  On success (return >= 0) the caller MUST call store_map_done()
 * once it has finished reading from the fds: until then they stay valid
 * and the data at those positions unchanged (it holds off store_gc).
 * Returns -EOPNOTSUPP if the page backend cannot give file descriptors
 * (then use store_read); nothing is held after an error.
 */
int store_map(struct store *st, uint64_t ino, uint64_t off, size_t len,
	      struct store_extent *ext, size_t max, size_t *covered);
void store_map_done(struct store *st);

/* Set the size (shrinking drops whole pages past it and zeroes the tail of
 * the last page; growing adds holes). */
int store_truncate(struct store *st, uint64_t ino, uint64_t size);

/* Make [off, off+len) read as zeros without changing the size; whole pages
 * become holes, partial ones are rewritten.  Clipped at end of file. */
int store_punch(struct store *st, uint64_t ino, uint64_t off, uint64_t len);

/*
 * copy_file_range(2): copy len bytes from src at src_off to dst at dst_off
 * (clipped at the end of src; the destination grows as needed).  Whole
 * pages that are page-aligned in both files are shared by reference (no
 * bytes copied, no space used); other bytes are copied.  src == dst with
 * overlapping ranges is -EINVAL.  Returns the number of bytes copied.
 */
ssize_t store_clone(struct store *st, uint64_t src, uint64_t src_off, uint64_t dst,
		    uint64_t dst_off, uint64_t len);

/* lseek SEEK_DATA / SEEK_HOLE with page granularity: the offset of the
 * first data (non-hole page) / hole at or after off; the end of file
 * counts as a hole.  -ENXIO if off >= size (or no data after off). */
int64_t store_seek_data(struct store *st, uint64_t ino, uint64_t off);
int64_t store_seek_hole(struct store *st, uint64_t ino, uint64_t off);

struct store_file_info {
	uint64_t size;
	uint64_t pages;		/* pages stored (not holes) */
	uint64_t zero_pages;	/* holes below size */
	uint64_t shared_pages;	/* stored pages whose page is referenced more
				 * than once in the store (by any file, this
				 * one included), counted per page of the file */
	/* SHA-256 over: size as 8 bytes little-endian, then for each page
	 * i < ceil(size / 4096) the page's 32-byte hash, 32 zero bytes for a
	 * hole.  A page's hash is SHA-256 of its 4096 bytes, zero-padded past
	 * the end of file.  Equal for equal contents, whatever the history. */
	uint8_t digest[STORE_HASH_SIZE];
};

/* Figures for ino.  Commits pending changes first (it needs the store's
 * reference counts). */
int store_file_info(struct store *st, uint64_t ino, struct store_file_info *out);

/* Commit pending changes if ino has any (close or fsync of one file; this
 * may commit other files' pending changes too), and with durable make
 * everything committed durable against power loss (fsync).  Returns the
 * failure that made ino lose uncommitted changes (see "Failures" above)
 * once, if that happened while it was open. */
int store_flush(struct store *st, uint64_t ino, bool durable, struct err *e);

/* Commit all pending changes and make them durable. */
int store_sync(struct store *st, struct err *e);

/* ---- administration ------------------------------------------------------ */

/* Called now and then during long runs: done of total units. */
typedef void (*store_progress_fn)(void *arg, const char *phase, uint64_t done, uint64_t total);

struct store_fsck_problem {
	const char *path;	/* a path of the file ("/a/b"), or NULL */
	uint64_t ino;		/* 0 if not about a file */
	int64_t page;		/* page index in the file, -1 if none */
	const uint8_t *hash;	/* the page concerned, or NULL */
	const char *what;	/* what is wrong, one line */
};
typedef void (*store_fsck_fn)(void *arg, const struct store_fsck_problem *p);

struct store_fsck_result {
	uint64_t problems;
	uint64_t pages_checked;		/* stored pages read and hashed */
	uint64_t files_checked;		/* page maps checked: files with stored pages */
	/* store_fsck_repair only: */
	uint64_t refs_repaired;	/* pages whose reference count was set right */
	bool refs_left;		/* none was: the references could not be counted */
	uint64_t names_removed;	/* directory entries naming missing inodes */
	uint64_t symlinks_removed;	/* symlinks whose target was lost */
	uint64_t lost_found;	/* entries made or moved into /lost+found */
	uint64_t links_repaired;	/* inodes whose link count was set right */
	uint64_t parents_repaired;	/* directories whose recorded parent was */
	uint64_t pages_repaired;	/* files whose recorded page count was */
	uint64_t files_rebuilt;		/* files made again for page maps of missing inodes */
	uint64_t rows_rebuilt;		/* page-map rows rebuilt to match their checksums */
	uint64_t pages_reindexed;	/* intact pages whose lost index rows were made again */
	uint64_t hashes_repaired;	/* index rows whose damaged hash was set back */
	uint64_t maps_moved;		/* page maps of non-files moved to files of their own */
};

/*
 * Check the store: every stored page's bytes against its hash, every
 * page-map reference resolves to an indexed page at the same location,
 * every reference count equals the references, every inode is reachable
 * and its link count right, directory entries point to inodes.  Each
 * problem is passed to report (may be NULL) as it is found.  Works on a
 * read-only open beside a live writer (it then checks the last committed
 * state).  Returns 0 when the check ran (problems are counted in res, not
 * an error), -errno if it could not run: -EBUSY while a gc (in any
 * process) moves the store's pages, -EUCLEAN where SQLite finds index.db
 * itself damaged (store_salvage makes a new one of what it can read).
 */
int store_fsck(struct store *st, store_fsck_fn report, store_progress_fn progress, void *arg,
	       struct store_fsck_result *res, struct err *e);

/*
 * store_fsck, then the repairs it can make for sure, in the same
 * transaction:
 * - a page a page map names that the index lacks, but whose bytes at the
 *   named location hash to the named hash, indexed again
 *   (res->pages_reindexed), with the references counted (one more if the
 *   references cannot be counted for sure, see the next item); and an
 *   index row whose hash disagrees with a page map's, where the page's
 *   bytes hash to the map's, given the map's (res->hashes_repaired).
 *   Neither when SQLite finds index.db damaged.
 * - each page's reference count set to the references the page maps
 *   hold.  A count too high keeps a page gc would free (as deleting a
 *   file whose page map failed its checksum leaves them); one too low
 *   would let gc free a page still in use.  No count is changed, and
 *   res->refs_left is set, when index.db or any page map is damaged (a
 *   row unreadable or failing its checksum and not rebuilt, or naming a
 *   missing page): the references cannot then be counted.
 * - page-map rows failing their checksums (or not a whole number of
 *   slots) rebuilt where only their locations or only their hashes are
 *   damaged: the other part looked up in the index gives the checksum
 *   back (res->rows_rebuilt).
 * - files' recorded page counts set to what their maps hold
 *   (res->pages_repaired); a page map whose inode is missing made a file
 *   again (res->files_rebuilt: mode 0600, owned as the root, its size
 *   the end of the map's last row), keeping a name an entry still gives
 *   it; the page map of an inode that is not a file moved to such a file
 *   of its own, a new inode named in lost+found (res->maps_moved).
 * - a symlink whose target is lost removed (res->symlinks_removed), and
 *   its names with it.
 * - the inodes made to agree with the directory entries, which are what
 *   a mount shows: entries naming missing inodes removed; files and
 *   folders no path reaches (an entry in a missing inode or in a file, a
 *   file with a link count but no name, a directory without an entry,
 *   directories cut off in a cycle, opened at its lowest-numbered one)
 *   named #INODE in the directory lost+found of the root, made if
 *   missing; link counts of named files and of directories, and the
 *   parent a directory records, set right.
 * These last two are not done when SQLite finds index.db damaged.
 * The problems found are reported and counted as store_fsck does.
 * Needs a writable open (-EROFS).
 */
int store_fsck_repair(struct store *st, store_fsck_fn report, store_progress_fn progress,
		      void *arg, struct store_fsck_result *res, struct err *e);

/* ---- salvage ------------------------------------------------------------- */

#define STORE_SALVAGE_TABLES 7u

/* Of one table of index.db: rows copied, and damaged stretches skipped
 * (each loses the rows on the pages SQLite could not read). */
struct store_salvage_table {
	const char *name;
	uint64_t rows;
	uint64_t damaged;
};

struct store_salvage_result {
	struct store_salvage_table tables[STORE_SALVAGE_TABLES];
	char kept[32];		/* the old index's name in the store folder */
};

/*
 * Replace the store's index.db, which SQLite finds damaged, by a new one
 * holding every row SQLite can still read of it: each table is read in
 * order of its key, and a scan that fails starts again past the damaged
 * stretch.  The old file is kept as index.db.damaged, or, if an earlier
 * salvage kept one, index.db.damaged.2 (.3 ...): res->kept.  The store
 * must not be open (-EBUSY: it takes the store's lock).  What the lost
 * rows leave inconsistent (reference and link counts, entries without
 * inodes, files without entries, index rows of pages) is for
 * store_fsck_repair, on the store opened afterwards.  -EUCLEAN if
 * index.db cannot be read at all or is of another schema version.
 */
int store_salvage(const char *dir, store_progress_fn progress, void *arg,
		  struct store_salvage_result *res, struct err *e);

struct store_gc_result {
	uint64_t pages_freed;		/* page index entries without references removed */
	uint64_t bytes_before;		/* pack space before */
	uint64_t bytes_after;		/* and after */
};

/*
 * Reclaim space: remove pages nobody references from the index, then
 * rewrite pack files so that they hold only live pages (this also frees
 * data that was appended but never committed), and delete emptied packs.
 * Needs a writable open (so no other process has the store open for
 * writing); within the process it commits pending changes and excludes
 * every other store call while it runs.  Crash-safe at every step.
 * -EBUSY while an fsck (in any process) checks the store: gc and fsck
 * keep out of each other through a flock on STORE/gc.lock.
 */
int store_gc(struct store *st, store_progress_fn progress, void *arg,
	     struct store_gc_result *res, struct err *e);

struct store_stats {
	uint64_t files;			/* regular files */
	uint64_t dirs;
	uint64_t inodes;
	uint64_t logical_bytes;		/* sum of file sizes */
	uint64_t logical_pages;		/* sum of ceil(size / 4096) */
	uint64_t zero_pages;		/* of those, holes */
	uint64_t referenced_pages;	/* of those, stored (= logical - zero) */
	uint64_t unique_pages;		/* distinct pages in the index */
	uint64_t unreferenced_pages;	/* index entries gc would remove */
	uint64_t stored_bytes;		/* unique_pages * 4096 */
	uint64_t pack_bytes;		/* space the pack files take */
	uint64_t packs;
	double dedup_ratio;		/* referenced_pages / live unique pages (1 if none) */
};

/* Figures for the whole store (committed state).  Works read-only. */
int store_stats(struct store *st, struct store_stats *out, struct err *e);

#endif
