/*
 * fsd/store_write.c: writing file contents.  Whole pages are hashed outside
 * every lock, then deduplicated against the pending table and the prefix
 * set (whose candidate locations hold the same bytes or not), and pages
 * new to the store are put to the backend at once (appended, not yet
 * synced) and listed in the pending table, so later
 * writes deduplicate against them and reads find them; the commit syncs the
 * backend before the transaction that refers to them.  Partial pages are
 * read, patched and stored whole, but for the last page of a file being
 * appended to, which is held in memory (the inode's tail) until it is
 * whole or anything else needs it, so that it is stored once.
 *
 * A large write hashes its whole pages on two threads, its own and the
 * store's hashing helper, before deduplicating them: a FUSE client such as
 * cp sends one write at a time, so otherwise a single core would do all the
 * hashing while the other one idles.  Between the writes of a stream the
 * helper may poll for the next one rather than sleep (store_set_hash_spin),
 * so that it is not still waking up while the writer hashes alone.  The
 * committer thread runs the commit when enough is pending, so SQLite work
 * overlaps with hashing.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "store_i.h"

#define LOC_TMP (1ull << 63)	/* pending-table placeholder during a put */
#define WRITE_BATCH 64u		/* full pages hashed per round */
#define SPLIT_MIN 32u		/* whole pages from which the helper joins in */
#define SPLIT_MAX 256u		/* whole pages hashed ahead at most */
#define HASH_GROUP 8u		/* pages a hashing thread takes at a time */
#define RUN_MAX 16u		/* stored pages compared after one read */

/* ---- finding and putting pages ---------------------------------------------- */

/* Is the page at loc the page data (one page of bytes)?  A hint is trusted
 * only this way: the same bytes there are the same page whatever its
 * hash, and a hint the backend cannot read is simply not used. */
static bool same_page_at(struct store *st, const uint8_t *hash, uint64_t loc, const void *data)
{
	uint8_t page[STORE_PAGE_SIZE] __attribute__((aligned(64)));
	return loc && !st->be->ops->get(st->be, hash, loc, page) &&
	       !memcmp(page, data, STORE_PAGE_SIZE);
}

/*
 * Which of the n pages from i on (at most RUN_MAX) have first candidates
 * at consecutive locations: they are compared after one read.  A file
 * copied in again finds its pages that way, in the order they were
 * stored, and one read per page would cost more than hashing it.
 */
static unsigned run_length(const uint64_t *cand, const uint64_t *locs, unsigned i, unsigned n)
{
	unsigned k = 1;
	while (i + k < n && k < RUN_MAX && !locs[i + k] && cand[i + k] &&
	       cand[i + k] == cand[i] + k)
		k++;
	return k;
}

/* Compare the k pages of data with the run of pages stored from loc on,
 * setting locs[i] = loc + i where they match.  False if the run could
 * not be read as one. */
static bool same_run_at(struct store *st, uint64_t loc, unsigned k, const uint8_t *data,
			uint64_t *locs)
{
	uint8_t run[RUN_MAX * STORE_PAGE_SIZE] __attribute__((aligned(64)));
	if (!st->be->ops->get_run || st->be->ops->get_run(st->be, loc, k, run))
		return false;
	for (unsigned i = 0; i < k; i++)
		if (!memcmp(run + (size_t)i * STORE_PAGE_SIZE, data + (size_t)i * STORE_PAGE_SIZE,
			    STORE_PAGE_SIZE))
			locs[i] = loc + i;
	return true;
}

/* Where pages with these hashes (and contents data, n pages in a row) are
 * (0: the store has none), for the n (<= WRITE_BATCH) pages with want[i]
 * set (mem_lock held).  Pending pages are found by hash; stored ones by
 * their prefix's candidate locations, the bytes compared, with no SQLite
 * lookup at all: first candidates in runs, the rest one by one. */
