/*
 * fsd/store_data.c: file contents.  Page maps cached in memory, writes that
 * hash and deduplicate pages outside every lock, reads and splice maps
 * served from the cache, truncate / punch / clone / seek, and the commit
 * that turns pending page-map changes into one SQLite transaction.
 *
 * A cached file's page map is all of its chunks.  A chunk that changed
 * keeps a copy of its committed hashes ("base"); the commit compares the two
 * to find which pages gained or lost a reference, so nothing has to track
 * reference counts write by write, and dropping a file's pending changes is
 * just freeing them.  Pages new to the store are put to the backend at
 * once (appended, not yet synced) and listed in the pending table, so later
 * writes deduplicate against them and reads find them; the commit syncs the
 * backend before the transaction that refers to them.
 *
 * A large write hashes its whole pages on two threads, its own and the
 * store's hashing helper, before deduplicating them: a FUSE client such as
 * cp sends one write at a time, so otherwise a single core would do all the
 * hashing while the other one idles.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "store_i.h"

#define LOC_TMP (1ull << 63)	/* pending-table placeholder during a put */
#define WRITE_BATCH 64u		/* full pages hashed per round */
#define SPLIT_MIN 32u		/* whole pages from which the helper joins in */
#define SPLIT_MAX 256u		/* whole pages hashed ahead at most */
#define HASH_GROUP 8u		/* pages a hashing thread takes at a time */

static bool hole(const uint8_t *h)
{
	return store_hash_is_hole(h);
}

/* ---- pending page table (hash -> loc) ----------------------------------- */

static size_t hslot(const uint8_t *hash, size_t cap)
{
	return (size_t)get_le64(hash) & (cap - 1);
}

static struct ptab_ent *ptab_find(struct ptab *t, const uint8_t *hash)
{
	if (!t->n)
		return NULL;
	for (size_t i = hslot(hash, t->cap);; i = (i + 1) & (t->cap - 1)) {
		struct ptab_ent *e = &t->ents[i];
		if (!e->loc)
			return NULL;
		if (!memcmp(e->hash, hash, STORE_HASH_SIZE))
			return e;
	}
}

static int ptab_grow(struct ptab *t)
{
	size_t cap = t->cap ? 2 * t->cap : 1024;
	struct ptab_ent *ents = calloc(cap, sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->ents[i].loc)
			continue;
		size_t j = hslot(t->ents[i].hash, cap);
		while (ents[j].loc)
			j = (j + 1) & (cap - 1);
		ents[j] = t->ents[i];
	}
	free(t->ents);
	t->ents = ents;
	t->cap = cap;
	return 0;
}

/* Insert hash (not present) with loc != 0. */
static int ptab_add(struct ptab *t, const uint8_t *hash, uint64_t loc)
{
	if (2 * (t->n + 1) > t->cap) {
		int r = ptab_grow(t);
		if (r)
			return r;
	}
	size_t i = hslot(hash, t->cap);
	while (t->ents[i].loc)
		i = (i + 1) & (t->cap - 1);
	memcpy(t->ents[i].hash, hash, STORE_HASH_SIZE);
	t->ents[i].loc = loc;
	t->n++;
	return 0;
}

void ptab_free(struct ptab *t)
{
	free(t->ents);
	*t = (struct ptab){ 0 };
}

/* ---- prefix set ---------------------------------------------------------- */

static uint64_t pkey(const uint8_t *hash)
{
	return get_le64(hash) | 1;	/* 0 marks a free slot */
}

static bool pset_has(const struct pset *s, const uint8_t *hash)
{
	if (!s->n)
		return false;
	uint64_t k = pkey(hash);
	for (size_t i = (size_t)(k >> 1) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (s->slots[i] == k)
			return true;
		if (!s->slots[i])
			return false;
	}
}

int pset_add(struct pset *s, const uint8_t *hash)
{
	if (2 * (s->n + 1) > s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 4096;
		uint64_t *slots = calloc(cap, sizeof(*slots));
		if (!slots)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			uint64_t k = s->slots[i];
			if (!k)
				continue;
			size_t j = (size_t)(k >> 1) & (cap - 1);
			while (slots[j])
				j = (j + 1) & (cap - 1);
			slots[j] = k;
		}
		free(s->slots);
		s->slots = slots;
		s->cap = cap;
	}
	uint64_t k = pkey(hash);
	size_t i = (size_t)(k >> 1) & (s->cap - 1);
	while (s->slots[i]) {
		if (s->slots[i] == k)
			return 0;
		i = (i + 1) & (s->cap - 1);
	}
	s->slots[i] = k;
	s->n++;
	return 0;
}

void pset_free(struct pset *s)
{
	free(s->slots);
	*s = (struct pset){ 0 };
}

int store_load_known(struct store *st, struct err *e)
{
	pset_free(&st->known);
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db, "SELECT hash FROM page", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(st, st->db, rc, e, "loading the page index");
	int r = 0;
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW)
		if (sqlite3_column_bytes(s, 0) == STORE_HASH_SIZE)
			r = pset_add(&st->known, sqlite3_column_blob(s, 0));
	sqlite3_finalize(s);
	if (r)
		return err_set(e, r, "store %s: loading the page index: out of memory", st->dir);
	if (rc != SQLITE_DONE)
		return store_sql_err(st, st->db, rc, e, "loading the page index");
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

