/*
 * tests/test-fs-inode.c: the daemon's inode table (fsd/fs_inode.c) on its
 * own: lookup and open counts, when an inode is reported gone (that is
 * when the store frees an unlinked file's pages), growth past many
 * inodes, the kept-cache decision, the setuid/setgid note, teardown
 * reporting what is left, and allocations that fail.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include "failalloc.h"
#include "fsd/fs_i.h"
#include "fsd/fs_inode.h"

static void test_fs_inode_lookup_forget(void **state)
{
	(void)state;
	struct fs_inode_table t;
	assert_int_equal(fs_inode_table_init(&t), 0);
	assert_int_equal(fs_inode_lookup(&t, 7, 1, NULL), 0);
	assert_int_equal(fs_inode_lookup(&t, 7, 2, NULL), 0);
	assert_false(fs_inode_forget(&t, 7, 2));
	assert_true(fs_inode_forget(&t, 7, 1));
	/* Gone: forgetting again reports nothing. */
	assert_false(fs_inode_forget(&t, 7, 1));
	/* A forget larger than the count clamps to zero. */
	assert_int_equal(fs_inode_lookup(&t, 8, 1, NULL), 0);
	assert_true(fs_inode_forget(&t, 8, 5));
	fs_inode_table_destroy(&t, NULL, NULL);
}

static void test_fs_inode_open_holds(void **state)
{
	(void)state;
	struct fs_inode_table t;
	assert_int_equal(fs_inode_table_init(&t), 0);
	assert_int_equal(fs_inode_lookup(&t, 3, 1, NULL), 0);
	/* An open says how many handles write the inode now. */
	assert_int_equal(fs_inode_open(&t, 3, true, NULL), 1);
	assert_int_equal(fs_inode_open(&t, 3, false, NULL), 1);
	assert_int_equal(fs_inode_open(&t, 3, true, NULL), 2);
	assert_false(fs_inode_release(&t, 3, true));
	assert_int_equal(fs_inode_writers(&t, 3), 1);
	/* The kernel forgot the name, but handles are still open. */
	assert_false(fs_inode_forget(&t, 3, 1));
	assert_false(fs_inode_release(&t, 3, true));
	assert_int_equal(fs_inode_writers(&t, 3), 0);
	assert_true(fs_inode_release(&t, 3, false));
	assert_int_equal(fs_inode_writers(&t, 3), 0);
	fs_inode_table_destroy(&t, NULL, NULL);
}

static void test_fs_inode_keep_cache(void **state)
{
	(void)state;
	struct fs_inode_table t;
	assert_int_equal(fs_inode_table_init(&t), 0);
	assert_int_equal(fs_inode_lookup(&t, 5, 1, NULL), 0);
	assert_true(fs_inode_take_keep_cache(&t, 5));
	fs_inode_mark_changed(&t, 5);
	assert_false(fs_inode_take_keep_cache(&t, 5));
	/* The mark is taken once: the next open may keep the new cache. */
	assert_true(fs_inode_take_keep_cache(&t, 5));
	/* Unknown inodes: nothing changed through this mount. */
	assert_true(fs_inode_take_keep_cache(&t, 99));
	fs_inode_table_destroy(&t, NULL, NULL);
}