static void lookup_pages(struct store *st, const uint8_t (*hashes)[STORE_HASH_SIZE],
			 const uint8_t *data, const bool *want, unsigned n, uint64_t *locs)
{
	uint64_t cand[WRITE_BATCH];
	size_t it[WRITE_BATCH];
	for (unsigned i = 0; i < n; i++) {
		locs[i] = cand[i] = it[i] = 0;
		if (!want[i])
			continue;
		struct ptab_ent *pe = htab_find(&st->pending, hashes[i]);
		if (!pe)
			pe = htab_find(&st->committing, hashes[i]);
		if (pe)
			locs[i] = pe->loc;
		else if (!pset_next(&st->known, hashes[i], &it[i], &cand[i]))
			cand[i] = 0;
	}
	bool tried[WRITE_BATCH] = { false };	/* first candidate compared */
	for (unsigned i = 0; i < n; i++) {
		if (locs[i] || !cand[i])
			continue;
		unsigned k = run_length(cand, locs, i, n);
		if (k > 1 && same_run_at(st, cand[i], k, data + (size_t)i * STORE_PAGE_SIZE,
					 locs + i)) {
			memset(tried + i, true, k);
			i += k - 1;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		if (locs[i] || !cand[i])
			continue;
		uint64_t loc = cand[i];
		bool more = !tried[i] || pset_next(&st->known, hashes[i], &it[i], &loc);
		for (; more; more = pset_next(&st->known, hashes[i], &it[i], &loc))
			if (same_page_at(st, hashes[i], loc, data + (size_t)i * STORE_PAGE_SIZE)) {
				locs[i] = loc;
				break;
			}
	}
}

static void lookup_page(struct store *st, const uint8_t *hash, const void *page, uint64_t *loc)
{
	static const bool yes = true;
	lookup_pages(st, (const uint8_t(*)[STORE_HASH_SIZE])hash, page, &yes, 1, loc);
}

/* Put a page new to the store and list it as pending (mem_lock held). */
static int put_new(struct store *st, const uint8_t *hash, const void *page, uint64_t *loc)
{
	int r = st->be->ops->put(st->be, hash, page, loc);
	if (r)	/* pages put before may be lost with it */
		store_fail(st, r, "writing pages: %s", strerror(-r));
	if (!r)
		r = ptab_add(&st->pending, hash, *loc);
	if (!r)
		r = pset_add(&st->known, hash, *loc);
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
		lookup_page(st, hash, page, &loc);
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
int patch_page(struct store *st, struct sinode *si, uint64_t pg, unsigned in,
		      const void *src, size_t len)
{
	uint8_t page[STORE_PAGE_SIZE] __attribute__((aligned(64)));
	const uint8_t *hash;
	uint64_t loc;
	int r = slot_get(st, si, pg, &hash, &loc);
	if (!r)
		r = read_page(st, hash, loc, page);
	if (r)
		return r;
	if (src)
		memcpy(page + in, src, len);
	else
		memset(page + in, 0, len);
	return store_page_locked(st, si, pg, page);
}

/* ---- hashing on two threads ------------------------------------------------ */

/* n (<= SPLIT_MAX) whole pages to hash: each thread that works on it
 * takes HASH_GROUP pages at a time from next until none are left.
 * hashes[i] is set for the pages that are not all zero (zero[i]).
 * hashed[b] counts the pages of batch b (WRITE_BATCH pages) whose hashes
 * are in, so that the writer can store a batch while the rest are being
 * hashed. */
struct hash_job {
	const uint8_t *data;
	size_t n;
	uint8_t (*hashes)[STORE_HASH_SIZE];
	bool *zero;
	size_t next;		/* next page to take (atomic) */
	unsigned hashed[SPLIT_MAX / WRITE_BATCH];	/* (atomic) */
	int err;		/* a failure (atomic) */
	bool waiting;		/* the writer waits for a batch (atomic) */
	bool taken, done;	/* by the helper (under hash_lock) */
};

/* Take the next group of j's pages: the number of its first page (j->n
 * or more if none was left). */
static size_t hash_take(struct hash_job *j)
{
	return __atomic_fetch_add(&j->next, HASH_GROUP, __ATOMIC_RELAXED);
}

/* Hash the group of j's pages taken from first on, and count them in. */
static void hash_group(struct hash_job *j, struct store_hasher *h, size_t first)
{
	size_t end = first + HASH_GROUP < j->n ? first + HASH_GROUP : j->n;
	for (size_t i = first; i < end; i++) {
		const uint8_t *p = j->data + i * STORE_PAGE_SIZE;
		j->zero[i] = store_page_is_zero(p);
		if (j->zero[i])
			continue;
		int r = store_hash(h, p, STORE_PAGE_SIZE, j->hashes[i]);
		if (r)
			__atomic_store_n(&j->err, r, __ATOMIC_RELAXED);
	}
	/* A group lies in one batch (HASH_GROUP divides WRITE_BATCH). */
	__atomic_add_fetch(&j->hashed[first / WRITE_BATCH], (unsigned)(end - first),
			   __ATOMIC_SEQ_CST);
}

/* The helper's part of a job: groups until none are left. */
static void hash_job_run(struct store *st, struct hash_job *j, struct store_hasher *h)
{
	for (size_t g; (g = hash_take(j)) < j->n;) {
		/* Tests: the writer finds this group taken but not hashed. */
		STORE_TEST_HOOK("hash-helper", st, g);
		hash_group(j, h, g);
		if (__atomic_load_n(&j->waiting, __ATOMIC_SEQ_CST)) {
			pthread_mutex_lock(&st->hash_lock);
			pthread_cond_broadcast(&st->hash_done);
			pthread_mutex_unlock(&st->hash_lock);
		}
	}
}

/* The helper is done with a job (hash_lock held): in a stream of jobs,
 * wait for the next by polling rather than asleep (store_set_hash_spin),
 * giving the CPU to whatever else can run meanwhile. */
static void hash_spin(struct store *st)
{
	int64_t now = store_mono_ns(), spin = __atomic_load_n(&st->hash_spin_ns, __ATOMIC_RELAXED);
	if (!spin || st->hash_gap_ns > spin || st->hash_job || st->hash_stop)
		return;
	pthread_mutex_unlock(&st->hash_lock);
	while (!__atomic_load_n(&st->hash_job, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&st->hash_stop, __ATOMIC_ACQUIRE) &&
	       store_mono_ns() - now < __atomic_load_n(&st->hash_spin_ns, __ATOMIC_RELAXED))
		sched_yield();
	pthread_mutex_lock(&st->hash_lock);
	if (st->hash_job)
		st->hash_spin_hits++;
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
		__atomic_store_n(&st->hash_job, NULL, __ATOMIC_RELAXED);
		j->taken = true;
		pthread_mutex_unlock(&st->hash_lock);
		if (h)
			hash_job_run(st, j, h);
		pthread_mutex_lock(&st->hash_lock);
		j->done = true;
		pthread_cond_broadcast(&st->hash_done);
		hash_spin(st);
	}
	pthread_mutex_unlock(&st->hash_lock);
	store_hasher_free(h);
	return NULL;
}

void store_set_hash_spin(struct store *st, unsigned us)
{
	__atomic_store_n(&st->hash_spin_ns, (int64_t)us * 1000, __ATOMIC_RELAXED);
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
	__atomic_store_n(&st->hash_stop, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&st->hash_cond);
	pthread_mutex_unlock(&st->hash_lock);
	pthread_join(st->hash_thread, NULL);
	st->hash_running = false;
	pthread_cond_destroy(&st->hash_done);
	pthread_cond_destroy(&st->hash_cond);
	pthread_mutex_destroy(&st->hash_lock);
}

/*
 * Offer j to the helper thread (no lock held), from SPLIT_MIN pages on.
 * True if it was posted; if the helper is busy with another writer's
 * job, or only gets to this one when it is finished, the writer does it
 * all alone.
 */
static bool hash_post(struct store *st, struct hash_job *j)
{
	bool posted = false;
	if (j->n >= SPLIT_MIN && st->hash_running) {
		pthread_mutex_lock(&st->hash_lock);
		if (!st->hash_job) {
			__atomic_store_n(&st->hash_job, j, __ATOMIC_RELEASE);
			int64_t now = store_mono_ns();
			st->hash_gap_ns = now - st->hash_post_ns;
			st->hash_post_ns = now;
			posted = true;
			pthread_cond_signal(&st->hash_cond);
		}
		pthread_mutex_unlock(&st->hash_lock);
	}
	return posted;
}

/* Wait until the helper has hashed the k pages of batch b of j, or is
 * done with it (the writer has no group left to take). */
static void hash_wait(struct store *st, struct hash_job *j, unsigned b, unsigned k)
{
	pthread_mutex_lock(&st->hash_lock);
	__atomic_store_n(&j->waiting, true, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&j->hashed[b], __ATOMIC_SEQ_CST) < k && !j->done)
		pthread_cond_wait(&st->hash_done, &st->hash_lock);
	__atomic_store_n(&j->waiting, false, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&st->hash_lock);
}

