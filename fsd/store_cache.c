/*
 * fsd/store_cache.c: the store's memory of file contents.  The pending
 * page table (pages new since the last commit, by hash), the cache of
 * inodes with their page maps in chunks, and getting and setting a
 * page-map slot.  (The prefix set of every page the store may hold is
 * store_pset.c.)
 *
 * A cached file's page map holds the chunks calls have needed so far;
 * the others are read from their rows when first needed.  A chunk that
 * changed keeps a copy of its committed slots ("base"); the commit
 * (store_commit.c) compares the two to find which pages gained or lost a
 * reference, so nothing has to track reference counts write by write, and
 * dropping a file's pending changes is just freeing them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_i.h"

/* ---- pending page table (hash -> loc) ----------------------------------- */

int ptab_add(struct htab *t, const uint8_t *hash, uint64_t loc)
{
	struct ptab_ent *e = htab_get(t, hash);
	if (!e)
		return -ENOMEM;
	e->loc = loc;
	return 0;
}

/* ---- the inode cache ------------------------------------------------------ */

static size_t islot(uint64_t ino, size_t cap)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

struct sinode *sinode_find(struct store *st, uint64_t ino)
{
	if (!st->itab_cap)
		return NULL;
	for (struct sinode *si = st->itab[islot(ino, st->itab_cap)]; si; si = si->next)
		if (si->ino == ino)
			return si;
	return NULL;
}

/* Make the table of cached inodes room for one more at one per slot, or
 * leave it as it is and return -ENOMEM (mem_lock held). */
static int itab_grow(struct store *st)
{
	if (st->ninodes + 1 <= st->itab_cap)
		return 0;
	size_t cap = st->itab_cap ? 2 * st->itab_cap : 64;
	struct sinode **t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < st->itab_cap; i++)
		for (struct sinode *s = st->itab[i], *next; s; s = next) {
			next = s->next;
			size_t j = islot(s->ino, cap);
			s->next = t[j];
			t[j] = s;
		}
	free(st->itab);
	st->itab = t;
	st->itab_cap = cap;
	return 0;
}

/* Add si to the table, which exists (mem_lock held). */
static void itab_link(struct store *st, struct sinode *si)
{
	size_t j = islot(si->ino, st->itab_cap);
	si->next = st->itab[j];
	st->itab[j] = si;
	st->ninodes++;
}

/* Add si to the table: fails only while there is no table at all, as
 * without memory to grow it the chains grow longer instead (mem_lock
 * held). */
static int itab_insert(struct store *st, struct sinode *si)
{
	if (itab_grow(st) && !st->itab_cap)
		return -ENOMEM;
	itab_link(st, si);
	return 0;
}

static void itab_remove(struct store *st, struct sinode *si)
{
	for (struct sinode **pp = &st->itab[islot(si->ino, st->itab_cap)]; *pp; pp = &(*pp)->next)
		if (*pp == si) {
			*pp = si->next;
			st->ninodes--;
			return;
		}
}

void chunk_free(struct chunk *c)
{
	if (c) {
		free(c->base);
		free(c);
	}
}

void chunk_drop(struct store *st, struct sinode *si, size_t ci)
{
	if (si->chunks[ci]) {
		chunk_free(si->chunks[ci]);
		si->chunks[ci] = NULL;
		si->present[ci / 64] &= ~(1ull << (ci % 64));
		st->cached_chunks--;
	}
}

/* Chunk ci of si is c, in memory (mem_lock held, ci < si->nchunks). */
static void chunk_put(struct store *st, struct sinode *si, size_t ci, struct chunk *c)
{
	si->chunks[ci] = c;
	si->present[ci / 64] |= 1ull << (ci % 64);
	st->cached_chunks++;
}

size_t chunk_next(const struct sinode *si, size_t ci, bool unread)
{
	for (size_t w = ci / 64; w * 64 < si->nchunks; w++) {
		uint64_t bits = si->present[w] | (unread ? si->unread[w] : 0);
		if (w == ci / 64)
			bits &= ~0ull << (ci % 64);
		if (bits) {
			size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
			return i < si->nchunks ? i : si->nchunks;
		}
	}
	return si->nchunks;
}

void sinode_list(struct store *st, struct sinode *si)
{
	if (si->listed)
		return;
	si->listed = true;
	si->chg_prev = NULL;
	si->chg_next = st->changed;
	if (st->changed)
		st->changed->chg_prev = si;
	st->changed = si;
}

