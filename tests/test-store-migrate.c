/*
 * tests/test-store-migrate.c: opening a store of an older schema version.
 *
 * This test links a store library built with a schema one version newer
 * than the real one (tests/schema-next.py): the real migrations plus one
 * that adds the table migrated_by_test.  A store made by that library and
 * then put back to the older version (table dropped, user_version
 * lowered) is what an older snapfs leaves behind; opening it must migrate
 * it in one transaction and keep every file, and a migration that fails
 * must leave the store as it was, with a message naming it.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#define STORE_TEST_HOOKS	/* as the store library this links with */
#include "failalloc.h"
#include "store_i.h"
#include "test-store-util.h"

#define NPAGES 40

/* An integer the index answers to sql (one row, one column). */
static int64_t index_int(const char *path, const char *sql)
{
	sqlite3 *db = tsu_index_open(path);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static int has_test_table(const char *path)
{
	return (int)index_int(path, "SELECT count(*) FROM sqlite_master"
				    " WHERE name = 'migrated_by_test'");
}

/* A store with one file of NPAGES pages (and, if big_mib, a file "big" of
 * that many MiB, and small files of one page each, "s00000" on), closed,
 * then turned into a store of the previous schema version. */
static char *old_store_with(unsigned big_mib, unsigned small)
{
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "f");
	uint8_t buf[NPAGES * STORE_PAGE_SIZE];
	tsu_fill(buf, sizeof(buf), 7);
	assert_int_equal(store_write(st, ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	if (big_mib) {
		static uint8_t mib[1 << 20];
		tsu_fill(mib, sizeof(mib), 9);
		ino = tsu_file(st, "big");
		for (uint64_t i = 0; i < big_mib; i++)
			assert_int_equal(store_write(st, ino, mib, sizeof(mib), i << 20),
					 (ssize_t)sizeof(mib));
	}
	uint8_t page[STORE_PAGE_SIZE];
	tsu_fill(page, sizeof(page), 11);
	for (unsigned i = 0; i < small; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%05u", i);
		ino = tsu_file(st, name);
		assert_int_equal(store_write(st, ino, page, sizeof(page), 0), (ssize_t)sizeof(page));
	}
	assert_int_equal(store_close(st, NULL), 0);
	int v = store_schema_version();
	assert_int_equal(index_int(path, "PRAGMA user_version"), v);
	assert_int_equal(has_test_table(path), 1);
	char sql[128];
	snprintf(sql, sizeof(sql), "DROP TABLE migrated_by_test; PRAGMA user_version = %d", v - 1);
	tsu_index_exec(path, sql);
	return path;
}

static char *old_store(void)
{
	return old_store_with(0, 0);
}

/* What the store logged while opening. */
static char logged[4][512];
static unsigned nlogged;

static void log_msg(void *arg, const char *msg)
{
	(void)arg;
	if (nlogged < 4)
		snprintf(logged[nlogged], sizeof(logged[0]), "%s", msg);
	nlogged++;
}

static void expect_logged(unsigned i, const char *has)
{
	if (i >= nlogged || !strstr(logged[i], has))
		fail_msg("log line %u of %u: \"%s\" (wanted \"%s\")", i, nlogged,
			 i < nlogged ? logged[i] : "", has);
}

/* Open the store at path with the log above; returns store_open's result. */
static int open_logged(const char *path, struct store **st, struct err *e)
{
	nlogged = 0;
	return store_open_log(path, 0, log_msg, NULL, st, e);
}

/* Open the store at path, which migrates it from version from to the
 * current one, saying when it starts and when it is done. */
static struct store *open_migrated(const char *path, int from)
{
	struct store *st = NULL;
	struct err e = { 0 };
	int r = open_logged(path, &st, &e);
	if (r)
		fail_msg("store_open %s: %s", path, err_str(&e, r));
	int v = store_schema_version();
	assert_int_equal(index_int(path, "PRAGMA user_version"), v);
	char want[128];
	snprintf(want, sizeof(want), "migrating the schema from version %d to %d", from, v);
	expect_logged(0, path);
	expect_logged(0, want);
	snprintf(want, sizeof(want), "migrated to schema version %d in ", v);
	expect_logged(1, want);
	assert_int_equal(nlogged, 2);
	return st;
}

/* The page map as versions 1 to 4 kept it: WITHOUT ROWID, hashes first.
 * Every test that puts a store back into an older version starts here. */
static const char chunk_v4[] =
	"CREATE TABLE chunk_v4 (ino INTEGER NOT NULL, idx INTEGER NOT NULL,"
	" hashes BLOB NOT NULL, locs BLOB NOT NULL, PRIMARY KEY (ino, idx)) WITHOUT ROWID;"
	"INSERT INTO chunk_v4 SELECT ino, idx, hashes, locs FROM chunk;"
	"DROP TABLE chunk; ALTER TABLE chunk_v4 RENAME TO chunk;";

/* The file old_store wrote is there, byte for byte, and fsck is clean
 * and counts files files. */
static void check_kept_files(struct store *st, uint64_t files)
{
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f", &a), 0);
	assert_int_equal(a.size, NPAGES * STORE_PAGE_SIZE);
	uint8_t want[NPAGES * STORE_PAGE_SIZE], got[NPAGES * STORE_PAGE_SIZE];
	tsu_fill(want, sizeof(want), 7);
	assert_int_equal(store_read(st, a.ino, got, sizeof(got), 0), (ssize_t)sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(res.files_checked, files);
}

static void check_kept(struct store *st)
{
	check_kept_files(st, 1);
}

static void test_migrate_older_store(void **state)
{
	(void)state;
	char *path = old_store();
	int v = store_schema_version();
	assert_int_equal(has_test_table(path), 0);

	struct store *st = open_migrated(path, v - 1);
	assert_int_equal(has_test_table(path), 1);
	check_kept(st);
	assert_int_equal(store_close(st, NULL), 0);

	/* Once migrated, opening again changes nothing and says nothing. */
	struct err e = { 0 };
	assert_int_equal(open_logged(path, &st, &e), 0);
	assert_int_equal(nlogged, 0);
	check_kept(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static void test_migrate_readonly_refused(void **state)
{
	(void)state;
	char *path = old_store();
	struct store *st = NULL;
	struct err e = { 0 };
	assert_int_equal(store_open(path, STORE_RDONLY, &st, &e), -EPROTONOSUPPORT);
	assert_null(st);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "mount it with snapfs, or run snapfs-admin gc on it,"
				      " once to migrate it"));
	/* Nothing was changed by trying. */
	assert_int_equal(index_int(path, "PRAGMA user_version"), store_schema_version() - 1);
	assert_int_equal(has_test_table(path), 0);
	tsu_store_remove(path);
}

static void test_migrate_failure_keeps_store(void **state)
{
	(void)state;
	char *path = old_store();
	int v = store_schema_version();
	/* Something in the way of the migration's CREATE TABLE. */
	tsu_index_exec(path, "CREATE TABLE migrated_by_test (in_the_way INTEGER)");

	struct store *st = NULL;
	struct err e = { 0 };
	int r = open_logged(path, &st, &e);
	assert_true(r < 0);
	assert_null(st);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "migrating the schema"));
	assert_non_null(strstr(e.msg, "migrated_by_test"));
	expect_logged(1, "failed; the store is as it was");
	/* Rolled back: still the old version, the file untouched. */
	assert_int_equal(index_int(path, "PRAGMA user_version"), v - 1);

	/* Clearing the obstacle lets the next open migrate. */
	tsu_index_exec(path, "DROP TABLE migrated_by_test");
	st = open_migrated(path, v - 1);
	check_kept(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * Version 1 kept the page index keyed by hash.  A store of the current
 * layout put back into that one (and to version 1) migrates to the index
 * keyed by location, through every later migration, with its file and
 * every reference count intact (check_kept runs fsck).
 */
static void test_migrate_v1_page_index(void **state)
{
	(void)state;
	char *path = old_store();
	int64_t pages = index_int(path, "SELECT count(*) FROM page");
	assert_true(pages >= NPAGES / 2);
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "CREATE TABLE page_v1 (hash BLOB PRIMARY KEY, loc INTEGER NOT NULL,"
			 " refs INTEGER NOT NULL) WITHOUT ROWID;"
			 "INSERT INTO page_v1 SELECT hash, loc, refs FROM page;"
			 "DROP TABLE page; ALTER TABLE page_v1 RENAME TO page;"
			 "DROP INDEX dentry_list; PRAGMA user_version = 1");

	struct store *st = open_migrated(path, 1);
	assert_int_equal(has_test_table(path), 1);
	assert_int_equal(index_int(path, "SELECT count(*) FROM page WHERE rowid = loc"), pages);
	check_kept(st);
	/* Writing the same bytes again finds the migrated pages. */
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f", &a), 0);
	uint8_t buf[NPAGES * STORE_PAGE_SIZE];
	tsu_fill(buf, sizeof(buf), 7);
	uint64_t ino = tsu_file(st, "g");
	assert_int_equal(store_write(st, ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(index_int(path, "SELECT count(*) FROM page"), pages);
	assert_int_equal(index_int(path, "SELECT count(*) FROM page WHERE refs != 2"), 0);
	tsu_store_remove(path);
}

/* Version 2 had no index of unreferenced pages: a store put back into
 * that layout gets it, and gc frees pages through it. */
static void test_migrate_v2_dead_index(void **state)
{
	(void)state;
	char *path = old_store();
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "DROP INDEX page_dead; DROP INDEX dentry_list; PRAGMA user_version = 2");
	assert_int_equal(index_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'page_dead'"),
			 0);
	struct store *st = open_migrated(path, 2);
	assert_int_equal(index_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'page_dead'"),
			 1);
	check_kept(st);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f", &a), 0);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "f", NULL), 0);
	assert_int_equal(store_inode_release(st, a.ino), 0);
	struct store_gc_result res;
	struct err e = { 0 };
	assert_int_equal(store_gc(st, NULL, NULL, &res, &e), 0);
	assert_int_equal(res.pages_freed, NPAGES);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(index_int(path, "SELECT count(*) FROM page"), 0);
	tsu_store_remove(path);
}

/* The plan SQLite makes for sql on the store's index, its steps joined. */
static void index_plan(const char *path, const char *sql, char *out, size_t size)
{
	char q[1024];
	snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
	sqlite3 *db = tsu_index_open(path);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &s, NULL), SQLITE_OK);
	out[0] = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		size_t len = strlen(out);
		snprintf(out + len, size - len, "%s; ", (const char *)sqlite3_column_text(s, 3));
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* SQLite's plan for sql on the store's index names has, and not lacks
 * (if not NULL). */
static void expect_plan(const char *path, const char *sql, const char *has, const char *lacks)
{
	char plan[1024];
	index_plan(path, sql, plan, sizeof(plan));
	if (!strstr(plan, has) || (lacks && strstr(plan, lacks)))
		fail_msg("plan for %s: %s(wanted %s%s%s)", sql, plan, has, lacks ? ", not " : "",
			 lacks ? lacks : "");
}

/*
 * Version 3 had no index of entries in listing order, so each batch of a
 * listing sorted the whole directory.  A store put back into that layout
 * gets it, and the listing query (as store_readdir asks it) becomes a
 * range of it with nothing to sort.
 */
static void test_migrate_v3_listing_index(void **state)
{
	(void)state;
	char *path = old_store();
	static const char listing[] = "SELECT d.id, d.name, i.mode FROM dentry d JOIN inode i ON"
				      " i.ino = d.ino WHERE d.parent = 1 AND d.id > 0"
				      " ORDER BY d.id LIMIT 128";
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "DROP INDEX dentry_list; PRAGMA user_version = 3");
	expect_plan(path, listing, "TEMP B-TREE", NULL);
	struct store *st = open_migrated(path, 3);
	expect_plan(path, listing, "dentry_list", "TEMP B-TREE");
	check_kept(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * Version 4 kept the page map WITHOUT ROWID, so every step of a search
 * through its key copied whole 5 KiB rows, overflow pages and all.  A
 * store put back into that layout gets a rowid table found through an
 * index of the key, locs first, with every row and its file intact.
 */
static void test_migrate_v4_chunk_table(void **state)
{
	(void)state;
	char *path = old_store();
	static const char probe[] = "SELECT max(idx) FROM chunk WHERE ino = 2";
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "PRAGMA user_version = 4");
	int64_t rows = index_int(path, "SELECT count(*) FROM chunk");
	assert_true(rows >= 1);
	expect_plan(path, probe, "PRIMARY KEY", NULL);

	struct store *st = open_migrated(path, 4);
	expect_plan(path, probe, "COVERING INDEX", NULL);
	assert_int_equal(index_int(path, "SELECT count(*) FROM sqlite_master"
					 " WHERE name = 'chunk' AND sql LIKE '%WITHOUT ROWID%'"),
			 0);
	assert_int_equal(index_int(path, "SELECT cid FROM pragma_table_info('chunk')"
					 " WHERE name = 'locs'"),
			 2);
	assert_int_equal(index_int(path, "SELECT count(*) FROM chunk"), rows);
	check_kept(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Version 5 to 6: each page-map row gets its checksum, computed in SQL
 * by the store's snapfs_map_sum, in a column before hashes.  fsck checks
 * every row's, and reading a file checks those of its rows. */
static void test_migrate_v5_map_sums(void **state)
{
	(void)state;
	char *path = old_store_with(2, 0);
	tsu_index_exec(path,
		       "CREATE TABLE chunk_v5 (ino INTEGER NOT NULL, idx INTEGER NOT NULL,"
		       " locs BLOB NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (ino, idx));"
		       "INSERT INTO chunk_v5 SELECT ino, idx, locs, hashes FROM chunk;"
		       "DROP TABLE chunk; ALTER TABLE chunk_v5 RENAME TO chunk;"
		       "PRAGMA user_version = 5");
	int64_t rows = index_int(path, "SELECT count(*) FROM chunk");
	assert_int_equal(rows, 1 + 4);

	struct store *st = open_migrated(path, 5);
	assert_int_equal(index_int(path, "SELECT cid FROM pragma_table_info('chunk')"
					 " WHERE name = 'sum'"),
			 3);
	assert_int_equal(index_int(path, "SELECT count(DISTINCT sum) FROM chunk"), rows);
	check_kept_files(st, 2);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "big", &a), 0);
	static uint8_t mib[1 << 20], got[1 << 20];
	tsu_fill(mib, sizeof(mib), 9);
	for (uint64_t i = 0; i < 2; i++) {
		assert_int_equal(store_read(st, a.ino, got, sizeof(got), i << 20), (ssize_t)sizeof(got));
		assert_memory_equal(got, mib, sizeof(got));
	}
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static long wal_file_size(const char *path)
{
	char wal[4096];
	snprintf(wal, sizeof(wal), "%s/index.db-wal", path);
	struct stat sb;
	return stat(wal, &sb) == 0 ? (long)sb.st_size : 0;
}

/*
 * The page maps of a 64 MiB file (128 rows of about 5 KiB) rewritten by
 * the version 4 migration.  On a full disk (RLIMIT_FSIZE: writes past
 * 256 KiB of any file fail with EFBIG, as they would with ENOSPC) the
 * migration fails, naming the store and the step, and leaves the store
 * as it was.  With room again it completes, and the rewritten maps are
 * in index.db: the WAL that held more than 256 KiB of them is empty.
 */
static void test_migrate_page_maps_full_disk(void **state)
{
	(void)state;
	char *path = old_store_with(64, 0);
	static const char probe[] = "SELECT max(idx) FROM chunk WHERE ino = 3";
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "PRAGMA user_version = 4");
	assert_int_equal(index_int(path, "SELECT count(*) FROM chunk WHERE ino = 3"), 128);
	assert_int_equal(wal_file_size(path), 0);

	tsu_set_fsize(256 << 10);
	struct store *st = NULL;
	struct err e = { 0 };
	int r = open_logged(path, &st, &e);
	tsu_set_fsize(RLIM_INFINITY);
	assert_true(r < 0);
	assert_null(st);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "migrating the schema from version 4 to"));
	expect_logged(0, "a large store takes a while and needs free space of up to twice that");
	expect_logged(1, "failed; the store is as it was");
	assert_int_equal(index_int(path, "PRAGMA user_version"), 4);
	expect_plan(path, probe, "PRIMARY KEY", NULL);

	st = open_migrated(path, 4);
	expect_plan(path, probe, "COVERING INDEX", NULL);
	assert_true(wal_file_size(path) < 64 << 10);
	check_kept_files(st, 2);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "big", &a), 0);
	assert_int_equal(a.ino, 3);
	static uint8_t want[1 << 20], got[1 << 20];
	tsu_fill(want, sizeof(want), 9);
	for (uint64_t i = 0; i < 64; i += 21) {
		assert_int_equal(store_read(st, a.ino, got, sizeof(got), i << 20),
				 (ssize_t)sizeof(got));
		assert_memory_equal(got, want, sizeof(want));
	}
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* The progress lines a migration logged, phase by phase (reading, then
 * committing, then copying the WAL into index.db), whether each came
 * between the first line and the last, in that order, and the last
 * reading line's figures. */
