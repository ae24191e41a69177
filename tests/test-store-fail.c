/*
 * tests/test-store-fail.c: a store whose page data cannot be written (the
 * disk is full, or fails to write back) fails the calls that meet it,
 * keeps what was committed, and takes changes again once it can.
 *
 * The failure is real, not simulated: RLIMIT_FSIZE makes every write past
 * a file size fail with EFBIG (SIGXFSZ is ignored), as ENOSPC would on a
 * full disk, for the pack files and SQLite alike.  The limit is set above
 * everything written before it and lifted again afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "test-store-util.h"

#define MB (1024 * 1024)

static char logged[4096];
static unsigned nlogged;

static void log_msg(void *arg, const char *msg)
{
	(void)arg;
	snprintf(logged, sizeof(logged), "%s", msg);
	nlogged++;
}

/*
 * fdatasync as the store's own code sees it (linked with
 * -Wl,--wrap=fdatasync; SQLite, a shared library, keeps the real one):
 * the real call, or the EIO of a disk that failed to write back.
 */
static bool fdatasync_fails;
static unsigned fdatasync_failed;

int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int __wrap_fdatasync(int fd)
{
	if (__atomic_load_n(&fdatasync_fails, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&fdatasync_failed, 1, __ATOMIC_RELAXED);
		errno = EIO;
		return -1;
	}
	return __real_fdatasync(fd);
}

/* A new store whose log lines land in logged/nlogged. */
static struct store *logged_store(char **path)
{
	struct store *st = tsu_new_store(path);
	store_set_log(st, log_msg, NULL);
	nlogged = 0;
	return st;
}

/* Write size bytes of seed's stream to a new file in MB writes; returns
 * the first failure (or 0) and sets *ino. */
static int write_file(struct store *st, const char *name, size_t size, uint64_t seed,
		      uint64_t *ino)
{
	*ino = tsu_file(st, name);
	assert_int_equal(store_file_open(st, *ino), 0);
	uint8_t *buf = malloc(size);
	tsu_fill(buf, size, seed);
	int r = 0;
	for (size_t off = 0; off < size && !r; off += MB) {
		ssize_t n = store_write(st, *ino, buf + off, MB, off);
		if (n < 0)
			r = (int)n;
	}
	free(buf);
	return r;
}

static void check_file(struct store *st, uint64_t ino, size_t size, uint64_t seed)
{
	uint8_t *want = malloc(size), *got = malloc(size);
	tsu_fill(want, size, seed);
	assert_int_equal(store_read(st, ino, got, size, 0), (ssize_t)size);
	assert_memory_equal(got, want, size);
	free(want);
	free(got);
}

/* Store a whole file of seed's stream (closed, so committed), check it
 * reads back, and return the bytes the pack files take now. */
static uint64_t store_whole(struct store *st, const char *name, size_t size, uint64_t seed,
			    uint64_t *ino)
{
	assert_int_equal(write_file(st, name, size, seed, ino), 0);
	assert_int_equal(store_file_release(st, *ino), 0);
	check_file(st, *ino, size, seed);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	return s.pack_bytes;
}

/* File "a", 2 MiB of seed 1, written, made durable and closed, before
 * the failure each test brings; returns the bytes the packs take then. */
static uint64_t committed_a(struct store *st, uint64_t *a)
{
	assert_int_equal(write_file(st, "a", 2 * MB, 1, a), 0);
	assert_int_equal(store_flush(st, *a, true, NULL), 0);
	assert_int_equal(store_file_release(st, *a), 0);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, 2 * MB);
	return s.pack_bytes;
}

