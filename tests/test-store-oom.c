/*
 * tests/test-store-oom.c: a store whose allocations fail.
 *
 * Every allocation the store's own code makes (failalloc.h) and every
 * one SQLite makes (through SQLITE_CONFIG_MALLOC) is counted, and the Nth
 * fails with ENOMEM, on whichever of the store's threads makes it (or it
 * and every one after it: memory has run out).  A scenario of store calls
 * (open, read, write, flush, truncate, punch, clone, namespace changes,
 * files deleted at once and later in a batch, gc, fsck, close, salvage)
 * runs for many N spread over the allocations it makes, each on a new
 * store holding one committed file.  Each run checks that:
 *   - every call works or fails with -ENOMEM (-EIO for a change made
 *     while the store could not recover from the failure), its message
 *     and the store's log name the store, and no read returns wrong
 *     bytes;
 *   - once memory is back, the store opens again, the committed file and
 *     every file whose durable flush succeeded read back, fsck finds
 *     nothing wrong, and a new file can be written;
 *   - nothing leaks (under the address sanitizer, at exit).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "failalloc.h"
#include "test-store-util.h"

#define PAGE STORE_PAGE_SIZE
#define A_PAGES 40		/* the committed file */
#define B_PAGES 64		/* written during the scenario: the hashing helper joins in */
#define B_TAIL 100		/* and bytes past them */

/* ---- the scenario ----------------------------------------------------------- */

static uint8_t a_data[A_PAGES * PAGE], b_data[B_PAGES * PAGE], buf[(B_PAGES + 1) * PAGE];

static const char *store_path;	/* of the scenario's store */
static uint64_t failing;	/* the allocation this run fails, 0: none */
static unsigned wrong;		/* calls that failed in a way they should not */

/* The store's log (recovering from a failure) names the store. */
static void log_msg(void *arg, const char *msg)
{
	(void)arg;
	if (strstr(msg, store_path))
		return;
	fprintf(stderr, "allocation %lu failing: a log line without the store: %s\n",
		(unsigned long)failing, msg);
	__atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
}

/* What a call may fail with here: memory, or a change refused while the
 * store could not recover from an earlier failure. */
static void failed_ok(long r, const char *call)
{
	if (r == -ENOMEM || r == -EIO)
		return;
	fprintf(stderr, "allocation %lu failing: %s returned %ld (%s)\n", (unsigned long)failing,
		call, r, r < 0 ? strerror((int)-r) : "not an error");
	__atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
}

/* The same for a call that describes its failure in e: it names the store. */
static void failed_ok_err(long r, const struct err *e, const char *call)
{
	failed_ok(r, call);
	if (strstr(e->msg, store_path))
		return;
	fprintf(stderr, "allocation %lu failing: %s says %s\n", (unsigned long)failing, call,
		err_str(e, (int)r));
	__atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
}

#define OK_OR_FAILED_ERR(call, e) ({				\
	long r_ = (long)(call);					\
	if (r_)							\
		failed_ok_err(r_, (e), #call);			\
	r_ == 0;						\
})

/* A call's result: 0, or a failure it may have. */
#define OK_OR_FAILED(call) ({					\
	long r_ = (long)(call);					\
	if (r_)							\
		failed_ok(r_, #call);				\
	r_ == 0;						\
})

struct outcome {
	bool b_created;		/* store_create of b succeeded */
	bool b_durable;		/* b's durable flush succeeded */
};

static uint64_t lookup(struct store *st, const char *name)
{
	struct store_attr a;
	int r = store_lookup(st, STORE_ROOT_INO, name, &a);
	return r ? 0 : a.ino;
}

static void write_b(struct store *st, struct outcome *o)
{
	struct store_attr at;
	o->b_created = OK_OR_FAILED(store_create(st, STORE_ROOT_INO, "b", 0644, 0, 0, &at));
	if (!o->b_created)
		return;
	uint64_t b = at.ino;
	bool whole = true;
	ssize_t n = store_write(st, b, b_data, sizeof(b_data), 0);
	if (n != (ssize_t)sizeof(b_data)) {
		failed_ok(n, "store_write(b)");
		whole = false;
	}
	n = store_write(st, b, "patched", 7, 5000);	/* a partial page */
	if (n != 7) {
		failed_ok(n, "store_write(b, partial)");
		whole = false;
	}
	n = store_write(st, b, b_data, B_TAIL, sizeof(b_data));	/* a tail, held */
	if (n != B_TAIL) {
		failed_ok(n, "store_write(b, tail)");
		whole = false;
	}
	struct err e = { 0 };
	int r = store_flush(st, b, true, &e);
	if (r)
		failed_ok_err(r, &e, "store_flush(b)");
	o->b_durable = whole && !r;
	OK_OR_FAILED(store_file_release(st, b));
}

