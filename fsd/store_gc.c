/*
 * fsd/store_gc.c: gc: drop unreferenced pages from the index and give
 * their space back, compacting packs.
 *
 * gc runs in the process that has the store open for writing (the lock
 * keeps every other process out) and excludes changes of file data (not
 * reads) through change_lock while it forgets dead pages, commits while
 * it points the index at pages it moved, all other calls through gc_lock
 * only while it frees pages, and nothing while it copies them (see
 * store_gc).  Its steps are ordered for crashes: moved pages are synced
 * before the transaction that points the index and page maps at them
 * commits, and old packs are deleted only after that.  An fsck running
 * meanwhile would read moved or deleted packs: admin_lock keeps them
 * apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_admin_i.h"

static int live_cmp(const void *a, const void *b)
{
	const struct store_live_page *x = a, *y = b;
	return x->loc < y->loc ? -1 : x->loc > y->loc;
}

/* Append the pages the index holds at locations [lo, hi) to (*out, *n),
 * by loc; *cap is the room there.  (Locations are index keys, below
 * 2^63.) */
static int pages_in(sqlite3 *db, uint64_t lo, uint64_t hi, struct store_live_page **out,
		    size_t *n, size_t *cap)
{
	if (lo >= hi || lo > INT64_MAX)
		return 0;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT hash, loc FROM page WHERE loc BETWEEN ?1 AND ?2 ORDER BY loc",
			       -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)lo);
	sqlite3_bind_int64(s, 2, (int64_t)(hi - 1 < INT64_MAX ? hi - 1 : INT64_MAX));
	int rc, r = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = store_grow((void **)out, cap, *n, sizeof(**out))))
			break;
		struct store_live_page *lp = &(*out)[(*n)++];
		memset(lp->hash, 0, sizeof(lp->hash));
		if (sqlite3_column_bytes(s, 0) == STORE_HASH_SIZE)
			memcpy(lp->hash, sqlite3_column_blob(s, 0), STORE_HASH_SIZE);
		lp->loc = (uint64_t)sqlite3_column_int64(s, 1);
	}
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(s);
	return r;
}

/* Dead pages forgotten per hold of step 1 (about 0.02-0.03 s of deletes;
 * tests build it smaller). */
#ifndef GC_FORGET_BATCH
#define GC_FORGET_BATCH 16384
#endif

/* A page gc forgot: where it was, and its hash's first bytes, which is
 * all the prefix set keys on. */
struct freed_page {
	uint64_t loc;
	uint8_t prefix[8];
};

/* What a gc carries from one step to the next. */
struct gc_run {
	struct freed_page *freed;	/* the pages step 1 forgot */
	size_t nfreed, capfreed;
	struct htab moved;		/* of struct fpage: pages compact moved */
	/* A read connection holding the index as step 1 left it, so that
	 * listing its pages waits until other calls go on. */
	sqlite3 *snap;
	int snap_err;			/* a count on it failed */
	/* The page-map rows naming moved pages, found beside other calls;
	 * rows_found: the list is complete (with st->gc_rows). */
	struct chunk_key *rows;
	size_t nrows, caprows;
	bool rows_found;
	struct store_live_page *live;	/* the index's pages, moved by compact */
	struct store_live_page *before;	/* ... and where they were */
	size_t n;
};

/* The moved pages in the n slots of locs (8 bytes each, little-endian)
 * take their new locations; true if any did. */
static bool follow_moved(const struct htab *moved, uint8_t *locs, int n)
{
	bool changed = false;
	for (int k = 0; k < n; k++) {
		uint64_t loc = get_le64(locs + 8 * k);
		const struct fpage *fp = loc ? htab_find(moved, &loc) : NULL;
		if (fp) {
			put_le64(locs + 8 * k, fp->moved_to);
			changed = true;
		}
	}
	return changed;
}