static int itab_insert(struct store *st, struct sinode *si)
{
	if (st->ninodes + 1 > st->itab_cap) {
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
	}
	size_t j = islot(si->ino, st->itab_cap);
	si->next = st->itab[j];
	st->itab[j] = si;
	st->ninodes++;
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

static void chunk_free(struct chunk *c)
{
	if (c) {
		free(c->base);
		free(c);
	}
}

static void sinode_free(struct store *st, struct sinode *si)
{
	for (size_t i = 0; i < si->nchunks; i++)
		chunk_free(si->chunks[i]);
	st->cached_chunks -= si->nchunks;
	free(si->chunks);
	pthread_mutex_destroy(&si->wlock);
	free(si);
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
}

/* Make room for chunk index idx (mem_lock held). */
static int chunks_reserve(struct store *st, struct sinode *si, size_t idx)
{
	if (idx < si->nchunks)
		return 0;
	size_t n = si->nchunks ? si->nchunks : 1;
	while (n <= idx)
		n *= 2;
	struct chunk **c = realloc(si->chunks, n * sizeof(*c));
	if (!c)
		return -ENOMEM;
	memset(c + si->nchunks, 0, (n - si->nchunks) * sizeof(*c));
	st->cached_chunks += n - si->nchunks;
	si->chunks = c;
	si->nchunks = n;
	return 0;
}

/* Load ino's attributes and page map from the read connection (mem_lock
 * and rdb_lock held). */
static int sinode_load(struct store *st, uint64_t ino, struct sinode *si)
{
	sqlite3_stmt *s = store_stmt(st, st->rdb,
				     "SELECT mode, size, mtime_ns, ctime_ns, pages, flags FROM inode"
				     " WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = sqlite3_step(s);
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

	s = store_stmt(st, st->rdb, "SELECT idx, hashes, locs FROM chunk WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int r = 0;
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t idx = sqlite3_column_int64(s, 0);
		int hn = sqlite3_column_bytes(s, 1), ln = sqlite3_column_bytes(s, 2);
		const uint8_t *hb = sqlite3_column_blob(s, 1), *lb = sqlite3_column_blob(s, 2);
		if (idx < 0 || idx > (int64_t)(STORE_MAX_FILE_SIZE >> (STORE_PAGE_SHIFT + CHUNK_SHIFT)) ||
		    hn % STORE_HASH_SIZE || hn / STORE_HASH_SIZE > (int)CHUNK_PAGES ||
		    ln != hn / (int)STORE_HASH_SIZE * 8) {
			r = -EUCLEAN;	/* a damaged row: fsck says where */
			break;
		}
		struct chunk *c = calloc(1, sizeof(*c));
		if (!c || (r = chunks_reserve(st, si, (size_t)idx))) {
			free(c);
			r = r ? r : -ENOMEM;
			break;
		}
		if (hn)
			memcpy(c->hash, hb, (size_t)hn);
		for (int i = 0; i < hn / (int)STORE_HASH_SIZE; i++)
			c->loc[i] = get_le64(lb + 8 * i);
		c->in_db = true;
		chunk_free(si->chunks[idx]);
		si->chunks[idx] = c;
	}
	sqlite3_reset(s);
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
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

/* Drop clean, unused inodes while the cache holds too much (mem_lock held).
 * Not during a commit: a clean inode may then still be on its way into
 * the database, and reloading it would read the old state. */
static void cache_trim(struct store *st)
{
	if (st->commit_active || st->cached_chunks <= STORE_CACHE_CHUNKS)
		return;
	for (size_t i = 0; i < st->itab_cap && st->cached_chunks > STORE_CACHE_CHUNKS; i++)
		for (struct sinode *s = st->itab[i], *next; s; s = next) {
			next = s->next;
			if (s->users || s->opens || s->dirty || s->released)
				continue;
			itab_remove(st, s);
			sinode_free(st, s);
		}
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
		a->mtime.tv_sec = si->mtime_ns / 1000000000;
		a->mtime.tv_nsec = si->mtime_ns % 1000000000;
		a->ctime.tv_sec = si->ctime_ns / 1000000000;
		a->ctime.tv_nsec = si->ctime_ns % 1000000000;
		a->pages = si->pages;
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

/* Slot pg of si (mem_lock held); hole if beyond the map. */
static void slot_get(const struct sinode *si, uint64_t pg, const uint8_t **hash, uint64_t *loc)
{
	static const uint8_t zero[STORE_HASH_SIZE];
	size_t ci = (size_t)(pg >> CHUNK_SHIFT);
	struct chunk *c = ci < si->nchunks ? si->chunks[ci] : NULL;
	if (!c) {
		*hash = zero;
		*loc = 0;
		return;
	}
	*hash = c->hash[pg & (CHUNK_PAGES - 1)];
	*loc = c->loc[pg & (CHUNK_PAGES - 1)];
}

/* Set slot pg of si to (hash, loc), a hole if loc == 0 (mem_lock held). */
static int slot_set(struct store *st, struct sinode *si, uint64_t pg, const uint8_t *hash,
		    uint64_t loc)
{
	size_t ci = (size_t)(pg >> CHUNK_SHIFT);
	unsigned k = pg & (CHUNK_PAGES - 1);
	struct chunk *c = ci < si->nchunks ? si->chunks[ci] : NULL;
	if (!c) {
		if (!loc)
			return 0;	/* a hole stays a hole */
		int r = chunks_reserve(st, si, ci);
		if (r)
			return r;
		c = calloc(1, sizeof(*c));
		if (!c)
			return -ENOMEM;
		si->chunks[ci] = c;
	}
	bool was = c->loc[k] != 0;
	if (was == (loc != 0) && (!loc || !memcmp(c->hash[k], hash, STORE_HASH_SIZE)))
		return 0;	/* unchanged */
	if (!c->base) {
		c->base = malloc(sizeof(c->hash));
		if (!c->base)
			return -ENOMEM;
		memcpy(c->base, c->hash, sizeof(c->hash));
	}
	if (loc)
		memcpy(c->hash[k], hash, STORE_HASH_SIZE);
	else
		memset(c->hash[k], 0, STORE_HASH_SIZE);
	c->loc[k] = loc;
	si->pages += (loc != 0) - was;
	si->dirty = true;
	st->pending_pages++;
	return 0;
}

static void touch(struct sinode *si)
{
	si->mtime_ns = si->ctime_ns = store_now_ns();
	si->dirty = true;
}

/* Where pages with these hashes are (0: the store has none), for the n
 * pages with want[i] set (mem_lock held).  Pending pages are found in
 * memory; pages the prefix set may know are looked up in one read
 * transaction for the whole batch, as a transaction per lookup costs
 * several file-lock system calls. */
static int lookup_pages(struct store *st, const uint8_t (*hashes)[STORE_HASH_SIZE],
			const bool *want, unsigned n, uint64_t *locs)
{
	bool db[WRITE_BATCH];
	unsigned ndb = 0;
	for (unsigned i = 0; i < n; i++) {
		locs[i] = 0;
		db[i] = false;
		if (!want[i])
			continue;
		struct ptab_ent *pe = ptab_find(&st->pending, hashes[i]);
		if (!pe)
			pe = ptab_find(&st->committing, hashes[i]);
		if (pe)
			locs[i] = pe->loc;
		else if (pset_has(&st->known, hashes[i]))
			db[i] = true, ndb++;
	}
	if (!ndb)
		return 0;
	int r = 0;
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_stmt *s = store_stmt(st, st->rdb, "SELECT loc FROM page WHERE hash = ?");
	if (!s)
		r = -EIO;
	if (!r && ndb > 1 && sqlite3_exec(st->rdb, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		r = -EIO;
	for (unsigned i = 0; i < n && !r; i++) {
		if (!db[i])
			continue;
		sqlite3_reset(s);
		sqlite3_bind_blob(s, 1, hashes[i], STORE_HASH_SIZE, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			locs[i] = (uint64_t)sqlite3_column_int64(s, 0);
		else if (rc != SQLITE_DONE)
			r = -EIO;
	}
	if (s)
		sqlite3_reset(s);
	if (ndb > 1)
		sqlite3_exec(st->rdb, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->rdb_lock);
	return r;
}

static int lookup_page(struct store *st, const uint8_t *hash, uint64_t *loc)
{
	static const bool yes = true;
	return lookup_pages(st, (const uint8_t(*)[STORE_HASH_SIZE])hash, &yes, 1, loc);
}

/* Put a page new to the store and list it as pending (mem_lock held). */
static int put_new(struct store *st, const uint8_t *hash, const void *page, uint64_t *loc)
{
	int r = st->be->ops->put(st->be, hash, page, loc);
	if (!r)
		r = ptab_add(&st->pending, hash, *loc);
	if (!r)
		r = pset_add(&st->known, hash);
	return r;
}

/* Store one whole page as slot pg (mem_lock held): holes, dedup, put. */
static int store_page_locked(struct store *st, struct sinode *si, uint64_t pg, const void *page)
{
	if (store_page_is_zero(page))
		return slot_set(st, si, pg, NULL, 0);
	uint8_t hash[STORE_HASH_SIZE];
	struct store_hasher *h = store_hasher_get(st);
	int r = h ? store_hash(h, page, STORE_PAGE_SIZE, hash) : -ENOMEM;
	store_hasher_put(st, h);
	uint64_t loc = 0;
	if (!r)
		r = lookup_page(st, hash, &loc);
	if (!r && !loc)
		r = put_new(st, hash, page, &loc);
	if (!r)
		r = slot_set(st, si, pg, hash, loc);
	return r;
}

/* Read the page at (hash, loc) into buf; zeros for a hole. */
static int read_page(struct store *st, const uint8_t *hash, uint64_t loc, void *buf)
{
	if (!loc) {
		memset(buf, 0, STORE_PAGE_SIZE);
		return 0;
	}
	return st->be->ops->get(st->be, hash, loc, buf);
}

/* Patch len bytes at byte in of page pg with src (zeros if NULL), the
 * rest of the page kept (mem_lock held). */
static int patch_page(struct store *st, struct sinode *si, uint64_t pg, unsigned in,
		      const void *src, size_t len)
{
	uint8_t page[STORE_PAGE_SIZE] __attribute__((aligned(64)));
	const uint8_t *hash;
	uint64_t loc;
	slot_get(si, pg, &hash, &loc);
	int r = read_page(st, hash, loc, page);
	if (r)
		return r;
	if (src)
		memcpy(page + in, src, len);
	else
		memset(page + in, 0, len);
	return store_page_locked(st, si, pg, page);
}

/* ---- writing ----------------------------------------------------------------- */

/* ---- hashing on two threads ------------------------------------------------ */

/* n whole pages to hash: each thread that works on it takes HASH_GROUP
 * pages at a time from next until none are left.  hashes[i] is set for
 * the pages that are not all zero (zero[i]). */
struct hash_job {
	const uint8_t *data;
	size_t n;
	uint8_t (*hashes)[STORE_HASH_SIZE];
	bool *zero;
	size_t next;		/* next page to take (atomic) */
	int err;		/* a failure (atomic) */
	bool taken, done;	/* by the helper (under hash_lock) */
};

static void hash_job_run(struct hash_job *j, struct store_hasher *h)
{
	for (;;) {
		size_t i = __atomic_fetch_add(&j->next, HASH_GROUP, __ATOMIC_RELAXED);
		if (i >= j->n)
			return;
		size_t end = i + HASH_GROUP < j->n ? i + HASH_GROUP : j->n;
		for (; i < end; i++) {
			const uint8_t *p = j->data + i * STORE_PAGE_SIZE;
			j->zero[i] = store_page_is_zero(p);
			if (j->zero[i])
				continue;
			int r = store_hash(h, p, STORE_PAGE_SIZE, j->hashes[i]);
			if (r)
				__atomic_store_n(&j->err, r, __ATOMIC_RELAXED);
		}
	}
}

static void *hash_helper_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "snapfs-hash");
	/* Without a hasher of its own the helper takes jobs but leaves all
	 * their pages to the writer. */
	struct store_hasher *h = store_hasher_new();
	pthread_mutex_lock(&st->hash_lock);
	for (;;) {
		while (!st->hash_job && !st->hash_stop)
			pthread_cond_wait(&st->hash_cond, &st->hash_lock);
		if (st->hash_stop)
			break;
		struct hash_job *j = st->hash_job;
		st->hash_job = NULL;
		j->taken = true;
		pthread_mutex_unlock(&st->hash_lock);
		if (h)
			hash_job_run(j, h);
		pthread_mutex_lock(&st->hash_lock);
		j->done = true;
		pthread_cond_broadcast(&st->hash_done);
	}
	pthread_mutex_unlock(&st->hash_lock);
	store_hasher_free(h);
	return NULL;
}

int store_hash_helper_start(struct store *st, struct err *e)
{
	pthread_mutex_init(&st->hash_lock, NULL);
	pthread_cond_init(&st->hash_cond, NULL);
	pthread_cond_init(&st->hash_done, NULL);
	int r = pthread_create(&st->hash_thread, NULL, hash_helper_main, st);
	if (r) {
		pthread_cond_destroy(&st->hash_done);
		pthread_cond_destroy(&st->hash_cond);
		pthread_mutex_destroy(&st->hash_lock);
		return err_set(e, -r, "store %s: hashing thread: %s", st->dir, strerror(r));
	}
	st->hash_running = true;
	return 0;
}

void store_hash_helper_stop(struct store *st)
{
	if (!st->hash_running)
		return;
	pthread_mutex_lock(&st->hash_lock);
	st->hash_stop = true;
	pthread_cond_signal(&st->hash_cond);
	pthread_mutex_unlock(&st->hash_lock);
	pthread_join(st->hash_thread, NULL);
	st->hash_running = false;
	pthread_cond_destroy(&st->hash_done);
	pthread_cond_destroy(&st->hash_cond);
	pthread_mutex_destroy(&st->hash_lock);
}

/*
 * Hash n whole pages of data (no lock held): zero[i] tells all-zero pages,
 * hashes[i] is set for the others.  From SPLIT_MIN pages on, the helper
 * thread is asked to take part; if it is busy with another writer's job,
 * or only gets to this one when it is finished, the caller has done it
 * all alone and does not wait.
 */
static int hash_pages(struct store *st, const uint8_t *data, size_t n,
		      uint8_t (*hashes)[STORE_HASH_SIZE], bool *zero)
{
	struct hash_job j = { .data = data, .n = n, .hashes = hashes, .zero = zero };
	bool posted = false;
	if (n >= SPLIT_MIN && st->hash_running) {
		pthread_mutex_lock(&st->hash_lock);
		if (!st->hash_job) {
			st->hash_job = &j;
			posted = true;
			pthread_cond_signal(&st->hash_cond);
		}
		pthread_mutex_unlock(&st->hash_lock);
	}
	struct store_hasher *h = store_hasher_get(st);
	int r = h ? 0 : -ENOMEM;
	if (h)
		hash_job_run(&j, h);
	store_hasher_put(st, h);
	if (posted) {
		pthread_mutex_lock(&st->hash_lock);
		if (!j.taken)
			st->hash_job = NULL;	/* still ours: withdraw it */
		else
			while (!j.done)
				pthread_cond_wait(&st->hash_done, &st->hash_lock);
		pthread_mutex_unlock(&st->hash_lock);
	}
	return r ? r : __atomic_load_n(&j.err, __ATOMIC_RELAXED);
}

/* n (<= WRITE_BATCH) whole pages from data as slots pg.., their hashes
 * and zero flags already worked out: deduplicated, put and mapped under
 * mem_lock. */
static int write_hashed(struct store *st, struct sinode *si, uint64_t pg, const uint8_t *data,
			unsigned n, const uint8_t (*hashes)[STORE_HASH_SIZE], const bool *zero)
{
	uint64_t locs[WRITE_BATCH];
	int r;

	/* Pages new to the store go to the backend in one call. */
	struct iovec iov[WRITE_BATCH];
	uint8_t newh[WRITE_BATCH][STORE_HASH_SIZE];
	unsigned nnew = 0;
	bool data_page[WRITE_BATCH];
	for (unsigned i = 0; i < n; i++)
		data_page[i] = !zero[i];
	pthread_mutex_lock(&st->mem_lock);
	r = lookup_pages(st, (const uint8_t(*)[STORE_HASH_SIZE])hashes, data_page, n, locs);
	for (unsigned i = 0; i < n && !r; i++) {
		if (zero[i] || locs[i])
			continue;
		/* A repeat of a page that is new in this batch finds the
		 * placeholder the first one left. */
		struct ptab_ent *pe = ptab_find(&st->pending, hashes[i]);
		if (pe) {
			locs[i] = pe->loc;
			continue;
		}
		r = ptab_add(&st->pending, hashes[i], LOC_TMP | nnew);
		if (r)
			break;
		memcpy(newh[nnew], hashes[i], STORE_HASH_SIZE);
		iov[nnew].iov_base = (void *)(data + (size_t)i * STORE_PAGE_SIZE);
		iov[nnew].iov_len = STORE_PAGE_SIZE;
		locs[i] = LOC_TMP | nnew++;
	}
	uint64_t newloc[WRITE_BATCH];
	if (!r && nnew) {
		const struct store_backend_ops *ops = st->be->ops;
		if (ops->put_many) {
			r = ops->put_many(st->be, (const uint8_t(*)[STORE_HASH_SIZE])newh, iov, nnew,
					  newloc);
		} else {
			for (unsigned j = 0; j < nnew && !r; j++)
				r = ops->put(st->be, newh[j], iov[j].iov_base, &newloc[j]);
		}
	}
	if (r && nnew) {
		/* Drop the placeholders: open addressing cannot just blank a
		 * slot, so rebuild the table without them. */
		struct ptab old = st->pending;
		st->pending = (struct ptab){ 0 };
		for (size_t i = 0; i < old.cap; i++)
			if (old.ents[i].loc && !(old.ents[i].loc & LOC_TMP))
				ptab_add(&st->pending, old.ents[i].hash, old.ents[i].loc);
		ptab_free(&old);
	}
	for (unsigned j = 0; j < nnew && !r; j++) {
		ptab_find(&st->pending, newh[j])->loc = newloc[j];
		r = pset_add(&st->known, newh[j]);
	}
	for (unsigned i = 0; i < n && !r; i++) {
		uint64_t loc = locs[i];
		if (loc & LOC_TMP)
			loc = newloc[loc & ~LOC_TMP];
		r = slot_set(st, si, pg + i, hashes[i], zero[i] ? 0 : loc);
	}
	pthread_mutex_unlock(&st->mem_lock);
	return r;
}

/* The write itself (si->wlock held). */
static ssize_t write_locked(struct store *st, struct sinode *si, const uint8_t *buf, size_t len,
			    uint64_t off)
{
	uint64_t pos = off, end = off + len;
	int r = 0;
	while (pos < end && !r) {
		uint64_t pg = pos >> STORE_PAGE_SHIFT;
		unsigned in = pos & (STORE_PAGE_SIZE - 1);
		const uint8_t *src = buf + (pos - off);
		if (in || end - pos < STORE_PAGE_SIZE) {
			size_t n = STORE_PAGE_SIZE - in;
			if (n > end - pos)
				n = (size_t)(end - pos);
			pthread_mutex_lock(&st->mem_lock);
			r = patch_page(st, si, pg, in, src, n);
			pthread_mutex_unlock(&st->mem_lock);
			pos += n;
			continue;
		}
		/* Whole pages: hashed ahead (on two threads if there are
		 * enough of them), then put in batches. */
		uint64_t whole = (end - pos) >> STORE_PAGE_SHIFT;
		unsigned n = whole > SPLIT_MAX ? SPLIT_MAX : (unsigned)whole;
		uint8_t hashes[SPLIT_MAX][STORE_HASH_SIZE];
		bool zero[SPLIT_MAX];
		r = hash_pages(st, src, n, hashes, zero);
		for (unsigned i = 0; i < n && !r; i += WRITE_BATCH) {
			unsigned b = n - i < WRITE_BATCH ? n - i : WRITE_BATCH;
			r = write_hashed(st, si, pg + i, src + (size_t)i * STORE_PAGE_SIZE, b,
					 (const uint8_t(*)[STORE_HASH_SIZE])hashes + i, zero + i);
			pos += (uint64_t)b * STORE_PAGE_SIZE;
		}
	}
	pthread_mutex_lock(&st->mem_lock);
	/* Even a failed write may have changed pages up to pos. */
	if (pos > si->size)
		si->size = pos;
	touch(si);
	pthread_mutex_unlock(&st->mem_lock);
	return r ? r : (ssize_t)len;
}

/* Common entry of the changing data calls: gc_lock shared, the inode
 * pinned and its wlock held.  Returns -errno with nothing held. */
static int data_begin(struct store *st, uint64_t ino, bool change, struct sinode **out)
{
	if (change && st->rdonly)
		return -EROFS;
	pthread_rwlock_rdlock(&st->gc_lock);
	if (change && __atomic_load_n(&st->failed, __ATOMIC_RELAXED)) {
		pthread_rwlock_unlock(&st->gc_lock);
		return -EIO;
	}
	struct sinode *si;
	int r = sinode_get(st, ino, &si);
	if (r) {
		pthread_rwlock_unlock(&st->gc_lock);
		return r;
	}
	if (change && (si->flags & STORE_INODE_SEALED)) {
		sinode_put(st, si);
		pthread_rwlock_unlock(&st->gc_lock);
		return -EPERM;
	}
	if (change)
		pthread_mutex_lock(&si->wlock);
	*out = si;
	return 0;
}

/* Undo data_begin, and commit if enough is pending. */
static void data_end(struct store *st, struct sinode *si, bool change)
{
	if (change)
		pthread_mutex_unlock(&si->wlock);
	sinode_put(st, si);
	pthread_rwlock_unlock(&st->gc_lock);
	if (!change)
		return;
	pthread_mutex_lock(&st->mem_lock);
	bool due = st->pending_pages >= STORE_COMMIT_PAGES;
	/* Far behind (or no thread): the writer commits itself, which also
	 * holds writers back while the committer catches up. */
	bool inline_commit = st->pending_pages >= 4 * STORE_COMMIT_PAGES || !st->committer_running;
	if (due && !inline_commit) {
		st->commit_wanted = true;
		pthread_cond_signal(&st->commit_cond);
	}
	pthread_mutex_unlock(&st->mem_lock);
	if (due && inline_commit)
		store_commit(st, NULL);	/* a failure sticks in st->failed */
}

static void *committer_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "snapfs-commit");
	pthread_mutex_lock(&st->mem_lock);
	for (;;) {
		while (!st->commit_wanted && !st->committer_stop)
			pthread_cond_wait(&st->commit_cond, &st->mem_lock);
		if (st->committer_stop)
			break;
		st->commit_wanted = false;
		pthread_mutex_unlock(&st->mem_lock);
		store_commit(st, NULL);	/* a failure sticks in st->failed */
		pthread_mutex_lock(&st->mem_lock);
	}
	pthread_mutex_unlock(&st->mem_lock);
	return NULL;
}

int store_committer_start(struct store *st, struct err *e)
{
	pthread_cond_init(&st->commit_cond, NULL);
	int r = pthread_create(&st->committer, NULL, committer_main, st);
	if (r)
		return err_set(e, -r, "store %s: committer thread: %s", st->dir, strerror(r));
	st->committer_running = true;
	return 0;
}

void store_committer_stop(struct store *st)
{
	if (!st->committer_running)
		return;
	pthread_mutex_lock(&st->mem_lock);
	st->committer_stop = true;
	pthread_cond_signal(&st->commit_cond);
	pthread_mutex_unlock(&st->mem_lock);
	pthread_join(st->committer, NULL);
	st->committer_running = false;
	pthread_cond_destroy(&st->commit_cond);
}

ssize_t store_write(struct store *st, uint64_t ino, const void *buf, size_t len, uint64_t off)
{
	if (off > STORE_MAX_FILE_SIZE || len > STORE_MAX_FILE_SIZE - off)
		return -EFBIG;
	struct sinode *si;
	int r = data_begin(st, ino, true, &si);
	if (r)
		return r;
	ssize_t n = len ? write_locked(st, si, buf, len, off) : 0;
	data_end(st, si, true);
	return n;
}

/* ---- reading ----------------------------------------------------------------- */

/* Copy the slots of pages [pg, pg+n) out (mem_lock held). */
static void slots_copy(const struct sinode *si, uint64_t pg, size_t n, uint8_t (*hashes)[32],
		       uint64_t *locs)
{
	for (size_t i = 0; i < n; i++) {
		const uint8_t *h;
		slot_get(si, pg + i, &h, &locs[i]);
		if (hashes)
			memcpy(hashes[i], h, STORE_HASH_SIZE);
	}
}

/* Read [off, off+len) of si, already clipped to its size, into buf. */
static int read_range(struct store *st, struct sinode *si, uint8_t *buf, size_t len, uint64_t off)
{
	if (!len)
		return 0;
	uint64_t pg0 = off >> STORE_PAGE_SHIFT;
	size_t np = (size_t)(((off + len - 1) >> STORE_PAGE_SHIFT) - pg0 + 1);
	uint64_t stack_locs[64];
	uint8_t stack_h[64][32];
	uint64_t *locs = np <= 64 ? stack_locs : malloc(np * sizeof(*locs));
	uint8_t(*hashes)[32] = np <= 64 ? stack_h : malloc(np * sizeof(*hashes));
	int r = 0;
	if (!locs || !hashes) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&st->mem_lock);
	slots_copy(si, pg0, np, hashes, locs);
	pthread_mutex_unlock(&st->mem_lock);

	/* Pages are only ever appended, and gc waits for gc_lock, so the
	 * locations stay good after mem_lock is dropped. */
	uint8_t page[STORE_PAGE_SIZE] __attribute__((aligned(64)));
	for (size_t i = 0; i < np && !r; i++) {
		uint64_t ps = (pg0 + i) << STORE_PAGE_SHIFT;
		uint64_t a = ps > off ? ps : off;
		uint64_t b = ps + STORE_PAGE_SIZE < off + len ? ps + STORE_PAGE_SIZE : off + len;
		uint8_t *dst = buf + (a - off);
		if (!locs[i]) {
			memset(dst, 0, (size_t)(b - a));
			continue;
		}
		if (b - a == STORE_PAGE_SIZE) {
			r = st->be->ops->get(st->be, hashes[i], locs[i], dst);
		} else {
			r = st->be->ops->get(st->be, hashes[i], locs[i], page);
			memcpy(dst, page + (a - ps), (size_t)(b - a));
		}
	}
out:
	if (locs != stack_locs)
		free(locs);
	if (hashes != stack_h)
		free(hashes);
	return r;
}

/* Clip [off, off+len) at si's size (mem_lock taken here). */
static size_t clip(struct store *st, struct sinode *si, uint64_t off, size_t len)
{
	pthread_mutex_lock(&st->mem_lock);
	uint64_t size = si->size;
	pthread_mutex_unlock(&st->mem_lock);
	if (off >= size)
		return 0;
	return len > size - off ? (size_t)(size - off) : len;
}

ssize_t store_read(struct store *st, uint64_t ino, void *buf, size_t len, uint64_t off)
{
	struct sinode *si;
	int r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	len = clip(st, si, off, len);
	r = read_range(st, si, buf, len, off);
	data_end(st, si, false);
	return r ? r : (ssize_t)len;
}

int store_map(struct store *st, uint64_t ino, uint64_t off, size_t len,
	      struct store_extent *ext, size_t max, size_t *covered)
{
	if (!st->be->ops->fd_of)
		return -EOPNOTSUPP;
	struct sinode *si;
	int r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	len = clip(st, si, off, len);
	size_t n = 0, done = 0;
	uint64_t pg0 = off >> STORE_PAGE_SHIFT;
	size_t np = len ? (size_t)(((off + len - 1) >> STORE_PAGE_SHIFT) - pg0 + 1) : 0;
	uint64_t *locs = np ? malloc(np * sizeof(*locs)) : NULL;
	if (np && !locs)
		r = -ENOMEM;
	if (!r && np) {
		pthread_mutex_lock(&st->mem_lock);
		slots_copy(si, pg0, np, NULL, locs);
		pthread_mutex_unlock(&st->mem_lock);
	}
	for (size_t i = 0; i < np && !r; i++) {
		uint64_t ps = (pg0 + i) << STORE_PAGE_SHIFT;
		uint64_t a = ps > off ? ps : off;
		uint64_t b = ps + STORE_PAGE_SIZE < off + len ? ps + STORE_PAGE_SIZE : off + len;
		int fd = -1;
		uint64_t pos = 0;
		if (locs[i]) {
			r = st->be->ops->fd_of(st->be, locs[i], &fd, &pos);
			if (r)
				break;
			pos += a - ps;
		}
		struct store_extent *last = n ? &ext[n - 1] : NULL;
		if (last && last->fd == fd && (fd < 0 || last->pos + last->len == pos)) {
			last->len += (size_t)(b - a);
		} else {
			if (n == max)
				break;
			ext[n++] = (struct store_extent){ .fd = fd, .pos = pos, .len = (size_t)(b - a) };
		}
		done += (size_t)(b - a);
	}
	free(locs);
	sinode_put(st, si);
	if (r) {
		pthread_rwlock_unlock(&st->gc_lock);
		return r;
	}
	/* gc_lock stays held until store_map_done. */
	if (covered)
		*covered = done;
	return (int)n;
}

void store_map_done(struct store *st)
{
	pthread_rwlock_unlock(&st->gc_lock);
}

/* ---- truncate, punch, clone, seek -------------------------------------------- */

/* Make pages [from, to) holes (mem_lock held). */
static int holes(struct store *st, struct sinode *si, uint64_t from, uint64_t to)
{
	int r = 0;
	uint64_t last = (uint64_t)si->nchunks << CHUNK_SHIFT;
	if (to > last)
		to = last;
	for (uint64_t pg = from; pg < to && !r; pg++) {
		if (!si->chunks[pg >> CHUNK_SHIFT]) {
			pg |= CHUNK_PAGES - 1;	/* skip a chunk of holes */
			continue;
		}
		r = slot_set(st, si, pg, NULL, 0);
	}
	return r;
}

static int truncate_locked(struct store *st, struct sinode *si, uint64_t size)
{
	pthread_mutex_lock(&st->mem_lock);
	int r = 0;
	if (size < si->size) {
		/* Bytes past the end of the last page are kept zero, so that a
		 * page's hash depends only on the file's content. */
		unsigned in = size & (STORE_PAGE_SIZE - 1);
		if (in)
			r = patch_page(st, si, size >> STORE_PAGE_SHIFT, in, NULL, STORE_PAGE_SIZE - in);
		uint64_t first = (size + STORE_PAGE_SIZE - 1) >> STORE_PAGE_SHIFT;
		if (!r)
			r = holes(st, si, first, UINT64_MAX);
	}
	if (!r) {
		si->size = size;
		touch(si);
	}
	pthread_mutex_unlock(&st->mem_lock);
	return r;
}

int store_truncate(struct store *st, uint64_t ino, uint64_t size)
{
	if (size > STORE_MAX_FILE_SIZE)
		return -EFBIG;
	struct sinode *si;
	int r = data_begin(st, ino, true, &si);
	if (r)
		return r;
	r = truncate_locked(st, si, size);
	data_end(st, si, true);
	return r;
}

int store_punch(struct store *st, uint64_t ino, uint64_t off, uint64_t len)
{
	struct sinode *si;
	int r = data_begin(st, ino, true, &si);
	if (r)
		return r;
	pthread_mutex_lock(&st->mem_lock);
	uint64_t end = off + len < off ? UINT64_MAX : off + len;
	if (end > si->size)
		end = si->size;
	while (off < end && !r) {
		uint64_t pg = off >> STORE_PAGE_SHIFT;
		unsigned in = off & (STORE_PAGE_SIZE - 1);
		uint64_t n = STORE_PAGE_SIZE - in;
		if (n > end - off)
			n = end - off;
		if (n == STORE_PAGE_SIZE) {
			uint64_t whole = (end - off) >> STORE_PAGE_SHIFT;
			r = holes(st, si, pg, pg + whole);
			off += whole << STORE_PAGE_SHIFT;
		} else {
			r = patch_page(st, si, pg, in, NULL, (size_t)n);
			off += n;
		}
	}
	if (!r)
		touch(si);
	pthread_mutex_unlock(&st->mem_lock);
	data_end(st, si, true);
	return r;
}

/* Copy bytes through a buffer (both wlocks held). */
static int copy_bytes(struct store *st, struct sinode *src, uint64_t so, struct sinode *dst,
		      uint64_t doff, uint64_t len)
{
	enum { BUF = 1 << 20 };
	uint8_t *buf = malloc(len < BUF ? (size_t)len : BUF);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	while (len && !r) {
		size_t n = len < BUF ? (size_t)len : BUF;
		r = read_range(st, src, buf, n, so);
		if (!r) {
			ssize_t w = write_locked(st, dst, buf, n, doff);
			r = w < 0 ? (int)w : 0;
		}
		so += n;
		doff += n;
		len -= n;
	}
	free(buf);
	return r;
}

static int clone_locked(struct store *st, struct sinode *src, uint64_t so, struct sinode *dst,
			uint64_t doff, uint64_t len)
{
	if ((so & (STORE_PAGE_SIZE - 1)) != (doff & (STORE_PAGE_SIZE - 1)))
		return copy_bytes(st, src, so, dst, doff, len);
	/* Head up to a page boundary, whole pages by reference, tail. */
	uint64_t head = (STORE_PAGE_SIZE - (so & (STORE_PAGE_SIZE - 1))) & (STORE_PAGE_SIZE - 1);
	if (head > len)
		head = len;
	int r = copy_bytes(st, src, so, dst, doff, head);
	so += head;
	doff += head;
	len -= head;
	uint64_t whole = len >> STORE_PAGE_SHIFT;
	if (!r && whole) {
		pthread_mutex_lock(&st->mem_lock);
		uint64_t sp = so >> STORE_PAGE_SHIFT, dp = doff >> STORE_PAGE_SHIFT;
		for (uint64_t i = 0; i < whole && !r; i++) {
			const uint8_t *h;
			uint64_t loc;
			slot_get(src, sp + i, &h, &loc);
			uint8_t hash[STORE_HASH_SIZE];
			memcpy(hash, h, sizeof(hash));	/* src may be dst: slot_set may move */
			r = slot_set(st, dst, dp + i, hash, loc);
		}
		uint64_t end = doff + (whole << STORE_PAGE_SHIFT);
		if (!r && end > dst->size)
			dst->size = end;
		touch(dst);
		pthread_mutex_unlock(&st->mem_lock);
		so += whole << STORE_PAGE_SHIFT;
		doff += whole << STORE_PAGE_SHIFT;
		len -= whole << STORE_PAGE_SHIFT;
	}
	if (!r)
		r = copy_bytes(st, src, so, dst, doff, len);
	return r;
}

ssize_t store_clone(struct store *st, uint64_t src, uint64_t src_off, uint64_t dst,
		    uint64_t dst_off, uint64_t len)
{
	if (src_off > STORE_MAX_FILE_SIZE || dst_off > STORE_MAX_FILE_SIZE ||
	    len > STORE_MAX_FILE_SIZE)
		return -EFBIG;
	struct sinode *d, *s;
	int r = data_begin(st, dst, true, &d);
	if (r)
		return r;
	if (src == dst) {
		s = d;
	} else {
		/* Pin src without its wlock first, then take both wlocks in
		 * inode order so two opposite clones cannot deadlock. */
		r = sinode_get(st, src, &s);
		if (r) {
			data_end(st, d, true);
			return r;
		}
		if (src < dst) {
			pthread_mutex_unlock(&d->wlock);
			pthread_mutex_lock(&s->wlock);
			pthread_mutex_lock(&d->wlock);
		} else {
			pthread_mutex_lock(&s->wlock);
		}
	}
	pthread_mutex_lock(&st->mem_lock);
	uint64_t ssize = s->size;
	pthread_mutex_unlock(&st->mem_lock);
	if (src_off >= ssize)
		len = 0;
	else if (len > ssize - src_off)
		len = ssize - src_off;
	if (dst_off + len > STORE_MAX_FILE_SIZE)
		r = -EFBIG;
	else if (src == dst && len && src_off < dst_off + len && dst_off < src_off + len)
		r = -EINVAL;
	if (!r && len)
		r = clone_locked(st, s, src_off, d, dst_off, len);
	if (s != d) {
		pthread_mutex_unlock(&s->wlock);
		sinode_put(st, s);
	}
	data_end(st, d, true);
	return r ? r : (ssize_t)len;
}

static int64_t seek(struct store *st, uint64_t ino, uint64_t off, bool data)
{
	struct sinode *si;
	int r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	int64_t res = -ENXIO;
	pthread_mutex_lock(&st->mem_lock);
	uint64_t size = si->size;
	if (off < size) {
		uint64_t last = (size - 1) >> STORE_PAGE_SHIFT;
		uint64_t pg = off >> STORE_PAGE_SHIFT;
		for (; pg <= last; pg++) {
			size_t ci = (size_t)(pg >> CHUNK_SHIFT);
			if (ci >= si->nchunks || !si->chunks[ci]) {
				if (!data)
					break;	/* a hole */
				if (ci >= si->nchunks) {
					/* Past the map's last row: holes
					 * only, so no data at all. */
					pg = last + 1;
					break;
				}
				pg |= CHUNK_PAGES - 1;
				continue;
			}
			bool is_data = si->chunks[ci]->loc[pg & (CHUNK_PAGES - 1)] != 0;
			if (is_data == data)
				break;
		}
		uint64_t at = pg << STORE_PAGE_SHIFT;
		if (at < off)
			at = off;
		if (data)
			res = pg <= last && at < size ? (int64_t)at : -ENXIO;
		else
			res = at < size ? (int64_t)at : (int64_t)size;
	}
	pthread_mutex_unlock(&st->mem_lock);
	data_end(st, si, false);
	return res;
}

int64_t store_seek_data(struct store *st, uint64_t ino, uint64_t off)
{
	return seek(st, ino, off, true);
}

int64_t store_seek_hole(struct store *st, uint64_t ino, uint64_t off)
{
	return seek(st, ino, off, false);
}

/* ---- open files and figures ---------------------------------------------------- */

int store_file_open(struct store *st, uint64_t ino)
{
	struct sinode *si;
	int r = sinode_get(st, ino, &si);
	if (r)
		return r;
	pthread_mutex_lock(&st->mem_lock);
	si->opens++;
	si->users--;
	pthread_mutex_unlock(&st->mem_lock);
	return 0;
}

int store_file_release(struct store *st, uint64_t ino)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (!si || !si->opens) {
		pthread_mutex_unlock(&st->mem_lock);
		return -EBADF;
	}
	bool last = --si->opens == 0;
	bool doomed = last && si->released;
	pthread_mutex_unlock(&st->mem_lock);
	if (!last || st->rdonly)
		return 0;
	if (doomed) {
		/* store_inode_release came first: delete if still unlinked. */
		pthread_mutex_lock(&st->db_lock);
		int r = store_delete_inode_if_unlinked(st, ino);
		pthread_mutex_unlock(&st->db_lock);
		return r;
	}
	return store_commit(st, NULL);
}

int store_file_info(struct store *st, uint64_t ino, struct store_file_info *out)
{
	memset(out, 0, sizeof(*out));
	int r = st->rdonly ? 0 : store_commit(st, NULL);
	if (r)
		return r;
	struct sinode *si;
	r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	pthread_mutex_lock(&st->mem_lock);
	uint64_t size = si->size;
	uint64_t np = (size + STORE_PAGE_SIZE - 1) >> STORE_PAGE_SHIFT;
	uint8_t(*hashes)[32] = np ? malloc(np * STORE_HASH_SIZE) : NULL;
	if (np && !hashes)
		r = -ENOMEM;
	else
		for (uint64_t i = 0; i < np; i++) {
			const uint8_t *h;
			uint64_t loc;
			slot_get(si, i, &h, &loc);
			memcpy(hashes[i], h, STORE_HASH_SIZE);
		}
	pthread_mutex_unlock(&st->mem_lock);
	data_end(st, si, false);
	if (r)
		return r;

	struct store_hasher *h = store_hasher_get(st);
	r = h ? store_hash_begin(h) : -ENOMEM;
	uint8_t le[8];
	put_le64(le, size);
	if (!r)
		r = store_hash_add(h, le, sizeof(le));
	if (!r && np)
		r = store_hash_add(h, hashes, np * STORE_HASH_SIZE);
	if (!r)
		r = store_hash_end(h, out->digest);
	store_hasher_put(st, h);

	out->size = size;
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_exec(st->rdb, "BEGIN", NULL, NULL, NULL);
	sqlite3_stmt *s = store_stmt(st, st->rdb, "SELECT refs FROM page WHERE hash = ?");
	if (!s)
		r = r ? r : -EIO;
	for (uint64_t i = 0; i < np && !r; i++) {
		if (hole(hashes[i])) {
			out->zero_pages++;
			continue;
		}
		out->pages++;
		sqlite3_reset(s);
		sqlite3_bind_blob(s, 1, hashes[i], STORE_HASH_SIZE, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 1)
			out->shared_pages++;
	}
	if (s)
		sqlite3_reset(s);
	sqlite3_exec(st->rdb, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->rdb_lock);
	free(hashes);
	return r;
}

/* ---- commit ------------------------------------------------------------------ */

struct delta {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t loc;
	int64_t n;
};

struct dtab {
	struct delta *d;
	size_t cap, n;
};

static int dtab_add(struct dtab *t, const uint8_t *hash, uint64_t loc, int64_t n)
{
	if (2 * (t->n + 1) > t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 1024;
		struct delta *d = calloc(cap, sizeof(*d));
		if (!d)
			return -ENOMEM;
		for (size_t i = 0; i < t->cap; i++) {
			if (hole(t->d[i].hash))
				continue;
			size_t j = hslot(t->d[i].hash, cap);
			while (!hole(d[j].hash))
				j = (j + 1) & (cap - 1);
			d[j] = t->d[i];
		}
		free(t->d);
		t->d = d;
		t->cap = cap;
	}
	size_t i = hslot(hash, t->cap);
	while (!hole(t->d[i].hash)) {
		if (!memcmp(t->d[i].hash, hash, STORE_HASH_SIZE)) {
			t->d[i].n += n;
			if (loc)
				t->d[i].loc = loc;
			return 0;
		}
		i = (i + 1) & (t->cap - 1);
	}
	memcpy(t->d[i].hash, hash, STORE_HASH_SIZE);
	t->d[i].loc = loc;
	t->d[i].n = n;
	t->n++;
	return 0;
}

static int delta_cmp(const void *a, const void *b)
{
	return memcmp(a, b, STORE_HASH_SIZE);
}

/* Compact the table into a sorted array of non-zero deltas: sorted keys
 * make the B-tree updates walk the index in order. */
static size_t dtab_sorted(struct dtab *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (!hole(t->d[i].hash) && t->d[i].n)
			t->d[n++] = t->d[i];
	if (n > 1)
		qsort(t->d, n, sizeof(*t->d), delta_cmp);
	return n;
}

/* Apply reference deltas to the page index (transaction open, db_lock). */
static int apply_deltas(struct store *st, struct dtab *t)
{
	size_t n = dtab_sorted(t);
	sqlite3_stmt *up = store_stmt(st, st->db,
				      "INSERT INTO page(hash, loc, refs) VALUES(?1, ?2, ?3)"
				      " ON CONFLICT(hash) DO UPDATE SET refs = refs + excluded.refs");
	sqlite3_stmt *down = store_stmt(st, st->db, "UPDATE page SET refs = refs + ?2 WHERE hash = ?1");
	if (!up || !down)
		return -EIO;
	for (size_t i = 0; i < n; i++) {
		struct delta *d = &t->d[i];
		sqlite3_stmt *s = d->n > 0 ? up : down;
		sqlite3_reset(s);
		sqlite3_bind_blob(s, 1, d->hash, STORE_HASH_SIZE, SQLITE_STATIC);
		if (d->n > 0) {
			sqlite3_bind_int64(s, 2, (int64_t)d->loc);
			sqlite3_bind_int64(s, 3, d->n);
		} else {
			sqlite3_bind_int64(s, 2, d->n);
		}
		if (sqlite3_step(s) != SQLITE_DONE) {
			sqlite3_reset(s);
			return -EIO;
		}
	}
	sqlite3_reset(up);
	sqlite3_reset(down);
	return 0;
}

struct row {
	uint64_t ino, idx;
	uint8_t *blob;		/* hashes then locs; NULL: delete the row */
	size_t nslots;
	uint8_t (*base)[STORE_HASH_SIZE];	/* the chunk's committed hashes */
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
	struct dtab deltas;
};

static void batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->nrows; i++) {
		free(b->rows[i].blob);
		free(b->rows[i].base);
	}
	free(b->rows);
	free(b->inodes);
	free(b->deltas.d);
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? 2 * *cap : 64;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* Reference changes of one chunk going from base to the n slots given
 * (hashes, then little-endian locations; slots past n are holes). */
