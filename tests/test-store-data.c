/*
 * tests/test-store-data.c: file contents.  Reads and writes at any offset
 * against a reference buffer, holes never stored, dedup (one page twice
 * stored once), reference counts (also changed a run of pages at a
 * time), truncate, punch, clone by reference, SEEK_DATA/SEEK_HOLE,
 * splice extents, the digest's definition (a known
 * answer), pending writes visible before and durable after a commit,
 * files appended to in pieces that are not whole pages, page maps read a
 * row at a time and bounded in memory.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "test-store-util.h"

#define PG STORE_PAGE_SIZE

static int teardown(void **state)
{
	struct tsu_fixture *f = *state;
	struct store_fsck_result res;
	/* Every test leaves a store that checks clean. */
	assert_int_equal(store_fsck(f->st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(tsu_fixture_close(f), 0);
	return 0;
}

static struct store_stats stats(struct store *st)
{
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	return s;
}

static void check_equal(struct store *st, uint64_t ino, const uint8_t *ref, size_t size)
{
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.size, size);
	uint8_t *buf = malloc(size + 100);
	assert_int_equal(store_read(st, ino, buf, size + 100, 0), (ssize_t)size);
	assert_memory_equal(buf, ref, size);
	free(buf);
}

static void test_store_data_random_writes(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "f");
	enum { SIZE = 300 * 1024 };
	uint8_t *ref = calloc(1, SIZE), *chunk = malloc(SIZE);
	size_t size = 0;
	uint64_t x = 12345;
	for (int i = 0; i < 300; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t off = (x >> 20) % (SIZE - 1);
		size_t len = 1 + (x >> 40) % (SIZE - off < 20000 ? SIZE - off : 20000);
		if (i % 7 == 0)
			len = (len / PG + 1) * PG, off = off / PG * PG;	/* whole pages too */
		if (off + len > SIZE)
			len = SIZE - off;
		if (i % 5 == 0)
			memset(chunk, 0, len);	/* zero runs make holes */
		else
			tsu_fill(chunk, len, x);
		assert_int_equal(store_write(st, ino, chunk, len, off), (ssize_t)len);
		memcpy(ref + off, chunk, len);
		if (off + len > size)
			size = off + len;
		if (i % 50 == 0)
			check_equal(st, ino, ref, size);
		if (i == 150)
			assert_int_equal(store_sync(st, NULL), 0);
	}
	check_equal(st, ino, ref, size);
	/* Unaligned reads in the middle, and past the end. */
	uint8_t small[5000];
	assert_int_equal(store_read(st, ino, small, sizeof(small), 4000), sizeof(small));
	assert_memory_equal(small, ref + 4000, sizeof(small));
	assert_int_equal(store_read(st, ino, small, sizeof(small), size), 0);
	assert_int_equal(store_read(st, ino, small, sizeof(small), size - 3), 3);

	/* Survives close and reopen. */
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(f->path, 0, &f->st, NULL), 0);
	check_equal(f->st, ino, ref, size);
	free(ref);
	free(chunk);
}

/*
 * A commit looks only at the chunks that changed since the last one (the
 * range the writes touched), not at every chunk of a file whose map
 * reaches far.  Beside a page at the largest offset, chunks changed
 * going down (9, 2, 5) and then going up (0, 7) all reach the index.
 */
static void test_store_data_commit_changed_chunks(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "f");
	const uint64_t chunk = 128u * PG, last = STORE_MAX_FILE_SIZE - PG;	/* a page-map row: 128 pages */
	static const unsigned order[] = { 9, 2, 5, 0, 7 };
	uint8_t page[PG], got[PG];
	tsu_fill(page, PG, 1);
	assert_int_equal(store_write(st, ino, page, PG, last), PG);
	assert_int_equal(store_sync(st, NULL), 0);
	for (unsigned i = 0; i < 5; i++) {
		tsu_fill(page, PG, 10 + i);
		assert_int_equal(store_write(st, ino, page, PG, order[i] * chunk + i * PG), PG);
		if (i != 2 && i != 4)
			continue;
		/* Committed (by the close), then read from the index. */
		st = tsu_reopen(f);
		for (unsigned j = 0; j <= i; j++) {
			tsu_fill(page, PG, 10 + j);
			assert_int_equal(store_read(st, ino, got, PG, order[j] * chunk + j * PG), PG);
			assert_memory_equal(got, page, PG);
		}
	}
	tsu_fill(page, PG, 1);
	assert_int_equal(store_read(st, ino, got, PG, last), PG);
	assert_memory_equal(got, page, PG);
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.size, STORE_MAX_FILE_SIZE);
}

static void test_store_data_holes_not_stored(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "sparse");
	static uint8_t zero[64 * PG];
	assert_int_equal(store_write(st, ino, zero, sizeof(zero), 0), sizeof(zero));
	uint8_t page[PG];
	tsu_fill(page, PG, 1);
	assert_int_equal(store_write(st, ino, page, PG, 100 * PG), PG);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_stats s = stats(st);
	assert_int_equal(s.unique_pages, 1);
	assert_int_equal(s.logical_pages, 101);
	assert_int_equal(s.zero_pages, 100);
	assert_int_equal(s.pack_bytes, PG);
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.pages, 1);
	/* Overwriting data with zeros frees the page's reference. */
	memset(page, 0, PG);
	assert_int_equal(store_write(st, ino, page, PG, 100 * PG), PG);
	assert_int_equal(store_sync(st, NULL), 0);
	s = stats(st);
	assert_int_equal(s.unique_pages, 0);
	assert_int_equal(s.unreferenced_pages, 1);
}