/* Give page-map row (ino, idx) the n locations locs and the checksum
 * that goes with them (transaction open).  A row that fails its checksum
 * is left as it is: fsck names it. */
static int write_row_locs(struct store *st, int64_t ino, int64_t idx, const uint8_t *locs, int n)
{
	sqlite3_stmt *w = store_stmt(st, st->db,
				     "UPDATE chunk SET locs = ?1, sum = snapfs_map_sum(ino, idx, ?1, hashes)"
				     " WHERE ino = ?2 AND idx = ?3"
				     " AND sum = snapfs_map_sum(ino, idx, locs, hashes)");
	if (!w)
		return -EIO;
	sqlite3_bind_blob(w, 1, locs, n * 8, SQLITE_TRANSIENT);
	sqlite3_bind_int64(w, 2, ino);
	sqlite3_bind_int64(w, 3, idx);
	int rc = sqlite3_step(w);
	sqlite3_reset(w);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Rewrite page-map row (ino, idx) if it names moved pages (transaction
 * open); a row gone since is fine. */
static int relocate_row(struct store *st, const struct htab *moved, int64_t ino, int64_t idx)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT locs FROM chunk WHERE ino = ? AND idx = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, ino);
	sqlite3_bind_int64(s, 2, idx);
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
	uint8_t locs[CHUNK_PAGES * 8];
	int n = rc == SQLITE_ROW ? sqlite3_column_bytes(s, 0) / 8 : 0;
	bool changed = false;
	if (n > 0 && n <= (int)CHUNK_PAGES) {	/* else damaged: fsck reports it */
		memcpy(locs, sqlite3_column_blob(s, 0), (size_t)n * 8);
		changed = follow_moved(moved, locs, n);
	}
	sqlite3_reset(s);
	return !r && changed ? write_row_locs(st, ino, idx, locs, n) : r;
}

/* Every page-map row of db that names moved pages: each(arg, ino, idx,
 * locs, n) with its n locations as they are once the pages are followed.
 * *rows counts the rows read.  0, -EIO, or what each returned. */
static int rows_naming_moved(sqlite3 *db, const struct htab *moved,
			     int (*each)(void *arg, int64_t ino, int64_t idx, const uint8_t *locs,
					 int n),
			     void *arg, uint64_t *rows)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT ino, idx, locs FROM chunk", -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	int rc, r = 0;
	uint8_t locs[CHUNK_PAGES * 8];
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		++*rows;
		int n = sqlite3_column_bytes(s, 2) / 8;
		if (n > (int)CHUNK_PAGES)
			continue;	/* damaged: fsck reports it */
		memcpy(locs, sqlite3_column_blob(s, 2), (size_t)n * 8);
		if (follow_moved(moved, locs, n))
			r = each(arg, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), locs, n);
	}
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(s);
	return r;
}

/* rows_naming_moved's each for relocate when it reads every row.
 * Writing the row being read is safe in SQLite when only non-key columns
 * change. */
static int rewrite_row(void *arg, int64_t ino, int64_t idx, const uint8_t *locs, int n)
{
	return write_row_locs(arg, ino, idx, locs, n);
}

/*
 * Point the index and every page map at the pages compact moved
 * (transaction open, db_lock held): from before[i] to live[i].  Each
 * index row changes its key once, in ascending order of old and of new
 * key.  The new locations are in packs compact made, which no row held
 * before, so no move meets a row still waiting to move (were the index
 * damaged so that one did, the update would fail and the transaction
 * roll back).  For 262,144 moved pages this took 0.33 s, against 1.28 s
 * for moving rows in hash order through negative stand-in keys.
 *
 * The page-map rows to rewrite are those gc_find_rows found on its
 * snapshot and those commits wrote since (st->gc_rows); without that
 * list, every row is read.
 */