static int chunk_deltas(struct dtab *t, const uint8_t (*base)[STORE_HASH_SIZE],
			const uint8_t *hashes, const uint8_t *locs, size_t n)
{
	static const uint8_t zero[STORE_HASH_SIZE];
	int r = 0;
	for (size_t k = 0; k < CHUNK_PAGES && !r; k++) {
		const uint8_t *h = k < n ? hashes + k * STORE_HASH_SIZE : zero;
		if (!memcmp(base[k], h, STORE_HASH_SIZE))
			continue;
		if (!hole(base[k]))
			r = dtab_add(t, base[k], 0, -1);
		uint64_t loc = k < n ? get_le64(locs + 8 * k) : 0;
		if (!r && loc)
			r = dtab_add(t, h, loc, 1);
	}
	return r;
}

/* Move one dirty chunk into the batch (mem_lock held).  The row takes the
 * chunk's committed hashes along, so that the reference changes are
 * worked out after mem_lock is dropped (batch_deltas), not while writers
 * wait for it. */
static int batch_chunk(struct batch *b, struct sinode *si, size_t ci)
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
	if ((r = grow((void **)&b->rows, &b->caprows, b->nrows, sizeof(*b->rows))))
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
	if (!used) {
		chunk_free(c);
		si->chunks[ci] = NULL;
	}
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
	for (size_t i = 0; i < st->itab_cap && !r; i++)
		for (struct sinode *si = st->itab[i]; si && !r; si = si->next) {
			if (!si->dirty)
				continue;
			for (size_t ci = 0; ci < si->nchunks && !r; ci++)
				if (si->chunks[ci] && si->chunks[ci]->base)
					r = batch_chunk(b, si, ci);
			if (r)
				break;
			r = grow((void **)&b->inodes, &b->capinodes, b->ninodes, sizeof(*b->inodes));
			if (r)
				break;
			b->inodes[b->ninodes++] = (struct irow){ .ino = si->ino, .size = si->size,
								 .pages = si->pages,
								 .mtime_ns = si->mtime_ns,
								 .ctime_ns = si->ctime_ns };
			si->dirty = false;
		}
	return r;
}

