/*
 * tests/test-store-backend.c: the page backend contract, run against both
 * the pack backend and the memory backend: put/get round trips, put_many,
 * locations, fd_of pointing at the right bytes, compact + release freeing
 * dead pages while live ones stay readable; pages read back (get, fd_of)
 * and counted before any sync, across more data than the pack backend
 * keeps staged in memory at once.  The pack backend reads runs of
 * consecutive pages with one call, once none of them is staged, and
 * keeps pages of lent buffers in them until it writes them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cmocka.h>

#include "store_backend.h"
#include "store_pack_i.h"
#include "test-store-util.h"

struct fixture {
	char *path;
	struct store_backend *be;
};

static int setup_pack(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->path = tsu_store_path();
	mkdir(f->path, 0700);
	char packs[4200];
	snprintf(packs, sizeof(packs), "%s/packs", f->path);
	struct err e = { 0 };
	assert_int_equal(store_pack_open(packs, true, false, &f->be, &e), 0);
	*state = f;
	return 0;
}

static int setup_mem(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_int_equal(store_mem_open(&f->be), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	f->be->ops->close(f->be);
	if (f->path)
		tsu_store_remove(f->path);
	free(f);
	return 0;
}

#define NPAGES 40

/* The pages a gc keeps, as gc_mark counts them. */
struct live_list {
	const struct store_live_page *live;
	size_t n;
};

static uint64_t count_live(void *arg, uint64_t lo, uint64_t hi)
{
	const struct live_list *l = arg;
	uint64_t n = 0;
	for (size_t i = 0; i < l->n; i++)
		n += l->live[i].loc >= lo && l->live[i].loc < hi;
	return n;
}