static int relocate(struct store *st, const struct gc_run *g)
{
	sqlite3_stmt *up = store_stmt(st, st->db, "UPDATE page SET loc = ?2 WHERE loc = ?1");
	if (!up)
		return -EIO;
	for (size_t i = 0; i < g->n; i++) {
		if (g->live[i].loc == g->before[i].loc)
			continue;
		sqlite3_reset(up);
		sqlite3_bind_int64(up, 1, (int64_t)g->before[i].loc);
		sqlite3_bind_int64(up, 2, (int64_t)g->live[i].loc);
		if (sqlite3_step(up) != SQLITE_DONE) {
			sqlite3_reset(up);
			return -EIO;
		}
	}
	sqlite3_reset(up);
	if (!g->rows_found || st->gc_track_lost) {
		uint64_t rows = 0;
		return rows_naming_moved(st->db, &g->moved, rewrite_row, st, &rows);
	}
	int r = 0;
	const struct chunk_key *lists[] = { g->rows, st->gc_rows };
	size_t counts[] = { g->nrows, st->gc_nrows };
	for (size_t l = 0; l < 2 && !r; l++)
		for (size_t i = 0; i < counts[l] && !r; i++)
			r = relocate_row(st, &g->moved, lists[l][i].ino, lists[l][i].idx);
	return r;
}

/* Point a chunk's slots at the moved pages. */
static void relocate_locs(struct htab *moved, uint64_t *locs)
{
	for (unsigned k = 0; k < CHUNK_PAGES; k++) {
		if (!locs[k])
			continue;
		struct fpage *fp = htab_find(moved, &locs[k]);
		if (fp)
			locs[k] = fp->moved_to;
	}
}

/* Cached page maps follow the moved pages too (mem_lock held), and so do
 * the committed slots kept beside uncommitted changes, which the next
 * commit compares with the new ones. */
static void relocate_cache(struct store *st, struct htab *moved)
{
	for (size_t i = 0; i < st->itab_cap; i++)
		for (struct sinode *si = st->itab[i]; si; si = si->next)
			for (size_t c = chunk_next(si, 0, false); c < si->nchunks;
			     c = chunk_next(si, c + 1, false)) {
				struct chunk *ch = si->chunks[c];
				relocate_locs(moved, ch->loc);
				if (ch->base)
					relocate_locs(moved, ch->base->loc);
			}
}

/* Delete up to GC_FORGET_BATCH of the index's unreferenced pages, adding
 * them to g->freed.  The partial index page_dead makes this cost what the
 * dead rows do, not the whole index. */
static int gc_forget(struct store *st, struct gc_run *g, struct err *e)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db,
				    "DELETE FROM page WHERE loc IN "
				    "(SELECT loc FROM page WHERE refs = 0 LIMIT ?1) RETURNING loc, hash",
				    -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(st, st->db, rc, e, "gc: removing unreferenced pages");
	sqlite3_bind_int64(s, 1, GC_FORGET_BATCH);
	int r = 0;
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (store_grow((void **)&g->freed, &g->capfreed, g->nfreed, sizeof(*g->freed))) {
			r = err_set(e, -ENOMEM, "store %s: gc: out of memory", st->dir);
			break;
		}
		struct freed_page *fp = &g->freed[g->nfreed++];
		fp->loc = (uint64_t)sqlite3_column_int64(s, 0);
		memset(fp->prefix, 0, sizeof(fp->prefix));
		if (sqlite3_column_bytes(s, 1) == STORE_HASH_SIZE)
			memcpy(fp->prefix, sqlite3_column_blob(s, 1), sizeof(fp->prefix));
	}
	if (!r && rc != SQLITE_DONE)
		r = store_sql_err(st, st->db, rc, e, "gc: removing unreferenced pages");
	sqlite3_finalize(s);
	return r;
}

