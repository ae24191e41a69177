/*
 * fsd/store_commit.c: the commit, which turns pending page-map changes into
 * one SQLite transaction.  Changed chunks are compared with their committed
 * slots to find reference deltas, page by page location; the backend is
 * synced first, then the chunk rows, inode sizes and page reference counts
 * are written.  Deleting a file takes its references back the same way.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_i.h"

/* ---- commit ------------------------------------------------------------------ */

/*
 * The pending table and the reference-change table of a commit keep their
 * slots from one commit to the next, up to this many (2.7 and 3.2 MB; a
 * commit's worth of pages fills half as many), so that each commit's
 * pages fill them without growing them anew: growing rehashes into newly
 * allocated memory, and its page faults (11 us each on the 2-vCPU virtual
 * machine measured) were three quarters of the daemon's during a copy-in.
 */
#define TAB_KEEP (4 * (size_t)STORE_COMMIT_PAGES)

/* Reference changes by page location (a table made with HTAB_LOC). */
struct delta {
	uint64_t loc;
	uint8_t hash[STORE_HASH_SIZE];	/* set by a gain: a new row needs it */
	int64_t n;
};

/* Add n references to the page at loc, whose hash is given. */
static int dtab_add(struct htab *t, uint64_t loc, const uint8_t *hash, int64_t n)
{
	struct delta *d = htab_get(t, &loc);
	if (!d)
		return -ENOMEM;
	d->n += n;
	if (n > 0)
		memcpy(d->hash, hash, STORE_HASH_SIZE);
	return 0;
}

static int delta_cmp(const void *a, const void *b)
{
	const struct delta *x = a, *y = b;
	return x->loc < y->loc ? -1 : x->loc > y->loc;
}

/* The non-zero deltas of t, moved to the front of its entries and sorted
 * by location, *n of them: new pages, whose locations are the highest,
 * then go to the end of the index in one run.  t is spent afterwards
 * (only htab_free is left). */
static struct delta *dtab_sorted(struct htab *t, size_t *n)
{
	struct delta *d = (struct delta *)t->ents;
	*n = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->used[i] && d[i].n)
			d[(*n)++] = d[i];
	if (*n > 1)
		qsort(d, *n, sizeof(*d), delta_cmp);
	return d;
}

/* Deltas in a run at least this long go to the index as one statement. */
#define DELTA_RUN_MIN 4

/* Rows added by one statement when a run's pages are new to the index:
 * one row per statement cost twice as much per row (SQLite 3.40, 262,144
 * rows: 0.15 s against 0.08 s). */
#define FILL_ROWS 32
#define FILL_1 "(?,?,?)"
#define FILL_4 FILL_1 "," FILL_1 "," FILL_1 "," FILL_1
#define FILL_16 FILL_4 "," FILL_4 "," FILL_4 "," FILL_4
static const char fill_many_sql[] = "INSERT OR IGNORE INTO page(loc, hash, refs) VALUES "
				    FILL_16 "," FILL_16;

/* The run of deltas from d: consecutive locations, all with the same
 * change.  Its length (1 or more, at most n). */
static size_t delta_run(const struct delta *d, size_t n)
{
	size_t k = 1;
	while (k < n && d[k].loc == d[0].loc + k && d[k].n == d[0].n)
		k++;
	return k;
}

/* Add rows for the run of k deltas from d, which are gains, to the pages
 * that have none: FILL_ROWS to a statement (many) while that many are
 * left, the rest one by one. */
static int fill_rows(struct store *st, sqlite3_stmt *many, sqlite3_stmt *one,
		     const struct delta *d, size_t k)
{
	for (size_t j = 0; j < k;) {
		size_t per = k - j >= FILL_ROWS ? FILL_ROWS : 1;
		sqlite3_stmt *s = per == FILL_ROWS ? many : one;
		sqlite3_reset(s);
		for (size_t i = 0; i < per; i++, j++) {
			int at = (int)(3 * i);
			sqlite3_bind_int64(s, at + 1, (int64_t)d[j].loc);
			sqlite3_bind_blob(s, at + 2, d[j].hash, STORE_HASH_SIZE, SQLITE_STATIC);
			sqlite3_bind_int64(s, at + 3, d[j].n);
		}
		if (store_step(st, s) != SQLITE_DONE)
			return -EIO;
	}
	return 0;
}

