/*
 * fsd/fs.h: the snapfs filesystem, served over the libfuse3 low-level API.
 *
 * struct fs sits between the kernel's FUSE requests and the page store:
 * it keeps the in-memory inode table (lookup counts, open counts, whether
 * a file is being written), decides caching (long timeouts and kept page
 * cache for sealed content), and turns each request into store calls.
 * main() in snapfs.c owns the session, the mount and the store; this
 * module owns nothing but its own table.
 */
#ifndef SNAPFS_FS_H
#define SNAPFS_FS_H

#include <stdbool.h>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

struct store;
struct store_lent;

/* When an access updates a file's or directory's atime: the mount's own
 * flag, which the kernel leaves to a FUSE filesystem to carry out. */
enum fs_atime {
	FS_ATIME_RELATIME,	/* the kernel's default (see fs_atime_due) */
	FS_ATIME_STRICT,	/* every access */
	FS_ATIME_NONE,		/* noatime */
};

/* Tunables from the command line (see snapfs(8)). */
struct fs_config {
	double timeout;		/* attr/entry timeout of ordinary content, s */
	double sealed_timeout;	/* the same for sealed content */
	bool splice;		/* reply to reads with pack-file fd buffers */
	unsigned max_read;	/* bytes; must equal the max_read mount option */
	unsigned max_readahead;	/* bytes the kernel may read ahead (1 MiB at
				 * least); the mount's read_ahead_kb is cut
				 * to it when the mount starts */
	bool debug;		/* log store errors through fuse_log */
	enum fs_atime atime;	/* for files and directories */
	bool diratime;		/* directories too (no nodiratime) */
	bool acl;		/* POSIX ACLs where the kernel can check them */
};

struct fs;

/*
 * Make the filesystem for an open store.  The store must stay open until
 * fs_free(); fs never closes it.  Returns 0 or -errno (-ENOMEM).
 */
int fs_new(struct store *store, const struct fs_config *cfg, struct fs **out);

/*
 * Free the inode table.  File handles still open (the kernel never sent
 * release) are released first, as if it had.  Inodes still remembered (the kernel never sent
 * forget, as on unmount) are released to the store first, so files that
 * were unlinked while open give their pages back.  NULL is allowed.
 */
void fs_free(struct fs *fs);

/* Set the atime rule once the mount's flags are known, and again
 * whenever a remount changes them (any thread, any time;
 * fs_mount_watch_start does both). */
void fs_set_atime(struct fs *fs, enum fs_atime atime, bool diratime);

/* The request handlers; the userdata of the session must be the struct fs. */
const struct fuse_lowlevel_ops *fs_lowlevel_ops(void);

/* Serve the session's requests in up to max_threads threads until it is
 * unmounted or a signal ends it (fs_loop.c), polling the device for up
 * to busy_poll_us between short requests that come one after another
 * (0: never): 0, or -errno if reading the device failed. */
int fs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned busy_poll_us);

/* The default of busy_poll_us: FS_BUSY_POLL_US, or 0 where this process
 * may run on one CPU only. */
#define FS_BUSY_POLL_US 50u
#define FS_BUSY_POLL_MAX_US 1000u
unsigned fs_loop_busy_poll_default(void);

/* With polling on, the store's hashing helper polls for the next large
 * write of a stream for up to this long (store_set_hash_spin): a copy
 * writes its next 1 MiB about 0.5 to 1 ms after the last one was
 * answered, on the 2-vCPU machine measured. */
#define FS_HASH_SPIN_US 2000u

/* The calling thread is about to wait or work for long: if it is serving
 * a request in the listener's turn, another worker takes over listening
 * first.  For store_set_block_hint; any thread may call it. */
void fs_loop_blocking(void);

/* The buffer of the write being served, if it may be lent to the store
 * (store_write_lent): a write of len bytes in a request read by
 * fs_loop_run, large enough to be worth it, with a spare buffer free to
 * read the next request into.  NULL: copy. */
struct store_lent *fs_loop_lend(size_t len);

#endif