static void gc_run_free(struct gc_run *g)
{
	htab_free(&g->moved);
	free(g->freed);
	free(g->rows);
	if (g->snap) {
		sqlite3_exec(g->snap, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(g->snap);
	}
	free(g->live);
	free(g->before);
}

/* Hold db's view of the index as it is now until COMMIT: a read
 * transaction's snapshot starts at its first read.  An SQLite code. */
static int snapshot_begin(sqlite3 *db)
{
	return sqlite3_exec(db, "BEGIN; SELECT count(*) FROM meta", NULL, NULL, NULL);
}

/* gc_mark's count of the index's pages at [lo, hi), on the snapshot. */
static uint64_t snap_live_in(void *arg, uint64_t lo, uint64_t hi)
{
	struct gc_run *g = arg;
	sqlite3_stmt *s;
	if (lo >= hi || lo > INT64_MAX ||
	    sqlite3_prepare_v2(g->snap, "SELECT count(*) FROM page WHERE loc BETWEEN ?1 AND ?2", -1,
			       &s, NULL) != SQLITE_OK) {
		g->snap_err = -EIO;
		return 0;
	}
	sqlite3_bind_int64(s, 1, (int64_t)lo);
	sqlite3_bind_int64(s, 2, (int64_t)(hi - 1 < INT64_MAX ? hi - 1 : INT64_MAX));
	uint64_t n = 0;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = (uint64_t)sqlite3_column_int64(s, 0);
	else
		g->snap_err = -EIO;
	sqlite3_finalize(s);
	return n;
}

/* Before step 1, beside other calls: copy the WAL into the database on a
 * connection of gc's own.  Otherwise the WAL the writes before the gc
 * left (up to 64 MiB) is likely to be checkpointed by the first commit
 * of step 1, inside its hold: 0.18 s against 0.03 s, measured after
 * 2 GiB of new pages.  Failing only costs that. */
static void gc_checkpoint(struct store *st)
{
	sqlite3 *db;
	struct err le = { 0 };
	if (store_db_open(st, false, &db, &le))
		return;
	sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	sqlite3_close(db);
}

/* Hold every other call off (all: gc_lock; changes: change_lock
 * exclusive), pending changes committed (so the index is all there is),
 * db_lock.  r: the commit's result. */
static int gc_hold(struct store *st, bool all, struct err *e)
{
	pthread_rwlock_wrlock(all ? &st->gc_lock : &st->change_lock);
	int r = store_commit(st, e);
	pthread_mutex_lock(&st->db_lock);
	return r;
}

static void gc_unhold(struct store *st, bool all)
{
	pthread_mutex_unlock(&st->db_lock);
	pthread_rwlock_unlock(all ? &st->gc_lock : &st->change_lock);
}

/*
 * Step 1, changes held off (change_lock exclusive, what they changed
 * committed, db_lock) but reads going on: forget the pages nobody
 * references, take a snapshot of the index as it is then, and have the
 * backend mark what it holds now.  A read may still be using a page it
 * forgets (a file truncated or deleted while the read was under way);
 * the bytes stay in the packs until step 3b, which waits for every read.
 * The forgotten pages leave the prefix set in the same hold: once changes
 * go on, a write must not find them there and take them for stored pages.
 *
 * Pages are forgotten GC_FORGET_BATCH at a time, each batch in a hold of
 * its own (about 0.02-0.03 s), so that changes do not wait for all of them; a
 * page that gains a reference between batches is no longer dead, one that
 * loses its last is forgotten by a later batch.  The last batch, short,
 * and the snapshot share a hold.  Listing the live pages, about 0.2 s per
 * million, waits for gc_list, beside other calls.
 */
static int gc_forget_batch(struct store *st, struct gc_run *g, bool *last, struct err *e)
{
	size_t first = g->nfreed;
	int r = gc_forget(st, g, e);
	pthread_mutex_lock(&st->mem_lock);
	if (r) {
		/* The rows are gone whatever part of them was listed: the
		 * prefix set is read again rather than left naming them. */
		struct err le = { 0 };
		store_load_known(st, &le);
	} else {
		for (size_t i = first; i < g->nfreed; i++)
			pset_remove(&st->known, g->freed[i].prefix, g->freed[i].loc);
	}
	pthread_mutex_unlock(&st->mem_lock);
	*last = g->nfreed - first < GC_FORGET_BATCH;
	return r;
}

static int gc_start(struct store *st, struct gc_run *g, struct store_gc_result *res,
		    struct err *e)
{
	bool last = false;
	int r = 0;
	while (!r && !last) {
		r = gc_hold(st, false, e);
		if (!r)
			r = gc_forget_batch(st, g, &last, e);
		if (!r && last) {
			if (snapshot_begin(g->snap) != SQLITE_OK)
				r = store_sql_err(st, g->snap, sqlite3_errcode(g->snap), e,
						  "gc: reading the page index");
			else
				st->be->ops->gc_mark(st->be, snap_live_in, g);
			if (!r && g->snap_err)
				r = store_sql_err(st, g->snap, sqlite3_errcode(g->snap), e,
						  "gc: counting pages");
		}
		gc_unhold(st, false);
	}
	res->pages_freed = g->nfreed;
	return r;
}

/* Step 1, beside other calls: list the pages the index held at step 1
 * and let the backend plan from them. */
static int gc_list(struct store *st, struct gc_run *g, struct err *e)
{
	size_t cap = 0;
	int r = pages_in(g->snap, 0, UINT64_MAX, &g->live, &g->n, &cap);
	sqlite3_exec(g->snap, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(g->snap);
	g->snap = NULL;
	if (r)
		return err_set(e, r, "store %s: gc: listing pages: %s", st->dir, strerror(-r));
	g->before = g->n ? malloc(g->n * sizeof(*g->before)) : NULL;
	if (g->n && !g->before)
		return err_set(e, -ENOMEM, "store %s: gc: out of memory", st->dir);
	if (g->n)
		memcpy(g->before, g->live, g->n * sizeof(*g->before));
	if (st->be->ops->gc_plan)
		st->be->ops->gc_plan(st->be, g->live, g->n);
	return 0;
}

/*
 * What release must keep (step 3b, all held off, relocation committed):
 * every page the index holds now where release may free pages (the
 * backend's gc_scope, else everywhere), not only those step 1 listed,
 * and pages put but not committed.  Step 1's list misses pages
 * committed since: those written during step 2 into the pack then
 * taking pages, whose dead pages release punches out, and file tails a
 * commit waiting for step 1 stored before it (tails take no gc_lock).
 */
static int gc_keep_list(struct store *st, struct gc_run *g, struct err *e)
{
	free(g->live);
	g->live = NULL;
	g->n = 0;
	/* Only where release may free anything, if the backend says. */
	struct store_loc_range all = { 0, UINT64_MAX }, *ranges = NULL;
	size_t nranges = 0, cap = 0;
	int r = 0;
	if (st->be->ops->gc_scope)
		r = st->be->ops->gc_scope(st->be, &ranges, &nranges);
	const struct store_loc_range *rs = st->be->ops->gc_scope ? ranges : &all;
	size_t nr = st->be->ops->gc_scope ? nranges : 1;
	for (size_t i = 0; i < nr && !r; i++)
		r = pages_in(st->db, rs[i].lo, rs[i].hi, &g->live, &g->n, &cap);
	free(ranges);
	if (r)
		return err_set(e, r, "listing pages: %s", strerror(-r));
	pthread_mutex_lock(&st->mem_lock);
	size_t n = g->n, extra = st->pending.n + st->committing.n;
	if (extra) {
		struct store_live_page *l = realloc(g->live, (n + extra) * sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&st->mem_lock);
			return err_set(e, -ENOMEM, "out of memory");
		}
		g->live = l;
		const struct htab *tabs[] = { &st->pending, &st->committing };
		for (size_t t = 0; t < 2; t++)
			for (size_t i = 0; i < tabs[t]->cap; i++) {
				const struct ptab_ent *pe = htab_at(tabs[t], i);
				if (pe) {
					memcpy(l[n].hash, pe->hash, STORE_HASH_SIZE);
					l[n++].loc = pe->loc;
				}
			}
	}
	pthread_mutex_unlock(&st->mem_lock);
	if (n > g->n)
		qsort(g->live, n, sizeof(*g->live), live_cmp);
	g->n = n;
	return 0;
}

/* rows_naming_moved's each for gc_find_rows: note the row's key. */
static int list_row(void *arg, int64_t ino, int64_t idx, const uint8_t *locs, int n)
{
	(void)locs;
	(void)n;
	struct gc_run *g = arg;
	if (store_grow((void **)&g->rows, &g->caprows, g->nrows, sizeof(*g->rows)))
		return -ENOMEM;
	g->rows[g->nrows++] = (struct chunk_key){ ino, idx };
	return 0;
}

/*
 * Step 2, after compact, beside other calls: which pages moved, and which
 * page-map rows name them, read on a snapshot of the index.  From the
 * snapshot on, commits list the rows they write (st->gc_rows), so that
 * step 3a rewrites those and these instead of reading every row while
 * commits wait (0.1 s per million pages).  If the rows cannot be listed,
 * step 3a reads them all.
 */
static int gc_find_rows(struct store *st, struct gc_run *g, store_progress_fn progress, void *arg,
			struct err *e)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->live[i].loc != g->before[i].loc) {
			struct fpage *fp = htab_get(&g->moved, &g->before[i].loc);
			if (!fp)
				return err_set(e, -ENOMEM, "store %s: gc: out of memory", st->dir);
			memcpy(fp->hash, g->before[i].hash, STORE_HASH_SIZE);
			fp->moved_to = g->live[i].loc;
		}
	if (!g->moved.n)
		return 0;
	sqlite3 *snap;
	struct err le = { 0 };
	if (store_db_open(st, true, &snap, &le))
		return 0;
	/* No commit is under way while tracking starts and the snapshot is
	 * taken: each one is either in the snapshot or tracked. */
	pthread_mutex_lock(&st->db_lock);
	st->gc_track = true;
	st->gc_track_lost = false;
	st->gc_nrows = 0;
	int rc = snapshot_begin(snap);
	pthread_mutex_unlock(&st->db_lock);
	uint64_t done = 0;
	g->rows_found = rc == SQLITE_OK && !rows_naming_moved(snap, &g->moved, list_row, g, &done);
	if (progress)
		progress(arg, "finding page maps to update", done, done);
	sqlite3_exec(snap, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(snap);
	return 0;
}