static void test_store_data_dedup(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t a = tsu_file(st, "a"), b = tsu_file(st, "b");
	uint8_t page[PG], other[PG];
	tsu_fill(page, PG, 42);
	tsu_fill(other, PG, 43);
	/* The same page twice in one write, again in another file, once more
	 * after a commit: stored once. */
	uint8_t two[2 * PG];
	memcpy(two, page, PG);
	memcpy(two + PG, page, PG);
	assert_int_equal(store_write(st, a, two, sizeof(two), 0), sizeof(two));
	assert_int_equal(store_write(st, b, page, PG, 0), PG);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_write(st, b, page, PG, 5 * PG), PG);
	assert_int_equal(store_write(st, b, other, PG, 6 * PG), PG);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_stats s = stats(st);
	assert_int_equal(s.unique_pages, 2);
	assert_int_equal(s.referenced_pages, 5);
	assert_int_equal(s.pack_bytes, 2 * PG);
	assert_true(s.dedup_ratio > 2.49 && s.dedup_ratio < 2.51);

	struct store_file_info fi;
	assert_int_equal(store_file_info(st, b, &fi), 0);
	assert_int_equal(fi.pages, 3);
	assert_int_equal(fi.zero_pages, 4);
	assert_int_equal(fi.shared_pages, 2);	/* pages 0 and 5; page 6 is its own */

	/* Reference counts drop as references go. */
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "a", &gone), 0);
	assert_int_equal(store_inode_release(st, gone), 0);
	assert_int_equal(store_file_info(st, b, &fi), 0);
	assert_int_equal(fi.shared_pages, 2);	/* b holds the page twice */
	assert_int_equal(store_truncate(st, b, PG), 0);
	assert_int_equal(store_file_info(st, b, &fi), 0);
	assert_int_equal(fi.shared_pages, 0);
	assert_int_equal(fi.pages, 1);
	s = stats(st);
	assert_int_equal(s.unique_pages, 1);
	assert_int_equal(s.unreferenced_pages, 1);
}

/*
 * Inodes the kernel forgot (store_inode_forget) go later, many to a
 * transaction: the committer deletes the unlinked ones by itself, each
 * once even if told twice (a page they share with a file that stays
 * keeps that file's reference), and one still open stays until its last
 * release.  A linked one stays.
 */
static void test_store_data_forget(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	enum { N = 8 };
	uint8_t shared[PG], own[PG];
	tsu_fill(shared, PG, 50);
	uint64_t keep = tsu_file(st, "keep"), ino[N];
	assert_int_equal(store_write(st, keep, shared, PG, 0), PG);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = tsu_file(st, name);
		tsu_fill(own, PG, 60 + (uint64_t)i);
		assert_int_equal(store_write(st, ino[i], shared, PG, 0), PG);
		assert_int_equal(store_write(st, ino[i], own, PG, PG), PG);
	}
	uint64_t open_ino = tsu_file(st, "open");
	assert_int_equal(store_write(st, open_ino, shared, PG, 0), PG);
	assert_int_equal(store_file_open(st, open_ino), 0);
	struct store_stats s = stats(st);
	assert_int_equal(s.referenced_pages, 1 + 2 * N + 1);

	uint64_t gone;
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(store_unlink(st, STORE_ROOT_INO, name, &gone), 0);
		assert_int_equal(gone, ino[i]);
		assert_int_equal(store_inode_forget(st, ino[i]), 0);
	}
	assert_int_equal(store_inode_forget(st, ino[0]), 0);	/* told twice */
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "open", &gone), 0);
	assert_int_equal(store_inode_forget(st, open_ino), 0);
	assert_int_equal(store_inode_forget(st, keep), 0);	/* linked: stays */
	assert_int_equal(store_inode_forget(st, 999999), -ENOENT);

	/* The committer deletes them without being asked (no commit here). */
	struct store_attr a;
	for (int i = 0; i < N; i++) {
		int r, tries = 0;
		while ((r = store_getattr(st, ino[i], &a)) == 0 && tries++ < 1000)
			usleep(10000);
		assert_int_equal(r, -ENOENT);
	}
	assert_int_equal(store_getattr(st, keep, &a), 0);
	assert_int_equal(store_getattr(st, open_ino, &a), 0);
	assert_int_equal(a.nlink, 0);
	s = stats(st);
	assert_int_equal(s.referenced_pages, 1 + 1);	/* keep's and open's shared page */
	assert_int_equal(s.unreferenced_pages, N);
	struct store_file_info fi;
	assert_int_equal(store_file_info(st, keep, &fi), 0);
	assert_int_equal(fi.shared_pages, 1);	/* with open's, no more */
	check_equal(st, keep, shared, PG);

	/* The open one goes at its last release. */
	assert_int_equal(store_file_release(st, open_ino), 0);
	assert_int_equal(store_getattr(st, open_ino, &a), -ENOENT);
	s = stats(st);
	assert_int_equal(s.referenced_pages, 1);
}

/* Reference counts change a run of consecutive locations at a time: a
 * copy of pages stored in a row, a run that starts on a stored page and
 * goes on with pages new to the store, and the losses when files go. */
static void test_store_data_delta_runs(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	/* b's run of gains (one of a's pages, then M new ones) is long
	 * enough for the new pages' rows to be added many to a statement,
	 * with some left over. */
	enum { N = 40, M = 70 };
	uint64_t a = tsu_file(st, "a"), b = tsu_file(st, "b"), c = tsu_file(st, "c");
	uint8_t *da = malloc(N * PG), *db = malloc((1 + M) * PG);
	tsu_fill(da, N * PG, 1);
	assert_int_equal(store_write(st, a, da, N * PG, 0), N * PG);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_write(st, c, da, N * PG, 0), N * PG);
	assert_int_equal(store_sync(st, NULL), 0);
	/* b's new pages are put right after a's last page, its first, and
	 * its commit gains one reference on each. */
	memcpy(db, da + (N - 1) * PG, PG);
	tsu_fill(db + PG, M * PG, 2);
	assert_int_equal(store_write(st, b, db, (1 + M) * PG, 0), (1 + M) * PG);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_stats s = stats(st);
	assert_int_equal(s.unique_pages, N + M);
	assert_int_equal(s.referenced_pages, 2 * N + 1 + M);
	assert_int_equal(s.unreferenced_pages, 0);
	struct store_file_info fi;
	assert_int_equal(store_file_info(st, b, &fi), 0);
	assert_int_equal(fi.shared_pages, 1);
	check_equal(st, b, db, (1 + M) * PG);
	check_equal(st, c, da, N * PG);
	tsu_fsck_clean(st);	/* each row's hash and count as the maps say */

	uint64_t gone;
	const char *names[] = { "b", "c" };
	for (int i = 0; i < 2; i++) {
		assert_int_equal(store_unlink(st, STORE_ROOT_INO, names[i], &gone), 0);
		assert_int_equal(store_inode_release(st, gone), 0);
	}
	s = stats(st);
	assert_int_equal(s.referenced_pages, N);
	assert_int_equal(s.unreferenced_pages, M);
	assert_int_equal(store_file_info(st, a, &fi), 0);
	assert_int_equal(fi.shared_pages, 0);	/* each of a's pages back to one reference */
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, M);
	check_equal(st, a, da, N * PG);
	free(da);
	free(db);
}

