/*
 * fsd/fs_inode.h: the daemon's table of inodes the kernel knows about.
 *
 * The kernel holds a lookup count on every inode it was given in an entry
 * reply and drops it with forget; open files hold a second count.  An
 * inode stays in this table while either count is non-zero, which is what
 * keeps the pages of a file that was unlinked while open or mapped: the
 * store is told to let go only when the last count drops (fs_inode_put()
 * returns true then).  The table also remembers per-inode facts the
 * handlers need quickly: how many handles write the file, whether its
 * content changed since it was last opened with a kept page cache, and
 * whether its mode has setuid or setgid bits that a write must clear.
 *
 * Locking: every function takes the table's own mutex; none calls out to
 * the store or the kernel while holding it.
 */
#ifndef SNAPFS_FS_INODE_H
#define SNAPFS_FS_INODE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

struct fs_inode {
	uint64_t ino;
	uint64_t nlookup;	/* kernel lookup count */
	uint32_t opens;		/* open handles (files and directories) */
	uint32_t writers;	/* open handles that may write */
	bool changed;		/* written since the last kept-cache open */
	bool setid;		/* mode has bits a write clears (fs_inode_note_mode) */
	struct fs_inode *next;	/* hash chain */
};

struct fs_inode_table {
	pthread_mutex_t lock;
	struct fs_inode **bucket;
	size_t nbucket;
	size_t count;
	uint64_t writer_releases;	/* handles that may write, released so far */
	pthread_cond_t released;	/* broadcast at each (CLOCK_MONOTONIC) */
};

/* Returns 0 or -ENOMEM. */
int fs_inode_table_init(struct fs_inode_table *t);

/*
 * Call fn for every inode still in the table (in no order), removing each,
 * then free the table.  Used at unmount, where the kernel sends no forgets.
 */
void fs_inode_table_destroy(struct fs_inode_table *t, void (*fn)(uint64_t ino, void *arg), void *arg);

/*
 * An entry allocated ahead, for a call that must not fail for want of
 * memory once it has changed the store (mkdir, create, ...): NULL if out
 * of memory.  fs_inode_lookup and fs_inode_open take it from *spare (and
 * set that to NULL) if they add ino's entry; the caller frees what is
 * left.
 */
struct fs_inode *fs_inode_spare(void);

/* Add n lookups to ino (creating its entry, from *spare if spare is not
 * NULL and holds one).  Returns 0 or -ENOMEM. */
int fs_inode_lookup(struct fs_inode_table *t, uint64_t ino, uint64_t n, struct fs_inode **spare);

/* Count an open handle; writer says whether it may write (spare as for
 * fs_inode_lookup).  Returns the number of handles writing ino now, this
 * one included, or -ENOMEM. */
int fs_inode_open(struct fs_inode_table *t, uint64_t ino, bool writer, struct fs_inode **spare);

/*
 * Drop n lookups (forget) or one open handle (release; writer as at open).
 * Returns true when both counts reached zero and the entry is gone: the
 * caller must then tell the store the kernel no longer uses ino.
 */
bool fs_inode_forget(struct fs_inode_table *t, uint64_t ino, uint64_t n);
bool fs_inode_release(struct fs_inode_table *t, uint64_t ino, bool writer);

/* Number of handles writing ino now (0 if unknown). */
uint32_t fs_inode_writers(struct fs_inode_table *t, uint64_t ino);

/* How many handles that may write have been released so far, and wait
 * until that is more than seen or until deadline (CLOCK_MONOTONIC): true
 * if one was released. */
uint64_t fs_inode_writer_releases(struct fs_inode_table *t);
bool fs_inode_wait_writer_release(struct fs_inode_table *t, uint64_t seen,
				  const struct timespec *deadline);

/* Note that ino's content changed through this mount. */
void fs_inode_mark_changed(struct fs_inode_table *t, uint64_t ino);

/*
 * For an open: may the kernel keep the page cache it has for ino?  True
 * unless the content changed since the last time this said true; the call
 * clears the mark.  Files open for writing never keep it (the caller
 * checks writers).
 */
bool fs_inode_take_keep_cache(struct fs_inode_table *t, uint64_t ino);

/* mode less the bits that a write by an unprivileged caller clears:
 * setuid, and setgid with group execute (without it, setgid marks
 * mandatory locking, not a privilege). */
static inline uint32_t fs_mode_setid_cleared(uint32_t mode)
{
	uint32_t m = mode & ~(uint32_t)S_ISUID;
	return m & S_IXGRP ? m & ~(uint32_t)S_ISGID : m;
}

/*
 * Note ino's mode as an open or a setattr saw it: whether it has bits
 * that fs_mode_setid_cleared() clears.  fs_inode_setid() says whether the
 * last mode noted did.
 */
void fs_inode_note_mode(struct fs_inode_table *t, uint64_t ino, uint32_t mode);
bool fs_inode_setid(struct fs_inode_table *t, uint64_t ino);

#endif