/* Commits stop listing the rows they write (db_lock held). */
static void gc_untrack(struct store *st)
{
	st->gc_track = false;
	free(st->gc_rows);
	st->gc_rows = NULL;
	st->gc_nrows = st->gc_caprows = 0;
}

/*
 * Step 3a: one transaction points the index and every page map (written
 * since the snapshot of step 2 or not) at the moved pages, and then the
 * cached page maps and the prefix set follow.  Nothing is held off while
 * the transaction runs but commits (db_lock): reads go on, and so do
 * changes, in memory.  A read may take a page's old location or its new
 * one, from a cached map or from a row read before or after the
 * transaction: both hold the page until step 3b.  A change may take an
 * old location from the prefix set into a page map (and the committed
 * slots a changed map keeps may name old ones): so once the transaction
 * is in, commits wait (st->gc_relocating) while the changes under way
 * finish (change_lock exclusive) and memory is pointed at the new
 * places.  The transaction and what it must survive, step 1's deletions
 * included, reach the disk here: a power loss must not bring back rows
 * naming space step 3b frees.
 */
static int gc_relocate(struct store *st, struct gc_run *g, struct err *e)
{
	pthread_mutex_lock(&st->db_lock);
	int r = 0;
	if (g->moved.n) {
		int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		r = rc == SQLITE_OK ? relocate(st, g) : -EIO;
		if (!r)
			r = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
		if (r) {
			store_sql_err(st, st->db, sqlite3_errcode(st->db), e, "gc: relocating pages");
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	gc_untrack(st);
	bool follow = !r && g->moved.n;
	st->gc_relocating = follow;
	pthread_mutex_unlock(&st->db_lock);
	if (follow) {
		pthread_rwlock_wrlock(&st->change_lock);
		pthread_mutex_lock(&st->mem_lock);
		relocate_cache(st, &g->moved);
		for (size_t i = 0; i < g->moved.cap; i++) {
			const struct fpage *fp = htab_at(&g->moved, i);
			if (fp)
				pset_move(&st->known, fp->hash, fp->loc, fp->moved_to);
		}
		pthread_mutex_unlock(&st->mem_lock);
		pthread_mutex_lock(&st->db_lock);
		st->gc_relocating = false;
		pthread_cond_broadcast(&st->reloc_cond);
		pthread_mutex_unlock(&st->db_lock);
		pthread_rwlock_unlock(&st->change_lock);
	}
	return r ? r : store_sync_wal(st, e);
}

/* Step 3b, every other call held off again (no read holds an old
 * location any more): the old copies and the dead pages go. */
static int gc_release(struct store *st, struct gc_run *g, struct err *e)
{
	int r = gc_keep_list(st, g, e);
	if (!r)
		r = st->be->ops->release(st->be, g->live, g->n, e);
	if (r)
		err_prefix(e, "store %s: gc", st->dir);
	return r;
}

/*
 * Step 1 holds changes off, not reads, a batch at a time; step 3a holds
 * commits off for work that grows with what was moved, and changes only
 * while memory follows; step 3b holds every call off while the backend
 * frees space (with nothing dead or moved, a few ms).  Listing the live
 * pages, copying them out of packs with dead space (the slow part) and
 * finding the page maps that name moved pages run beside other calls, on
 * snapshots of the index where it matters.  Pages written meanwhile go
 * to packs step 1 left out; pages that lose their last reference
 * meanwhile are copied all the same and freed by the next gc; pages that
 * gain one (a write deduplicated against them) are followed to their new
 * place by step 3a, which relocates every page map naming them.
 */
int store_gc(struct store *st, store_progress_fn progress, void *arg, struct store_gc_result *res,
	     struct err *e)
{
	struct store_gc_result dummy;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (st->rdonly)
		return err_set(e, -EROFS, "store %s: gc needs the store opened for writing", st->dir);
	int r = store_known_wait(st, e);
	if (r)
		return r;
	int lock;
	r = admin_lock(st, true, &lock, e);
	if (r)
		return r;
	uint64_t packs;
	st->be->ops->usage(st->be, &res->bytes_before, &packs);
	struct gc_run g = { .moved = HTAB_LOC(struct fpage) };
	r = store_db_open(st, true, &g.snap, e);
	if (!r) {
		gc_checkpoint(st);
		r = gc_start(st, &g, res, e);
	}
	if (!r)
		r = gc_list(st, &g, e);
	if (!r) {
		r = st->be->ops->compact(st->be, g.live, g.n, progress, arg, e);
		if (r)
			err_prefix(e, "store %s: gc", st->dir);
	}
	if (!r)
		r = gc_find_rows(st, &g, progress, arg, e);
	if (!r)
		r = gc_relocate(st, &g, e);
	if (!r) {
		r = gc_hold(st, true, e);
		if (!r)
			r = gc_release(st, &g, e);
		gc_unhold(st, true);
		if (st->be->ops->reclaim)
			st->be->ops->reclaim(st->be);
	}
	st->be->ops->usage(st->be, &res->bytes_after, &packs);
	gc_run_free(&g);
	admin_unlock(lock);
	return r;
}
