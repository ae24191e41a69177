/*
 * tests/test-store-util.h: helpers for the page-store tests: fresh store
 * folders under $TMPDIR, removal, deterministic page contents.
 */
#ifndef SNAPFS_TEST_STORE_UTIL_H
#define SNAPFS_TEST_STORE_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "testutil.h"

/* A new empty folder name (not created) for a store; free() it. */
static inline char *tsu_store_path(void)
{
	char d[4096];
	tu_tmpdir(d, sizeof(d), "store");
	size_t n = strlen(d) + 8;
	char *out = malloc(n);
	if (!out)
		abort();
	snprintf(out, n, "%s/store", d);
	return out;
}

/* The folder tsu_store_path made for path (its parent), removed. */
static inline void tsu_store_remove(char *path)
{
	char *slash = strrchr(path, '/');
	*slash = 0;
	tu_rmtree(path);
	free(path);
}

/* Deterministic bytes: xorshift stream from seed. */
static inline void tsu_fill(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) {
		if (i % 8 == 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		p[i] = (uint8_t)(x >> (8 * (i % 8)));
	}
}

/* Open a new store at a fresh path (asserting success). */
static inline struct store *tsu_new_store(char **path)
{
	*path = tsu_store_path();
	struct store *st = NULL;
	struct err e = { 0 };
	int r = store_open(*path, STORE_CREATE, &st, &e);
	if (r) {
		fprintf(stderr, "store_open: %s\n", err_str(&e, r));
		abort();
	}
	return st;
}

/* A fresh store per test, for cmocka fixtures: tsu_setup as the setup,
 * tsu_fixture_close (store_close's result) at the end of the teardown. */
struct tsu_fixture {
	char *path;
	struct store *st;
};

static inline int tsu_setup(void **state)
{
	struct tsu_fixture *f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	f->st = tsu_new_store(&f->path);
	*state = f;
	return 0;
}

static inline int tsu_fixture_close(struct tsu_fixture *f)
{
	int r = store_close(f->st, NULL);
	tsu_store_remove(f->path);
	free(f);
	return r;
}

/* Close f's store and open it again: nothing of it stays cached. */
static inline struct store *tsu_reopen(struct tsu_fixture *f)
{
	int r = store_close(f->st, NULL);
	struct err e = { 0 };
	if (!r)
		r = store_open(f->path, 0, &f->st, &e);
	if (r) {
		fprintf(stderr, "reopen %s: %s\n", f->path, err_str(&e, r));
		abort();
	}
	return f->st;
}

/* Create a regular file name in the root; returns its inode. */
static inline uint64_t tsu_file(struct store *st, const char *name)
{
	struct store_attr a;
	int r = store_mknod(st, STORE_ROOT_INO, name, 0100644, 0, 0, 0, &a);
	if (r) {
		fprintf(stderr, "mknod %s: %s\n", name, strerror(-r));
		abort();
	}
	return a.ino;
}

/* Writes past soft bytes of any file fail with EFBIG, as they would with
 * ENOSPC on a full disk (SIGXFSZ is ignored); RLIM_INFINITY lifts it. */
static inline void tsu_set_fsize(rlim_t soft)
{
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_FSIZE, &rl) != 0) {
		perror("getrlimit");
		abort();
	}
	rl.rlim_cur = soft;
	if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
		perror("setrlimit");
		abort();
	}
}

/* fsck of st finds nothing (cmocka.h included before this header). */
#define tsu_fsck_clean(st)                                                              \
	do {                                                                            \
		struct store_fsck_result tsu_res_;                                      \
		assert_int_equal(store_fsck((st), NULL, NULL, NULL, &tsu_res_, NULL), 0); \
		assert_int_equal(tsu_res_.problems, 0);                                 \
	} while (0)

/* A connection of its own to the index of the store at path, as another
 * program's (aborting on failure).  It has read the database once, so
 * that it knows the WAL is in use (a checkpoint asked first does not). */
static inline sqlite3 *tsu_index_open(const char *path)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/index.db", path);
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(p, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", p, db ? sqlite3_errmsg(db) : "out of memory");
		abort();
	}
	return db;
}

/* Run sql on db (aborting with SQLite's message if it fails). */
static inline void tsu_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, msg);
		abort();
	}
}

/* Run sql on the index of the store at path, through a connection of
 * its own, as an older program or a damaged disk would leave it. */
static inline void tsu_index_exec(const char *path, const char *sql)
{
	sqlite3 *db = tsu_index_open(path);
	tsu_exec(db, sql);
	sqlite3_close(db);
}

/* How many pack files the store at path has. */
static inline unsigned tsu_count_packs(const char *path)
{
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/packs", path);
	DIR *d = opendir(dir);
	unsigned n = 0;
	for (struct dirent *de; d && (de = readdir(d));)
		n += strstr(de->d_name, ".pack") != NULL;
	if (d)
		closedir(d);
	return n;
}

#endif
