/*
 * fsd/store_pset.c: the prefix set (struct pset, store_i.h), the store's
 * memory of every page it may hold: each page's hash prefix and location,
 * which is how a write finds that a page is stored already, as the index
 * is keyed by location.  And its filling from the index when a store
 * opens, on a thread of its own (store_known_start), so that the mount
 * serves at once and only changes of file data, and gc, wait for it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store_i.h"

static uint64_t pkey(const uint8_t *hash)
{
	return get_le64(hash) | 1;	/* 0 marks a free slot */
}

/*
 * Robin Hood hashing with linear probing, kept at most 7/8 full: each
 * entry sits as close to its home slot as the entries before it allow,
 * and an insert that has probed further than the entry in its way takes
 * that slot and carries the other entry on.  So the entries of one home
 * are next to each other, ordered by home along a run, and a lookup
 * stops at the first slot whose entry is nearer its home than the lookup
 * is to its own: proving a page new (most lookups of a copy-in) costs a
 * few slots even when full, and a page costs 18 to 37 bytes of memory.
 */
static size_t pset_home(const struct pset *s, uint64_t k)
{
	return (size_t)(k >> 1) & (s->cap - 1);
}

/* How far slot i is from the home of the entry in it. */
static size_t pset_dist(const struct pset *s, size_t i)
{
	return (i - pset_home(s, s->slots[i])) & (s->cap - 1);
}

/* The next slot from *d slots past k's home on that holds k, or cap if
 * there is none; *d is then its distance. */
static size_t pset_find(const struct pset *s, uint64_t k, size_t *d)
{
	if (!s->n)
		return s->cap;
	size_t mask = s->cap - 1;
	for (size_t i = (pset_home(s, k) + *d) & mask; s->slots[i]; i = (i + 1) & mask, ++*d) {
		if (s->slots[i] == k)
			return i;
		if (pset_dist(s, i) < *d)
			break;
	}
	return s->cap;
}

bool pset_next(const struct pset *s, const uint8_t *hash, size_t *it, uint64_t *loc)
{
	size_t d = *it;
	size_t i = pset_find(s, pkey(hash), &d);
	if (i == s->cap)
		return false;
	*loc = s->locs[i];
	*it = d + 1;
	return true;
}

/* Put key k at loc into s, which has a free slot. */
static void pset_put(struct pset *s, uint64_t k, uint64_t loc)
{
	size_t mask = s->cap - 1;
	size_t i = pset_home(s, k), d = 0;
	while (s->slots[i]) {
		size_t di = pset_dist(s, i);
		if (di < d) {
			uint64_t tk = s->slots[i], tl = s->locs[i];
			s->slots[i] = k;
			s->locs[i] = loc;
			k = tk;
			loc = tl;
			d = di;
		}
		i = (i + 1) & mask;
		d++;
	}
	s->slots[i] = k;
	s->locs[i] = loc;
	s->n++;
}

/* Tables from this size on ask for huge pages: filling one then takes a
 * few page faults instead of one per 4 KiB, and on a virtual machine
 * those cost more than moving the entries does. */
#define PSET_HUGE (2u << 20)

/* An empty table of cap (a power of two) slots in t: keys and locations
 * in one block. */
static int pset_alloc(struct pset *t, size_t cap)
{
	size_t bytes = cap * (sizeof(*t->slots) + sizeof(*t->locs));
	uint64_t *p;
	if (bytes >= PSET_HUGE) {
		p = aligned_alloc(PSET_HUGE, bytes);	/* bytes is a multiple */
		if (p)
			madvise(p, bytes, MADV_HUGEPAGE);	/* only a hint */
	} else {
		p = malloc(bytes);
	}
	if (!p)
		return -ENOMEM;
	memset(p, 0, cap * sizeof(*t->slots));
	*t = (struct pset){ .slots = p, .locs = p + cap, .cap = cap };
	return 0;
}

/*
 * Move the entries of s into a table of twice as many slots.  An entry's
 * home there is its old home, or that plus the old size (one more bit of
 * its key), so the new table is filled in order of home without probing:
 * the lower homes, then the upper ones, each a pass over the old table
 * that meets the entries in order of home, every one placed at its home
 * or just past the one before (which keeps runs in Robin Hood order).
 * That pass starts after a free slot e, so that no run is cut in two:
 * first the entries in [0, e) that sit at or past their home, then those
 * in (e, cap), then those in [0, e) that wrapped around from the end.  An
 * entry that would be placed past the end goes in by pset_put, which
 * wraps it around.  Writes are sequential, each entry is moved once: at
 * a million pages this is several times faster than putting every entry
 * anew, which the writer that fills the table waits for.  -ENOMEM leaves
 * s as it was.
 */
