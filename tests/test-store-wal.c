/*
 * tests/test-store-wal.c: when commits checkpoint the index's WAL, and
 * that they say so first (store_set_block_hint).  Linked with a store
 * library that checkpoints at a WAL of WAL_CHECKPOINT_PAGES (256) pages
 * instead of 16384, so that a few hundred small commits cross it.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "test-store-util.h"

#define LIMIT 256	/* as WAL_CHECKPOINT_PAGES in meson.build */

static pthread_t test_thread;
static unsigned hints;

/* Count the waits the test's own thread announces (the store's
 * committer thread may announce its own). */
static void count_hint(void)
{
	if (pthread_equal(pthread_self(), test_thread))
		hints++;
}

/* n commits: one new empty file each (a namespace call commits before
 * it returns), named prefix.i. */
static void small_commits(struct store *st, const char *prefix, int n)
{
	for (int i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof(name), "%s.%d", prefix, i);
		tsu_file(st, name);
	}
}

/* Frames in the WAL now, from a passive checkpoint on db (which copies
 * back what it can but does not start the WAL over). */
static int wal_frames(sqlite3 *db)
{
	int log = -1, done = -1;
	assert_int_equal(sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done),
			 SQLITE_OK);
	return log;
}

/*
 * A reader holding an old snapshot keeps every checkpoint short of the
 * WAL's end, so the WAL stays over the limit.  Commits then try a
 * checkpoint (and announce a wait) only every eighth of the limit, not
 * each time; once the reader is gone one succeeds, the WAL starts over,
 * and checkpoints come at the limit again.
 */
static void test_store_wal_long_reader(void **state)
{
	struct tsu_fixture *f = *state;
	test_thread = pthread_self();
	store_set_block_hint(f->st, count_hint);

	sqlite3 *reader = tsu_index_open(f->path);
	tsu_exec(reader, "BEGIN; SELECT count(*) FROM sqlite_schema;");	/* holds a snapshot */

	const int n = 400;
	small_commits(f->st, "held", n);
	sqlite3 *probe = tsu_index_open(f->path);
	int grown = wal_frames(probe);
	/* Each commit wrote a few frames, so the limit was crossed and the
	 * WAL kept them all. */
	assert_true(grown > 2 * LIMIT);
	unsigned tries = hints;
	unsigned most = (unsigned)(grown - LIMIT) / (LIMIT / 8) + 1;
	if (tries < 2 || tries > most)
		fail_msg("%u checkpoints tried over %d frames past the limit in %d commits;"
			 " expected 2..%u", tries, grown - LIMIT, n, most);

	tsu_exec(reader, "COMMIT;");
	sqlite3_close(reader);

	/* With nothing holding it back, a checkpoint at the retry point
	 * completes and the WAL starts over; from then on it is checkpointed
	 * at the limit again, not at the retry point left from before (far
	 * above anything these commits, fewer, write after the restart). */
	hints = 0;
	const int m = n / 3;
	assert_true(m * (grown / n) > 2 * (LIMIT + 32));
	small_commits(f->st, "free", m);
	int frames = wal_frames(probe);
	if (frames >= LIMIT + 32)
		fail_msg("the WAL holds %d frames after %d commits (limit %d)", frames, m, LIMIT);
	assert_true(hints >= 1);
	sqlite3_close(probe);

	store_set_block_hint(f->st, NULL);
	tsu_fsck_clean(f->st);
}

/* Bytes in the store's WAL file: it keeps the largest size the WAL
 * reached since it last started over, or the limit if that is larger
 * (SQLite writes a WAL that starts over from its beginning). */
static long wal_file_size(const char *store)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/index.db-wal", store);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	return (long)sb.st_size;
}

/*
 * Commits each larger than the limit (clones of a 128 MiB file: 256
 * page-map rows each), one after another: each is checkpointed and the
 * WAL starts over at the next, so it never holds many of them.  A retry
 * point kept across restarts let it grow by a commit's worth every few
 * commits.  Once small commits follow, the WAL file is cut back to the
 * limit.
 */
static void test_store_wal_large_commits(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	enum { MIB = 128, CLONES = 16 };
	uint64_t src = tsu_file(st, "src");
	static char buf[1 << 20];
	memset(buf, 'x', sizeof(buf));	/* one page, stored once */
	for (uint64_t i = 0; i < MIB; i++)
		assert_int_equal(store_write(st, src, buf, sizeof(buf), i << 20),
				 (ssize_t)sizeof(buf));
	struct err e = { 0 };
	assert_int_equal(store_sync(st, &e), 0);

	/* Start from an empty WAL file, so that its size tells the largest
	 * WAL the clones left. */
	sqlite3 *db = tsu_index_open(f->path);
	tsu_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);");
	sqlite3_close(db);
	assert_int_equal(wal_file_size(f->path), 0);

	/* The files first: no small commit comes between the clones'. */
	uint64_t dst[CLONES];
	for (int i = 0; i < CLONES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "clone.%d", i);
		dst[i] = tsu_file(st, name);
	}
	long one = 0, peak = 0, before = wal_file_size(f->path);
	for (int i = 0; i < CLONES; i++) {
		assert_int_equal(store_clone(st, src, 0, dst[i], 0, (uint64_t)MIB << 20),
				 (ssize_t)MIB << 20);
		assert_int_equal(store_flush(st, dst[i], false, &e), 0);
		long size = wal_file_size(f->path);
		if (!i)
			one = size - before;
		peak = size > peak ? size : peak;
	}
	/* One clone's commit crossed the limit. */
	const long limit = (long)LIMIT * (4096 + 24) + 32;
	assert_true(one > limit);
	/* A checkpoint held back by a reader of the moment (the page-index
	 * loader runs after the store opens) may let two or three commits
	 * share the WAL; with the old retry point kept it held five. */
	if (peak > 3 * one)
		fail_msg("the WAL reached %ld bytes; one clone's commit makes about %ld", peak, one);

	/* Small commits after the WAL starts over cut its file back to the
	 * limit: it does not keep the size the clones gave it. */
	assert_true(wal_file_size(f->path) > limit);
	small_commits(st, "after", 3);
	long size = wal_file_size(f->path);
	if (size > limit)
		fail_msg("the WAL file kept %ld bytes after small commits; the limit is %ld", size,
			 limit);
	tsu_fsck_clean(st);
}

static int teardown(void **state)
{
	assert_int_equal(tsu_fixture_close(*state), 0);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_wal_long_reader, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_wal_large_commits, tsu_setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
