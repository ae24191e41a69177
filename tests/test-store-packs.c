/*
 * tests/test-store-packs.c: a store built with 64 KiB packs (16 pages;
 * tests/meson.build sets PACK_MAX_BYTES), so that a few hundred pages
 * fill many.  Files spread over several packs read back, also after the
 * store is reopened; gc compacts them into packs no larger than the
 * limit, and everything reads back and checks clean afterwards.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "test-store-util.h"

#define PG STORE_PAGE_SIZE
#define FILES 10
#define FILE_PAGES 40
#define PACK_LIMIT 65536

struct packs {
	unsigned n, max_id;
	uint64_t total, largest_above;	/* largest of those with id > above */
};

static struct packs list_packs(const char *path, unsigned above)
{
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/packs", path);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct packs p = { 0 };
	for (struct dirent *de; (de = readdir(d));) {
		unsigned id;
		if (sscanf(de->d_name, "%8x.pack", &id) != 1)
			continue;
		char f[4500];
		snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
		struct stat sb;
		assert_int_equal(stat(f, &sb), 0);
		p.n++;
		p.total += (uint64_t)sb.st_size;
		if (id > p.max_id)
			p.max_id = id;
		if (id > above && (uint64_t)sb.st_size > p.largest_above)
			p.largest_above = (uint64_t)sb.st_size;
	}
	closedir(d);
	return p;
}

static void check_file(struct store *st, const char *name, uint64_t seed)
{
	static uint8_t want[FILE_PAGES * PG], got[FILE_PAGES * PG];
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, name, &a), 0);
	tsu_fill(want, sizeof(want), seed);
	assert_int_equal(store_read(st, a.ino, got, sizeof(got), 0), sizeof(got));
	assert_memory_equal(got, want, sizeof(got));
}

static void test_store_packs_many(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	/* Written in turns of 8 pages, so that each pack holds pieces of
	 * two files. */
	static uint8_t buf[FILE_PAGES * PG];
	uint64_t inos[FILES];
	for (int i = 0; i < FILES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		inos[i] = tsu_file(st, name);
	}
	for (int piece = 0; piece < FILE_PAGES / 8; piece++)
		for (int i = 0; i < FILES; i++) {
			tsu_fill(buf, sizeof(buf), (uint64_t)i + 1);
			size_t off = (size_t)piece * 8 * PG;
			assert_int_equal(store_write(st, inos[i], buf + off, 8 * PG, off), 8 * PG);
		}
	assert_int_equal(store_sync(st, NULL), 0);
	struct packs before = list_packs(path, 0);
	assert_true(before.n >= FILES * FILE_PAGES * PG / PACK_LIMIT / 2);
	assert_int_equal(before.total, (uint64_t)FILES * FILE_PAGES * PG);

	/* Every file reads back, from the open store and after reopening. */
	for (int i = 0; i < FILES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		check_file(st, name, (uint64_t)i + 1);
	}
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, "f7", 8);

	/* Half the files go; gc frees their pages and packs the rest into
	 * new packs of at most the limit. */
	for (int i = 1; i < FILES; i += 2) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		uint64_t gone;
		assert_int_equal(store_unlink(st, STORE_ROOT_INO, name, &gone), 0);
		assert_int_equal(store_inode_release(st, gone), 0);
	}
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, FILES / 2 * FILE_PAGES);
	struct packs after = list_packs(path, before.max_id);
	assert_int_equal(g.bytes_after, after.total);
	assert_true(after.max_id > before.max_id);	/* gc filled new packs */
	assert_true(after.largest_above <= PACK_LIMIT);
	assert_true(after.total < before.total);
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	for (int i = 0; i < FILES; i += 2) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		check_file(st, name, (uint64_t)i + 1);
	}
	/* New writes go on after the compacted packs. */
	uint64_t ino = tsu_file(st, "new");
	tsu_fill(buf, sizeof(buf), 99);
	assert_int_equal(store_write(st, ino, buf, sizeof(buf), 0), sizeof(buf));
	assert_int_equal(store_sync(st, NULL), 0);
	check_file(st, "new", 99);
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_packs_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