static struct {
	unsigned n[3], bad;
	int phase;
	double read, of;
	double written;		/* the last copying line's MiB written */
	double wrote;		/* MiB the hook wrote in the migrating thread */
} progress;

static void log_progress(void *arg, const char *msg)
{
	const char *p = strstr(msg, ": migrating, ");
	if (!p) {
		log_msg(arg, msg);
		return;
	}
	double secs, read, of, wal;
	int phase = -1;
	if (sscanf(p, ": migrating, %lf s so far: %lf of %lf MiB of index.db read", &secs, &read,
		   &of) == 3) {
		phase = 0;
		if (read < progress.read || read > of || (progress.n[0] && of != progress.of))
			progress.bad++;
		progress.read = read;
		progress.of = of;
	} else if (sscanf(p, ": migrating, %lf s so far: committing, %lf MiB in index.db-wal",
			  &secs, &wal) == 2) {
		phase = 1;
	} else if (sscanf(p, ": migrating, %lf s so far: copying the %lf MiB of index.db-wal"
			  " into index.db, %lf MiB written", &secs, &wal, &read) == 3) {
		phase = 2;
		/* The WAL holds the new page maps until then; what the
		 * thread writes meanwhile counts up to it. */
		if (wal <= 0 || read < progress.written || read > wal)
			progress.bad++;
		__atomic_store(&progress.written, &read, __ATOMIC_RELEASE);
	}
	if (phase < 0 || phase < progress.phase || nlogged != 1 || !strstr(msg, (char *)arg))
		progress.bad++;
	else
		__atomic_add_fetch(&progress.n[phase], 1, __ATOMIC_RELEASE);
	progress.phase = phase;
}