static void test_store_backend_roundtrip(void **state)
{
	struct fixture *f = *state;
	const struct store_backend_ops *ops = f->be->ops;
	static uint8_t pages[NPAGES][STORE_PAGE_SIZE];
	uint8_t hashes[NPAGES][STORE_HASH_SIZE] = { { 0 } };
	uint64_t locs[NPAGES];
	for (int i = 0; i < NPAGES; i++) {
		tsu_fill(pages[i], STORE_PAGE_SIZE, (uint64_t)i + 1);
		hashes[i][0] = (uint8_t)i;
	}
	/* Half one at a time, half in one put_many (where offered). */
	for (int i = 0; i < NPAGES / 2; i++)
		assert_int_equal(ops->put(f->be, hashes[i], pages[i], &locs[i]), 0);
	if (ops->put_many) {
		struct iovec iov[NPAGES / 2];
		for (int i = 0; i < NPAGES / 2; i++)
			iov[i] = (struct iovec){ pages[NPAGES / 2 + i], STORE_PAGE_SIZE };
		assert_int_equal(ops->put_many(f->be, (const uint8_t(*)[32])hashes[NPAGES / 2], iov,
					       NPAGES / 2, NULL, &locs[NPAGES / 2]),
				 0);
	} else {
		for (int i = NPAGES / 2; i < NPAGES; i++)
			assert_int_equal(ops->put(f->be, hashes[i], pages[i], &locs[i]), 0);
	}
	assert_int_equal(ops->sync(f->be, NULL), 0);
	for (int i = 0; i < NPAGES; i++) {
		assert_true(locs[i] != 0);
		for (int j = 0; j < i; j++)
			assert_true(locs[i] != locs[j]);
		uint8_t got[STORE_PAGE_SIZE];
		assert_int_equal(ops->get(f->be, hashes[i], locs[i], got), 0);
		assert_memory_equal(got, pages[i], STORE_PAGE_SIZE);
		if (ops->fd_of) {
			int fd;
			uint64_t pos;
			assert_int_equal(ops->fd_of(f->be, locs[i], &fd, &pos), 0);
			assert_int_equal(pos % STORE_PAGE_SIZE, 0);
			assert_int_equal(pread(fd, got, STORE_PAGE_SIZE, (off_t)pos), STORE_PAGE_SIZE);
			assert_memory_equal(got, pages[i], STORE_PAGE_SIZE);
		}
	}
	uint64_t bytes, n;
	assert_int_equal(ops->usage(f->be, &bytes, &n), 0);
	assert_int_equal(bytes, (uint64_t)NPAGES * STORE_PAGE_SIZE);

	/* Keep every third page: compact, then release the rest. */
	struct store_live_page live[NPAGES];
	size_t nlive = 0;
	for (int i = 0; i < NPAGES; i += 3) {
		memcpy(live[nlive].hash, hashes[i], STORE_HASH_SIZE);
		live[nlive++].loc = locs[i];
	}
	struct live_list ll = { live, nlive };
	ops->gc_mark(f->be, count_live, &ll);
	if (ops->gc_plan)
		ops->gc_plan(f->be, live, nlive);
	/* Pages put after the mark, during and after compact, are not in
	 * live and must outlive the release all the same. */
	static uint8_t later[2][STORE_PAGE_SIZE];
	uint64_t later_loc[2];
	tsu_fill(later[0], STORE_PAGE_SIZE, 1001);
	tsu_fill(later[1], STORE_PAGE_SIZE, 1002);
	assert_int_equal(ops->put(f->be, hashes[0], later[0], &later_loc[0]), 0);
	assert_int_equal(ops->compact(f->be, live, nlive, NULL, NULL, NULL), 0);
	assert_int_equal(ops->put(f->be, hashes[0], later[1], &later_loc[1]), 0);
	assert_int_equal(ops->sync(f->be, NULL), 0);
	/* Old copies stay readable until release. */
	assert_int_equal(ops->get(f->be, hashes[1], locs[1], (uint8_t[STORE_PAGE_SIZE]){ 0 }), 0);
	for (size_t k = 1; k < nlive; k++)
		assert_true(live[k - 1].loc < live[k].loc);	/* still sorted */
	assert_int_equal(ops->release(f->be, live, nlive, NULL), 0);
	for (size_t k = 0; k < nlive; k++) {
		uint8_t got[STORE_PAGE_SIZE];
		assert_int_equal(ops->get(f->be, live[k].hash, live[k].loc, got), 0);
		assert_memory_equal(got, pages[live[k].hash[0]], STORE_PAGE_SIZE);
	}
	for (int k = 0; k < 2; k++) {
		uint8_t got[STORE_PAGE_SIZE];
		assert_int_equal(ops->get(f->be, hashes[0], later_loc[k], got), 0);
		assert_memory_equal(got, later[k], STORE_PAGE_SIZE);
	}
	assert_int_equal(ops->usage(f->be, &bytes, &n), 0);
	assert_int_equal(bytes, (uint64_t)(nlive + 2) * STORE_PAGE_SIZE);
}

/* Enough pages, put in uneven batches, to fill every staging buffer of
 * the pack backend several times over. */
#define MANY 5000
#define MANY_BATCH 77

/* What check_page_get and check_page expect and read. */
static uint8_t page_want[STORE_PAGE_SIZE], page_got[STORE_PAGE_SIZE + 1];

/* The page at loc (tsu_fill's bytes of seed) reads back by copy alone,
 * which leaves a staged page staged (fd_of would write it out first). */
static void check_page_get(struct fixture *f, uint64_t loc, uint64_t seed)
{
	uint8_t hash[STORE_HASH_SIZE] = { 0 };
	tsu_fill(page_want, STORE_PAGE_SIZE, seed);
	/* An unaligned buffer: callers pass any. */
	assert_int_equal(f->be->ops->get(f->be, hash, loc, page_got + 1), 0);
	assert_memory_equal(page_got + 1, page_want, STORE_PAGE_SIZE);
}

/* The same, and by fd where the backend offers it. */
static void check_page(struct fixture *f, uint64_t loc, uint64_t seed)
{
	check_page_get(f, loc, seed);
	if (f->be->ops->fd_of) {
		int fd;
		uint64_t pos;
		assert_int_equal(f->be->ops->fd_of(f->be, loc, &fd, &pos), 0);
		assert_int_equal(pread(fd, page_got, STORE_PAGE_SIZE, (off_t)pos), STORE_PAGE_SIZE);
		assert_memory_equal(page_got, page_want, STORE_PAGE_SIZE);
	}
}