void sinode_unlist(struct store *st, struct sinode *si)
{
	if (!si->listed)
		return;
	if (si->chg_prev)
		si->chg_prev->chg_next = si->chg_next;
	else
		st->changed = si->chg_next;
	if (si->chg_next)
		si->chg_next->chg_prev = si->chg_prev;
	si->chg_prev = si->chg_next = NULL;
	si->listed = false;
}

void sinode_dirty(struct store *st, struct sinode *si)
{
	si->dirty = true;
	sinode_list(st, si);
}

static void sinode_forget_map(struct store *st, struct sinode *si);

static void sinode_free(struct store *st, struct sinode *si)
{
	sinode_unlist(st, si);
	sinode_forget_map(st, si);
	free(si->tail);
	pthread_mutex_destroy(&si->wlock);
	free(si);
}

void sinode_drop(struct store *st, struct sinode *si)
{
	itab_remove(st, si);
	sinode_free(st, si);
}

void store_cache_free(struct store *st)
{
	for (size_t i = 0; i < st->itab_cap; i++)
		for (struct sinode *s = st->itab[i], *next; s; s = next) {
			next = s->next;
			sinode_free(st, s);
		}
	free(st->itab);
	st->itab = NULL;
	st->itab_cap = st->ninodes = 0;
	st->changed = NULL;
}

static size_t bitmap_words(size_t n)
{
	return (n + 63) / 64;
}

static bool chunk_unread(const struct sinode *si, size_t ci)
{
	return ci < si->nchunks && (si->unread[ci / 64] >> (ci % 64) & 1);
}

/* Make room for chunk index idx (mem_lock held).  New entries are holes,
 * not unread: they are past the file's last row. */