/* Write half of dir's index.db-wal to /dev/null, as a checkpoint writes
 * the WAL's pages into index.db; the MiB written. */
static double write_half_the_wal(const char *dir)
{
	char wal[PATH_MAX];
	snprintf(wal, sizeof(wal), "%s/index.db-wal", dir);
	struct stat sb;
	assert_int_equal(stat(wal, &sb), 0);
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	static char buf[65536];
	size_t left = (size_t)sb.st_size / 2, done = 0;
	while (done < left) {
		size_t n = left - done < sizeof(buf) ? left - done : sizeof(buf);
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
		done += n;
	}
	close(fd);
	return (double)done / (1 << 20);
}

/* Wait until the reporter has logged a line of phase i, and (a copying
 * line) one that gives at least written MiB; false after 10 s. */
static bool wait_for_line(int i, double written)
{
	for (int ms = 0; ms < 10000; ms++) {
		double got;
		__atomic_load(&progress.written, &got, __ATOMIC_ACQUIRE);
		/* lines give MiB to one decimal */
		if (__atomic_load_n(&progress.n[i], __ATOMIC_ACQUIRE) && got >= written - 0.051)
			return true;
		usleep(1000);
	}
	return false;
}

/* The store's test hook: hold the migration in each phase (its SQL once
 * it has read something) until the reporter has logged a line of it.
 * Before the checkpoint, once a line has said that nothing is written
 * yet, write half the WAL's size from the migrating thread and wait for
 * a line that counts it. */