static void test_store_data_truncate(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "t");
	static uint8_t data[10 * PG];
	tsu_fill(data, sizeof(data), 9);
	assert_int_equal(store_write(st, ino, data, sizeof(data), 0), sizeof(data));
	/* Shrink into a page: the rest of that page reads zero after
	 * growing again, and pages past the end are gone. */
	assert_int_equal(store_truncate(st, ino, 3 * PG + 100), 0);
	assert_int_equal(store_truncate(st, ino, 5 * PG), 0);
	static uint8_t ref[5 * PG];
	memcpy(ref, data, 3 * PG + 100);
	check_equal(st, ino, ref, sizeof(ref));
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.pages, 4);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(stats(st).unique_pages, 4);
	assert_int_equal(store_truncate(st, ino, 0), 0);
	check_equal(st, ino, ref, 0);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(stats(st).unique_pages, 0);
	struct store_attr d;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d", 0755, 0, 0, &d), 0);
	assert_int_equal(store_truncate(st, d.ino, 0), -EISDIR);
	assert_int_equal(store_write(st, d.ino, "x", 1, 0), -EISDIR);
	assert_int_equal(store_write(st, ino, "x", 1, 1ull << 52), -EFBIG);
	/* Up to the largest size and no further (store.h says why). */
	assert_int_equal(store_write(st, ino, "x", 1, STORE_MAX_FILE_SIZE), -EFBIG);
	assert_int_equal(store_write(st, ino, "xy", 2, STORE_MAX_FILE_SIZE - 1), -EFBIG);
	assert_int_equal(store_truncate(st, ino, STORE_MAX_FILE_SIZE + 1), -EFBIG);
	assert_int_equal(store_write(st, ino, "x", 1, STORE_MAX_FILE_SIZE - 1), 1);
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.size, STORE_MAX_FILE_SIZE);
	assert_int_equal(store_truncate(st, ino, STORE_MAX_FILE_SIZE), 0);
	assert_int_equal(store_truncate(st, ino, 0), 0);
}

static void test_store_data_punch(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "p");
	static uint8_t data[8 * PG];
	tsu_fill(data, sizeof(data), 11);
	assert_int_equal(store_write(st, ino, data, sizeof(data), 0), sizeof(data));
	/* From the middle of page 1 to the middle of page 5. */
	assert_int_equal(store_punch(st, ino, PG + 10, 4 * PG), 0);
	memset(data + PG + 10, 0, 4 * PG);
	check_equal(st, ino, data, sizeof(data));
	struct store_attr a;
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.pages, 5);	/* 0, 1, 5, 6, 7: pages 2-4 are holes */
	assert_int_equal(a.size, sizeof(data));
	/* Past the end does nothing to the size. */
	assert_int_equal(store_punch(st, ino, 7 * PG, 100 * PG), 0);
	assert_int_equal(store_getattr(st, ino, &a), 0);
	assert_int_equal(a.size, sizeof(data));
	assert_int_equal(a.pages, 4);
}

static void test_store_data_clone(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t src = tsu_file(st, "src"), dst = tsu_file(st, "dst");
	enum { N = 64 };
	static uint8_t data[N * PG];
	tsu_fill(data, sizeof(data), 21);
	assert_int_equal(store_write(st, src, data, sizeof(data), 0), sizeof(data));
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t packs_before = stats(st).pack_bytes;

	/* Aligned: by reference, no bytes stored. */
	assert_int_equal(store_clone(st, src, 0, dst, 0, sizeof(data)), sizeof(data));
	check_equal(st, dst, data, sizeof(data));
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_stats s = stats(st);
	assert_int_equal(s.pack_bytes, packs_before);
	assert_int_equal(s.unique_pages, N);
	assert_int_equal(s.referenced_pages, 2 * N);
	struct store_file_info fa, fb;
	assert_int_equal(store_file_info(st, src, &fa), 0);
	assert_int_equal(store_file_info(st, dst, &fb), 0);
	assert_memory_equal(fa.digest, fb.digest, STORE_HASH_SIZE);
	assert_int_equal(fb.shared_pages, N);

	/* Changing the clone leaves the source alone. */
	assert_int_equal(store_write(st, dst, "X", 1, 5 * PG), 1);
	uint8_t c;
	assert_int_equal(store_read(st, src, &c, 1, 5 * PG), 1);
	assert_int_equal(c, data[5 * PG]);

	/* Same page offset, unaligned edges: edges copied, middle shared. */
	uint64_t d2 = tsu_file(st, "d2");
	assert_int_equal(store_clone(st, src, 100, d2, 3 * PG + 100, 10 * PG), 10 * PG);
	static uint8_t ref[14 * PG];
	memcpy(ref + 3 * PG + 100, data + 100, 10 * PG);
	check_equal(st, d2, ref, 13 * PG + 100);
	/* Different page offsets: copied. */
	uint64_t d3 = tsu_file(st, "d3");
	assert_int_equal(store_clone(st, src, 7, d3, 0, 3 * PG), 3 * PG);
	check_equal(st, d3, data + 7, 3 * PG);
	/* Clipped at the end of the source; nothing past it. */
	assert_int_equal(store_clone(st, src, (N - 1) * PG, d3, 0, 10 * PG), PG);
	assert_int_equal(store_clone(st, src, N * PG, d3, 0, PG), 0);
	/* Overlap within one file is refused; disjoint is fine. */
	assert_int_equal(store_clone(st, src, 0, src, PG, 2 * PG), -EINVAL);
	assert_int_equal(store_clone(st, src, 0, src, N * PG, 2 * PG), 2 * PG);
	uint8_t back[2 * PG];
	assert_int_equal(store_read(st, src, back, sizeof(back), N * PG), sizeof(back));
	assert_memory_equal(back, data, sizeof(back));
}