static int chunks_reserve(struct sinode *si, size_t idx)
{
	if (idx < si->nchunks)
		return 0;
	size_t n = si->nchunks ? si->nchunks : 1;
	while (n <= idx)
		n *= 2;
	/* A first array from calloc: a large one comes as fresh zero pages
	 * that cost nothing until used, so a file whose map reaches far
	 * (8 million chunks at 4 TiB) opens without faulting in 64 MiB. */
	struct chunk **c = si->chunks ? realloc(si->chunks, n * sizeof(*c)) : calloc(n, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (si->chunks)
		memset(c + si->nchunks, 0, (n - si->nchunks) * sizeof(*c));
	si->chunks = c;
	/* A bigger array or bitmap kept after a failure is harmless. */
	size_t w0 = bitmap_words(si->nchunks), w = bitmap_words(n);
	uint64_t **maps[] = { &si->unread, &si->present };
	for (unsigned i = 0; i < 2; i++) {
		uint64_t *u = *maps[i] ? realloc(*maps[i], w * sizeof(*u)) : calloc(w, sizeof(*u));
		if (!u)
			return -ENOMEM;
		if (*maps[i])
			memset(u + w0, 0, (w - w0) * sizeof(*u));
		*maps[i] = u;
	}
	si->nchunks = n;
	return 0;
}

static void chunk_mark_read(struct sinode *si, size_t ci)
{
	si->unread[ci / 64] &= ~(1ull << (ci % 64));
}

static void chunk_mark_unread(struct sinode *si, size_t ci)
{
	si->unread[ci / 64] |= 1ull << (ci % 64);
}

/* Every chunk of si's first n is unread (mem_lock held, map empty). */
static int chunks_all_unread(struct sinode *si, size_t n)
{
	if (!n)
		return 0;
	int r = chunks_reserve(si, n - 1);
	if (r)
		return r;
	memset(si->unread, 0xff, n / 64 * sizeof(*si->unread));
	for (size_t i = n / 64 * 64; i < n; i++)
		chunk_mark_unread(si, i);
	return 0;
}


int chunk_read(struct store *st, struct sinode *si, size_t ci)
{
	if (!chunk_unread(si, ci))
		return 0;
	/* The first row at or after ci: the chunks before it are holes, so
	 * that walking a sparse file (SEEK_DATA, truncate) costs a query
	 * per row, not per chunk of holes. */
	pthread_mutex_lock(&st->rdb_lock);
	int r = 0;
	sqlite3_stmt *s = store_stmt(st, st->rdb,
				     "SELECT idx, hashes, locs, sum FROM chunk WHERE ino = ? AND idx >= ?"
				     " ORDER BY idx LIMIT 1");
	if (!s) {
		pthread_mutex_unlock(&st->rdb_lock);
		return -EIO;
	}
	sqlite3_bind_int64(s, 1, (int64_t)si->ino);
	sqlite3_bind_int64(s, 2, (int64_t)ci);
	int rc = store_step(st, s);
	st->map_reads++;
	size_t gap_end = si->nchunks;	/* chunks [ci, gap_end) have no row */
	if (rc == SQLITE_ROW) {
		int64_t idx = sqlite3_column_int64(s, 0);
		if (idx >= 0 && (uint64_t)idx < si->nchunks)
			gap_end = (size_t)idx;
		int hn = sqlite3_column_bytes(s, 1), ln = sqlite3_column_bytes(s, 2);
		const uint8_t *hb = sqlite3_column_blob(s, 1), *lb = sqlite3_column_blob(s, 2);
		struct chunk *c = NULL;
		if (gap_end == si->nchunks || !chunk_unread(si, gap_end)) {
			/* past the map, or read already: nothing to load */
		} else if (hn % STORE_HASH_SIZE || hn / STORE_HASH_SIZE > (int)CHUNK_PAGES ||
			   ln != hn / (int)STORE_HASH_SIZE * 8 ||
			   (r = store_map_check(st, si->ino, (uint64_t)idx, lb, (size_t)ln, hb,
						(size_t)hn, sqlite3_column_int64(s, 3)))) {
			/* A damaged row (fsck says where), failing the read
			 * only when it is the chunk asked for. */
			if (!r || r == -EUCLEAN) {
				store_map_damaged(st, si->ino, (uint64_t)idx);
				r = gap_end == ci ? -EUCLEAN : 0;
			}
		} else if (!(c = calloc(1, sizeof(*c)))) {
			r = -ENOMEM;
		} else {
			if (hn)
				memcpy(c->hash, hb, (size_t)hn);
			for (int i = 0; i < hn / (int)STORE_HASH_SIZE; i++)
				c->loc[i] = get_le64(lb + 8 * i);
			c->in_db = true;
			chunk_put(st, si, gap_end, c);
			chunk_mark_read(si, gap_end);
		}
	} else if (rc != SQLITE_DONE) {
		r = -EIO;
	}
	sqlite3_reset(s);
	pthread_mutex_unlock(&st->rdb_lock);
	for (size_t i = ci; !r && i < gap_end; i++)
		chunk_mark_read(si, i);
	return r;
}

/* Load ino's attributes from the read connection; no chunk is read yet
 * (mem_lock and rdb_lock held). */
static int sinode_load(struct store *st, uint64_t ino, struct sinode *si)
{
	sqlite3_stmt *s = store_stmt(st, st->rdb,
				     "SELECT mode, size, mtime_ns, ctime_ns, pages, flags FROM inode"
				     " WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return rc == SQLITE_DONE ? -ENOENT : -EIO;
	}
	uint32_t mode = (uint32_t)sqlite3_column_int64(s, 0);
	si->size = (uint64_t)sqlite3_column_int64(s, 1);
	si->mtime_ns = sqlite3_column_int64(s, 2);
	si->ctime_ns = sqlite3_column_int64(s, 3);
	si->pages = (uint64_t)sqlite3_column_int64(s, 4);
	si->flags = (uint32_t)sqlite3_column_int64(s, 5);
	sqlite3_reset(s);
	if (S_ISDIR(mode))
		return -EISDIR;
	if (!S_ISREG(mode))
		return -EINVAL;

	/* The map reaches as far as the last row: one probe of the key. */
	s = store_stmt(st, st->rdb, "SELECT max(idx) FROM chunk WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	rc = store_step(st, s);
	bool any = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
	int64_t last = any ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return -EIO;
	if (last > (int64_t)(STORE_MAX_FILE_SIZE >> (STORE_PAGE_SHIFT + CHUNK_SHIFT)))
		return -EUCLEAN;	/* a damaged row: fsck says where */
	return chunks_all_unread(si, (size_t)(last + 1));
}

bool sinode_changed(const struct sinode *si)
{
	if (si->dirty || si->tail)
		return true;
	for (size_t i = si->dirty_lo; i < si->dirty_hi; i++)
		if (si->chunks[i] && si->chunks[i]->base)
			return true;
	return false;
}

/* Free si's page map (mem_lock held). */
static void sinode_forget_map(struct store *st, struct sinode *si)
{
	for (size_t i = chunk_next(si, 0, false); i < si->nchunks; i = chunk_next(si, i + 1, false))
		chunk_drop(st, si, i);
	free(si->chunks);
	free(si->unread);
	free(si->present);
	si->chunks = NULL;
	si->unread = NULL;
	si->present = NULL;
	si->nchunks = 0;
	si->dirty_lo = si->dirty_hi = 0;
}

int sinode_reload(struct store *st, struct sinode *si)
{
	sinode_forget_map(st, si);
	free(si->tail);
	si->tail = NULL;
	si->dirty = false;
	sinode_unlist(st, si);
	int r = sinode_load(st, si->ino, si);
	if (r) {
		/* Nothing half loaded stays: an empty map, size 0. */
		sinode_forget_map(st, si);
		si->size = si->pages = 0;
	}
	return r;
}

int sinode_get(struct store *st, uint64_t ino, struct sinode **out)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (si) {
		si->users++;
		pthread_mutex_unlock(&st->mem_lock);
		*out = si;
		return 0;
	}
	int r = -ENOMEM;
	si = calloc(1, sizeof(*si));
	if (si) {
		si->ino = ino;
		pthread_mutex_init(&si->wlock, NULL);
		pthread_mutex_lock(&st->rdb_lock);
		r = sinode_load(st, ino, si);
		pthread_mutex_unlock(&st->rdb_lock);
		if (!r)
			r = itab_insert(st, si);
		if (r) {
			sinode_free(st, si);
			si = NULL;
		} else {
			si->users = 1;
		}
	}
	pthread_mutex_unlock(&st->mem_lock);
	*out = si;
	return r;
}

struct sinode *sinode_new(struct store *st)
{
	struct sinode *si = calloc(1, sizeof(*si));
	if (!si)
		return NULL;
	pthread_mutex_init(&si->wlock, NULL);
	pthread_mutex_lock(&st->mem_lock);
	int r = st->itab_cap ? 0 : itab_grow(st);
	pthread_mutex_unlock(&st->mem_lock);
	if (r) {
		sinode_free(st, si);
		return NULL;
	}
	return si;
}

void sinode_open_new(struct store *st, struct sinode *si, const struct store_attr *a)
{
	si->ino = a->ino;
	si->flags = a->flags;
	si->size = a->size;
	si->pages = a->pages;
	si->mtime_ns = store_ns_of(a->mtime);
	si->ctime_ns = store_ns_of(a->ctime);
	si->opens = 1;
	pthread_mutex_lock(&st->mem_lock);
	/* The table exists (sinode_new); without the memory to grow it,
	 * its chains grow longer. */
	(void)itab_grow(st);
	itab_link(st, si);
	pthread_mutex_unlock(&st->mem_lock);
}

void sinode_new_free(struct store *st, struct sinode *si)
{
	sinode_free(st, si);
}

/* Forget the chunks si has read, to be read again when needed (mem_lock
 * held, si clean and committed). */
static void sinode_unread(struct store *st, struct sinode *si)
{
	for (size_t i = chunk_next(si, 0, false); i < si->nchunks; i = chunk_next(si, i + 1, false))
		if (!si->chunks[i]->base) {
			chunk_drop(st, si, i);
			chunk_mark_unread(si, i);
		}
}

/* Drop clean, unused inodes while the cache holds too much, then the
 * chunks of clean inodes in use, so that reading every page of a file
 * larger than the cache does not keep all of its map (mem_lock held).
 * Not during a commit: a clean inode may then still be on its way into
 * the database, and reloading it would read the old state; nor after a
 * failure, which leaves memory ahead of the database until recovery. */
void cache_trim(struct store *st)
{
	if (st->commit_active || st->failed ||
	    (st->cached_chunks <= st->trim_chunks && st->ninodes <= st->trim_inodes))
		return;
	/* Down to three quarters of each limit, so that a trim, a walk of
	 * the whole cache, comes once per many loads and not at every
	 * call. */
	const uint64_t chunks_low = STORE_CACHE_CHUNKS / 4 * 3;
	const size_t inodes_low = STORE_CACHE_INODES / 4 * 3;
	for (size_t i = 0;
	     i < st->itab_cap && (st->cached_chunks > chunks_low || st->ninodes > inodes_low); i++)
		for (struct sinode *s = st->itab[i], *next; s; s = next) {
			next = s->next;
			if (s->users || s->opens || s->dirty || s->tail || s->released)
				continue;
			itab_remove(st, s);
			sinode_free(st, s);
		}
	for (size_t i = 0; i < st->itab_cap && st->cached_chunks > chunks_low; i++)
		for (struct sinode *s = st->itab[i]; s; s = s->next)
			if (!s->dirty && !s->tail)
				sinode_unread(st, s);
	/* What is in use stays; the next trim waits for a quarter more. */
	st->trim_chunks = st->cached_chunks + STORE_CACHE_CHUNKS / 4;
	if (st->trim_chunks < STORE_CACHE_CHUNKS)
		st->trim_chunks = STORE_CACHE_CHUNKS;
	st->trim_inodes = st->ninodes + STORE_CACHE_INODES / 4;
	if (st->trim_inodes < STORE_CACHE_INODES)
		st->trim_inodes = STORE_CACHE_INODES;
}

void store_cache_info(struct store *st, struct store_cache_info *out)
{
	pthread_mutex_lock(&st->mem_lock);
	*out = (struct store_cache_info){
		.inodes = st->ninodes, .chunks = st->cached_chunks, .known = st->known.n,
		.map_reads = st->map_reads,
	};
	for (struct sinode *si = st->changed; si; si = si->chg_next)
		out->changed++;
	pthread_mutex_unlock(&st->mem_lock);
}

void sinode_put(struct store *st, struct sinode *si)
{
	pthread_mutex_lock(&st->mem_lock);
	si->users--;
	cache_trim(st);
	pthread_mutex_unlock(&st->mem_lock);
}

void store_overlay_attr(struct store *st, struct store_attr *a)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, a->ino);
	if (si) {
		a->size = si->size;
		a->mtime = store_ts_of(si->mtime_ns);
		a->ctime = store_ts_of(si->ctime_ns);
		a->pages = si->pages;
		/* A held tail page counts where its slot is still a hole. */
		if (si->tail) {
			const uint8_t *hash;
			uint64_t loc;
			if (!slot_get(st, si, si->tail_pg, &hash, &loc) && !loc &&
			    !store_page_is_zero(si->tail))
				a->pages++;
		}
	}
	pthread_mutex_unlock(&st->mem_lock);
}