/* The writer is through with j: withdraw it if the helper never took it,
 * else wait until the helper lets go of it. */
static void hash_finish(struct store *st, struct hash_job *j, bool posted)
{
	if (!posted)
		return;
	pthread_mutex_lock(&st->hash_lock);
	if (!j->taken)
		__atomic_store_n(&st->hash_job, NULL, __ATOMIC_RELAXED);
	else
		while (!j->done)
			pthread_cond_wait(&st->hash_done, &st->hash_lock);
	pthread_mutex_unlock(&st->hash_lock);
}

/* ---- writing ------------------------------------------------------------------ */

/* The file reaches at least end (mem_lock held).  A write sets each piece
 * of the page map and the size together: a commit may come between two
 * pieces of one write (another file's fsync), and a size left for the
 * end of the write would have it store pages past the end of the file,
 * which a crash would then keep. */
static void size_covers(struct sinode *si, uint64_t end)
{
	if (end > si->size)
		si->size = end;
}

/* n (<= WRITE_BATCH) whole pages from data (in lent, if not NULL) as
 * slots pg.., their hashes and zero flags already worked out:
 * deduplicated, put and mapped under mem_lock. */
static int write_hashed(struct store *st, struct sinode *si, uint64_t pg, const uint8_t *data,
			unsigned n, const uint8_t (*hashes)[STORE_HASH_SIZE], const bool *zero,
			struct store_lent *lent)
{
	uint64_t locs[WRITE_BATCH];
	int r = 0;