static void test_store_data_seek(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "s");
	uint8_t page[PG];
	tsu_fill(page, PG, 5);
	/* data at pages 2, 3 and 300; size 301 pages + 10. */
	assert_int_equal(store_write(st, ino, page, PG, 2 * PG), PG);
	assert_int_equal(store_write(st, ino, page, PG, 3 * PG), PG);
	assert_int_equal(store_write(st, ino, page, PG, 300 * PG), PG);
	assert_int_equal(store_truncate(st, ino, 301 * PG + 10), 0);
	assert_int_equal(store_seek_data(st, ino, 0), 2 * PG);
	assert_int_equal(store_seek_data(st, ino, 2 * PG + 5), 2 * PG + 5);
	assert_int_equal(store_seek_data(st, ino, 4 * PG), 300 * PG);
	assert_int_equal(store_seek_data(st, ino, 301 * PG), -ENXIO);
	assert_int_equal(store_seek_hole(st, ino, 0), 0);
	assert_int_equal(store_seek_hole(st, ino, 2 * PG), 4 * PG);
	assert_int_equal(store_seek_hole(st, ino, 300 * PG + 1), 301 * PG);
	assert_int_equal(store_seek_hole(st, ino, 301 * PG + 1), 301 * PG + 1);
	assert_int_equal(store_seek_hole(st, ino, 301 * PG + 10), -ENXIO);
	/* A file ending in data: the end is the hole. */
	uint64_t full = tsu_file(st, "full");
	assert_int_equal(store_write(st, full, page, PG, 0), PG);
	assert_int_equal(store_seek_hole(st, full, 0), PG);
	/* Past the last page the map holds (here beyond its first row) there
	 * is no data: SEEK_DATA must not answer where a hole starts. */
	uint64_t tail = tsu_file(st, "tail");
	assert_int_equal(store_write(st, tail, page, PG, 0), PG);
	assert_int_equal(store_truncate(st, tail, 1000 * PG), 0);
	assert_int_equal(store_seek_data(st, tail, 0), 0);
	assert_int_equal(store_seek_data(st, tail, 1), 1);
	assert_int_equal(store_seek_data(st, tail, PG), -ENXIO);
	assert_int_equal(store_seek_data(st, tail, 500 * PG + 3), -ENXIO);
	assert_int_equal(store_seek_data(st, tail, 999 * PG), -ENXIO);
	assert_int_equal(store_seek_hole(st, tail, 500 * PG + 3), 500 * PG + 3);
	/* The same once committed and the map is read back. */
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_seek_data(st, tail, PG), -ENXIO);
	assert_int_equal(store_seek_data(st, tail, 500 * PG), -ENXIO);
}

/* A large write: its whole pages are hashed on two threads.  Pages of
 * every kind (zero, repeated, new), more of them than are hashed ahead at
 * once, at a page-aligned and at an unaligned offset. */
struct big_write {
	struct store *st;
	uint64_t ino;
	uint64_t seed;
	int failed;		/* line of the first failed check, 0 if none */
};

#define BIG_PAGES 600u
#define BIG_LEN (BIG_PAGES * PG + 100)
#define BIG_CHECK(b, cond)                   \
	do {                                 \
		if (!(cond) && !(b)->failed) \
			(b)->failed = __LINE__; \
	} while (0)

static void *big_write_run(void *arg)
{
	struct big_write *b = arg;
	uint8_t *buf = malloc(BIG_LEN), *back = malloc(BIG_LEN + 3 * PG);
	BIG_CHECK(b, buf && back);
	if (!buf || !back)
		goto out;
	unsigned stored = 0;
	for (unsigned i = 0; i < BIG_PAGES; i++) {
		uint8_t *p = buf + (size_t)i * PG;
		if (i % 7 == 3) {
			memset(p, 0, PG);
			continue;
		}
		if (i % 5 == 1 && i > 1)
			memcpy(p, buf, PG);	/* a repeat of page 0 */
		else
			tsu_fill(p, PG, b->seed + i);
		stored++;
	}
	tsu_fill(buf + (size_t)BIG_PAGES * PG, 100, b->seed + BIG_PAGES);
	/* Page-aligned, after three holes. */
	BIG_CHECK(b, store_write(b->st, b->ino, buf, BIG_LEN, 3 * PG) == (ssize_t)BIG_LEN);
	BIG_CHECK(b, store_read(b->st, b->ino, back, BIG_LEN + 3 * PG, 0) ==
			     (ssize_t)(BIG_LEN + 3 * PG));
	for (unsigned i = 0; i < 3 * PG; i++)
		BIG_CHECK(b, back[i] == 0);
	BIG_CHECK(b, memcmp(back + 3 * PG, buf, BIG_LEN) == 0);
	struct store_file_info fi;
	BIG_CHECK(b, store_file_info(b->st, b->ino, &fi) == 0);
	BIG_CHECK(b, fi.pages == stored + 1);
	BIG_CHECK(b, fi.zero_pages == 3 + (BIG_PAGES - stored));
	/* Unaligned: the whole pages inside are not aligned in buf. */
	BIG_CHECK(b, store_write(b->st, b->ino, buf, BIG_LEN, 5) == (ssize_t)BIG_LEN);
	BIG_CHECK(b, store_read(b->st, b->ino, back, BIG_LEN, 5) == (ssize_t)BIG_LEN);
	BIG_CHECK(b, memcmp(back, buf, BIG_LEN) == 0);
out:
	free(buf);
	free(back);
	return NULL;
}