static int batch_write(struct store *st, struct batch *b)
{
	sqlite3_stmt *put = store_stmt(st, st->db,
				       "INSERT OR REPLACE INTO chunk(ino, idx, hashes, locs) VALUES(?, ?, ?, ?)");
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
			sqlite3_bind_blob(s, 3, row->blob, (int)(row->nslots * STORE_HASH_SIZE),
					  SQLITE_STATIC);
			sqlite3_bind_blob(s, 4, row->blob + row->nslots * STORE_HASH_SIZE,
					  (int)(row->nslots * 8), SQLITE_STATIC);
		}
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	for (size_t i = 0; i < b->ninodes; i++) {
		struct irow *ir = &b->inodes[i];
		sqlite3_reset(ino);
		sqlite3_bind_int64(ino, 1, (int64_t)ir->size);
		sqlite3_bind_int64(ino, 2, (int64_t)ir->pages);
		sqlite3_bind_int64(ino, 3, ir->mtime_ns);
		sqlite3_bind_int64(ino, 4, ir->ctime_ns);
		sqlite3_bind_int64(ino, 5, (int64_t)ir->ino);
		int rc = sqlite3_step(ino);
		sqlite3_reset(ino);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	return apply_deltas(st, &b->deltas);
}

int store_commit(struct store *st, struct err *e)
{
	if (st->rdonly)
		return 0;
	pthread_mutex_lock(&st->db_lock);
	pthread_mutex_lock(&st->mem_lock);
	int r = st->failed;
	bool any = false;
	for (size_t i = 0; i < st->itab_cap && !any; i++)
		for (struct sinode *si = st->itab[i]; si && !any; si = si->next)
			any = si->dirty;
	struct batch b = { 0 };
	if (!r && any) {
		r = batch_collect(st, &b);
		/* The pending pages stay findable while the transaction runs. */
		ptab_free(&st->committing);
		st->committing = st->pending;
		st->pending = (struct ptab){ 0 };
		st->pending_pages = 0;
		st->commit_active = true;
		if (r)
			st->failed = r;
	}
	pthread_mutex_unlock(&st->mem_lock);
	if (!r && any) {
		r = batch_deltas(&b);
		if (r) {
			pthread_mutex_lock(&st->mem_lock);
			st->failed = r;	/* the chunks are marked clean already */
			st->commit_active = false;
			pthread_mutex_unlock(&st->mem_lock);
		}
	}
	if (r || !any) {
		pthread_mutex_unlock(&st->db_lock);
		batch_free(&b);
		return r ? err_set(e, r, "store %s: commit: earlier failure: %s", st->dir,
				   strerror(-r))
			 : 0;
	}

	/* The page data first, then the transaction that refers to it. */
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
	ptab_free(&st->committing);
	st->commit_active = false;
	if (r)
		st->failed = r;	/* memory and database disagree now */
	cache_trim(st);
	pthread_mutex_unlock(&st->mem_lock);
	pthread_mutex_unlock(&st->db_lock);
	batch_free(&b);
	return r;
}