static int pset_grow(struct pset *s)
{
	struct pset t;
	if (pset_alloc(&t, s->cap ? 2 * s->cap : 4096))
		return -ENOMEM;
	size_t cap = t.cap;
	size_t e = 0;
	while (e < s->cap && s->slots[e])	/* s is at most 7/8 full */
		e++;
	/* The first slot past the last entry placed: the upper homes come
	 * after every lower one, which may have run on into them. */
	size_t next = 0;
	for (size_t half = 0; half < 2 && s->n; half++) {
		for (unsigned pass = 0; pass < 3; pass++) {
			size_t i = pass == 1 ? e + 1 : 0, end = pass == 1 ? s->cap : e;
			for (; i < end; i++) {
				uint64_t k = s->slots[i];
				if (!k || ((k >> 1) & s->cap ? 1 : 0) != half)
					continue;
				bool wrapped = pset_home(s, k) > i;
				if (pass != 1 && wrapped != (pass == 2))
					continue;
				size_t home = pset_home(&t, k);
				size_t at = home > next ? home : next;
				if (at >= cap) {
					pset_put(&t, k, s->locs[i]);
					continue;
				}
				t.slots[at] = k;
				t.locs[at] = s->locs[i];
				t.n++;
				next = at + 1;
			}
		}
	}
	pset_free(s);
	*s = t;
	return 0;
}

int pset_add(struct pset *s, const uint8_t *hash, uint64_t loc)
{
	if (8 * (s->n + 1) > 7 * s->cap) {
		int r = pset_grow(s);
		if (r)
			return r;
	}
	pset_put(s, pkey(hash), loc);
	return 0;
}

/* The slot of the page hash at loc, or cap if there is none. */
static size_t pset_slot_of(const struct pset *s, const uint8_t *hash, uint64_t loc)
{
	uint64_t k = pkey(hash);
	size_t d = 0, i;
	while ((i = pset_find(s, k, &d)) != s->cap && s->locs[i] != loc)
		d++;
	return i;
}

bool pset_remove(struct pset *s, const uint8_t *hash, uint64_t loc)
{
	size_t i = pset_slot_of(s, hash, loc);
	if (i == s->cap)
		return false;
	/* Close the gap: the entries after it that are not at their home
	 * each move one slot back, nearer their home. */
	size_t mask = s->cap - 1;
	for (size_t j = (i + 1) & mask; s->slots[j] && pset_dist(s, j); i = j, j = (j + 1) & mask) {
		s->slots[i] = s->slots[j];
		s->locs[i] = s->locs[j];
	}
	s->slots[i] = 0;
	s->n--;
	return true;
}

bool pset_move(struct pset *s, const uint8_t *hash, uint64_t loc, uint64_t to)
{
	size_t i = pset_slot_of(s, hash, loc);
	if (i == s->cap)
		return false;
	s->locs[i] = to;
	return true;
}

void pset_free(struct pset *s)
{
	free(s->slots);	/* and the locations with them */
	*s = (struct pset){ 0 };
}

/* Fill s (empty) from the page index of db; stop, if given, is checked
 * now and then.  -ENOMEM, -ECANCELED (stopped) or an SQLite result code
 * (positive). */
static int load_known(sqlite3 *db, struct pset *s, const bool *stop)
{
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(db, "SELECT hash, loc FROM page", -1, &q, NULL);
	if (rc != SQLITE_OK)
		return rc;
	int r = 0;
	for (uint64_t rows = 1; !r && (rc = sqlite3_step(q)) == SQLITE_ROW; rows++) {
		if (sqlite3_column_bytes(q, 0) == STORE_HASH_SIZE)
			r = pset_add(s, sqlite3_column_blob(q, 0), (uint64_t)sqlite3_column_int64(q, 1));
		if (stop && !(rows & 0xffff) && __atomic_load_n(stop, __ATOMIC_RELAXED))
			r = -ECANCELED;
	}
	sqlite3_finalize(q);
	return r ? r : rc == SQLITE_DONE ? 0 : rc;
}

int store_load_known(struct store *st, struct err *e)
{
	pset_free(&st->known);
	int r = load_known(st->db, &st->known, NULL);
	if (r == -ENOMEM)
		return err_set(e, r, "store %s: loading the page index: out of memory", st->dir);
	if (r)
		return store_sql_err(st, st->db, r, e, "loading the page index");
	return 0;
}