static void hold_for_line(const char *where, struct store *st, uint64_t pages)
{
	static const char *const phases[] = { "migrate-run", "migrate-commit",
					      "migrate-checkpoint" };
	for (int i = 0; i < 3; i++) {
		if (strcmp(where, phases[i]) || (i == 0 && !pages))
			continue;
		if (i == 2) {
			if (!wait_for_line(i, 0))
				fail_msg("no progress line while at %s", where);
			/* Nothing is written before the checkpoint starts. */
			double written;
			__atomic_load(&progress.written, &written, __ATOMIC_ACQUIRE);
			if (written != 0)
				fail_msg("%.1f MiB written before the checkpoint", written);
			progress.wrote = write_half_the_wal(store_dir(st));
		}
		if (!wait_for_line(i, progress.wrote))
			fail_msg("no progress line while at %s", where);
	}
}

/*
 * A long migration says how far it has got, every store_migrate_report_ns
 * (10 s; 1 ms here): while its SQL runs, the MiB of index.db read so far,
 * growing, of the size the first line gave; then that it commits, then
 * that it copies the WAL into index.db.  The test hook holds it in each
 * phase until a line of it comes.  5,000 files make 5,000 page-map rows
 * to rewrite.
 */
static void test_migrate_progress(void **state)
{
	(void)state;
	char *path = old_store_with(0, 5000);
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "PRAGMA user_version = 4");

	int64_t every = store_migrate_report_ns;
	store_migrate_report_ns = 1000000;
	__atomic_store_n(&store_test_hook, hold_for_line, __ATOMIC_RELEASE);
	memset(&progress, 0, sizeof(progress));
	nlogged = 0;
	struct store *st = NULL;
	struct err e = { 0 };
	int r = store_open_log(path, 0, log_progress, path, &st, &e);
	store_migrate_report_ns = every;
	__atomic_store_n(&store_test_hook, NULL, __ATOMIC_RELEASE);
	if (r)
		fail_msg("store_open %s: %s", path, err_str(&e, r));
	fprintf(stderr, "# progress lines: %u reading (last %.1f of %.1f MiB), %u committing,"
		" %u copying (last %.1f MiB written; %.2f MiB by the test)\n", progress.n[0],
		progress.read, progress.of, progress.n[1], progress.n[2], progress.written,
		progress.wrote);
	assert_int_equal(nlogged, 2);
	expect_logged(1, "migrated to schema version");
	assert_int_equal(progress.bad, 0);
	for (int i = 0; i < 3; i++)
		assert_true(progress.n[i] >= 1);
	assert_true(progress.read > 0);
	assert_true(progress.wrote >= 0.2);	/* enough to tell from nothing */
	assert_true(progress.written >= progress.wrote - 0.051);
	char holds[64];
	snprintf(holds, sizeof(holds), "index.db holds %.1f MiB;", progress.of);
	expect_logged(0, holds);
	check_kept_files(st, 5001);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static void test_no_migration_refused(void **state)
{
	(void)state;
	char *path = old_store();
	/* A version older than the oldest migration knows. */
	tsu_index_exec(path, "PRAGMA user_version = -5");
	struct store *st = NULL;
	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), -EPROTONOSUPPORT);
	assert_null(st);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "no migration from schema version -5"));
	assert_int_equal(index_int(path, "PRAGMA user_version"), -5);
	tsu_store_remove(path);
}