static void test_store_backend_unsynced(void **state)
{
	struct fixture *f = *state;
	const struct store_backend_ops *ops = f->be->ops;
	static uint8_t pages[MANY_BATCH][STORE_PAGE_SIZE];
	static uint64_t locs[MANY];
	uint8_t hashes[MANY_BATCH][STORE_HASH_SIZE] = { { 0 } };
	for (int i = 0; i < MANY;) {
		int n = MANY - i < MANY_BATCH ? MANY - i : MANY_BATCH;
		struct iovec iov[MANY_BATCH];
		for (int k = 0; k < n; k++) {
			tsu_fill(pages[k], STORE_PAGE_SIZE, 1000 + (uint64_t)(i + k));
			iov[k] = (struct iovec){ pages[k], STORE_PAGE_SIZE };
		}
		if (ops->put_many) {
			assert_int_equal(ops->put_many(f->be, (const uint8_t(*)[32])hashes, iov,
						       (unsigned)n, NULL, &locs[i]),
					 0);
		} else {
			for (int k = 0; k < n; k++)
				assert_int_equal(ops->put(f->be, hashes[k], pages[k], &locs[i + k]), 0);
		}
		/* The newest page reads back at once, by copy and by fd. */
		check_page(f, locs[i + n - 1], 1000 + (uint64_t)(i + n - 1));
		i += n;
	}
	/* Before any sync: every page, first ones included, and the space. */
	for (int i = 0; i < MANY; i++)
		check_page(f, locs[i], 1000 + (uint64_t)i);
	uint64_t bytes, n;
	assert_int_equal(ops->usage(f->be, &bytes, &n), 0);
	assert_int_equal(bytes, (uint64_t)MANY * STORE_PAGE_SIZE);
	assert_int_equal(ops->sync(f->be, NULL), 0);
	for (int i = 0; i < MANY; i += 97)
		check_page(f, locs[i], 1000 + (uint64_t)i);
}

static void test_store_backend_runs(void **state)
{
	struct fixture *f = *state;
	const struct store_backend_ops *ops = f->be->ops;
	static uint8_t pages[NPAGES][STORE_PAGE_SIZE], got[16][STORE_PAGE_SIZE];
	uint8_t hashes[NPAGES][STORE_HASH_SIZE] = { { 0 } };
	struct iovec iov[NPAGES];
	uint64_t locs[NPAGES];
	for (int i = 0; i < NPAGES; i++) {
		tsu_fill(pages[i], STORE_PAGE_SIZE, 500 + (uint64_t)i);
		iov[i] = (struct iovec){ pages[i], STORE_PAGE_SIZE };
	}
	assert_int_equal(ops->put_many(f->be, (const uint8_t(*)[32])hashes, iov, NPAGES, NULL, locs), 0);
	for (int i = 1; i < NPAGES; i++)
		assert_true(locs[i] == locs[i - 1] + 1);
	/* Staged pages are not read from the file. */
	assert_int_equal(ops->get_run(f->be, locs[3], 16, got), -EAGAIN);
	assert_int_equal(ops->sync(f->be, NULL), 0);
	assert_int_equal(ops->get_run(f->be, locs[3], 16, got), 0);
	for (int i = 0; i < 16; i++)
		assert_memory_equal(got[i], pages[3 + i], STORE_PAGE_SIZE);
	/* Past the end of the pack, and an empty run. */
	assert_int_equal(ops->get_run(f->be, locs[NPAGES - 1], 2, got), -EIO);
	assert_int_equal(ops->get_run(f->be, locs[0], 0, got), -EINVAL);
}

/* Buffers lent to put_many: the pages stay in them (a reference held)
 * until written, up to STAGE_LENT buffers per staging buffer, the rest
 * copied; they read back from the buffer while staged and from the pack
 * after; the reference goes at the write and done comes with the last. */
struct lender {
	struct store_lent lent;
	uint8_t pages[8][STORE_PAGE_SIZE];
	int done;
};