/* The load is over: state 1 (loaded) or -errno, with msg saying why. */
static void known_done(struct store *st, int state, const char *msg)
{
	pthread_mutex_lock(&st->known_lock);
	if (state < 0)
		snprintf(st->known_msg, sizeof(st->known_msg), "%s", msg);
	__atomic_store_n(&st->known_state, state, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&st->known_cond);
	pthread_mutex_unlock(&st->known_lock);
}

static void *known_main(void *arg)
{
	struct store *st = arg;
	pthread_setname_np(pthread_self(), "snapfs-index");
	/* With the busy handler of the store's other connections: a reader
	 * can meet a lock for a moment (a writer resetting the WAL), and
	 * failing then would leave the store refusing changes until it is
	 * opened again. */
	sqlite3 *db = NULL;
	struct err e = { 0 };
	struct pset s = { 0 };
	int r = store_db_open(st, true, &db, &e);
	if (r) {
		known_done(st, r, e.msg);
		return NULL;
	}
	r = load_known(db, &s, &st->known_stop);
	bool damaged = r > 0 && store_sql_errno(r) == -EUCLEAN;
	if (r > 0)
		err_set(&e, r == SQLITE_NOMEM ? -ENOMEM : damaged ? -EUCLEAN : -EIO,
			"store %s: loading the page index: %s%s", st->dir, sqlite3_errmsg(db),
			damaged ? "; index.db is damaged, so changes of file data fail;"
				  " run snapfs-admin fsck" : "");
	else if (r)
		err_set(&e, r, "store %s: loading the page index: %s", st->dir, strerror(-r));
	sqlite3_close(db);
	if (r) {
		pset_free(&s);
		known_done(st, e.code, e.msg);
		return NULL;
	}
	/* Nothing else touched the set meanwhile (see store_known_wait). */
	pthread_mutex_lock(&st->mem_lock);
	pset_free(&st->known);
	st->known = s;
	pthread_mutex_unlock(&st->mem_lock);
	known_done(st, 1, NULL);
	return NULL;
}

int store_known_start(struct store *st, struct err *e)
{
	pthread_mutex_init(&st->known_lock, NULL);
	pthread_cond_init(&st->known_cond, NULL);
	int r = pthread_create(&st->known_thread, NULL, known_main, st);
	if (r) {
		pthread_cond_destroy(&st->known_cond);
		pthread_mutex_destroy(&st->known_lock);
		return err_set(e, -r, "store %s: page index loader thread: %s", st->dir, strerror(r));
	}
	st->known_thread_running = st->known_joinable = true;
	return 0;
}

void store_known_stop(struct store *st)
{
	if (!st->known_thread_running)
		return;
	__atomic_store_n(&st->known_stop, true, __ATOMIC_RELAXED);
	if (st->known_joinable)
		pthread_join(st->known_thread, NULL);
	st->known_thread_running = st->known_joinable = false;
	pthread_cond_destroy(&st->known_cond);
	pthread_mutex_destroy(&st->known_lock);
}

/* A load that ran out of memory: start another (one caller does; the
 * others then wait for it).  known_lock held. */
static void known_retry(struct store *st)
{
	if (__atomic_load_n(&st->known_state, __ATOMIC_ACQUIRE) != -ENOMEM ||
	    __atomic_load_n(&st->known_stop, __ATOMIC_RELAXED))
		return;
	if (st->known_joinable)
		pthread_join(st->known_thread, NULL);
	int r = pthread_create(&st->known_thread, NULL, known_main, st);
	st->known_joinable = r == 0;
	if (r == 0)
		__atomic_store_n(&st->known_state, 0, __ATOMIC_RELEASE);
	else
		snprintf(st->known_msg, sizeof(st->known_msg),
			 "store %s: page index loader thread: %s", st->dir, strerror(r));
}

int store_known_wait(struct store *st, struct err *e)
{
	int state = __atomic_load_n(&st->known_state, __ATOMIC_ACQUIRE);
	if (state > 0)
		return 0;
	if (state == 0)
		store_may_block(st);
	pthread_mutex_lock(&st->known_lock);
	known_retry(st);
	while ((state = __atomic_load_n(&st->known_state, __ATOMIC_ACQUIRE)) == 0)
		pthread_cond_wait(&st->known_cond, &st->known_lock);
	char msg[sizeof(st->known_msg)];
	if (state < 0)
		memcpy(msg, st->known_msg, sizeof(msg));
	pthread_mutex_unlock(&st->known_lock);
	if (state > 0)
		return 0;
	if (st->log && !__atomic_exchange_n(&st->known_fail_logged, true, __ATOMIC_RELAXED))
		st->log(st->log_arg, msg);
	int r = state == -ENOMEM || state == -EUCLEAN ? state : -EIO;
	return e ? err_set(e, r, "%s", msg) : r;
}