/*
 * Apply reference deltas to the page index (transaction open, db_lock).
 * A file's pages were mostly stored in a row, so copying, cloning or
 * deleting it changes runs of consecutive locations by the same amount:
 * each run is one range update, which costs a fraction of one statement
 * per page.  Pages new to the store have no row yet: when a range update
 * finds fewer rows than the run has, the missing ones are inserted, many
 * to a statement (a loss needs no row: nothing is left to count).
 */
static int apply_deltas(struct store *st, struct htab *t)
{
	size_t n;
	struct delta *deltas = dtab_sorted(t, &n);
	sqlite3_stmt *up = store_stmt(st, st->db,
				      "INSERT INTO page(loc, hash, refs) VALUES(?1, ?3, ?2)"
				      " ON CONFLICT(loc) DO UPDATE SET refs = refs + excluded.refs");
	sqlite3_stmt *down = store_stmt(st, st->db, "UPDATE page SET refs = refs + ?2 WHERE loc = ?1");
	sqlite3_stmt *range = store_stmt(st, st->db,
					 "UPDATE page SET refs = refs + ?3 WHERE loc BETWEEN ?1 AND ?2");
	sqlite3_stmt *fill = store_stmt(st, st->db,
					"INSERT OR IGNORE INTO page(loc, hash, refs) VALUES(?1, ?2, ?3)");
	sqlite3_stmt *fill_many = store_stmt(st, st->db, fill_many_sql);
	if (!up || !down || !range || !fill || !fill_many)
		return -EIO;
	int r = 0;
	for (size_t i = 0; i < n && !r;) {
		size_t k = delta_run(&deltas[i], n - i);
		if (k >= DELTA_RUN_MIN) {
			sqlite3_reset(range);
			sqlite3_bind_int64(range, 1, (int64_t)deltas[i].loc);
			sqlite3_bind_int64(range, 2, (int64_t)deltas[i + k - 1].loc);
			sqlite3_bind_int64(range, 3, deltas[i].n);
			if (store_step(st, range) != SQLITE_DONE)
				r = -EIO;
			/* Rows missing from a run of gains: new pages. */
			if (!r && deltas[i].n > 0 && (size_t)sqlite3_changes(st->db) < k)
				r = fill_rows(st, fill_many, fill, &deltas[i], k);
		} else {
			sqlite3_stmt *s = deltas[i].n > 0 ? up : down;
			for (size_t j = i; j < i + k && !r; j++) {
				struct delta *d = &deltas[j];
				sqlite3_reset(s);
				sqlite3_bind_int64(s, 1, (int64_t)d->loc);
				sqlite3_bind_int64(s, 2, d->n);
				if (d->n > 0)
					sqlite3_bind_blob(s, 3, d->hash, STORE_HASH_SIZE, SQLITE_STATIC);
				if (store_step(st, s) != SQLITE_DONE)
					r = -EIO;
			}
		}
		i += k;
	}
	sqlite3_reset(up);
	sqlite3_reset(down);
	sqlite3_reset(range);
	sqlite3_reset(fill);
	sqlite3_reset(fill_many);
	return r;
}

struct row {
	uint64_t ino, idx;
	uint8_t *blob;		/* hashes then locs; NULL: delete the row */
	size_t nslots;
	struct chunk_base *base;	/* the chunk's committed slots */
};

struct irow {
	uint64_t ino, size, pages;
	int64_t mtime_ns, ctime_ns;
};

struct batch {
	struct row *rows;
	size_t nrows, caprows;
	struct irow *inodes;
	size_t ninodes, capinodes;
	struct htab deltas;	/* of struct delta */
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->nrows; i++) {
		free(b->rows[i].blob);
		free(b->rows[i].base);
	}
	free(b->rows);
	free(b->inodes);
	htab_free(&b->deltas);
}

/* Give b's reference-change table back to st, emptied, for the next
 * commit (db_lock held). */
static void batch_keep_deltas(struct store *st, struct batch *b)
{
	htab_clear(&b->deltas, TAB_KEEP);
	st->deltas = b->deltas;
	b->deltas = (struct htab){ 0 };
}