static void lender_done(struct store_lent *b)
{
	((struct lender *)b)->done++;
}

/* The page of its buffer that lender b's i-th put took: lender 1 put
 * its even pages, then its odd ones. */
static int lender_page(int b, int i)
{
	return b == 1 ? (i < 4 ? 2 * i : 2 * (i - 4) + 1) : i;
}

#define NLENDERS ((int)STAGE_LENT + 2)

static void test_store_backend_lent(void **state)
{
	struct fixture *f = *state;
	const struct store_backend_ops *ops = f->be->ops;
	static struct lender l[NLENDERS];
	uint8_t hashes[8][STORE_HASH_SIZE] = { { 0 } };
	uint64_t locs[NLENDERS][8];
	for (int b = 0; b < NLENDERS; b++) {
		l[b] = (struct lender){ .lent = { .refs = 1, .done = lender_done } };
		struct iovec iov[8];
		for (int i = 0; i < 8; i++) {
			tsu_fill(l[b].pages[i], STORE_PAGE_SIZE, 700 + (uint64_t)(b * 8 + i));
			iov[i] = (struct iovec){ l[b].pages[i], STORE_PAGE_SIZE };
		}
		/* Lender 1 in two calls, every other page: not contiguous. */
		if (b == 1) {
			struct iovec odd[4], even[4];
			for (int i = 0; i < 4; i++) {
				even[i] = iov[2 * i];
				odd[i] = iov[2 * i + 1];
			}
			assert_int_equal(ops->put_many(f->be, (const uint8_t(*)[32])hashes, even, 4,
						       &l[b].lent, locs[b]),
					 0);
			assert_int_equal(ops->put_many(f->be, (const uint8_t(*)[32])hashes, odd, 4,
						       &l[b].lent, locs[b] + 4),
					 0);
		} else {
			assert_int_equal(ops->put_many(f->be, (const uint8_t(*)[32])hashes, iov, 8,
						       &l[b].lent, locs[b]),
					 0);
		}
	}
	/* One reference each (not one per call) for the first ones, none
	 * for those that did not fit: their pages were copied. */
	for (int b = 0; b < NLENDERS; b++)
		assert_int_equal(l[b].lent.refs, b < (int)STAGE_LENT ? 2 : 1);
	/* A copy does not change with the caller's buffer. */
	for (int b = (int)STAGE_LENT; b < NLENDERS; b++)
		memset(l[b].pages, 0xee, sizeof(l[b].pages));
	for (int b = 0; b < NLENDERS; b++)
		for (int i = 0; i < 8; i++)
			check_page_get(f, locs[b][i], 700 + (uint64_t)(b * 8 + lender_page(b, i)));
	/* Lender 0 lets go first: done comes with the store's put. */
	store_lent_put(&l[0].lent);
	assert_int_equal(l[0].done, 0);
	assert_int_equal(ops->sync(f->be, NULL), 0);
	assert_int_equal(l[0].done, 1);
	for (int b = 1; b < NLENDERS; b++) {
		assert_int_equal(l[b].lent.refs, 1);
		assert_int_equal(l[b].done, 0);
	}
	/* In the pack now, not in the buffers. */
	for (int b = 0; b < NLENDERS; b++)
		memset(l[b].pages, 0xdd, sizeof(l[b].pages));
	for (int b = 0; b < NLENDERS; b++)
		for (int i = 0; i < 8; i++)
			check_page(f, locs[b][i], 700 + (uint64_t)(b * 8 + lender_page(b, i)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_backend_roundtrip, setup_pack, teardown),
		cmocka_unit_test_setup_teardown(test_store_backend_roundtrip, setup_mem, teardown),
		cmocka_unit_test_setup_teardown(test_store_backend_unsynced, setup_pack, teardown),
		cmocka_unit_test_setup_teardown(test_store_backend_unsynced, setup_mem, teardown),
		cmocka_unit_test_setup_teardown(test_store_backend_runs, setup_pack, teardown),
		cmocka_unit_test_setup_teardown(test_store_backend_lent, setup_pack, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
