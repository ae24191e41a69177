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

#include <cmocka.h>
#include <sqlite3.h>

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

static sqlite3 *open_index(const char *store)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/index.db", store);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	/* A connection learns that the database is in WAL mode on its
	 * first read. */
	assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema;", NULL, NULL, NULL),
			 SQLITE_OK);
	return db;
}

static void exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
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

	sqlite3 *reader = open_index(f->path);
	exec(reader, "BEGIN; SELECT count(*) FROM sqlite_schema;");	/* holds a snapshot */

	const int n = 400;
	small_commits(f->st, "held", n);
	sqlite3 *probe = open_index(f->path);
	int grown = wal_frames(probe);
	/* Each commit wrote a few frames, so the limit was crossed and the
	 * WAL kept them all. */
	assert_true(grown > 2 * LIMIT);
	unsigned tries = hints;
	unsigned most = (unsigned)(grown - LIMIT) / (LIMIT / 8) + 1;
	if (tries < 2 || tries > most)
		fail_msg("%u checkpoints tried over %d frames past the limit in %d commits;"
			 " expected 2..%u", tries, grown - LIMIT, n, most);

	exec(reader, "COMMIT;");
	sqlite3_close(reader);

	/* With nothing holding it back, the WAL starts over whenever it
	 * reaches the limit, not only past the last retry point (which is
	 * beyond what these fewer commits write). */
	hints = 0;
	const int m = n / 3;
	small_commits(f->st, "free", m);
	int frames = wal_frames(probe);
	if (frames >= LIMIT + 32)
		fail_msg("the WAL holds %d frames after %d commits (limit %d)", frames, m, LIMIT);
	assert_true(hints >= 1);
	sqlite3_close(probe);

	store_set_block_hint(f->st, NULL);
	tsu_fsck_clean(f->st);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