	/* Pages new to the store go to the backend in one call. */
	struct iovec iov[WRITE_BATCH];
	uint8_t newh[WRITE_BATCH][STORE_HASH_SIZE];
	unsigned nnew = 0;
	bool data_page[WRITE_BATCH];
	for (unsigned i = 0; i < n; i++)
		data_page[i] = !zero[i];
	pthread_mutex_lock(&st->mem_lock);
	lookup_pages(st, (const uint8_t(*)[STORE_HASH_SIZE])hashes, data, data_page, n, locs);
	for (unsigned i = 0; i < n && !r; i++) {
		if (zero[i] || locs[i])
			continue;
		/* A repeat of a page that is new in this batch finds the
		 * placeholder the first one left. */
		struct ptab_ent *pe = htab_find(&st->pending, hashes[i]);
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
					  lent, newloc);
		} else {
			for (unsigned j = 0; j < nnew && !r; j++)
				r = ops->put(st->be, newh[j], iov[j].iov_base, &newloc[j]);
		}
	}
	if (r && nnew) {
		/* Pages put before may be lost with these. */
		store_fail(st, r, "writing pages: %s", strerror(-r));
		/* Drop the placeholders: open addressing cannot just blank a
		 * slot, so rebuild the table without them. */
		struct htab old = st->pending;
		st->pending = HTAB(struct ptab_ent);
		for (size_t i = 0; i < old.cap; i++) {
			struct ptab_ent *pe = htab_at(&old, i);
			if (pe && !(pe->loc & LOC_TMP))
				ptab_add(&st->pending, pe->hash, pe->loc);
		}
		htab_free(&old);
	}
	for (unsigned j = 0; j < nnew && !r; j++) {
		((struct ptab_ent *)htab_find(&st->pending, newh[j]))->loc = newloc[j];
		r = pset_add(&st->known, newh[j], newloc[j]);
	}
	for (unsigned i = 0; i < n && !r; i++) {
		uint64_t loc = locs[i];
		if (loc & LOC_TMP)
			loc = newloc[loc & ~LOC_TMP];
		r = slot_set(st, si, pg + i, hashes[i], zero[i] ? 0 : loc);
	}
	size_covers(si, (pg + n) << STORE_PAGE_SHIFT);
	pthread_mutex_unlock(&st->mem_lock);
	return r;
}

