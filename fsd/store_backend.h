/*
 * fsd/store_backend.h: where page bytes live, behind a table of functions.
 *
 * The store keeps the page index (location -> hash, reference count) in
 * SQLite; a backend only keeps bytes.  It hands out a 64-bit location for
 * each page it stores, and the store gives that location back to read it.
 * Locations below 2^63 (SQLite keys are signed), and a page put after
 * another should get a higher one where the backend can: the index is
 * keyed by location, so new pages then go to its end.
 * The pack backend (store_pack.c) appends pages to pack files; the memory
 * backend (store_mem.c) is for tests; a remote tier (pages fetched by hash
 * from an object store) can be added behind the same table.
 *
 * Location 0 means "no page" and is never handed out.
 *
 * Threads: put, get and fd_of may be called from many threads at once;
 * sync and recover one at a time beside them; compact and reclaim beside
 * all of these; gc_mark, release and close with no other call running (the
 * store serialises them).
 */
#ifndef SNAPFS_STORE_BACKEND_H
#define SNAPFS_STORE_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "err.h"
#include "store.h"

struct store_backend;

/*
 * How much lower the store's background threads (the committer and the
 * pack writer) run than the daemon's other threads, in nice steps.  Their
 * work is deferred (index rows and pack appends for pages already hashed
 * and answered), and on a machine with few cores they otherwise take
 * turns away from the threads a writer waits for: the FUSE worker and
 * the hashing helper.  1 GiB dd of new pages into a store on tmpfs, two
 * vCPUs, paired rounds: 0.06 s faster per GiB at 10 (of 1.3 s), 0.12 s at
 * 14 or 19.  Not lower, because whoever waits for them (a namespace change
 * behind a commit, a sync behind the pack writer) waits longer when other
 * programs keep every core busy: at 10 they still get about a tenth of a
 * core against each busy program.
 */
#define STORE_BACKGROUND_NICE 10

/* Lower the calling thread's priority by STORE_BACKGROUND_NICE (up to
 * the lowest, 19); a thread that cannot keeps its priority. */
void store_thread_background(void);

/*
 * Space on the store's filesystem that page data leaves free for the
 * index: a delete, or any change of names, writes to index.db and its
 * WAL, so a disk filled to the last byte by pages could not even take
 * the deletes that would free it.  A 32nd of the filesystem, at least
 * 2 MiB and at most 256 MiB, but never more than a quarter of it.
 */
static inline uint64_t store_index_reserve(uint64_t fs_bytes)
{
	uint64_t r = fs_bytes / 32;
	if (r < (2ull << 20))
		r = 2ull << 20;
	if (r > (256ull << 20))
		r = 256ull << 20;
	return r < fs_bytes / 4 ? r : fs_bytes / 4;
}

/* The bytes page data may still take on the filesystem v describes: what
 * is available less the index's reserve. */
static inline uint64_t store_page_room(const struct statvfs *v)
{
	uint64_t avail = (uint64_t)v->f_bavail * v->f_frsize;
	uint64_t reserve = store_index_reserve((uint64_t)v->f_blocks * v->f_frsize);
	return avail > reserve ? avail - reserve : 0;
}

/* One live page, as handed to compact/release. */
struct store_live_page {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t loc;
};

/* Locations [lo, hi). */
struct store_loc_range {
	uint64_t lo, hi;
};

struct store_backend_ops {
	const char *name;

	/* Store one page (STORE_PAGE_SIZE bytes) whose hash is given and set
	 * *loc.  Not durable until sync().  Returns 0 or -errno. */
	int (*put)(struct store_backend *be, const uint8_t *hash, const void *page, uint64_t *loc);

	/* Store n pages given as iovecs of STORE_PAGE_SIZE each, hashes[i]
	 * being page i's; locs[i] receives each location.  If lent is not
	 * NULL, the pages lie in that buffer, and the backend may keep a
	 * reference to it (store_lent_get) instead of copying them.  May be
	 * NULL: the store then calls put() n times. */
	int (*put_many)(struct store_backend *be, const uint8_t (*hashes)[STORE_HASH_SIZE],
			const struct iovec *pages, unsigned n, struct store_lent *lent,
			uint64_t *locs);

	/* Read the page at loc (whose hash is given) into page.  -ENOENT if
	 * the backend has nothing there, -EIO on a short or failed read. */
	int (*get)(struct store_backend *be, const uint8_t *hash, uint64_t loc, void *page);

	/* Optional (NULL: the store calls get() for each page).  Read the n
	 * pages at loc, loc + 1, ... into pages (n * STORE_PAGE_SIZE bytes)
	 * with one read.  Any error (-EAGAIN: they cannot be read as one)
	 * only means the store reads them one by one instead. */
	int (*get_run)(struct store_backend *be, uint64_t loc, unsigned n, void *pages);