/* ---- deleting a file ------------------------------------------------------------- */

int store_delete_inode(struct store *st, uint64_t ino)
{
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (si) {
		/* Its pending changes die with it: the database never saw
		 * them, and the commit finds changes only in cached chunks. */
		itab_remove(st, si);
		sinode_free(st, si);
	}
	pthread_mutex_unlock(&st->mem_lock);

	struct dtab t = { 0 };
	int r = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
	sqlite3_stmt *s = r ? NULL : store_stmt(st, st->db, "SELECT hashes FROM chunk WHERE ino = ?");
	if (!r && !s)
		r = -EIO;
	if (!r) {
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		int rc;
		while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
			const uint8_t *h = sqlite3_column_blob(s, 0);
			int n = sqlite3_column_bytes(s, 0) / (int)STORE_HASH_SIZE;
			for (int k = 0; k < n && !r; k++)
				if (!hole(h + k * STORE_HASH_SIZE))
					r = dtab_add(&t, h + k * STORE_HASH_SIZE, 0, -1);
		}
		if (!r && rc != SQLITE_DONE)
			r = -EIO;
		sqlite3_reset(s);
	}
	if (!r)
		r = apply_deltas(st, &t);
	static const char *const dels[] = {
		"DELETE FROM chunk WHERE ino = ?",
		"DELETE FROM xattr WHERE ino = ?",
		"DELETE FROM symlink WHERE ino = ?",
		"DELETE FROM inode WHERE ino = ?",
	};
	for (unsigned i = 0; i < sizeof(dels) / sizeof(dels[0]) && !r; i++) {
		s = store_stmt(st, st->db, dels[i]);
		if (!s) {
			r = -EIO;
			break;
		}
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		r = sqlite3_step(s) == SQLITE_DONE ? 0 : -EIO;
		sqlite3_reset(s);
	}
	if (!r)
		r = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
	if (r)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	free(t.d);
	return r;
}

int store_delete_inode_if_unlinked(struct store *st, uint64_t ino)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT nlink FROM inode WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = sqlite3_step(s);
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
	return busy ? 0 : store_delete_inode(st, ino);
}