/*
 * n (<= SPLIT_MAX) whole pages from data as slots pg.. (si->wlock held):
 * hashed on two threads if there are enough of them, and stored in
 * batches, each as soon as its pages are hashed, while the helper hashes
 * on.  *pos advances past each batch stored.
 */
static int write_whole(struct store *st, struct sinode *si, uint64_t pg, const uint8_t *data,
		       unsigned n, struct store_lent *lent, uint64_t *pos)
{
	uint8_t hashes[SPLIT_MAX][STORE_HASH_SIZE];
	bool zero[SPLIT_MAX];
	struct hash_job j = { .data = data, .n = n, .hashes = hashes, .zero = zero };
	bool posted = hash_post(st, &j);
	struct store_hasher *h = store_hasher_get(st);
	int r = h ? 0 : -ENOMEM;
	for (unsigned i = 0; i < n && !r;) {
		unsigned b = n - i < WRITE_BATCH ? n - i : WRITE_BATCH;
		if (__atomic_load_n(&j.hashed[i / WRITE_BATCH], __ATOMIC_SEQ_CST) < b) {
			size_t g = hash_take(&j);
			if (g < n)
				hash_group(&j, h, g);
			else
				hash_wait(st, &j, i / WRITE_BATCH, b);
			continue;
		}
		if ((r = __atomic_load_n(&j.err, __ATOMIC_RELAXED)))
			break;
		r = write_hashed(st, si, pg + i, data + (size_t)i * STORE_PAGE_SIZE, b,
				 (const uint8_t(*)[STORE_HASH_SIZE])hashes + i, zero + i, lent);
		*pos += (uint64_t)b * STORE_PAGE_SIZE;
		i += b;
	}
	store_hasher_put(st, h);
	hash_finish(st, &j, posted);
	return r;
}

/* ---- the tail page ------------------------------------------------------------ */

int tail_flush(struct store *st, struct sinode *si)
{
	pthread_mutex_lock(&st->mem_lock);
	int r = 0;
	if (si->tail) {
		r = store_page_locked(st, si, si->tail_pg, si->tail);
		if (!r) {
			free(si->tail);
			/* Atomic: data_begin looks without a lock. */
			__atomic_store_n(&si->tail, NULL, __ATOMIC_RELAXED);
			sinode_dirty(st, si);	/* the size now stops where the map does */
		}
	}
	pthread_mutex_unlock(&st->mem_lock);
	return r;
}

int tails_flush_all(struct store *st)
{
	/* Pin them under mem_lock, then take each wlock without it. */
	struct sinode **list = NULL;
	size_t n = 0, cap = 0;
	int r = 0;
	pthread_mutex_lock(&st->mem_lock);
	for (struct sinode *si = st->changed; si && !r; si = si->chg_next) {
		if (!si->tail)
			continue;
		if ((r = store_grow((void **)&list, &cap, n, sizeof(*list))))
			break;
		si->users++;
		list[n++] = si;
	}
	pthread_mutex_unlock(&st->mem_lock);
	for (size_t i = 0; i < n; i++) {
		store_wlock(st, list[i]);
		int fr = tail_flush(st, list[i]);
		pthread_mutex_unlock(&list[i]->wlock);
		r = r ? r : fr;
		sinode_put(st, list[i]);
	}
	free(list);
	return r;
}

/* Keep the partial page pg of a write that ends at end, n bytes from src
 * at byte in, as si's tail instead of storing it (mem_lock held, no
 * tail).  The page's other bytes are its stored ones (zeros past the
 * end of the file). */