/* d: a folder made with two extended attributes (as with inherited
 * ACLs): either it is there with both, or not at all. */
static void make_d(struct store *st)
{
	static const struct store_xattr xa[] = { { "user.a", "1", 1 }, { "user.b", "22", 2 } };
	struct store_new n = { .mode = S_IFDIR | 0755, .xattrs = xa, .n_xattrs = 2 };
	struct store_attr at;
	int r = store_make(st, STORE_ROOT_INO, "d", &n, false, &at);
	if (r) {
		failed_ok(r, "store_make(d)");
		r = store_lookup(st, STORE_ROOT_INO, "d", &at);
		if (r != -ENOENT)
			failed_ok(r, "store_lookup(d) after its store_make failed");
		return;
	}
	char v[4];
	for (unsigned i = 0; i < 2; i++) {
		ssize_t k = store_xattr_get(st, at.ino, xa[i].name, v, sizeof(v));
		if (k < 0)
			failed_ok(k, "store_xattr_get(d)");
		else
			assert_memory_equal(v, xa[i].value, xa[i].size);
	}
}

/* c: a's pages again (deduplicated) and a clone of a, cut and punched,
 * looked at, moved and removed. */
static void change_c(struct store *st, uint64_t a)
{
	struct store_attr at;
	if (!OK_OR_FAILED(store_mknod(st, STORE_ROOT_INO, "c", 0100644, 0, 0, 0, &at)))
		return;
	uint64_t c = at.ino;
	ssize_t n = store_write(st, c, a_data, sizeof(a_data), 0);
	bool whole = n == (ssize_t)sizeof(a_data);
	if (!whole)
		failed_ok(n, "store_write(c)");
	if (a) {
		n = store_clone(st, a, 0, c, sizeof(a_data), sizeof(a_data));
		if (n < 0)
			failed_ok(n, "store_clone(a, c)");
	}
	whole = OK_OR_FAILED(store_truncate(st, c, 10 * PAGE + 100)) && whole;
	whole = OK_OR_FAILED(store_punch(st, c, 2 * PAGE, 3 * PAGE)) && whole;
	if (whole) {	/* pages 0-1 and 5-9 of a, 2-4 holes */
		int64_t off = store_seek_data(st, c, 2 * PAGE);
		if (off != 5 * PAGE)
			failed_ok(off, "store_seek_data(c)");
		n = store_read(st, c, buf, 10 * PAGE + 100, 0);
		if (n >= 0) {
			assert_int_equal(n, 10 * PAGE + 100);
			assert_memory_equal(buf, a_data, 2 * PAGE);
			for (size_t i = 2 * PAGE; i < 5 * PAGE; i++)
				assert_int_equal(buf[i], 0);
			assert_memory_equal(buf + 5 * PAGE, a_data + 5 * PAGE, 5 * PAGE + 100);
		} else {
			failed_ok(n, "store_read(c)");
		}
	}
	struct store_file_info fi;
	OK_OR_FAILED(store_file_info(st, c, &fi));
	struct store_extent ext[8];
	int m = store_map(st, c, 0, 8 * PAGE, ext, 8, NULL);
	if (m >= 0)
		store_map_done(st);
	else
		failed_ok(m, "store_map(c)");
	make_d(st);
	OK_OR_FAILED(store_xattr_set(st, c, "user.k", "v", 1, 0));
	uint64_t gone = 0;
	bool moved =
		OK_OR_FAILED(store_rename(st, STORE_ROOT_INO, "c", STORE_ROOT_INO, "c2", 0, &gone));
	OK_OR_FAILED(store_unlink(st, STORE_ROOT_INO, moved ? "c2" : "c", &gone));
	/* Deleted later, by the committer or the next commit (stats, gc). */
	OK_OR_FAILED(store_inode_forget(st, c));
}

/* e: a page of a, removed and deleted at once. */
static void change_e(struct store *st)
{
	struct store_attr at;
	if (!OK_OR_FAILED(store_mknod(st, STORE_ROOT_INO, "e", 0100644, 0, 0, 0, &at)))
		return;
	ssize_t n = store_write(st, at.ino, a_data, PAGE, 0);
	if (n < 0)
		failed_ok(n, "store_write(e)");
	uint64_t gone = 0;
	OK_OR_FAILED(store_unlink(st, STORE_ROOT_INO, "e", &gone));
	OK_OR_FAILED(store_inode_release(st, at.ino));
}

