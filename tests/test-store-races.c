/*
 * tests/test-store-races.c: data calls against a change made in the gap
 * where they hold no lock of the file, made there on purpose through the
 * store's test hook (a store library built with STORE_TEST_HOOKS), so
 * that races found by stress runs are replayed every time.
 *
 * The change is an append that starts a tail page (the last, partial page
 * of a file, held in memory until the file grows past it): a read must see
 * its bytes once it sees the size they brought, and a clone over that page
 * must not be overwritten when the tail is stored later.
 *
 * Through the same hook, the hashing helper is made slow between taking a
 * group of a large write's pages and hashing them, so that the writer
 * finds a batch it is about to store still waiting for the helper; and
 * a file's holes are walked while a commit has dropped a chunk punched
 * to holes but not yet deleted its row.  Last, the helper waiting for a
 * stream's next large write by polling.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define STORE_TEST_HOOKS	/* as the store library this links with */
#include "store_i.h"
#include "test-store-util.h"

#define PG STORE_PAGE_SIZE

/* What the hook does, once, at the place named where. */
static struct {
	const char *where;
	uint64_t ino;
	uint64_t off;
	char byte;
	size_t len;
	int ran;
} pending;

static void append_once(const char *where, struct store *st, uint64_t ino)
{
	if (pending.ran || strcmp(where, pending.where) || ino != pending.ino)
		return;
	pending.ran = 1;
	char buf[PG];
	memset(buf, pending.byte, pending.len);
	assert_int_equal(store_write(st, ino, buf, pending.len, pending.off),
			 (ssize_t)pending.len);
}

static void arm(const char *where, uint64_t ino, uint64_t off, char byte, size_t len)
{
	pending.where = where;
	pending.ino = ino;
	pending.off = off;
	pending.byte = byte;
	pending.len = len;
	pending.ran = 0;
	__atomic_store_n(&store_test_hook, append_once, __ATOMIC_RELEASE);
}