static int tail_start(struct store *st, struct sinode *si, uint64_t pg, unsigned in,
		      const uint8_t *src, size_t n)
{
	uint8_t *t = malloc(STORE_PAGE_SIZE);
	if (!t)
		return -ENOMEM;
	const uint8_t *hash;
	uint64_t loc;
	int r = slot_get(st, si, pg, &hash, &loc);
	if (!r)
		r = read_page(st, hash, loc, t);
	if (r) {
		free(t);
		return r;
	}
	memcpy(t + in, src, n);
	si->tail_pg = pg;
	__atomic_store_n(&si->tail, t, __ATOMIC_RELAXED);	/* see tail_flush */
	sinode_list(st, si);
	/* Pages before pg are stored, pg's slot is as before. */
	uint64_t start = pg << STORE_PAGE_SHIFT;
	si->map_size = si->size > start ? si->size : start;
	return 0;
}

/* ---- the write ------------------------------------------------------------------ */

/* The write itself (si->wlock held). */
ssize_t write_locked(struct store *st, struct sinode *si, const uint8_t *buf, size_t len,
		     uint64_t off, struct store_lent *lent)
{
	uint64_t pos = off, end = off + len;
	int r = 0;
	if (si->tail) {
		uint64_t t0 = si->tail_pg << STORE_PAGE_SHIFT, t1 = t0 + STORE_PAGE_SIZE;
		if (off >= t0 && off < t1) {
			/* Starting in the held page: patched in memory, and
			 * stored once the file reaches its end. */
			size_t n = end < t1 ? len : (size_t)(t1 - off);
			pthread_mutex_lock(&st->mem_lock);
			memcpy(si->tail + (off - t0), buf, n);
			pos += n;
			bool whole = pos == t1 || si->size >= t1;
			if (!whole) {
				size_covers(si, pos);
				sinode_touch(st, si);
			}
			pthread_mutex_unlock(&st->mem_lock);
			if (!whole)
				return (ssize_t)len;
		}
		r = tail_flush(st, si);
	}
	while (pos < end && !r) {
		uint64_t pg = pos >> STORE_PAGE_SHIFT;
		unsigned in = pos & (STORE_PAGE_SIZE - 1);
		const uint8_t *src = buf + (pos - off);
		if (in || end - pos < STORE_PAGE_SIZE) {
			size_t n = STORE_PAGE_SIZE - in;
			if (n > end - pos)
				n = (size_t)(end - pos);
			pthread_mutex_lock(&st->mem_lock);
			/* The write ends inside this page and nothing of the
			 * file lies past it: more may be appended to it. */
			if (pos + n == end && in + n < STORE_PAGE_SIZE && end >= si->size)
				r = tail_start(st, si, pg, in, src, n);
			else
				r = patch_page(st, si, pg, in, src, n);
			if (!r)
				size_covers(si, pos + n);
			pthread_mutex_unlock(&st->mem_lock);
			pos += n;
			continue;
		}
		/* Whole pages, up to SPLIT_MAX at a time. */
		uint64_t whole = (end - pos) >> STORE_PAGE_SHIFT;
		r = write_whole(st, si, pg, src, whole > SPLIT_MAX ? SPLIT_MAX : (unsigned)whole,
				lent, &pos);
	}
	pthread_mutex_lock(&st->mem_lock);
	/* Even a failed write may have changed pages up to pos. */
	size_covers(si, pos);
	sinode_touch(st, si);
	pthread_mutex_unlock(&st->mem_lock);
	return r ? r : (ssize_t)len;
}

/* Let go of what data_enter took before it pinned the inode. */
static void data_unlock(struct store *st, bool change)
{
	if (change)
		pthread_rwlock_unlock(&st->change_lock);
	pthread_rwlock_unlock(&st->gc_lock);
}

/* Common entry of the data calls: gc_lock shared (and change_lock if
 * change), the inode pinned (and its wlock held if change).  Returns
 * -errno with nothing held. */