void store_cached_times(struct store *st, uint64_t ino, const int64_t *mtime_ns,
			const int64_t *ctime_ns)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (si) {
		if (mtime_ns)
			si->mtime_ns = *mtime_ns;
		if (ctime_ns)
			si->ctime_ns = *ctime_ns;
	}
	pthread_mutex_unlock(&st->mem_lock);
}

void store_cached_flags(struct store *st, uint64_t ino, uint32_t flags)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (si)
		si->flags = flags;
	pthread_mutex_unlock(&st->mem_lock);
}

/* ---- slots ---------------------------------------------------------------- */

int slot_get(struct store *st, struct sinode *si, uint64_t pg, const uint8_t **hash,
	     uint64_t *loc)
{
	static const uint8_t zero[STORE_HASH_SIZE];
	size_t ci = (size_t)(pg >> CHUNK_SHIFT);
	int r = chunk_read(st, si, ci);
	struct chunk *c = !r && ci < si->nchunks ? si->chunks[ci] : NULL;
	if (!c) {
		*hash = zero;
		*loc = 0;
		return r;
	}
	*hash = c->hash[pg & (CHUNK_PAGES - 1)];
	*loc = c->loc[pg & (CHUNK_PAGES - 1)];
	return 0;
}

int slot_set(struct store *st, struct sinode *si, uint64_t pg, const uint8_t *hash,
		    uint64_t loc)
{
	size_t ci = (size_t)(pg >> CHUNK_SHIFT);
	unsigned k = pg & (CHUNK_PAGES - 1);
	int r = chunk_read(st, si, ci);
	if (r)
		return r;
	struct chunk *c = ci < si->nchunks ? si->chunks[ci] : NULL;
	if (!c) {
		if (!loc)
			return 0;	/* a hole stays a hole */
		r = chunks_reserve(si, ci);
		if (r)
			return r;
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		chunk_put(st, si, ci, c);
	}
	bool was = c->loc[k] != 0;
	/* A location names one page: the same bytes stored twice are two
	 * pages, each with its own references. */
	if (c->loc[k] == loc && (!loc || !memcmp(c->hash[k], hash, STORE_HASH_SIZE)))
		return 0;	/* unchanged */
	if (!c->base) {
		c->base = malloc(sizeof(*c->base));
		if (!c->base)
			return -ENOMEM;
		memcpy(c->base->hash, c->hash, sizeof(c->hash));
		memcpy(c->base->loc, c->loc, sizeof(c->loc));
		if (si->dirty_lo == si->dirty_hi)
			si->dirty_lo = si->dirty_hi = ci;
		if (ci < si->dirty_lo)
			si->dirty_lo = ci;
		if (ci >= si->dirty_hi)
			si->dirty_hi = ci + 1;
	}
	if (loc)
		memcpy(c->hash[k], hash, STORE_HASH_SIZE);
	else
		memset(c->hash[k], 0, STORE_HASH_SIZE);
	c->loc[k] = loc;
	si->pages += (loc != 0) - was;
	sinode_dirty(st, si);
	st->pending_pages++;
	return 0;
}

void sinode_touch(struct store *st, struct sinode *si)
{
	si->mtime_ns = si->ctime_ns = store_now_ns();
	sinode_dirty(st, si);
}