/*
 * A migration meets allocations that fail (failalloc.h, SQLite's too):
 * each of the store's own and about SQLITE_RUNS of SQLite's, alone and
 * with every one after it.  The open either works or fails with ENOMEM
 * naming the store, which is then either as it was (version 4, its page
 * map in the old layout) or wholly migrated (the open failed after the
 * migration's commit), never in between; either way the next open, with
 * memory back, finds the store migrated and its file kept.
 */
#define SQLITE_RUNS 40

/* A store put back to version 4 (as test_migrate_v4_chunk_table). */
static char *v4_store(void)
{
	char *path = old_store();
	tsu_index_exec(path, chunk_v4);
	tsu_index_exec(path, "PRAGMA user_version = 4");
	return path;
}

static int64_t old_layout(const char *path)
{
	return index_int(path, "SELECT count(*) FROM sqlite_master"
			       " WHERE name = 'chunk' AND sql LIKE '%WITHOUT ROWID%'");
}

static pthread_t test_thread;

/* Only the test's own thread counts: the page index loader that an open
 * starts runs beside the migration for as long as it takes, so its
 * allocations would move the count of the rest from run to run (its
 * failures have their own tests, in test-store-oom). */
static bool on_test_thread(void)
{
	return pthread_equal(pthread_self(), test_thread);
}