static int count_name(void *arg, const char *name, const struct store_attr *attr,
		      uint64_t next_cookie)
{
	(void)name, (void)attr, (void)next_cookie;
	++*(unsigned *)arg;
	return 0;
}

static void scenario(const char *path, struct outcome *o)
{
	struct store *st = NULL;
	struct err e = { 0 };
	if (!OK_OR_FAILED_ERR(store_open_log(path, 0, log_msg, NULL, &st, &e), &e))
		return;

	struct store_attr at;
	uint64_t a = 0;
	if (OK_OR_FAILED(store_lookup(st, STORE_ROOT_INO, "a", &at))) {
		a = at.ino;
		ssize_t n = store_read(st, a, buf, sizeof(a_data), 0);
		if (n >= 0) {
			assert_int_equal(n, sizeof(a_data));
			assert_memory_equal(buf, a_data, sizeof(a_data));
		} else {
			failed_ok(n, "store_read(a)");
		}
	}
	write_b(st, o);

	change_c(st, a);
	change_e(st);
	unsigned names = 0;
	OK_OR_FAILED(store_readdir(st, STORE_ROOT_INO, 0, count_name, &names));
	struct store_stats ss;
	OK_OR_FAILED_ERR(store_stats(st, &ss, &e), &e);
	struct store_gc_result g;
	OK_OR_FAILED_ERR(store_gc(st, NULL, NULL, &g, &e), &e);
	struct store_fsck_result f;
	if (OK_OR_FAILED_ERR(store_fsck(st, NULL, NULL, NULL, &f, &e), &e))
		assert_int_equal(f.problems, 0);
	OK_OR_FAILED_ERR(store_close(st, &e), &e);
	/* A salvage of the (whole) index works, keeping every row, or
	 * fails leaving the index as it was: none is dropped as damaged. */
	struct store_salvage_result sr;
	if (OK_OR_FAILED_ERR(store_salvage(path, NULL, NULL, &sr, &e), &e))
		for (unsigned i = 0; i < STORE_SALVAGE_TABLES; i++)
			assert_int_equal(sr.tables[i].damaged, 0);
}

/* ---- checking the store afterwards ----------------------------------------- */

static void fsck_problem(void *arg, const struct store_fsck_problem *p)
{
	(void)arg;
	fprintf(stderr, "fsck: %s page %ld: %s\n", p->path ? p->path : "-", (long)p->page,
		p->what);
}

static void check_after(const char *path, const struct outcome *o)
{
	struct store *st = NULL;
	struct err e = { 0 };
	int r = store_open(path, 0, &st, &e);
	if (r)
		fail_msg("allocation %lu failed: the store does not open again: %s",
			 (unsigned long)failing, err_str(&e, r));
	uint64_t a = lookup(st, "a");
	assert_true(a);
	assert_int_equal(store_read(st, a, buf, sizeof(buf), 0), sizeof(a_data));
	assert_memory_equal(buf, a_data, sizeof(a_data));
	uint64_t b = lookup(st, "b");
	if (!o->b_created && b)
		fail_msg("allocation %lu failed: store_create of b failed, yet b is there",
			 (unsigned long)failing);
	if (o->b_durable) {
		assert_true(b);
		uint8_t want[B_PAGES * PAGE + B_TAIL];
		memcpy(want, b_data, sizeof(b_data));
		memcpy(want + 5000, "patched", 7);
		memcpy(want + sizeof(b_data), b_data, B_TAIL);
		assert_int_equal(store_read(st, b, buf, sizeof(buf), 0), sizeof(want));
		assert_memory_equal(buf, want, sizeof(want));
	}
	struct store_fsck_result f;
	assert_int_equal(store_fsck(st, fsck_problem, NULL, NULL, &f, &e), 0);
	if (f.problems)
		fail_msg("allocation %lu failed: fsck found %lu problems afterwards",
			 (unsigned long)failing, (unsigned long)f.problems);
	uint64_t z = tsu_file(st, "z");
	assert_int_equal(store_write(st, z, b_data, sizeof(b_data), 0), sizeof(b_data));
	assert_int_equal(store_flush(st, z, true, &e), 0);
	assert_int_equal(store_read(st, z, buf, sizeof(buf), 0), sizeof(b_data));
	assert_memory_equal(buf, b_data, sizeof(b_data));
	assert_int_equal(store_close(st, &e), 0);
}

/* A new store holding a (committed), at *path. */
static void store_with_a(char **path)
{
	struct store *st = tsu_new_store(path);
	uint64_t a = tsu_file(st, "a");
	assert_int_equal(store_write(st, a, a_data, sizeof(a_data), 0), sizeof(a_data));
	assert_int_equal(store_close(st, NULL), 0);
}