/* A file of 5000 bytes of 'A' whose tail page is stored (no tail held). */
static uint64_t file_5000(struct store *st, const char *name)
{
	uint64_t ino = tsu_file(st, name);
	char buf[5000];
	memset(buf, 'A', sizeof(buf));
	assert_int_equal(store_write(st, ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	char one;
	assert_int_equal(store_read(st, ino, &one, 1, 0), 1);	/* stores the tail */
	return ino;
}

/* got holds file_5000's bytes and then the 100 of 'B' appended. */
static void check_appended(const char *got)
{
	for (size_t i = 0; i < 5100; i++)
		if (got[i] != (i < 5000 ? 'A' : 'B'))
			fail_msg("byte %zu is 0x%02x", i, (unsigned char)got[i]);
}

/* The 100 bytes appended at 5000 while the read held no lock are read,
 * not the zeros of the page's stored copy. */
static void test_store_races_read_beside_append(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = file_5000(st, "f");
	arm("read", ino, 5000, 'B', 100);
	char got[2 * PG];
	assert_int_equal(store_read(st, ino, got, sizeof(got), 0), 5100);
	assert_true(pending.ran);
	check_appended(got);
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* The same through store_map, the daemon's splice path: the extents it
 * hands out hold the appended bytes. */
static void test_store_races_map_beside_append(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = file_5000(st, "f");
	arm("map", ino, 5000, 'B', 100);
	struct store_extent ext[8];
	size_t covered;
	int n = store_map(st, ino, 0, 2 * PG, ext, 8, &covered);
	assert_true(pending.ran);
	assert_true(n > 0);
	assert_int_equal(covered, 5100);
	char got[2 * PG];
	size_t at = 0;
	for (int i = 0; i < n; at += ext[i++].len) {
		if (ext[i].fd < 0)
			memset(got + at, 0, ext[i].len);
		else
			assert_int_equal(pread(ext[i].fd, got + at, ext[i].len, (off_t)ext[i].pos),
					 (ssize_t)ext[i].len);
	}
	store_map_done(st);
	check_appended(got);
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A clone of 4 pages of 'S' over a file of 2 pages and 100 bytes of 'D',
 * to which 10 bytes of 'E' are appended while the clone has let go of its
 * lock (to take both in order): the append comes first, so the clone's
 * pages win, all of them, then and after the store is reopened.
 */
static void test_store_races_clone_beside_append(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t src = tsu_file(st, "src");	/* src < dst: the clone relocks */
	uint64_t dst = tsu_file(st, "dst");
	char buf[4 * PG];
	memset(buf, 'S', sizeof(buf));
	assert_int_equal(store_write(st, src, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	memset(buf, 'D', 2 * PG + 100);
	assert_int_equal(store_write(st, dst, buf, 2 * PG + 100, 0), 2 * PG + 100);
	char one;
	assert_int_equal(store_read(st, dst, &one, 1, 0), 1);	/* stores the tail */
	arm("clone", dst, 2 * PG + 100, 'E', 10);
	assert_int_equal(store_clone(st, src, 0, dst, 0, 4 * PG), 4 * PG);
	assert_true(pending.ran);
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	for (int round = 0; round < 2; round++) {
		char got[4 * PG];
		assert_int_equal(store_read(st, dst, got, sizeof(got), 0), 4 * PG);
		for (size_t i = 0; i < sizeof(got); i++)
			if (got[i] != 'S')
				fail_msg("round %d: byte %zu is 0x%02x", round, i, (unsigned char)got[i]);
		assert_int_equal(store_close(st, NULL), 0);
		assert_int_equal(store_open(path, 0, &st, NULL), 0);
	}
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* SEEK_DATA at the start of a page an append just started, held in
 * memory and in no slot yet, finds it. */
static void test_store_races_seek_beside_append(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "f");
	char buf[PG];
	memset(buf, 'A', sizeof(buf));
	assert_int_equal(store_write(st, ino, buf, PG, 0), PG);
	arm("seek", ino, PG, 'B', 100);
	assert_int_equal(store_seek_data(st, ino, PG), PG);
	assert_true(pending.ran);
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	assert_int_equal(store_seek_hole(st, ino, PG), PG + 100);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* The helper sleeps after taking each group of pages. */
static int helper_groups;

static void slow_helper(const char *where, struct store *st, uint64_t first)
{
	(void)st;
	(void)first;
	if (strcmp(where, "hash-helper"))
		return;
	__atomic_add_fetch(&helper_groups, 1, __ATOMIC_RELAXED);
	usleep(2000);
}

/* Large writes while the helper holds groups unhashed for 2 ms each: the
 * writer, done with every other group, must wait for the helper's before
 * it stores the batch holding them.  Every byte reads back, and every page
 * is filed under its own hash (a batch stored before its hashes were all
 * in would file pages under whatever its hash slots held). */
static void test_store_races_slow_hash_helper(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "big");
	const size_t mib = 1u << 20, len = 8 * mib;
	uint8_t *buf = malloc(len), *back = malloc(len);
	assert_non_null(buf);
	assert_non_null(back);
	tsu_fill(buf, len, 42);
	memset(buf + 5 * PG, 0, PG);		/* a hole */
	memcpy(buf + 70 * PG, buf, PG);		/* a repeat, in another batch */
	helper_groups = 0;
	__atomic_store_n(&store_test_hook, slow_helper, __ATOMIC_RELEASE);
	for (size_t off = 0; off < len; off += mib)
		assert_int_equal(store_write(st, ino, buf + off, mib, off), (ssize_t)mib);
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	assert_true(helper_groups > 0);
	assert_int_equal(store_read(st, ino, back, len, 0), (ssize_t)len);
	assert_memory_equal(back, buf, len);
	struct store_file_info fi;
	assert_int_equal(store_file_info(st, ino, &fi), 0);
	assert_int_equal(fi.pages, len / PG - 1);
	assert_int_equal(fi.zero_pages, 1);
	assert_int_equal(fi.shared_pages, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	free(buf);
	free(back);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static unsigned long spin_hits(struct store *st)
{
	pthread_mutex_lock(&st->hash_lock);
	unsigned long n = st->hash_spin_hits;
	pthread_mutex_unlock(&st->hash_lock);
	return n;
}

/* With polling on (store_set_hash_spin), the helper waits for the next
 * large write of a stream by polling and takes it from there; off, it
 * never does.  Every byte reads back either way, and a store closed while
 * the helper polls (for up to a second here) stops it. */
static void test_store_races_hash_spin(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "stream");
	const size_t mib = 1u << 20, len = 16 * mib;
	uint8_t *buf = malloc(len), *back = malloc(len);
	assert_non_null(buf);
	assert_non_null(back);
	tsu_fill(buf, len, 7);
	store_set_hash_spin(st, 20000);
	for (size_t off = 0; off < len / 2; off += mib)
		assert_int_equal(store_write(st, ino, buf + off, mib, off), (ssize_t)mib);
	unsigned long hits = spin_hits(st);
	assert_true(hits > 0);
	store_set_hash_spin(st, 0);
	for (size_t off = len / 2; off < len; off += mib)
		assert_int_equal(store_write(st, ino, buf + off, mib, off), (ssize_t)mib);
	assert_true(spin_hits(st) <= hits + 1);	/* one may be polling still */
	assert_int_equal(store_read(st, ino, back, len, 0), (ssize_t)len);
	assert_memory_equal(back, buf, len);
	store_set_hash_spin(st, 1000000);
	for (size_t off = 0; off < 2 * mib; off += mib)
		assert_int_equal(store_write(st, ino, buf + off, mib, off), (ssize_t)mib);
	free(buf);
	free(back);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* What walk_in_commit does (walk a file, or punch it) and finds, in
 * the commit's gap. */
static struct {
	uint64_t ino;
	bool punch;
	int ran;
	int64_t data, hole;
} walk;

#define CHUNK_BYTES ((uint64_t)CHUNK_PAGES * PG)

static void walk_in_commit(const char *where, struct store *st, uint64_t ino)
{
	(void)ino;
	if (walk.ran || strcmp(where, "commit"))
		return;
	walk.ran = 1;
	/* From chunk 1 on, never read: the first row the read connection
	 * finds is chunk 5's, dropped from memory already. */
	if (walk.punch) {
		assert_int_equal(store_punch(st, walk.ino, CHUNK_BYTES, 9 * CHUNK_BYTES), 0);
	} else {
		walk.data = store_seek_data(st, walk.ino, CHUNK_BYTES);
		walk.hole = store_seek_hole(st, walk.ino, 9 * CHUNK_BYTES);
	}
}

/* A store at path whose file ino has page in chunks 0, 5 and 9 and
 * was opened again since, with only chunk 5 read, then punched to
 * holes; committed with walk_in_commit armed (punch: as it says). */
static struct store *commit_walked(const char *path, uint64_t ino, const uint8_t *page,
				   bool punch)
{
	struct store *st;
	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), 0);
	for (uint64_t c = 0; c <= 9; c += c ? 4 : 5)
		assert_int_equal(store_write(st, ino, page, PG, c * CHUNK_BYTES), PG);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, &e), 0);
	uint8_t back[PG];
	assert_int_equal(store_read(st, ino, back, PG, 5 * CHUNK_BYTES), PG);
	assert_int_equal(store_punch(st, ino, 5 * CHUNK_BYTES, PG), 0);
	walk = (typeof(walk)){ .ino = ino, .punch = punch };
	__atomic_store_n(&store_test_hook, walk_in_commit, __ATOMIC_RELEASE);
	assert_int_equal(store_sync(st, NULL), 0);
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	assert_true(walk.ran);
	return st;
}

/*
 * A commit drops a chunk punched to holes from memory before its
 * transaction deletes the chunk's row.  A walk over the file's holes in
 * that gap finds the row still there but nothing to load for it: it must
 * go on to the chunks not read yet rather than take the file to end
 * there (SEEK_DATA answering ENXIO, a punch leaving data behind).
 */
static void test_store_races_walk_beside_commit(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "sparse");
	assert_int_equal(store_close(st, NULL), 0);
	uint8_t page[PG], back[PG], zero[PG] = { 0 };
	tsu_fill(page, PG, 7);

	st = commit_walked(path, ino, page, false);
	assert_int_equal(walk.data, (int64_t)(9 * CHUNK_BYTES));
	assert_int_equal(walk.hole, (int64_t)(9 * CHUNK_BYTES + PG));
	assert_int_equal(store_close(st, NULL), 0);

	st = commit_walked(path, ino, page, true);
	assert_int_equal(store_seek_data(st, ino, PG), -ENXIO);
	/* The punch holds after a commit and a reopen: chunk 0 only. */
	assert_int_equal(store_close(st, NULL), 0);
	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), 0);
	assert_int_equal(store_seek_data(st, ino, PG), -ENXIO);
	assert_int_equal(store_read(st, ino, back, PG, 9 * CHUNK_BYTES), PG);
	assert_memory_equal(back, zero, PG);
	assert_int_equal(store_read(st, ino, back, PG, 0), PG);
	assert_memory_equal(back, page, PG);
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_races_read_beside_append),
		cmocka_unit_test(test_store_races_map_beside_append),
		cmocka_unit_test(test_store_races_clone_beside_append),
		cmocka_unit_test(test_store_races_seek_beside_append),
		cmocka_unit_test(test_store_races_slow_hash_helper),
		cmocka_unit_test(test_store_races_hash_spin),
		cmocka_unit_test(test_store_races_walk_beside_commit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