static void test_migrate_out_of_memory(void **state)
{
	(void)state;
	char *path = v4_store();
	struct store *st = NULL;
	struct err e = { 0 };
	test_thread = pthread_self();
	failalloc_filter(on_test_thread);
	failalloc_arm(0, false);
	assert_int_equal(open_logged(path, &st, &e), 0);
	uint64_t total = failalloc_disarm();
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
	assert_true(total <= FAILALLOC_RECORD_MAX);
	uint64_t *pick = malloc(total * sizeof(*pick));
	assert_non_null(pick);
	size_t runs = failalloc_pick(total, SQLITE_RUNS, pick);
	unsigned met = 0, migrated = 0, kept = 0;
	for (int on = 0; on < 2; on++)
		for (size_t i = 0; i < runs; i++) {
			path = v4_store();
			st = NULL;
			memset(&e, 0, sizeof(e));
			failalloc_arm(pick[i], on);
			int r = open_logged(path, &st, &e);
			failalloc_disarm();
			met += failalloc_failed() > 0;
			if (r == 0) {
				migrated++;
				assert_int_equal(store_close(st, NULL), 0);
			} else if (r != -ENOMEM || !strstr(e.msg, path)) {
				fail_msg("allocation %lu%s failing: %s", (unsigned long)pick[i],
					 on ? " and on" : "", err_str(&e, r));
			} else {	/* as it was, or migrated before the open failed */
				assert_null(st);
				int64_t v = index_int(path, "PRAGMA user_version");
				if (v != 4)
					assert_int_equal(v, store_schema_version());
				assert_int_equal(old_layout(path), v == 4);
				kept += v == 4;
			}
			assert_int_equal(store_open(path, 0, &st, &e), 0);
			assert_int_equal(index_int(path, "PRAGMA user_version"),
					 store_schema_version());
			assert_int_equal(old_layout(path), 0);
			check_kept(st);
			assert_int_equal(store_close(st, NULL), 0);
			tsu_store_remove(path);
		}
	failalloc_filter(NULL);
	free(pick);
	printf("# %lu allocations; %zu runs each way, %u met their failure: %u opened, "
	       "%u failed unmigrated, %u failed migrated\n",
	       (unsigned long)total, runs, met, migrated, kept, 2 * (unsigned)runs - migrated - kept);
	assert_true(met > 2 * runs * 9 / 10);
}

int main(void)
{
	failalloc_sqlite();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate_older_store),
		cmocka_unit_test(test_migrate_readonly_refused),
		cmocka_unit_test(test_migrate_failure_keeps_store),
		cmocka_unit_test(test_migrate_v1_page_index),
		cmocka_unit_test(test_migrate_v2_dead_index),
		cmocka_unit_test(test_migrate_v3_listing_index),
		cmocka_unit_test(test_migrate_v4_chunk_table),
		cmocka_unit_test(test_migrate_v5_map_sums),
		cmocka_unit_test(test_migrate_page_maps_full_disk),
		cmocka_unit_test(test_migrate_progress),
		cmocka_unit_test(test_no_migration_refused),
		cmocka_unit_test(test_migrate_out_of_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