static int data_enter(struct store *st, uint64_t ino, bool change, struct sinode **out)
{
	if (change && st->rdonly)
		return -EROFS;
	int r = change ? store_known_wait(st, NULL) : 0;
	if (r)
		return r;
	if (change && __atomic_load_n(&st->failed, __ATOMIC_RELAXED) && store_recover(st))
		return -EIO;
	store_rdlock(st, &st->gc_lock);
	if (change)
		store_rdlock(st, &st->change_lock);
	if (change && __atomic_load_n(&st->failed, __ATOMIC_RELAXED)) {
		data_unlock(st, change);
		return -EIO;
	}
	struct sinode *si;
	r = sinode_get(st, ino, &si);
	if (r) {
		data_unlock(st, change);
		return r;
	}
	if (change && (si->flags & STORE_INODE_SEALED)) {
		sinode_put(st, si);
		data_unlock(st, change);
		return -EPERM;
	}
	if (change) {
		store_wlock(st, si);
		STORE_TEST_HOOK("change", st, ino);
	}
	*out = si;
	return 0;
}

int data_begin_write(struct store *st, uint64_t ino, struct sinode **out)
{
	return data_enter(st, ino, true, out);
}

int data_begin(struct store *st, uint64_t ino, bool change, struct sinode **out)
{
	int r = data_enter(st, ino, change, out);
	if (r)
		return r;
	struct sinode *si = *out;
	/* Without wlock tail is read racily: a tail a write is making now
	 * belongs to a write this call runs beside, which it need not see. */
	if (!__atomic_load_n(&si->tail, __ATOMIC_RELAXED))
		return 0;
	if (!change)
		store_wlock(st, si);
	r = tail_flush(st, si);
	if (!change)
		pthread_mutex_unlock(&si->wlock);
	if (r)
		data_end(st, si, change);
	return r;
}

/* Undo data_begin, and commit if enough is pending. */
void data_end(struct store *st, struct sinode *si, bool change)
{
	if (change)
		pthread_mutex_unlock(&si->wlock);
	sinode_put(st, si);
	data_unlock(st, change);
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
	store_thread_background();	/* first: the name says it is done */
	pthread_setname_np(pthread_self(), "snapfs-commit");
	pthread_mutex_lock(&st->mem_lock);
	for (;;) {
		bool forgotten_due = false;
		while (!st->commit_wanted && !st->committer_stop) {
			if (!st->nforgotten) {
				pthread_cond_wait(&st->commit_cond, &st->mem_lock);
				continue;
			}
			int64_t due = st->forgotten_since_ns + FORGOTTEN_WAIT_NS;
			forgotten_due = st->nforgotten >= FORGOTTEN_BATCH || store_mono_ns() >= due;
			if (forgotten_due)
				break;
			struct timespec ts = store_ts_of(due);
			pthread_cond_timedwait(&st->commit_cond, &st->mem_lock, &ts);
		}
		if (st->committer_stop)
			break;
		bool commit = st->commit_wanted;
		st->commit_wanted = false;
		pthread_mutex_unlock(&st->mem_lock);
		if (commit)
			store_commit(st, NULL);	/* a failure sticks in st->failed */
		else if (forgotten_due)
			store_reclaim_forgotten(st);	/* a failure leaves orphans */
		pthread_mutex_lock(&st->mem_lock);
	}
	pthread_mutex_unlock(&st->mem_lock);
	return NULL;
}

int store_committer_start(struct store *st, struct err *e)
{
	/* Timed waits (for forgotten inodes) on the clock of store_mono_ns. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->commit_cond, &ca);
	pthread_condattr_destroy(&ca);
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
	return store_write_lent(st, ino, buf, len, off, NULL);
}

ssize_t store_write_lent(struct store *st, uint64_t ino, const void *buf, size_t len,
			 uint64_t off, struct store_lent *lent)
{
	if (off > STORE_MAX_FILE_SIZE || len > STORE_MAX_FILE_SIZE - off)
		return -EFBIG;
	struct sinode *si;
	int r = data_begin_write(st, ino, &si);
	if (r)
		return r;
	ssize_t n = len ? write_locked(st, si, buf, len, off, lent) : 0;
	data_end(st, si, true);
	return n;
}