static void test_full_disk_recovers(void **state)
{
	(void)state;
	char *path;
	struct store *st = logged_store(&path);

	/* Committed before the disk fills: must survive everything below. */
	uint64_t a, b, c;
	uint64_t packs_before = committed_a(st, &a);
	struct store_stats s;

	/* The disk is full 1 MiB later: a 16 MiB file cannot be stored. */
	tsu_set_fsize(packs_before + MB);
	int r = write_file(st, "b", 16 * MB, 2, &b);
	struct err e = { 0 };
	int fr = store_flush(st, b, true, &e);
	/* The failure shows at a write or, once the background writer met
	 * it, at the flush; either way the flush reports the lost data. */
	assert_true(r == -EFBIG || r == 0);
	assert_int_equal(fr, -EFBIG);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "dropped"));
	/* Reported once: a second flush has nothing more to say. */
	assert_int_equal(store_flush(st, b, true, NULL), 0);
	assert_int_equal(nlogged, 1);
	assert_non_null(strstr(logged, path));
	assert_non_null(strstr(logged, "File too large"));
	assert_non_null(strstr(logged, "1 open file lost some"));
	assert_int_equal(store_file_release(st, b), 0);

	/* What was committed is intact; b holds what was committed of it:
	 * nothing, as no commit of it succeeded. */
	check_file(st, a, 2 * MB, 1);
	struct store_attr at;
	assert_int_equal(store_getattr(st, b, &at), 0);
	assert_int_equal(at.size, 0);
	/* The space the lost pages took is free again. */
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, packs_before);
	tsu_fsck_clean(st);

	/* Space is back: changes work again, deleting b included. */
	tsu_set_fsize(RLIM_INFINITY);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "b", NULL), 0);
	assert_int_equal(write_file(st, "c", 4 * MB, 3, &c), 0);
	assert_int_equal(store_flush(st, c, true, NULL), 0);
	assert_int_equal(store_file_release(st, c), 0);
	check_file(st, c, 4 * MB, 3);
	assert_int_equal(nlogged, 1);
	tsu_fsck_clean(st);

	/* b's lost pages left location hints in the prefix set, and c's
	 * pages now sit where they pointed: a file of b's bytes must still
	 * get b's bytes (stored anew), and a second one finds them. */
	uint64_t d, d2, d3;
	uint64_t packs_d = store_whole(st, "d", 4 * MB, 2, &d);
	assert_int_equal(packs_d, packs_before + 8 * MB);
	assert_int_equal(store_whole(st, "d2", 4 * MB, 2, &d2), packs_d);
	tsu_fsck_clean(st);

	/* And all of it after reopening. */
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, a, 2 * MB, 1);
	check_file(st, c, 4 * MB, 3);
	check_file(st, d, 4 * MB, 2);
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "b", &at), -ENOENT);
	/* The hints loaded from the index find d's pages too. */
	assert_int_equal(store_whole(st, "d3", 4 * MB, 2, &d3), packs_d);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A pack whose write-back fails (fdatasync says EIO): the commit that
 * needed it fails whole, and the store does not trust a later fdatasync
 * to have written what the failed one did not.  The file being written
 * loses what it had not committed, what was committed reads back, the
 * packs are cut back to what was synced, and changes work again, also
 * after a reopen.
 */
static void test_failed_sync_recovers(void **state)
{
	(void)state;
	char *path;
	struct store *st = logged_store(&path);

	uint64_t a, b, c;
	uint64_t packs_before = committed_a(st, &a);
	struct store_stats s;

	__atomic_store_n(&fdatasync_fails, true, __ATOMIC_RELAXED);
	assert_int_equal(write_file(st, "b", 4 * MB, 2, &b), 0);
	struct err e = { 0 };
	int fr = store_flush(st, b, true, &e);
	__atomic_store_n(&fdatasync_fails, false, __ATOMIC_RELAXED);
	assert_true(fdatasync_failed >= 1);
	/* The close that needed it fails, naming the pack file. */
	assert_int_equal(fr, -EIO);
	char pack[4200];
	snprintf(pack, sizeof(pack), "%s/packs/00000001.pack: fdatasync: Input/output error", path);
	if (!strstr(e.msg, pack))
		fail_msg("flush: \"%s\" (wanted \"%s\")", e.msg, pack);
	/* The next call recovers, once, and says what was dropped. */
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_flush(st, b, true, &e), -EIO);
	assert_non_null(strstr(e.msg, "changes not yet committed were dropped after a failure"));
	assert_int_equal(nlogged, 1);
	assert_non_null(strstr(logged, path));
	assert_non_null(strstr(logged, pack));
	assert_non_null(strstr(logged, "1 open file lost some"));
	assert_int_equal(store_flush(st, b, true, NULL), 0);
	assert_int_equal(store_file_release(st, b), 0);

	check_file(st, a, 2 * MB, 1);
	struct store_attr at;
	assert_int_equal(store_getattr(st, b, &at), 0);
	assert_int_equal(at.size, 0);
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, packs_before);
	tsu_fsck_clean(st);

	/* b's bytes again: stored anew, not found where the lost ones were. */
	assert_int_equal(store_whole(st, "c", 4 * MB, 2, &c), packs_before + 4 * MB);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, a, 2 * MB, 1);
	check_file(st, c, 4 * MB, 2);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* A namespace change after the failure, before any data call, recovers
 * too; a file that was not open when its data was lost reports nothing
 * later (its close already did). */
