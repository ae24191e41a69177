/*
 * tests/test-store.c: opening a store.  Creation and reopening, the
 * writer's lock, read-only opens beside a writer, refusal of folders that
 * are not stores and of a newer schema version (message naming the store
 * and both versions).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "test-store-util.h"

/* A new store holding file f of "hello", closed; f's inode. */
static uint64_t hello_store(char **path)
{
	struct store *st = tsu_new_store(path);
	uint64_t ino = tsu_file(st, "f");
	assert_int_equal(store_write(st, ino, "hello", 5, 0), 5);
	assert_int_equal(store_close(st, NULL), 0);
	return ino;
}

static void test_store_create_reopen(void **state)
{
	(void)state;
	char *path;
	struct store *st;
	uint64_t ino = hello_store(&path);

	/* The layout on disk. */
	char p[4200];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/index.db", path);
	assert_int_equal(stat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/packs", path);
	assert_int_equal(stat(p, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);

	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), 0);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f", &a), 0);
	assert_int_equal(a.ino, ino);
	assert_int_equal(a.size, 5);
	char buf[8] = { 0 };
	assert_int_equal(store_read(st, ino, buf, sizeof(buf), 0), 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(store_getattr(st, STORE_ROOT_INO, &a), 0);
	assert_true(S_ISDIR(a.mode));
	assert_int_equal(store_close(st, NULL), 0);

	/* Without its pack folder the store is refused, even with CREATE,
	 * and not silently given an empty one. */
	snprintf(p, sizeof(p), "%s/packs", path);
	char moved[4200];
	snprintf(moved, sizeof(moved), "%s/packs.away", path);
	assert_int_equal(rename(p, moved), 0);
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_open(path, STORE_CREATE, &st, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "pack folder"));
	assert_non_null(strstr(e.msg, p));
	assert_int_equal(rename(moved, p), 0);
	tsu_store_remove(path);
}

static void test_store_missing_and_not_a_store(void **state)
{
	(void)state;
	char *path = tsu_store_path();
	struct store *st = NULL;
	struct err e = { 0 };
	/* Missing without STORE_CREATE. */
	assert_int_equal(store_open(path, 0, &st, &e), -ENOENT);
	assert_null(st);
	assert_non_null(strstr(e.msg, path));

	/* A folder with other things in it is refused, even with CREATE. */
	mkdir(path, 0700);
	char p[4200];
	snprintf(p, sizeof(p), "%s/notes.txt", path);
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	close(fd);
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_open(path, STORE_CREATE, &st, &e), -ENOTEMPTY);
	assert_non_null(strstr(e.msg, "not a store"));
	unlink(p);
	/* Empty folder: created. */
	assert_int_equal(store_open(path, STORE_CREATE, &st, &e), 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A store whose index.db is gone, or emptied, beside packs that hold
 * pages is refused, not taken for a creation cut short: a new empty
 * index there would hide every file, and gc would then delete the packs.
 * A creation cut short (lock and empty packs/, or an index.db without
 * tables and no pages) is still finished.
 */
static void test_store_index_lost(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "a");
	assert_int_equal(store_write(st, ino, "hello", 5, 0), 5);
	assert_int_equal(store_close(st, NULL), 0);
	char db[4200], kept[4200];
	snprintf(db, sizeof(db), "%s/index.db", path);
	snprintf(kept, sizeof(kept), "%s.kept", path);
	assert_int_equal(rename(db, kept), 0);

	struct err e = { 0 };
	for (int i = 0; i < 3; i++) {
		static const unsigned flags[] = { STORE_CREATE, 0, STORE_RDONLY };
		assert_int_equal(store_open(path, flags[i], &st, &e), -EUCLEAN);
		assert_non_null(strstr(e.msg, path));
		assert_non_null(strstr(e.msg, "index.db is missing, but packs/ holds 4096 bytes"));
	}
	int fd = open(db, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(store_open(path, STORE_CREATE, &st, &e), -EUCLEAN);
	assert_non_null(strstr(e.msg, "index.db holds no tables, but packs/ holds 4096 bytes"));

	/* The index put back: all there. */
	assert_int_equal(rename(kept, db), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "a", &a), 0);
	char buf[8] = { 0 };
	assert_int_equal(store_read(st, a.ino, buf, sizeof(buf), 0), 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);

	/* Cut short: no pages yet, so the creation is finished. */
	path = tsu_store_path();
	char p[4200];
	mkdir(path, 0700);
	snprintf(p, sizeof(p), "%s/packs", path);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/packs/00000001.pack", path);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	snprintf(p, sizeof(p), "%s/index.db", path);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(store_open(path, STORE_CREATE, &st, &e), 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static void test_store_lock(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "f");
	assert_int_equal(store_write(st, ino, "abc", 3, 0), 3);
	assert_int_equal(store_sync(st, NULL), 0);

	/* A second writer is refused with a message... */
	struct store *two = NULL;
	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &two, &e), -EBUSY);
	assert_non_null(strstr(e.msg, "in use"));
	/* ...naming the holder (here this very process, through st). */
	char holder[64];
	snprintf(holder, sizeof(holder), "(pid %d, test-store, ", (int)getpid());
	assert_non_null(strstr(e.msg, holder));
	/* ...while a read-only open works and sees committed data. */
	assert_int_equal(store_open(path, STORE_RDONLY, &two, &e), 0);
	char buf[4] = { 0 };
	assert_int_equal(store_read(two, ino, buf, 3, 0), 3);
	assert_string_equal(buf, "abc");
	assert_int_equal(store_write(two, ino, "x", 1, 0), -EROFS);
	assert_int_equal(store_mkdir(two, STORE_ROOT_INO, "d", 0755, 0, 0, NULL), -EROFS);
	assert_int_equal(store_gc(two, NULL, NULL, NULL, &e), -EROFS);
	assert_int_equal(store_close(two, NULL), 0);

	assert_int_equal(store_close(st, NULL), 0);
	/* Free again after close. */
	assert_int_equal(store_open(path, 0, &two, &e), 0);
	assert_int_equal(store_close(two, NULL), 0);
	tsu_store_remove(path);
}