	/* Optional (NULL: not available).  The file descriptor and byte
	 * position holding the page at loc, for splicing.  The fd stays
	 * valid until the next release/close. */
	int (*fd_of)(struct store_backend *be, uint64_t loc, int *fd, uint64_t *pos);

	/* Optional (NULL: messages give loc as a number).  Where the page
	 * at loc lives, for messages: a file and byte, say. */
	void (*where)(struct store_backend *be, uint64_t loc, char *buf, size_t size);

	/* Optional (NULL: the backend never hands out a location twice).
	 * The index holds no location above loc: hand out only higher ones
	 * from now on, even where a container that held them is gone or
	 * was cut short, so that no page the index names is ever taken
	 * for a new one.  Called once after a writable open. */
	void (*hand_out_above)(struct store_backend *be, uint64_t loc);
	/* Make every page put so far durable. */
	int (*sync)(struct store_backend *be, struct err *e);

	/* Optional (NULL: a failure is final until the store is reopened).
	 * After a failed put or sync: forget every page put since the last
	 * successful sync, whose locations become invalid, give back the
	 * space they took where possible, and take puts again.  Pages made
	 * durable by a sync are untouched.  Returns 0 or -errno. */
	int (*recover)(struct store_backend *be, struct err *e);

	/*
	 * Garbage collection, step 1, every other call held off.  What the
	 * backend holds now is what steps 2 and 3 may touch; pages put from
	 * now on are left alone by them.  (So a backend may start a new
	 * container for later puts, to compact the one that took them until
	 * now; live_in(arg, lo, hi) counts the pages the index references at
	 * locations [lo, hi), for deciding that.)
	 */
	void (*gc_mark)(struct store_backend *be,
			uint64_t (*live_in)(void *arg, uint64_t lo, uint64_t hi), void *arg);

	/*
	 * Optional.  Still step 1, but beside other calls: live[0..n) is
	 * every page the index referenced at gc_mark, sorted by loc, from
	 * which the backend plans steps 2 and 3.
	 */
	void (*gc_plan)(struct store_backend *be, const struct store_live_page *live, size_t n);

	/*
	 * Step 2, beside other calls.  live[0..n) is every page the index
	 * referenced at step 1, sorted by loc.  The backend may copy pages
	 * (of what step 1 marked) to new places to free space; for each one
	 * it moves it updates live[i].loc.  Moved copies are durable when it
	 * returns, and the old copies are still in place (the store commits
	 * the new locations at the start of step 3, while reads may still
	 * use the old ones).  Pages that lose their last reference meanwhile
	 * may be copied all the same; pages that gain one are found at their
	 * new place by the store's relocation.
	 */
	int (*compact)(struct store_backend *be, struct store_live_page *live, size_t n,
		       store_progress_fn progress, void *arg, struct err *e);

	/*
	 * Optional (NULL: release may free anywhere).  Steps 2 and 3: the
	 * locations release may free pages in, sorted, as an array the
	 * caller frees.  live[] then needs to name only the pages there.
	 */
	int (*gc_scope)(struct store_backend *be, struct store_loc_range **out, size_t *n);

	/* Step 3: free everything step 1 marked that is not in live[0..n)
	 * (sorted by loc): every page the index holds by now, moved or not,
	 * and every page put but not yet committed (with gc_scope, those
	 * within its ranges suffice).  A backend that frees pages in place
	 * may free the dead ones of what it did not mark too: nothing
	 * outside live[] can be referred to any more. */
	int (*release)(struct store_backend *be, const struct store_live_page *live, size_t n,
		       struct err *e);

	/* Optional (NULL: nothing to do).  Step 4, beside other calls: give
	 * back the space of what release freed, where that is slow enough to
	 * do outside it (and close does it too). */
	void (*reclaim)(struct store_backend *be);

	/* Space used, in bytes, and the number of containers (packs). */
	int (*usage)(struct store_backend *be, uint64_t *bytes, uint64_t *containers);

	/* Free the backend (after sync if the store wants durability). */
	void (*close)(struct store_backend *be);
};

struct store_backend {
	const struct store_backend_ops *ops;
	/* Called before waiting for the backend's own threads (see
	 * store_set_block_hint); NULL: nothing. */
	void (*may_block)(void);
};

/* Pack files in folder dir (created if create).  rdonly: no writes. */
int store_pack_open(const char *dir, bool create, bool rdonly, struct store_backend **out,
		    struct err *e);

/* Pages in memory, for tests. */
int store_mem_open(struct store_backend **out);

#endif