static void test_store_data_big_writes(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	/* One writer alone, then two at once (one of them may find the
	 * hashing helper busy with the other's pages). */
	struct big_write one = { .st = st, .ino = tsu_file(st, "big"), .seed = 100 };
	big_write_run(&one);
	assert_int_equal(one.failed, 0);
	struct big_write two[2] = {
		{ .st = st, .ino = tsu_file(st, "big1"), .seed = 2000 },
		{ .st = st, .ino = tsu_file(st, "big2"), .seed = 3000 },
	};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, big_write_run, &two[0]), 0);
	big_write_run(&two[1]);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(two[0].failed, 0);
	assert_int_equal(two[1].failed, 0);
	assert_int_equal(store_sync(st, NULL), 0);
	uint8_t a[PG], b[PG];
	assert_int_equal(store_read(st, two[0].ino, a, PG, 10 * PG), PG);
	assert_int_equal(store_read(st, two[1].ino, b, PG, 10 * PG), PG);
	assert_memory_not_equal(a, b, PG);
	/* Every stored page is filed under its own hash. */
	struct store_fsck_result res;
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_true(res.pages_checked > BIG_PAGES);
}

static void test_store_data_map(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	uint64_t ino = tsu_file(st, "m");
	static uint8_t data[6 * PG];
	tsu_fill(data, sizeof(data), 31);
	memset(data + 2 * PG, 0, 2 * PG);	/* pages 2, 3: holes */
	assert_int_equal(store_write(st, ino, data, sizeof(data) - 50, 0), sizeof(data) - 50);
	struct store_extent ext[16];
	size_t covered = 0;
	/* From the middle of page 0 to past the end. */
	int n = store_map(st, ino, 100, 100 * PG, ext, 16, &covered);
	assert_true(n >= 3);
	assert_int_equal(covered, sizeof(data) - 50 - 100);
	/* Reading the extents gives the file's bytes. */
	uint8_t *buf = malloc(covered);
	size_t at = 0;
	for (int i = 0; i < n; i++) {
		if (ext[i].fd < 0)
			memset(buf + at, 0, ext[i].len);
		else
			assert_int_equal(pread(ext[i].fd, buf + at, ext[i].len, (off_t)ext[i].pos),
					 (ssize_t)ext[i].len);
		at += ext[i].len;
	}
	store_map_done(st);
	assert_int_equal(at, covered);
	assert_memory_equal(buf, data + 100, covered);
	/* The holes are one extent without an fd; the first two pages were
	 * written together, so they are one extent. */
	assert_true(ext[0].fd >= 0);
	assert_int_equal(ext[0].len, 2 * PG - 100);
	assert_int_equal(ext[1].fd, -1);
	assert_int_equal(ext[1].len, 2 * PG);
	free(buf);
	/* Room for only one extent: a prefix. */
	assert_int_equal(store_map(st, ino, 0, 100 * PG, ext, 1, &covered), 1);
	store_map_done(st);
	assert_int_equal(covered, 2 * PG);
}

static void test_store_data_digest(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	/* The definition in store.h, checked against a value computed
	 * independently: page 0 = bytes i*7+3, page 1 zeros, page 2 = ten
	 * 'x' then the end of file. */
	uint64_t ino = tsu_file(st, "d");
	uint8_t page[PG];
	for (unsigned i = 0; i < PG; i++)
		page[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(store_write(st, ino, page, PG, 0), PG);
	assert_int_equal(store_write(st, ino, "xxxxxxxxxx", 10, 2 * PG), 10);
	struct store_file_info fi;
	assert_int_equal(store_file_info(st, ino, &fi), 0);
	char hex[65];
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", fi.digest[i]);
	assert_string_equal(hex, "21204c23afc145215e239a7cb7e7869185bc8692b4e218d81d7139e57fc576ae");
	assert_int_equal(fi.size, 2 * PG + 10);
	assert_int_equal(fi.pages, 2);
	assert_int_equal(fi.zero_pages, 1);
	/* Same content reached another way: same digest. */
	uint64_t other = tsu_file(st, "e");
	assert_int_equal(store_write(st, other, "yyyyyyyyyyyyyyyyyyyy", 20, 2 * PG), 20);
	assert_int_equal(store_truncate(st, other, 2 * PG), 0);
	assert_int_equal(store_write(st, other, page, PG, 0), PG);
	assert_int_equal(store_write(st, other, "xxxxxxxxxx", 10, 2 * PG), 10);
	struct store_file_info fo;
	assert_int_equal(store_file_info(st, other, &fo), 0);
	assert_memory_equal(fo.digest, fi.digest, STORE_HASH_SIZE);
	/* Empty file: SHA-256 of eight zero bytes. */
	uint64_t empty = tsu_file(st, "empty");
	assert_int_equal(store_file_info(st, empty, &fo), 0);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", fo.digest[i]);
	assert_string_equal(hex, "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc");
}

static void test_store_data_big_commit(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	/* More pages than one automatic commit batch, written in 1 MiB
	 * pieces, then read back from a fresh open. */
	uint64_t ino = tsu_file(st, "big");
	enum { MB = 1 << 20, TOTAL = 80 * MB };
	uint8_t *buf = malloc(MB);
	for (uint64_t off = 0; off < TOTAL; off += MB) {
		tsu_fill(buf, MB, off);
		assert_int_equal(store_write(st, ino, buf, MB, off), MB);
	}
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(f->path, 0, &f->st, NULL), 0);
	st = f->st;
	uint8_t *back = malloc(MB);
	for (uint64_t off = 0; off < TOTAL; off += 8 * MB) {
		tsu_fill(buf, MB, off);
		assert_int_equal(store_read(st, ino, back, MB, off), MB);
		assert_memory_equal(back, buf, MB);
	}
	struct store_stats s = stats(st);
	assert_int_equal(s.unique_pages, TOTAL / PG);
	assert_int_equal(s.pack_bytes, TOTAL);
	free(buf);
	free(back);
}