/* Run the scenario with allocation n failing (0: none); returns how many
 * allocations it made. */
static uint64_t run_failing(uint64_t n, bool on)
{
	char *path;
	store_with_a(&path);
	store_path = path;
	struct outcome o = { 0 };
	failing = n;
	failalloc_arm(n, on);
	scenario(path, &o);
	uint64_t made = failalloc_disarm();
	check_after(path, &o);
	tsu_store_remove(path);
	return made;
}

/* SQLite's allocations tried, of about 5,800 the scenario makes (the
 * store's own, about 70, are all tried). */
#define SQLITE_RUNS 100

/* Run the scenario with each picked allocation failing in turn (on: and
 * every one after it), each on its own store; returns how many runs met
 * their failure, and *runs. */
static unsigned fail_each(bool on, size_t *runs)
{
	wrong = 0;
	uint64_t total = run_failing(0, false);
	assert_int_equal(failalloc_failed(), 0);
	assert_true(total <= FAILALLOC_RECORD_MAX);
	uint64_t *pick = malloc(total * sizeof(*pick));
	assert_non_null(pick);
	*runs = failalloc_pick(total, SQLITE_RUNS, pick);
	unsigned met = 0;
	for (size_t i = 0; i < *runs; i++) {
		run_failing(pick[i], on);
		met += failalloc_failed() > 0;
	}
	free(pick);
	printf("# %lu allocations; %zu runs, each failing one%s: %u met it\n", (unsigned long)total,
	       *runs, on ? " and all after it" : "", met);
	assert_int_equal(wrong, 0);
	return met;
}

/* One allocation fails: the calls that meet it fail, and the store goes
 * on.  Allocations vary a little between runs (the store's threads), but
 * most runs must meet theirs. */
static void test_one_allocation_fails(void **state)
{
	(void)state;
	size_t runs;
	assert_true(fail_each(false, &runs) > runs * 9 / 10);
}

/* Memory runs out for good: every call from then on may fail, and the
 * store still closes without leaking or damaging anything. */
static void test_memory_runs_out(void **state)
{
	(void)state;
	size_t runs;
	assert_true(fail_each(true, &runs) > runs * 9 / 10);
}

/* The thread that loads the page index at open (its name). */
static bool on_index_loader(void)
{
	char name[16] = "";
	pthread_getname_np(pthread_self(), name, sizeof(name));
	return !strcmp(name, "snapfs-index");
}

/*
 * The page index, loaded by a thread at open, cannot be for want of
 * memory: changes fail with ENOMEM and the log says why, and once memory
 * is back the next change loads it again and works, without a reopen.
 */
static void test_index_load_out_of_memory(void **state)
{
	(void)state;
	char *path;
	store_with_a(&path);
	store_path = path;
	wrong = 0;
	failalloc_filter(on_index_loader);
	failalloc_arm(1, true);
	struct store *st;
	struct err e = { 0 };
	assert_int_equal(store_open_log(path, 0, log_msg, NULL, &st, &e), 0);
	uint64_t a = lookup(st, "a");
	assert_int_not_equal(a, 0);
	assert_int_equal(store_file_open(st, a), 0);
	assert_int_equal(store_write(st, a, b_data, PAGE, 0), -ENOMEM);
	assert_true(failalloc_failed() > 0);
	failalloc_disarm();
	failalloc_filter(NULL);
	assert_int_equal(store_write(st, a, b_data, PAGE, 0), PAGE);
	assert_int_equal(store_flush(st, a, true, &e), 0);
	assert_int_equal(store_file_release(st, a), 0);
	assert_int_equal(store_close(st, &e), 0);
	assert_int_equal(wrong, 0);

	assert_int_equal(store_open(path, 0, &st, &e), 0);
	assert_int_equal(store_read(st, a, buf, A_PAGES * PAGE, 0), A_PAGES * PAGE);
	assert_memory_equal(buf, b_data, PAGE);
	assert_memory_equal(buf + PAGE, a_data + PAGE, (A_PAGES - 1) * PAGE);
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, fsck_problem, NULL, NULL, &res, &e), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(store_close(st, &e), 0);
	tsu_store_remove(path);
}

int main(void)
{
	failalloc_sqlite();
	tsu_fill(a_data, sizeof(a_data), 1);
	tsu_fill(b_data, sizeof(b_data), 2);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_allocation_fails),
		cmocka_unit_test(test_memory_runs_out),
		cmocka_unit_test(test_index_load_out_of_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