static void test_namespace_change_recovers(void **state)
{
	(void)state;
	char *path;
	struct store *st = logged_store(&path);
	uint64_t a, b;
	assert_int_equal(write_file(st, "a", MB, 4, &a), 0);
	assert_int_equal(store_flush(st, a, true, NULL), 0);
	assert_int_equal(store_file_release(st, a), 0);

	tsu_set_fsize(2 * MB);
	write_file(st, "b", 8 * MB, 5, &b);
	/* The last release commits; that fails. */
	assert_int_not_equal(store_file_release(st, b), 0);
	tsu_set_fsize(RLIM_INFINITY);

	struct store_attr at;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d", 0755, 0, 0, &at), 0);
	assert_int_equal(nlogged, 1);
	assert_non_null(strstr(logged, "0 open files lost some"));
	assert_int_equal(store_file_open(st, b), 0);
	assert_int_equal(store_flush(st, b, true, NULL), 0);
	assert_int_equal(store_file_release(st, b), 0);
	check_file(st, a, MB, 4);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* A new store whose one pack holds a (3 MiB of seed 1, live) and the
 * pages of b (deleted, committed): gc would copy a to a new pack.  Sets
 * *before to the bytes the pack takes. */
static struct store *pack_half_dead(char **path, uint64_t *a, uint64_t *before)
{
	struct store *st = logged_store(path);
	uint64_t b, gone;
	store_whole(st, "a", 3 * MB, 1, a);
	*before = store_whole(st, "b", 3 * MB, 2, &b);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "b", &gone), 0);
	assert_int_equal(store_inode_release(st, gone), 0);
	assert_int_equal(store_sync(st, NULL), 0);
	nlogged = 0;
	return st;
}

/* After a gc of pack_half_dead's store failed: still its one pack, as
 * large as before, a intact and fsck clean; then gc goes through, leaving
 * a's pages only. */
static void gc_failed_then_works(struct store *st, const char *path, uint64_t a,
				 uint64_t before)
{
	assert_int_equal(tsu_count_packs(path), 1);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, before);
	check_file(st, a, 3 * MB, 1);
	tsu_fsck_clean(st);
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.bytes_after, 3 * MB);
	check_file(st, a, 3 * MB, 1);
	tsu_fsck_clean(st);
}

/* gc runs out of space while it copies live pages to a new pack: it fails
 * saying so, deletes what it copied (on a full disk that space is what
 * writes need next), and loses nothing. */
static void test_gc_out_of_space(void **state)
{
	(void)state;
	char *path;
	uint64_t a, before;
	struct store *st = pack_half_dead(&path, &a, &before);
	assert_int_equal(tsu_count_packs(path), 1);

	tsu_set_fsize(MB);	/* a's 3 MiB do not fit in a new pack */
	struct store_gc_result g;
	struct err e = { 0 };
	int r = store_gc(st, NULL, NULL, &g, &e);
	tsu_set_fsize(RLIM_INFINITY);
	assert_int_equal(r, -EFBIG);
	assert_non_null(strstr(e.msg, "compacting pack 00000001"));
	gc_failed_then_works(st, path, a, before);	/* with room again */
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* The new pack gc copied live pages to fails to write back: gc fails,
 * naming that pack, deletes it, and loses nothing; the old pack stays in
 * use, and the next gc goes through. */
static void test_gc_failed_sync(void **state)
{
	(void)state;
	char *path;
	uint64_t a, before;
	struct store *st = pack_half_dead(&path, &a, &before);

	__atomic_store_n(&fdatasync_failed, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fdatasync_fails, true, __ATOMIC_RELAXED);
	struct store_gc_result g;
	struct err e = { 0 };
	int r = store_gc(st, NULL, NULL, &g, &e);
	__atomic_store_n(&fdatasync_fails, false, __ATOMIC_RELAXED);
	assert_int_equal(fdatasync_failed, 1);
	assert_int_equal(r, -EIO);
	char pack[4200];
	snprintf(pack, sizeof(pack), "%s/packs/00000002.pack: fdatasync: Input/output error", path);
	if (!strstr(e.msg, pack))
		fail_msg("gc: \"%s\" (wanted \"%s\")", e.msg, pack);
	assert_int_equal(nlogged, 0);	/* nothing committed was at stake */
	gc_failed_then_works(st, path, a, before);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, a, 3 * MB, 1);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_disk_recovers),
		cmocka_unit_test(test_failed_sync_recovers),
		cmocka_unit_test(test_namespace_change_recovers),
		cmocka_unit_test(test_gc_out_of_space),
		cmocka_unit_test(test_gc_failed_sync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