/* Reference changes of one chunk going from base to the n slots given
 * (hashes, then little-endian locations; slots past n are holes). */
static int chunk_deltas(struct htab *t, const struct chunk_base *base, const uint8_t *hashes,
			const uint8_t *locs, size_t n)
{
	int r = 0;
	for (size_t k = 0; k < CHUNK_PAGES && !r; k++) {
		uint64_t loc = k < n ? get_le64(locs + 8 * k) : 0;
		if (base->loc[k] == loc)
			continue;
		if (base->loc[k])
			r = dtab_add(t, base->loc[k], base->hash[k], -1);
		if (!r && loc)
			r = dtab_add(t, loc, hashes + k * STORE_HASH_SIZE, 1);
	}
	return r;
}

/* Move one dirty chunk into the batch (mem_lock held).  The row takes the
 * chunk's committed slots along, so that the reference changes are
 * worked out after mem_lock is dropped (batch_deltas), not while writers
 * wait for it. */
static int batch_chunk(struct store *st, struct batch *b, struct sinode *si, size_t ci)
{
	struct chunk *c = si->chunks[ci];
	int r = 0;
	size_t used = 0;
	for (unsigned k = 0; k < CHUNK_PAGES; k++)
		if (c->loc[k])
			used = k + 1;
	if (!used && !c->in_db) {
		/* No row before, none after: only references to settle. */
		r = chunk_deltas(&b->deltas, c->base, NULL, NULL, 0);
		if (r)
			return r;
		goto clean;
	}
	if ((r = store_grow((void **)&b->rows, &b->caprows, b->nrows, sizeof(*b->rows))))
		return r;
	struct row *row = &b->rows[b->nrows];
	*row = (struct row){ .ino = si->ino, .idx = ci, .nslots = used };
	if (used) {
		row->blob = malloc(used * (STORE_HASH_SIZE + 8));
		if (!row->blob)
			return -ENOMEM;
		memcpy(row->blob, c->hash, used * STORE_HASH_SIZE);
		for (size_t k = 0; k < used; k++)
			put_le64(row->blob + used * STORE_HASH_SIZE + 8 * k, c->loc[k]);
	}
	row->base = c->base;
	c->base = NULL;
	b->nrows++;
	c->in_db = used != 0;
clean:
	free(c->base);
	c->base = NULL;
	if (!used)
		chunk_drop(st, si, ci);
	return 0;
}

/* The reference changes of every row in b (no lock needed: b is the
 * commit's own copy). */
static int batch_deltas(struct batch *b)
{
	int r = 0;
	for (size_t i = 0; i < b->nrows && !r; i++) {
		struct row *row = &b->rows[i];
		r = chunk_deltas(&b->deltas, row->base, row->blob,
				 row->blob ? row->blob + row->nslots * STORE_HASH_SIZE : NULL,
				 row->nslots);
	}
	return r;
}

/* Copy everything pending into b and mark it clean (mem_lock held). */
static int batch_collect(struct store *st, struct batch *b)
{
	int r = 0;
	for (struct sinode *si = st->changed, *next; si && !r; si = next) {
		next = si->chg_next;
		if (!si->dirty) {
			if (!si->tail)
				sinode_unlist(st, si);
			continue;
		}
		for (size_t ci = si->dirty_lo; ci < si->dirty_hi && !r; ci++)
			if (si->chunks[ci] && si->chunks[ci]->base)
				r = batch_chunk(st, b, si, ci);
		if (r)
			break;
		si->dirty_lo = si->dirty_hi = 0;
		r = store_grow((void **)&b->inodes, &b->capinodes, b->ninodes, sizeof(*b->inodes));
		if (r)
			break;
		/* A tail held since the commit stored the tails
		 * stays out: the size stops where the map does. */
		uint64_t size = si->tail ? si->map_size : si->size;
		b->inodes[b->ninodes++] = (struct irow){ .ino = si->ino, .size = size,
							 .pages = si->pages,
							 .mtime_ns = si->mtime_ns,
							 .ctime_ns = si->ctime_ns };
		si->dirty = false;
		if (!si->tail)
			sinode_unlist(st, si);
	}
	return r;
}

