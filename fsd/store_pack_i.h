/*
 * fsd/store_pack_i.h: the pack-file page backend's private state, shared
 * by store_pack.c (packs, staging, puts, reads, sync, open) and
 * store_pack_gc.c (gc's part: marking, compacting, releasing).  See
 * store_pack.c for the design.
 */
#ifndef SNAPFS_STORE_PACK_I_H
#define SNAPFS_STORE_PACK_I_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "store_backend.h"

#define PACK_SHIFT 36
#define PACK_PAGE_MASK ((1ull << PACK_SHIFT) - 1)
/* A location is (pack id << PACK_SHIFT) | offset: ids take the rest. */
#define PACK_ID_MAX ((uint32_t)((1ull << (64 - PACK_SHIFT)) - 1))
#ifndef PACK_MAX_BYTES		/* a test builds the store with small packs */
#define PACK_MAX_BYTES (1ull << 30)
#endif
/* gc rewrites a pack once at least 1/COMPACT_DEAD_PART of it is dead. */
#define COMPACT_DEAD_PART 4
#define STAGE_PAGES 256u	/* pages per staging buffer (1 MiB) */
#define STAGE_BUFS 8u
#define STAGE_LENT 4u		/* lent buffers one stage may keep pages in */

enum stage_state { STAGE_FREE, STAGE_FILLING, STAGE_FULL, STAGE_WRITING };

/* Pages [off, off + n pages) of pack id, waiting to be written: page i
 * is at[i], which is buf + i pages (a copy) or in one of the buffers
 * lent[] (store_lent) that the stage holds a reference to. */
struct stage {
	uint8_t *buf;
	const uint8_t *at[STAGE_PAGES];
	struct store_lent *lent[STAGE_LENT];
	unsigned nlent;
	uint32_t id;
	uint64_t off;
	unsigned n;
	enum stage_state state;
	uint64_t seq;		/* order of hand-over to the writer thread */
};

struct pack {
	uint32_t id;
	int fd;
	uint64_t size;		/* bytes, as far as this process knows */
	uint64_t synced;	/* bytes made durable by a sync (or found at open) */
	bool unsynced;
	bool gc_fill;		/* being filled by compact, which syncs it */
	/* gc_mark found space in it that no listed page takes (or it is a
	 * small pack to merge): release frees nothing in other packs. */
	bool gc_scope;
	uint64_t holes;		/* bytes below size punched out (by gc) */
};

struct pack_be {
	struct store_backend be;
	char *dir;
	bool rdonly;
	int dir_fd;
	bool dir_unsynced;	/* packs created or deleted since the last sync */
	pthread_mutex_t lock;
	struct pack *packs;	/* sorted by id */
	size_t n, cap;
	struct pack *cur;	/* appended to; NULL: start a new one */
	uint32_t id_floor;	/* new packs get higher ids than this */
	uint64_t room;		/* bytes puts may take before the disk is asked again */

	/* What gc may touch (gc_mark to release): packs up to gc_max but
	 * gc_cur, the one then taking pages (0: none). */
	bool gc_marked;
	bool gc_merge;		/* merge the small packs it may touch */
	bool no_punch;		/* the filesystem cannot punch holes */
	uint32_t gc_max, gc_cur;
	uint32_t gc_last_fill;	/* the last pack compact filled, or 0 */
	int *doomed;		/* fds of packs release deleted, for reclaim */
	size_t ndoomed;
	struct punch {		/* dead pages release left reclaim to punch out */
		uint32_t id;
		uint64_t off, len;
	} *punches;
	size_t npunches, cappunches;

	/* Staging (writable opens only; under lock). */
	struct stage stage[STAGE_BUFS];
	struct stage *filling;	/* taking pages; NULL: none */
	uint64_t seq_queued;	/* last seq handed to the writer */
	uint64_t seq_done;	/* last seq written (in order: one writer) */
	int werr;		/* first failed background write, or 0 */
	pthread_cond_t cond;	/* any stage changed state */
	pthread_t writer;
	bool writer_running, writer_stop;

	int64_t sync_avg_ns;	/* how long syncs take, lately (atomic) */
};

/* Syncs are long work (see store_set_block_hint) while their average is
 * above this; a new store assumes a disk until it has measured. */
#define SYNC_LONG_NS 200000

/* ---- store_pack.c ---------------------------------------------------------- */

struct pack_be *pb_of(struct store_backend *be);
/* The path of pack id (in buf, size bytes). */
void pack_name(const struct pack_be *pb, uint32_t id, char *buf, size_t size);
/* Pack id in the table, or NULL (lock held). */
struct pack *pack_find(struct pack_be *pb, uint32_t id);
/* Take packs[i], its file deleted, out of the table (lock held; its fd
 * is the caller's to close). */
void pack_drop(struct pack_be *pb, size_t i);
/* The fd of pack id, opening it if another process created it since
 * (read-only opens beside a live writer).  -ENOENT if there is no such
 * pack, -EIO if it is a symlink or not a regular file.  Lock held. */
int pack_fd(struct pack_be *pb, uint32_t id, int *fd);
/* A new, empty pack to append to (lock held). */
int pack_new(struct pack_be *pb, struct pack **out);
/* pwritev all of iov at off, going on after short writes: 0 or -errno. */
int pack_write_all(int fd, struct iovec *iov, int cnt, uint64_t off);
/* Wait until everything staged so far is written; the first background
 * write error, if any (lock held). */
int pack_stage_flush(struct pack_be *pb);
/* fdatasync of pack id failed (errno): the error, naming its file. */
int pack_sync_failed(const struct pack_be *pb, uint32_t id, struct err *e);
/* The backend's sync operation. */
int pb_sync(struct store_backend *be, struct err *e);
/* Bytes of holes in fd below size (what SEEK_DATA skips). */
uint64_t pack_holes_below(int fd, uint64_t size);

/* ---- store_pack_gc.c: the backend's gc operations (store_backend.h) ---------- */

void pb_gc_mark(struct store_backend *be, uint64_t (*live_in)(void *arg, uint64_t lo, uint64_t hi),
		void *arg);
void pb_gc_plan(struct store_backend *be, const struct store_live_page *live, size_t n);
int pb_gc_scope(struct store_backend *be, struct store_loc_range **out, size_t *n);
int pb_compact(struct store_backend *be, struct store_live_page *live, size_t n,
	       store_progress_fn progress, void *arg, struct err *e);
int pb_release(struct store_backend *be, const struct store_live_page *live, size_t n,
	       struct err *e);
void pb_reclaim(struct store_backend *be);

#endif