/*
 * A file appended to in pieces that are not whole pages (tar writes
 * 10 KiB) stores each page once: its last, partial page is held until the
 * file grows past it, and whatever looks at the file (a read, a seek, a
 * clone, truncate, a commit) finds it stored first.
 */
static void test_store_data_unaligned_append(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	enum { SIZE = 1000 * 1000, PIECE = 10240, SMALL = 1000 };
	uint8_t *ref = malloc(SIZE), *back = malloc(SIZE);
	tsu_fill(ref, SIZE, 41);

	uint64_t a = tsu_file(st, "a");
	for (size_t off = 0; off < SIZE; off += PIECE) {
		size_t n = SIZE - off < PIECE ? SIZE - off : PIECE;
		assert_int_equal(store_write(st, a, ref + off, n, off), (ssize_t)n);
	}
	assert_int_equal(store_sync(st, NULL), 0);
	check_equal(st, a, ref, SIZE);
	struct store_stats s = stats(st);
	/* 245 pages, none stored twice: the packs hold nothing else. */
	assert_int_equal(s.unique_pages, (SIZE + PG - 1) / PG);
	assert_int_equal(s.pack_bytes, s.unique_pages * PG);

	/* Looked at between pieces, the file shows every byte written, and
	 * its held page counts in its size and stored pages at once. */
	uint64_t b = tsu_file(st, "b"), c = tsu_file(st, "c");
	struct store_attr at;
	assert_int_equal(store_write(st, b, ref, 10, 0), 10);
	assert_int_equal(store_getattr(st, b, &at), 0);
	assert_int_equal(at.size, 10);
	assert_int_equal(at.pages, 1);
	assert_int_equal(store_write(st, b, ref + 10, PG, 10), PG);
	assert_int_equal(store_getattr(st, b, &at), 0);
	assert_int_equal(at.pages, 2);
	assert_int_equal(store_truncate(st, b, 0), 0);
	size_t size = 0;
	for (unsigned i = 0; size + SMALL <= SIZE / 8; i++) {
		assert_int_equal(store_write(st, b, ref + size, SMALL, size), SMALL);
		size += SMALL;
		switch (i % 5) {
		case 0:
			check_equal(st, b, ref, size);
			break;
		case 1:
			assert_int_equal(store_seek_hole(st, b, 0), (int64_t)size);
			assert_int_equal(store_seek_data(st, b, size - 1), (int64_t)size - 1);
			break;
		case 2:
			assert_int_equal(store_clone(st, b, 0, c, 0, size), (ssize_t)size);
			check_equal(st, c, ref, size);
			break;
		case 3:
			/* Cut back by a byte and written again. */
			assert_int_equal(store_truncate(st, b, size - 1), 0);
			assert_int_equal(store_read(st, b, back, SIZE, 0), (ssize_t)size - 1);
			assert_int_equal(store_write(st, b, ref + size - 1, 1, size - 1), 1);
			break;
		default:
			break;	/* just written on */
		}
	}
	check_equal(st, b, ref, size);

	/* A commit stores the held page: what a process synced and left
	 * without closing the store is there. */
	assert_int_equal(store_close(st, NULL), 0);
	f->st = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *cst;
		if (store_open(f->path, 0, &cst, NULL))
			_exit(1);
		if (store_lookup(cst, STORE_ROOT_INO, "b", &at) ||
		    store_write(cst, at.ino, ref + size, 3 * SMALL, size) != 3 * SMALL ||
		    store_sync(cst, NULL))
			_exit(2);
		_exit(0);	/* without store_close */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(store_open(f->path, 0, &f->st, NULL), 0);
	st = f->st;
	check_equal(st, a, ref, SIZE);
	check_equal(st, b, ref, size + 3 * SMALL);
	free(ref);
	free(back);
}

/* The inode cache stays bounded however many files are visited, and a
 * commit leaves no inode listed as changed. */
static void test_store_data_cache_bounded(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	const unsigned n = STORE_CACHE_INODES + STORE_CACHE_INODES / 2;
	static uint8_t page[STORE_PAGE_SIZE];
	tsu_fill(page, sizeof(page), 5);
	for (unsigned i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%u", i);
		uint64_t ino = tsu_file(st, name);
		char c;
		/* Every file is visited; some are written (one tail held). */
		assert_int_equal(store_read(st, ino, &c, 1, 0), 0);
		if (i % 4096 == 0)
			assert_int_equal(store_write(st, ino, page, sizeof(page), 0), sizeof(page));
		if (i % 4096 == 1)
			assert_int_equal(store_write(st, ino, page, 100, 0), 100);
	}
	struct store_cache_info ci;
	store_cache_info(st, &ci);
	assert_true(ci.changed > 0);
	assert_true(ci.inodes <= STORE_CACHE_INODES + STORE_CACHE_INODES / 4);
	assert_int_equal(store_sync(st, NULL), 0);
	store_cache_info(st, &ci);
	assert_int_equal(ci.changed, 0);
	/* Written files read back after their inodes may have left the cache. */
	static uint8_t back[STORE_PAGE_SIZE];
	for (unsigned i = 0; i < n; i += 4096) {
		struct store_attr a;
		char name[32];
		snprintf(name, sizeof(name), "f%u", i + 1);
		assert_int_equal(store_lookup(st, STORE_ROOT_INO, name, &a), 0);
		assert_int_equal(store_read(st, a.ino, back, sizeof(back), 0), 100);
		assert_memory_equal(back, page, 100);
		snprintf(name, sizeof(name), "f%u", i);
		assert_int_equal(store_lookup(st, STORE_ROOT_INO, name, &a), 0);
		assert_int_equal(store_read(st, a.ino, back, sizeof(back), 0), sizeof(back));
		assert_memory_equal(back, page, sizeof(back));
	}
}