/* Pages put since the last commit that nothing refers to any more (a
 * file written and deleted before it) get rows too, with no reference
 * (transaction open, db_lock): the prefix set holds them, and the index
 * is where gc finds them, to take them out of it before it gives their
 * space back.  (No row, they could be found by a write after gc had
 * decided to punch them out.)  The pending pages are in st->committing,
 * which only this commit changes; the deltas are not spent yet. */
static int index_orphans(struct store *st, const struct htab *deltas)
{
	sqlite3_stmt *s = NULL;
	for (size_t i = 0; i < st->committing.cap; i++) {
		const struct ptab_ent *pe = htab_at(&st->committing, i);
		if (!pe)
			continue;
		const struct delta *d = htab_find(deltas, &pe->loc);
		if (d && d->n > 0)
			continue;
		if (!s && !(s = store_stmt(st, st->db,
					   "INSERT OR IGNORE INTO page(loc, hash, refs) VALUES(?, ?, 0)")))
			return -EIO;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, (int64_t)pe->loc);
		sqlite3_bind_blob(s, 2, pe->hash, STORE_HASH_SIZE, SQLITE_STATIC);
		int rc = store_step(st, s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	return 0;
}

static int batch_write(struct store *st, struct batch *b)
{
	sqlite3_stmt *put = store_stmt(st, st->db,
				       "INSERT INTO chunk(ino, idx, hashes, locs, sum) VALUES(?, ?, ?, ?, ?)"
				       " ON CONFLICT(ino, idx) DO UPDATE"
				       " SET hashes = excluded.hashes, locs = excluded.locs, sum = excluded.sum");
	sqlite3_stmt *del = store_stmt(st, st->db, "DELETE FROM chunk WHERE ino = ? AND idx = ?");
	sqlite3_stmt *ino = store_stmt(st, st->db,
				       "UPDATE inode SET size = ?, pages = ?, mtime_ns = ?, ctime_ns = ?"
				       " WHERE ino = ?");
	if (!put || !del || !ino)
		return -EIO;
	for (size_t i = 0; i < b->nrows; i++) {
		struct row *row = &b->rows[i];
		sqlite3_stmt *s = row->blob ? put : del;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, (int64_t)row->ino);
		sqlite3_bind_int64(s, 2, (int64_t)row->idx);
		if (row->blob) {
			size_t nh = row->nslots * STORE_HASH_SIZE, nl = row->nslots * 8;
			int64_t sum;
			int r = store_map_sum(st, row->ino, row->idx, row->blob + nh, nl, row->blob, nh,
					      &sum);
			if (r)
				return r;
			sqlite3_bind_blob(s, 3, row->blob, (int)nh, SQLITE_STATIC);
			sqlite3_bind_blob(s, 4, row->blob + nh, (int)nl, SQLITE_STATIC);
			sqlite3_bind_int64(s, 5, sum);
		}
		int rc = store_step(st, s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return -EIO;
		if (st->gc_track && row->blob && !st->gc_track_lost) {
			if (store_grow((void **)&st->gc_rows, &st->gc_caprows, st->gc_nrows,
				 sizeof(*st->gc_rows)))
				st->gc_track_lost = true;	/* gc reads every row */
			else
				st->gc_rows[st->gc_nrows++] =
					(struct chunk_key){ (int64_t)row->ino, (int64_t)row->idx };
		}
	}
	for (size_t i = 0; i < b->ninodes; i++) {
		struct irow *ir = &b->inodes[i];
		sqlite3_reset(ino);
		sqlite3_bind_int64(ino, 1, (int64_t)ir->size);
		sqlite3_bind_int64(ino, 2, (int64_t)ir->pages);
		sqlite3_bind_int64(ino, 3, ir->mtime_ns);
		sqlite3_bind_int64(ino, 4, ir->ctime_ns);
		sqlite3_bind_int64(ino, 5, (int64_t)ir->ino);
		int rc = store_step(st, ino);
		sqlite3_reset(ino);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	int r = index_orphans(st, &b->deltas);
	return r ? r : apply_deltas(st, &b->deltas);
}

/* The commit of b failed with r (what: the message): the store is failed,
 * and b's inodes, marked clean although the database never saw their
 * changes, are marked dirty again so that the recovery knows them
 * (mem_lock held). */
static void commit_failed(struct store *st, const struct batch *b, int r, const char *what)
{
	for (size_t i = 0; i < b->ninodes; i++) {
		struct sinode *si = sinode_find(st, b->inodes[i].ino);
		if (si)
			sinode_dirty(st, si);
	}
	store_fail(st, r, "commit: %s", what);
}

/* From how many page-map chunks, inodes or page references changed a
 * commit's transaction counts as long work (see store_set_block_hint);
 * the backend's sync tells itself. */
#define COMMIT_LONG_CHUNKS 16u
#define COMMIT_LONG_INODES 64u
#define COMMIT_LONG_PAGES 2048u

int store_commit(struct store *st, struct err *e)
{
	if (st->rdonly)
		return 0;
	struct err le = { 0 };
	if (!e)
		e = &le;
	/* Forgotten inodes go first, in a transaction of their own (a
	 * failure leaves orphans, which the next store_open reclaims). */
	store_reclaim_forgotten(st);
	/* Tails go in with the rest (a failure sticks in st->failed). */
	tails_flush_all(st);
	store_db_lock(st);
	if (st->gc_relocating)
		store_may_block(st);
	while (st->gc_relocating)
		pthread_cond_wait(&st->reloc_cond, &st->db_lock);
	pthread_mutex_lock(&st->mem_lock);
	int r = st->failed;
	bool any = false;
	for (struct sinode *si = st->changed; si && !any; si = si->chg_next)
		any = si->dirty;
	struct batch b = { .deltas = st->deltas.esz ? st->deltas : HTAB_LOC(struct delta) };
	st->deltas = (struct htab){ 0 };
	if (!r && any) {
		r = batch_collect(st, &b);
		/* The pending pages stay findable while the transaction
		 * runs; new ones go to the last commit's table. */
		struct htab spare = st->committing;
		htab_clear(&spare, TAB_KEEP);
		st->committing = st->pending;
		st->pending = spare;
		st->pending_pages = 0;
		st->commit_active = true;
		if (r) {
			commit_failed(st, &b, r, strerror(-r));
		}
	}
	pthread_mutex_unlock(&st->mem_lock);
	if (!r && any) {
		r = batch_deltas(&b);
		if (r) {
			pthread_mutex_lock(&st->mem_lock);
			commit_failed(st, &b, r, strerror(-r));
			st->commit_active = false;
			pthread_mutex_unlock(&st->mem_lock);
		}
	}
	if (r || !any) {
		batch_keep_deltas(st, &b);
		pthread_mutex_unlock(&st->db_lock);
		batch_free(&b);
		return r ? err_set(e, r, "store %s: commit: earlier failure: %s", st->dir,
				   strerror(-r))
			 : 0;
	}

	/* Tests: memory is clean (dropped chunks gone), the index not yet. */
	STORE_TEST_HOOK("commit", st, 0);
	/* The page data first, then the transaction that refers to it. */
	if (b.nrows >= COMMIT_LONG_CHUNKS || b.ninodes >= COMMIT_LONG_INODES ||
	    b.deltas.n >= COMMIT_LONG_PAGES)
		store_may_block(st);
	r = st->be->ops->sync(st->be, e);
	if (!r) {
		int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		r = rc == SQLITE_OK ? batch_write(st, &b) : -EIO;
		if (!r) {
			rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
			r = rc == SQLITE_OK ? 0 : -EIO;
		}
		if (r) {
			r = store_sql_err(st, st->db, sqlite3_errcode(st->db), e, "commit");
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	pthread_mutex_lock(&st->mem_lock);
	htab_clear(&st->committing, TAB_KEEP);
	st->commit_active = false;
	if (r) {
		/* Memory and database disagree now. */
		commit_failed(st, &b, r, e->msg[0] ? e->msg : strerror(-r));
	}
	cache_trim(st);
	pthread_mutex_unlock(&st->mem_lock);
	batch_keep_deltas(st, &b);
	pthread_mutex_unlock(&st->db_lock);
	batch_free(&b);
	return r;
}

/* ---- failing and recovering ---------------------------------------------------- */

void store_fail(struct store *st, int r, const char *fmt, ...)
{
	if (__atomic_load_n(&st->failed, __ATOMIC_RELAXED))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->fail_msg, sizeof(st->fail_msg), fmt, ap);
	va_end(ap);
	__atomic_store_n(&st->failed, r, __ATOMIC_RELAXED);
}

int store_recover(struct store *st)
{
	if (!__atomic_load_n(&st->failed, __ATOMIC_RELAXED))
		return 0;
	/* Exclusive: no data call is in progress, none starts. */
	store_may_block(st);
	pthread_rwlock_wrlock(&st->gc_lock);
	pthread_mutex_lock(&st->db_lock);
	int cause = st->failed, r = 0;
	if (!cause) {	/* another call recovered meanwhile */
		pthread_mutex_unlock(&st->db_lock);
		pthread_rwlock_unlock(&st->gc_lock);
		return 0;
	}
	char msg[2800];
	struct err e = { 0 };
	r = st->be->ops->recover ? st->be->ops->recover(st->be, &e) : -EOPNOTSUPP;
	unsigned lost = 0;
	if (!r) {
		pthread_mutex_lock(&st->mem_lock);
		htab_free(&st->pending);
		htab_free(&st->committing);
		st->pending_pages = 0;
		pthread_mutex_lock(&st->rdb_lock);
		for (size_t i = 0; i < st->itab_cap; i++)
			for (struct sinode *si = st->itab[i], *next; si; si = next) {
				next = si->next;
				bool changed = sinode_changed(si);
				int lr = sinode_reload(st, si);
				if (changed && si->opens) {
					si->lost = cause;
					lost++;
				}
				if (lr && !si->users && !si->opens)
					sinode_drop(st, si);
				else if (lr && !r)
					r = lr;
			}
		pthread_mutex_unlock(&st->rdb_lock);
		if (!r)
			__atomic_store_n(&st->failed, 0, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&st->mem_lock);
	}
	/* A full disk: fold the WAL back into index.db and cut it to
	 * nothing, so that the deletes that free space have room to go. */
	if (!r && cause == -ENOSPC)
		sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (!r)
		snprintf(msg, sizeof(msg),
			 "store %.2048s: %.255s; changes not yet committed were dropped (%u open file%s lost"
			 " some) and the store takes changes again",
			 st->dir, st->fail_msg, lost, lost == 1 ? "" : "s");
	else
		snprintf(msg, sizeof(msg),
			 "store %.2048s: %.255s; could not recover (%.255s): changes fail until it is"
			 " reopened",
			 st->dir, st->fail_msg, e.msg[0] ? e.msg : strerror(-r));
	pthread_mutex_unlock(&st->db_lock);
	pthread_rwlock_unlock(&st->gc_lock);
	if (st->log)
		st->log(st->log_arg, msg);
	return r ? cause : 0;
}

/* ---- deleting a file ------------------------------------------------------------- */

/* Page-map chunks (of 128 pages) from which deleting a file counts as
 * long work. */
#define DELETE_LONG_CHUNKS 32u

/* Drop ino from the cache and add the loss of each of its pages to t
 * (transaction open, db_lock held). */
static int inode_pages_lost(struct store *st, uint64_t ino, struct htab *t)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (si) {
		/* Its pending changes die with it: the database never saw
		 * them, and the commit finds changes only in cached chunks. */
		sinode_drop(st, si);
	}
	pthread_mutex_unlock(&st->mem_lock);

	sqlite3_stmt *s =
		store_stmt(st, st->db, "SELECT hashes, locs, idx, sum FROM chunk WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc, r = 0;
	unsigned rows = 0;
	while (!r && (rc = store_step(st, s)) == SQLITE_ROW) {
		if (++rows == DELETE_LONG_CHUNKS)
			store_may_block(st);	/* a large file */
		const uint8_t *h = sqlite3_column_blob(s, 0), *l = sqlite3_column_blob(s, 1);
		int nh = sqlite3_column_bytes(s, 0), nl = sqlite3_column_bytes(s, 1);
		uint64_t idx = (uint64_t)sqlite3_column_int64(s, 2);
		r = store_map_check(st, ino, idx, l, (size_t)nl, h, (size_t)nh,
				    sqlite3_column_int64(s, 3));
		if (r == -EUCLEAN) {
			/* Damaged: its pages keep their references (space
			 * lost until fsck is acted on), rather than other
			 * files' pages losing theirs. */
			store_map_damaged(st, ino, idx);
			r = 0;
			continue;
		}
		int n = nh / (int)STORE_HASH_SIZE;
		if (nl < n * 8)
			n = nl / 8;
		for (int k = 0; k < n && !r; k++)
			if (get_le64(l + 8 * k))
				r = dtab_add(t, get_le64(l + 8 * k), h + k * STORE_HASH_SIZE, -1);
	}
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_reset(s);
	return r;
}

/* Delete ino's rows (transaction open, db_lock held). */
static int inode_rows_delete(struct store *st, uint64_t ino)
{
	static const char *const dels[] = {
		"DELETE FROM chunk WHERE ino = ?",
		"DELETE FROM xattr WHERE ino = ?",
		"DELETE FROM symlink WHERE ino = ?",
		"DELETE FROM inode WHERE ino = ?",
	};
	for (unsigned i = 0; i < sizeof(dels) / sizeof(dels[0]); i++) {
		sqlite3_stmt *s = store_stmt(st, st->db, dels[i]);
		if (!s)
			return -EIO;
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		int r = store_step(st, s) == SQLITE_DONE ? 0 : -EIO;
		sqlite3_reset(s);
		if (r)
			return r;
	}
	return 0;
}

/* Delete the n inodes ino with their pages in one transaction (db_lock
 * held). */
static int inodes_delete(struct store *st, const uint64_t *ino, size_t n)
{
	struct htab t = HTAB_LOC(struct delta);
	int r = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
	for (size_t i = 0; i < n && !r; i++)
		r = inode_pages_lost(st, ino[i], &t);
	if (!r)
		r = apply_deltas(st, &t);
	for (size_t i = 0; i < n && !r; i++)
		r = inode_rows_delete(st, ino[i]);
	if (!r)
		r = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
	if (r)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	htab_free(&t);
	return r;
}

int store_delete_inode(struct store *st, uint64_t ino)
{
	return inodes_delete(st, &ino, 1);
}

int store_inode_may_go(struct store *st, uint64_t ino)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT nlink FROM inode WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	int64_t nlink = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return -EIO;
	if (nlink > 0)
		return 0;
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	bool busy = si && (si->opens || si->users);
	if (si && busy)
		si->released = true;
	pthread_mutex_unlock(&st->mem_lock);
	return !busy;
}

int store_delete_inode_if_unlinked(struct store *st, uint64_t ino)
{
	int r = store_inode_may_go(st, ino);
	return r > 0 ? store_delete_inode(st, ino) : r;
}

static int ino_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

int store_reclaim_forgotten(struct store *st)
{
	pthread_mutex_lock(&st->mem_lock);
	uint64_t *list = st->forgotten;
	size_t n = st->nforgotten;
	st->forgotten = NULL;
	st->nforgotten = st->forgotten_cap = 0;
	pthread_mutex_unlock(&st->mem_lock);
	if (!n)
		return 0;
	/* Each inode once (the kernel forgets one once, but a delta
	 * applied twice would take references from other files). */
	qsort(list, n, sizeof(*list), ino_cmp);
	store_db_lock(st);
	/* The ones to go, compacted in place.  Checked again: cheap, and
	 * the list holds only inodes nothing can reach any more. */
	size_t go = 0;
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (i && list[i] == list[i - 1])
			continue;
		int m = store_inode_may_go(st, list[i]);
		if (m > 0)
			list[go++] = list[i];
		else if (m < 0 && m != -ENOENT && !r)
			r = m;
	}
	if (go > 1 && inodes_delete(st, list, go) == 0)
		go = 0;
	/* One, or a batch that failed: each alone, so that one that cannot
	 * be deleted keeps no other from going. */
	for (size_t i = 0; i < go; i++) {
		int d = store_delete_inode(st, list[i]);
		if (d && !r)
			r = d;
	}
	pthread_mutex_unlock(&st->db_lock);
	free(list);
	return r;
}