static void test_fs_inode_setid(void **state)
{
	(void)state;
	struct fs_inode_table t;
	assert_int_equal(fs_inode_table_init(&t), 0);
	assert_int_equal(fs_inode_lookup(&t, 5, 1, NULL), 0);
	assert_false(fs_inode_setid(&t, 5));
	const struct {
		uint32_t mode;
		bool setid;
	} cases[] = {
		{ S_IFREG | 04755, true },  { S_IFREG | 02755, true },	{ S_IFREG | 06700, true },
		{ S_IFREG | 02745, false }, { S_IFREG | 01777, false }, { S_IFREG | 0755, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fs_inode_note_mode(&t, 5, cases[i].mode);
		assert_int_equal(fs_inode_setid(&t, 5), cases[i].setid);
	}
	/* Inodes the kernel does not hold are not noted. */
	fs_inode_note_mode(&t, 99, S_IFREG | 04755);
	assert_false(fs_inode_setid(&t, 99));
	fs_inode_table_destroy(&t, NULL, NULL);
}

struct seen {
	uint64_t sum;
	size_t n;
};

static void count_left(uint64_t ino, void *arg)
{
	struct seen *s = arg;
	s->sum += ino;
	s->n++;
}

static void test_fs_inode_many_and_teardown(void **state)
{
	(void)state;
	struct fs_inode_table t;
	assert_int_equal(fs_inode_table_init(&t), 0);
	const uint64_t n = 100000;
	for (uint64_t i = 1; i <= n; i++)
		assert_int_equal(fs_inode_lookup(&t, i * 4096, 1, NULL), 0);
	assert_true(t.nbucket > 1024);	/* it grew */
	/* Forget the even ones; every one is found after the growth. */
	for (uint64_t i = 2; i <= n; i += 2)
		assert_true(fs_inode_forget(&t, i * 4096, 1));
	assert_int_equal(t.count, n / 2);
	struct seen s = { 0 };
	fs_inode_table_destroy(&t, count_left, &s);
	assert_int_equal(s.n, n / 2);
	uint64_t want = 0;
	for (uint64_t i = 1; i <= n; i += 2)
		want += i * 4096;
	assert_int_equal(s.sum, want);
}

/*
 * Allocations that fail (failalloc.h): init fails with ENOMEM; a lookup
 * that cannot add its inode fails with ENOMEM and changes nothing; a
 * table that cannot grow goes on with longer chains, and grows at the
 * next insertion.
 */
static void test_fs_inode_allocations_fail(void **state)
{
	(void)state;
	struct fs_inode_table t;
	failalloc_arm(1, false);
	assert_int_equal(fs_inode_table_init(&t), -ENOMEM);
	failalloc_disarm();
	assert_int_equal(fs_inode_table_init(&t), 0);
	assert_int_equal(fs_inode_lookup(&t, 1, 1, NULL), 0);

	failalloc_arm(1, false);
	assert_int_equal(fs_inode_lookup(&t, 2, 1, NULL), -ENOMEM);
	failalloc_disarm();
	assert_int_equal(failalloc_failed(), 1);
	assert_int_equal(t.count, 1);
	assert_false(fs_inode_forget(&t, 2, 1));	/* never added */

	/* Fill the table to the point of growing; the growth fails. */
	size_t buckets = t.nbucket;
	uint64_t n = 1;
	while (t.count < buckets * 2)
		assert_int_equal(fs_inode_lookup(&t, ++n, 1, NULL), 0);
	failalloc_arm(2, false);	/* the inode's allocation, then the growth's */
	assert_int_equal(fs_inode_lookup(&t, ++n, 1, NULL), 0);
	failalloc_disarm();
	assert_int_equal(failalloc_failed(), 1);
	assert_int_equal(t.nbucket, buckets);
	assert_int_equal(fs_inode_lookup(&t, ++n, 1, NULL), 0);
	assert_int_equal(t.nbucket, 2 * buckets);
	assert_int_equal(t.count, n);
	for (uint64_t i = 1; i <= n; i++)
		assert_true(fs_inode_forget(&t, i, 1));
	assert_int_equal(t.count, 0);
	fs_inode_table_destroy(&t, NULL, NULL);
}

/* The atime rules (fs.c, here for want of a better home: they need no
 * mount). */
static void test_fs_atime_due(void **state)
{
	(void)state;
	const time_t day = 24 * 60 * 60, now_s = 1700000000;
	struct timespec now = { now_s, 500 };
	struct store_attr a = { 0 };
	a.mtime = a.ctime = (struct timespec){ now_s - 7200, 0 };
	/* Accessed since the last change, an hour ago: not again. */
	a.atime = (struct timespec){ now_s - 3600, 0 };
	assert_false(fs_atime_due(FS_ATIME_RELATIME, &a, now));
	assert_true(fs_atime_due(FS_ATIME_STRICT, &a, now));
	assert_false(fs_atime_due(FS_ATIME_NONE, &a, now));
	/* Changed since (mtime, or ctime alone), or at the same instant. */
	a.mtime = (struct timespec){ now_s - 60, 0 };
	assert_true(fs_atime_due(FS_ATIME_RELATIME, &a, now));
	a.mtime = (struct timespec){ now_s - 7200, 0 };
	a.ctime = (struct timespec){ now_s - 3600, 1 };
	assert_true(fs_atime_due(FS_ATIME_RELATIME, &a, now));
	a.ctime = a.atime;
	assert_true(fs_atime_due(FS_ATIME_RELATIME, &a, now));
	assert_false(fs_atime_due(FS_ATIME_NONE, &a, now));
	/* Unchanged, but a day old; a second less is not. */
	a.mtime = a.ctime = (struct timespec){ now_s - 3 * day, 0 };
	a.atime = (struct timespec){ now_s - day, 0 };
	assert_true(fs_atime_due(FS_ATIME_RELATIME, &a, now));
	a.atime = (struct timespec){ now_s - day + 1, 0 };
	assert_false(fs_atime_due(FS_ATIME_RELATIME, &a, now));
	/* Strict: only an atime that is now already needs nothing. */
	a.atime = now;
	assert_false(fs_atime_due(FS_ATIME_STRICT, &a, now));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fs_inode_lookup_forget),
		cmocka_unit_test(test_fs_inode_open_holds),
		cmocka_unit_test(test_fs_inode_keep_cache),
		cmocka_unit_test(test_fs_inode_setid),
		cmocka_unit_test(test_fs_inode_many_and_teardown),
		cmocka_unit_test(test_fs_inode_allocations_fail),
		cmocka_unit_test(test_fs_atime_due),
	};
	return cmocka_run_group_tests_name("fs-inode", tests, NULL, NULL);
}