/* A file of MAP_CHUNKS page-map rows (512 KiB each) for the tests of
 * maps read a row at a time: data on every seventh page, and rows
 * MAP_HOLE0 to MAP_HOLE1 - 1 all holes (no row).  Its size ends inside
 * the last page. */
#define MAP_CHUNKS 40u
#define MAP_CHUNK (128u * PG)
#define MAP_HOLE0 10u
#define MAP_HOLE1 15u
#define MAP_SIZE (MAP_CHUNKS * MAP_CHUNK - 1000)

static uint8_t *map_file(struct store *st, const char *name, uint64_t *ino)
{
	uint8_t *ref = calloc(1, MAP_CHUNKS * MAP_CHUNK);
	for (size_t pg = 0; pg < MAP_CHUNKS * MAP_CHUNK / PG; pg += 7)
		if (pg * PG / MAP_CHUNK < MAP_HOLE0 || pg * PG / MAP_CHUNK >= MAP_HOLE1)
			tsu_fill(ref + pg * PG, pg * PG + PG <= MAP_SIZE ? PG : MAP_SIZE - pg * PG,
				 pg + 1);
	*ino = tsu_file(st, name);
	assert_int_equal(store_write(st, *ino, ref, MAP_SIZE, 0), MAP_SIZE);
	assert_int_equal(store_sync(st, NULL), 0);
	return ref;
}

static uint64_t cached_chunks(struct store *st)
{
	struct store_cache_info ci;
	store_cache_info(st, &ci);
	return ci.chunks;
}

static uint64_t map_reads(struct store *st)
{
	struct store_cache_info ci;
	store_cache_info(st, &ci);
	return ci.map_reads;
}

/* Opening a file reads none of its page map; a read reads the rows it
 * needs.  Holes have no rows: the query for one finds the next row, and
 * the holes up to it need no query again. */
static void test_store_data_map_read_lazily(void **state)
{
	struct tsu_fixture *f = *state;
	uint64_t ino;
	uint8_t *ref = map_file(f->st, "m", &ino);
	struct store *st = tsu_reopen(f);
	assert_int_equal(store_file_open(st, ino), 0);
	assert_int_equal(cached_chunks(st), 0);
	uint8_t page[PG];
	assert_int_equal(store_read(st, ino, page, PG, 20 * MAP_CHUNK + 7 * PG), PG);
	assert_memory_equal(page, ref + 20 * MAP_CHUNK + 7 * PG, PG);
	assert_int_equal(cached_chunks(st), 1);
	uint64_t q = map_reads(st);
	assert_int_equal(store_read(st, ino, page, PG, MAP_HOLE0 * MAP_CHUNK), PG);
	assert_memory_equal(page, ref + MAP_HOLE0 * MAP_CHUNK, PG);
	assert_int_equal(map_reads(st), q + 1);
	assert_int_equal(cached_chunks(st), 2);	/* row MAP_HOLE1 came along */
	for (unsigned c = MAP_HOLE0; c <= MAP_HOLE1; c++)
		assert_int_equal(store_read(st, ino, page, PG, c * MAP_CHUNK + 7 * PG), PG);
	assert_int_equal(map_reads(st), q + 1);
	assert_int_equal(store_seek_data(st, ino, MAP_HOLE0 * MAP_CHUNK + PG),
			 (int64_t)(((MAP_HOLE1 * MAP_CHUNK / PG + 6) / 7 * 7) * PG));
	assert_int_equal(map_reads(st), q + 1);
	check_equal(st, ino, ref, MAP_SIZE);
	assert_int_equal(cached_chunks(st), MAP_CHUNKS - (MAP_HOLE1 - MAP_HOLE0));
	assert_int_equal(store_file_release(st, ino), 0);
	free(ref);
}

/* Every call that reads or changes a page map does so right on a map
 * none of whose rows has been read: each check runs on a freshly opened
 * store. */
static void test_store_data_map_unread_calls(void **state)
{
	struct tsu_fixture *f = *state;
	uint64_t ino;
	uint8_t *ref = map_file(f->st, "m", &ino);
	struct store_file_info before, after;
	assert_int_equal(store_file_info(f->st, ino, &before), 0);

	struct store *st = tsu_reopen(f);
	assert_int_equal(store_file_info(st, ino, &after), 0);
	assert_memory_equal(after.digest, before.digest, STORE_HASH_SIZE);
	assert_int_equal(after.pages, before.pages);

	/* SEEK_DATA over the rows of holes, SEEK_HOLE inside data. */
	st = tsu_reopen(f);
	uint64_t first_after = ((MAP_HOLE1 * MAP_CHUNK / PG + 6) / 7 * 7) * PG;
	assert_int_equal(store_seek_data(st, ino, MAP_HOLE0 * MAP_CHUNK - PG), (int64_t)first_after);
	assert_int_equal(store_seek_hole(st, ino, 21 * PG), 22 * PG);
	st = tsu_reopen(f);
	assert_int_equal(store_seek_hole(st, ino, 21 * PG), 22 * PG);

	/* A write into the middle of a page (read, patched, stored). */
	st = tsu_reopen(f);
	memset(ref + 30 * MAP_CHUNK + 7 * PG + 100, 'w', 10);
	assert_int_equal(store_write(st, ino, ref + 30 * MAP_CHUNK + 7 * PG + 100, 10,
				     30 * MAP_CHUNK + 7 * PG + 100), 10);
	st = tsu_reopen(f);
	check_equal(st, ino, ref, MAP_SIZE);

	/* Punch across rows: the pages go, their neighbours stay. */
	st = tsu_reopen(f);
	assert_int_equal(store_punch(st, ino, 20 * MAP_CHUNK + 100, 3 * MAP_CHUNK), 0);
	memset(ref + 20 * MAP_CHUNK + 100, 0, 3 * MAP_CHUNK);
	st = tsu_reopen(f);
	check_equal(st, ino, ref, MAP_SIZE);

	/* Clone from an unread map, by reference. */
	st = tsu_reopen(f);
	uint64_t copy = tsu_file(st, "copy");
	assert_int_equal(store_clone(st, ino, 0, copy, 0, MAP_SIZE), MAP_SIZE);
	st = tsu_reopen(f);
	check_equal(st, copy, ref, MAP_SIZE);
	struct store_file_info fc;
	assert_int_equal(store_file_info(st, copy, &fc), 0);
	assert_int_equal(fc.shared_pages, fc.pages);

	/* Truncate down, then up again: nothing of the old rows comes
	 * back, and their pages lose their references. */
	st = tsu_reopen(f);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "copy", NULL), 0);
	uint64_t keep = 5 * MAP_CHUNK + 100;
	assert_int_equal(store_truncate(st, ino, keep), 0);
	assert_int_equal(store_truncate(st, ino, MAP_SIZE), 0);
	memset(ref + keep, 0, MAP_SIZE - keep);
	st = tsu_reopen(f);
	check_equal(st, ino, ref, MAP_SIZE);
	assert_int_equal(store_file_info(st, ino, &after), 0);
	uint64_t pages = 0;
	for (uint64_t pg = 0; pg * PG < keep; pg += 7)
		pages++;
	assert_int_equal(after.pages, pages);
	assert_int_equal(stats(st).referenced_pages, pages);
	free(ref);
}