static void set_user_version(const char *path, int v)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v);
	tsu_index_exec(path, sql);
}

static void test_store_newer_version_refused(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	assert_int_equal(store_close(st, NULL), 0);
	int mine = store_schema_version();
	assert_true(mine >= 1);
	set_user_version(path, mine + 1);

	struct err e = { 0 };
	st = NULL;
	assert_int_equal(store_open(path, 0, &st, &e), -EPROTONOSUPPORT);
	assert_null(st);
	char v1[32], v2[32];
	snprintf(v1, sizeof(v1), "version %d", mine + 1);
	snprintf(v2, sizeof(v2), "version %d", mine);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, v1));
	assert_non_null(strstr(e.msg, v2));
	/* Read-only too. */
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_open(path, STORE_RDONLY, &st, &e), -EPROTONOSUPPORT);
	assert_non_null(strstr(e.msg, v1));
	/* And the lock was given back: putting the version right opens it. */
	set_user_version(path, mine);
	assert_int_equal(store_open(path, 0, &st, &e), 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static void test_store_statfs(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = tsu_file(st, "f");
	uint8_t page[STORE_PAGE_SIZE];
	tsu_fill(page, sizeof(page), 5);
	assert_int_equal(store_write(st, ino, page, sizeof(page), 0), sizeof(page));
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_statfs sf;
	assert_int_equal(store_statfs(st, &sf), 0);
	assert_int_equal(sf.stored_bytes, STORE_PAGE_SIZE);
	assert_int_equal(sf.inodes, 2);
	assert_true(sf.free_bytes > 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* The page index is read into memory by a thread after open: a write
 * right after open waits for it and so still finds the pages stored. */
static void test_store_dedup_right_after_open(void **state)
{
	(void)state;
	enum { PAGES = 8192 };
	char *path;
	struct store *st = tsu_new_store(&path);
	uint8_t *buf = malloc(PAGES * STORE_PAGE_SIZE);
	assert_non_null(buf);
	tsu_fill(buf, PAGES * STORE_PAGE_SIZE, 3);
	uint64_t a = tsu_file(st, "a");
	assert_int_equal(store_write(st, a, buf, PAGES * STORE_PAGE_SIZE, 0), PAGES * STORE_PAGE_SIZE);
	assert_int_equal(store_close(st, NULL), 0);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	uint64_t b = tsu_file(st, "b");
	assert_int_equal(store_write(st, b, buf, PAGES * STORE_PAGE_SIZE, 0), PAGES * STORE_PAGE_SIZE);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_stats ss;
	assert_int_equal(store_stats(st, &ss, NULL), 0);
	assert_int_equal(ss.unique_pages, PAGES);
	assert_int_equal(ss.pack_bytes, PAGES * STORE_PAGE_SIZE);
	assert_int_equal(store_close(st, NULL), 0);
	free(buf);
	tsu_store_remove(path);
}

static char logged[1024];

static void log_to(void *arg, const char *msg)
{
	(void)arg;
	snprintf(logged, sizeof(logged), "%s", msg);
}

/* A page index that cannot be read leaves files readable; changes fail,
 * and the log and gc say why. */
static void test_store_page_index_unreadable(void **state)
{
	(void)state;
	char *path;
	struct store *st;
	uint64_t ino = hello_store(&path);
	tsu_index_exec(path, "ALTER TABLE page RENAME TO page_away");

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	logged[0] = 0;
	store_set_log(st, log_to, NULL);
	char buf[8] = { 0 };
	assert_int_equal(store_read(st, ino, buf, sizeof(buf), 0), 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(store_write(st, ino, "HELLO", 5, 0), -EIO);
	assert_non_null(strstr(logged, path));
	assert_non_null(strstr(logged, "loading the page index"));
	assert_non_null(strstr(logged, "no such table: page"));
	assert_int_equal(store_truncate(st, ino, 0), -EIO);
	struct err e = { 0 };
	assert_int_equal(store_gc(st, NULL, NULL, NULL, &e), -EIO);
	assert_non_null(strstr(e.msg, "loading the page index"));
	assert_int_equal(store_close(st, NULL), 0);

	/* Nothing was lost: with the table back, all is as it was. */
	tsu_index_exec(path, "ALTER TABLE page_away RENAME TO page");
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	assert_int_equal(store_read(st, ino, buf, sizeof(buf), 0), 5);
	assert_string_equal(buf, "hello");
	assert_int_equal(store_write(st, ino, "HELLO", 5, 0), 5);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_create_reopen),
		cmocka_unit_test(test_store_missing_and_not_a_store),
		cmocka_unit_test(test_store_index_lost),
		cmocka_unit_test(test_store_lock),
		cmocka_unit_test(test_store_newer_version_refused),
		cmocka_unit_test(test_store_statfs),
		cmocka_unit_test(test_store_dedup_right_after_open),
		cmocka_unit_test(test_store_page_index_unreadable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