/* SEEK_DATA across a sparse file of many GiB reads its rows, not its
 * chunks of holes: two rows 16 GiB apart, two queries. */
static void test_store_data_map_sparse_seek(void **state)
{
	struct tsu_fixture *f = *state;
	uint64_t ino = tsu_file(f->st, "sparse");
	uint8_t page[PG];
	tsu_fill(page, PG, 3);
	const uint64_t far = 16ull << 30;
	assert_int_equal(store_write(f->st, ino, page, PG, 0), PG);
	assert_int_equal(store_write(f->st, ino, page, PG, far), PG);
	assert_int_equal(store_sync(f->st, NULL), 0);
	struct store *st = tsu_reopen(f);
	uint64_t q = map_reads(st);
	assert_int_equal(store_seek_data(st, ino, PG), (int64_t)far);
	assert_int_equal(store_seek_hole(st, ino, 0), PG);
	assert_true(map_reads(st) - q <= 2);
	/* Truncating the far row away finds it the same way. */
	assert_int_equal(store_truncate(st, ino, 2 * PG), 0);
	assert_true(map_reads(st) - q <= 3);
	st = tsu_reopen(f);
	assert_int_equal(store_seek_data(st, ino, PG), -ENXIO);
	struct store_file_info fi;
	assert_int_equal(store_file_info(st, ino, &fi), 0);
	assert_int_equal(fi.pages, 1);

	/* Past a chunk punched to holes and not yet committed, with the
	 * chunks after it not read yet, the far data is still found. */
	assert_int_equal(store_write(st, ino, page, PG, 5 * 128 * PG), PG);
	assert_int_equal(store_write(st, ino, page, PG, far), PG);
	st = tsu_reopen(f);
	assert_int_equal(store_punch(st, ino, 5 * 128 * PG, PG), 0);
	assert_int_equal(store_seek_data(st, ino, PG), (int64_t)far);
	assert_int_equal(store_seek_hole(st, ino, far), (int64_t)(far + PG));
}

/* A file whose map is larger than the cache can be read through while
 * open without its whole map staying in memory. */
static void test_store_data_map_cache_bounded(void **state)
{
	struct tsu_fixture *f = *state;
	struct store *st = f->st;
	const unsigned n = STORE_CACHE_CHUNKS + STORE_CACHE_CHUNKS / 2;
	uint64_t ino = tsu_file(st, "big");
	/* One page per row, 64 different ones, committed now and then. */
	static uint8_t pages[64][PG];
	for (unsigned i = 0; i < 64; i++)
		tsu_fill(pages[i], PG, i + 100);
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(store_write(st, ino, pages[i % 64], PG, (uint64_t)i * MAP_CHUNK), PG);
		if (i % 4096 == 4095)
			assert_int_equal(store_sync(st, NULL), 0);
	}
	assert_int_equal(store_sync(st, NULL), 0);
	st = tsu_reopen(f);
	assert_int_equal(store_file_open(st, ino), 0);
	static uint8_t back[PG];
	uint64_t most = 0;
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(store_read(st, ino, back, PG, (uint64_t)i * MAP_CHUNK), PG);
		assert_memory_equal(back, pages[i % 64], PG);
		uint64_t c = cached_chunks(st);
		most = c > most ? c : most;
	}
	assert_true(most <= STORE_CACHE_CHUNKS + STORE_CACHE_CHUNKS / 4);
	/* A write after its rows were dropped from memory lands where it
	 * should and leaves the rest alone. */
	assert_int_equal(store_write(st, ino, pages[1], PG, 3 * MAP_CHUNK + PG), PG);
	assert_int_equal(store_file_release(st, ino), 0);
	st = tsu_reopen(f);
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(store_read(st, ino, back, PG, (uint64_t)i * MAP_CHUNK), PG);
		assert_memory_equal(back, pages[i % 64], PG);
	}
	assert_int_equal(store_read(st, ino, back, PG, 3 * MAP_CHUNK + PG), PG);
	assert_memory_equal(back, pages[1], PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_data_random_writes, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_commit_changed_chunks, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_holes_not_stored, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_dedup, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_delta_runs, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_forget, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_truncate, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_punch, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_clone, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_seek, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_big_writes, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_map, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_digest, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_big_commit, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_unaligned_append, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_cache_bounded, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_map_read_lazily, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_map_unread_calls, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_map_cache_bounded, tsu_setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_data_map_sparse_seek, tsu_setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
