/*
 * tests/test-store-admin.c: gc, fsck and stats.  gc frees the space of
 * deleted files and of data appended but never committed, while what
 * stays reads back unchanged (also through page maps cached before gc);
 * fsck finds a corrupted pack byte and a dangling page reference and names
 * the file's path and page index; progress is reported.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store_hash.h"
#include "test-store-util.h"

#define PG STORE_PAGE_SIZE

/*
 * fallocate as the store sees it (linked with -Wl,--wrap=fallocate64, the
 * name glibc gives it with 64-bit offsets): the real call, or the
 * EOPNOTSUPP of a filesystem that cannot punch holes.
 */
static bool punch_unsupported;
static unsigned fallocate_calls;

int __real_fallocate64(int fd, int mode, off_t off, off_t len);
int __wrap_fallocate64(int fd, int mode, off_t off, off_t len);
int __wrap_fallocate64(int fd, int mode, off_t off, off_t len)
{
	__atomic_add_fetch(&fallocate_calls, 1, __ATOMIC_RELAXED);
	if (__atomic_load_n(&punch_unsupported, __ATOMIC_RELAXED) && (mode & FALLOC_FL_PUNCH_HOLE)) {
		errno = EOPNOTSUPP;
		return -1;
	}
	return __real_fallocate64(fd, mode, off, len);
}

static uint64_t write_file(struct store *st, uint64_t dir, const char *name, int pages,
			   uint64_t seed)
{
	struct store_attr a;
	assert_int_equal(store_mknod(st, dir, name, S_IFREG | 0644, 0, 0, 0, &a), 0);
	uint8_t *buf = malloc((size_t)pages * PG);
	tsu_fill(buf, (size_t)pages * PG, seed);
	assert_int_equal(store_write(st, a.ino, buf, (size_t)pages * PG, 0), (ssize_t)pages * PG);
	free(buf);
	return a.ino;
}

static void check_file(struct store *st, uint64_t ino, int pages, uint64_t seed)
{
	uint8_t *want = malloc((size_t)pages * PG), *got = malloc((size_t)pages * PG);
	tsu_fill(want, (size_t)pages * PG, seed);
	assert_int_equal(store_read(st, ino, got, (size_t)pages * PG, 0), (ssize_t)pages * PG);
	assert_memory_equal(got, want, (size_t)pages * PG);
	free(want);
	free(got);
}

/* The single pack file of the store at path. */
static void pack_path(const char *path, char *out, size_t size)
{
	char dir[4100];
	snprintf(dir, sizeof(dir), "%.4000s/packs", path);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *de; (de = readdir(d));)
		if (strstr(de->d_name, ".pack")) {
			snprintf(out, size, "%s/%s", dir, de->d_name);
			n++;
		}
	closedir(d);
	assert_int_equal(n, 1);
}

/* The byte at off of file path, xored with mask in place. */
static void flip_byte(const char *path, off_t off, uint8_t mask)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t c;
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= mask;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static int progress_calls;

static void progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	(void)arg;
	assert_non_null(phase);
	assert_true(done <= total);
	progress_calls++;
}

static void test_store_admin_gc_reclaims(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t a = write_file(st, STORE_ROOT_INO, "a", 100, 1);
	uint64_t b = write_file(st, STORE_ROOT_INO, "b", 50, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_file_open(st, b), 0);	/* b's map stays cached */
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "a", &gone), 0);
	assert_int_equal(store_inode_release(st, a), 0);
	assert_int_equal(store_sync(st, NULL), 0);

	/* Junk appended to the pack, as a crash before a commit leaves. */
	char pack[4700];
	pack_path(path, pack, sizeof(pack));
	int fd = open(pack, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	static uint8_t junk[10 * PG];
	tsu_fill(junk, sizeof(junk), 99);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);

	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, 160 * PG);
	assert_int_equal(s.unreferenced_pages, 100);

	struct store_gc_result g;
	struct err e = { 0 };
	progress_calls = 0;
	assert_int_equal(store_gc(st, progress, NULL, &g, &e), 0);
	assert_int_equal(g.pages_freed, 100);
	assert_int_equal(g.bytes_before, 160 * PG);
	assert_int_equal(g.bytes_after, 50 * PG);
	assert_true(progress_calls > 0);
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, 50 * PG);
	assert_int_equal(s.unique_pages, 50);
	assert_int_equal(s.unreferenced_pages, 0);
	/* The freed pages left the prefix set too: a write must not find
	 * them there while their bytes are still on disk. */
	struct store_cache_info ci;
	store_cache_info(st, &ci);
	assert_int_equal(ci.known, 50);
	/* The space is really gone from the folder. */
	pack_path(path, pack, sizeof(pack));
	struct stat sb;
	assert_int_equal(stat(pack, &sb), 0);
	assert_int_equal(sb.st_size, 50 * PG);

	/* What stays reads back, through the cached map and after reopen;
	 * new writes after gc work and dedup against moved pages. */
	check_file(st, b, 50, 2);
	uint64_t c = write_file(st, STORE_ROOT_INO, "c", 50, 2);
	assert_int_equal(store_file_release(st, b), 0);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, b, 50, 2);
	check_file(st, c, 50, 2);
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 50);
	assert_int_equal(s.pack_bytes, 50 * PG);
	tsu_fsck_clean(st);
	/* gc with nothing to do changes nothing. */
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, 0);
	assert_int_equal(g.bytes_after, 50 * PG);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* gc of a store with no pages, new or after every file went, frees
 * everything there is to free. */
static void test_store_admin_gc_empty(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_gc_result g;
	struct err e = { 0 };
	assert_int_equal(store_gc(st, NULL, NULL, &g, &e), 0);
	assert_int_equal(g.pages_freed, 0);
	assert_int_equal(g.bytes_after, 0);

	uint64_t a = write_file(st, STORE_ROOT_INO, "a", 40, 1);
	uint64_t b = write_file(st, STORE_ROOT_INO, "b", 20, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "a", &gone), 0);
	assert_int_equal(store_inode_release(st, a), 0);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "b", &gone), 0);
	assert_int_equal(store_inode_release(st, b), 0);
	assert_int_equal(store_gc(st, NULL, NULL, &g, &e), 0);
	assert_int_equal(g.pages_freed, 60);
	assert_int_equal(g.bytes_before, 60 * PG);
	assert_int_equal(g.bytes_after, 0);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.pack_bytes, 0);
	assert_int_equal(s.unique_pages, 0);

	/* The store goes on taking pages, and checks clean. */
	uint64_t c = write_file(st, STORE_ROOT_INO, "c", 10, 3);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, c, 10, 3);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Pages of a file deleted before any commit referred to them get rows in
 * the index with no reference at the next commit, and gc frees them by
 * the index like any other dead page. */
static void test_store_admin_gc_frees_never_committed(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t tmp = write_file(st, STORE_ROOT_INO, "tmp", 20, 4);
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "tmp", &gone), 0);
	assert_int_equal(store_inode_release(st, tmp), 0);
	uint64_t keep = write_file(st, STORE_ROOT_INO, "keep", 5, 5);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 5);
	assert_int_equal(s.unreferenced_pages, 20);

	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, 20);
	assert_int_equal(g.bytes_after, 5 * PG);
	check_file(st, keep, 5, 5);
	/* Written again, the bytes are stored anew and read back. */
	uint64_t again = write_file(st, STORE_ROOT_INO, "again", 20, 4);
	assert_int_equal(store_sync(st, NULL), 0);
	check_file(st, again, 20, 4);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * Pages put but never committed, of a file deleted before any commit, stay
 * in the pending table, where later writes of the same bytes find them.
 * gc's commit has nothing to commit then, and its index lists none of
 * them: release must keep them all the same, or the pack holding them
 * (a third dead by the index, so rewritten) goes, and a write
 * deduplicated against them names a page that is no longer there.
 */
static void test_store_admin_gc_keeps_pending_pages(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t keep = write_file(st, STORE_ROOT_INO, "keep", 40, 5);
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t tmp = write_file(st, STORE_ROOT_INO, "tmp", 20, 4);
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "tmp", &gone), 0);
	assert_int_equal(store_inode_release(st, tmp), 0);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 40);	/* tmp's pages are in no commit */
	assert_int_equal(s.unreferenced_pages, 0);

	struct store_gc_result g;
	struct err e = { 0 };
	int r = store_gc(st, NULL, NULL, &g, &e);
	if (r)
		fail_msg("store_gc: %s", err_str(&e, r));
	assert_int_equal(g.pages_freed, 0);
	assert_int_equal(g.bytes_after, 60 * PG);
	check_file(st, keep, 40, 5);

	uint64_t again = write_file(st, STORE_ROOT_INO, "again", 20, 4);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 60);	/* deduplicated, not stored anew */
	check_file(st, again, 20, 4);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);

	/* And after a reopen, from the packs alone. */
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, again, 20, 4);
	check_file(st, keep, 40, 5);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Bytes pack file id of store path takes on disk, and its size. */
static uint64_t pack_on_disk(const char *path, unsigned id, uint64_t *size)
{
	char p[4700];
	snprintf(p, sizeof(p), "%s/packs/%08x.pack", path, id);
	struct stat sb;
	assert_int_equal(stat(p, &sb), 0);
	*size = (uint64_t)sb.st_size;
	return (uint64_t)sb.st_blocks * 512;
}

/* A new store with one pack of 100 pages: "keep" (80 pages of seed 1),
 * "b" (10 of seed 3), committed, and 10 pages of a file deleted since. */
static struct store *pack_a_tenth_dead(char **path, uint64_t *keep, uint64_t *b)
{
	struct store *st = tsu_new_store(path);
	*keep = write_file(st, STORE_ROOT_INO, "keep", 80, 1);
	write_file(st, STORE_ROOT_INO, "a", 10, 2);
	*b = write_file(st, STORE_ROOT_INO, "b", 10, 3);
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "a", &gone), 0);
	assert_int_equal(store_inode_release(st, gone), 0);
	return st;
}

/* Unlink name from the root, let its inode go, and gc: it frees freed
 * pages and leaves the packs taking after bytes. */
static void unlink_then_gc(struct store *st, const char *name, uint64_t freed, uint64_t after)
{
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, name, &gone), 0);
	assert_int_equal(store_inode_release(st, gone), 0);
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, freed);
	assert_int_equal(g.bytes_after, after);
}

/* A pack less than a quarter dead is not rewritten: its dead pages leave
 * the index and are punched out of the file, the live ones staying where
 * they are; once a quarter or more is dead, it is rewritten. */
static void test_store_admin_gc_spares_mostly_live_packs(void **state)
{
	(void)state;
	char *path;
	uint64_t keep, b;
	struct store *st = pack_a_tenth_dead(&path, &keep, &b);

	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, 10);
	assert_int_equal(g.bytes_before, 100 * PG);
	assert_int_equal(g.bytes_after, 90 * PG);	/* 10 % dead: punched out */
	uint64_t size;
	assert_int_equal(pack_on_disk(path, 1, &size), 90 * PG);
	assert_int_equal(size, 100 * PG);		/* not rewritten */
	check_file(st, keep, 80, 1);
	check_file(st, b, 10, 3);
	struct store_stats s;
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 90);
	assert_int_equal(s.unreferenced_pages, 0);
	assert_int_equal(s.pack_bytes, 90 * PG);
	tsu_fsck_clean(st);
	/* a's bytes are no longer a page of the store: writing them again
	 * stores them anew. */
	uint64_t again = write_file(st, STORE_ROOT_INO, "again", 10, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_stats(st, &s, NULL), 0);
	assert_int_equal(s.unique_pages, 100);
	tsu_fsck_clean(st);
	check_file(st, again, 10, 2);
	unlink_then_gc(st, "again", 10, 90 * PG);	/* 20 of 110 dead: punched */
	assert_int_equal(pack_on_disk(path, 1, &size), 90 * PG);
	assert_int_equal(size, 110 * PG);
	/* Punched packs are the same after a reopen, and so are their files. */
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, keep, 80, 1);
	check_file(st, b, 10, 3);
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.bytes_after, 90 * PG);

	/* b's pages too: 30 of 110 dead, and the pack is rewritten with
	 * only the live ones; then 20 of keep's: 20 of 80, a quarter. */
	unlink_then_gc(st, "b", 10, 80 * PG);
	check_file(st, keep, 80, 1);
	assert_int_equal(store_truncate(st, keep, 60 * PG), 0);
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, 20);
	assert_int_equal(g.bytes_after, 60 * PG);
	check_file(st, keep, 60, 1);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

#define FOUND_MAX 16	/* problems kept (all are counted) */
struct found {
	const char *only;	/* a path: keep only its problems */
	int n;
	char path[FOUND_MAX][256];
	int64_t page[FOUND_MAX];
	char what[FOUND_MAX][256];
};

static void report(void *arg, const struct store_fsck_problem *p)
{
	struct found *f = arg;
	if (f->only && strcmp(p->path ? p->path : "", f->only))
		return;
	if (f->n < FOUND_MAX) {
		snprintf(f->path[f->n], sizeof(f->path[0]), "%s", p->path ? p->path : "");
		f->page[f->n] = p->page;
		snprintf(f->what[f->n], sizeof(f->what[0]), "%s", p->what);
	}
	f->n++;
}

static bool has(const struct found *f, const char *path, int64_t page, const char *what)
{
	for (int i = 0; i < f->n && i < FOUND_MAX; i++)
		if (!strcmp(f->path[i], path) && f->page[i] == page && strstr(f->what[i], what))
			return true;
	return false;
}

/*
 * On a filesystem that cannot punch holes, gc still forgets dead pages
 * and the files stay intact, but the dead pages of a pack less than a
 * quarter dead keep their space (and gc stops trying); once a quarter is
 * dead, the pack is rewritten, which needs no hole.
 */
static void test_store_admin_gc_without_punch(void **state)
{
	(void)state;
	char *path;
	uint64_t keep, b, gone;
	struct store *st = pack_a_tenth_dead(&path, &keep, &b);

	__atomic_store_n(&punch_unsupported, true, __ATOMIC_RELAXED);
	fallocate_calls = 0;
	struct store_gc_result g;
	struct err e = { 0 };
	int r = store_gc(st, NULL, NULL, &g, &e);
	if (r)
		fail_msg("store_gc: %s", err_str(&e, r));
	assert_true(fallocate_calls >= 1);
	assert_int_equal(g.pages_freed, 10);
	assert_int_equal(g.bytes_after, 100 * PG);	/* 10 % dead, and it stays */
	uint64_t size;
	assert_int_equal(pack_on_disk(path, 1, &size), 100 * PG);
	assert_int_equal(size, 100 * PG);
	check_file(st, keep, 80, 1);
	check_file(st, b, 10, 3);
	tsu_fsck_clean(st);

	/* a's bytes are stored anew; gc does not try to punch again. */
	uint64_t again = write_file(st, STORE_ROOT_INO, "again", 10, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	check_file(st, again, 10, 2);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "again", &gone), 0);
	assert_int_equal(store_inode_release(st, gone), 0);
	unsigned calls = fallocate_calls;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, 10);
	assert_int_equal(g.bytes_after, 110 * PG);
	assert_int_equal(fallocate_calls, calls);

	/* b's pages too: 30 of 110 dead, and the pack is rewritten. */
	unlink_then_gc(st, "b", 10, 80 * PG);
	check_file(st, keep, 80, 1);
	tsu_fsck_clean(st);
	__atomic_store_n(&punch_unsupported, false, __ATOMIC_RELAXED);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, keep, 80, 1);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static void test_store_admin_fsck_corrupt_byte(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr d;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "snap", 0755, 0, 0, &d), 0);
	uint64_t ino = write_file(st, d.ino, "mem", 8, 5);
	write_file(st, STORE_ROOT_INO, "other", 8, 6);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_fsck_result res;
	struct found f = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &f, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(res.pages_checked, 16);
	/* Where page 2 of /snap/mem lives. */
	struct store_extent ext[2];
	assert_int_equal(store_map(st, ino, 2 * PG, PG, ext, 2, NULL), 1);
	uint64_t pos = ext[0].pos;
	store_map_done(st);
	assert_int_equal(store_close(st, NULL), 0);

	char pack[4700];
	pack_path(path, pack, sizeof(pack));
	flip_byte(pack, (off_t)pos + 1234, 0x01);

	/* A read-only open is enough to check. */
	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	progress_calls = 0;
	assert_int_equal(store_fsck(st, report, progress, &f, &res, NULL), 0);
	assert_int_equal(res.problems, 1);
	assert_int_equal(f.n, 1);
	assert_true(has(&f, "/snap/mem", 2, "do not match"));
	assert_true(progress_calls > 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Delete the index row of the page with the bytes of buf's page k. */
static void drop_page_row(sqlite3 *sq, const uint8_t *buf, int k)
{
	uint8_t hash[STORE_HASH_SIZE];
	struct store_hasher *h = store_hasher_new();
	assert_int_equal(store_hash(h, buf + (size_t)k * PG, PG, hash), 0);
	store_hasher_free(h);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(sq, "DELETE FROM page WHERE hash = ?", -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_blob(s, 1, hash, sizeof(hash), SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_changes(sq), 1);
}

/* The reference count index.db at path records for the page stored at
 * pack position pos, or -1 if it has no row there. */
static int64_t page_refs_at(const char *path, uint64_t pos)
{
	sqlite3 *sq = tsu_index_open(path);
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT refs FROM page WHERE (loc & %llu) = %llu",
		 (unsigned long long)((1ull << 36) - 1), (unsigned long long)(pos / PG));
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(sq, sql, -1, &s, NULL), SQLITE_OK);
	int64_t refs = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_finalize(s);
	sqlite3_close(sq);
	return refs;
}

/* Where page k of ino lives in its pack. */
static uint64_t pack_pos(struct store *st, uint64_t ino, int k)
{
	struct store_extent ext[2];
	assert_int_equal(store_map(st, ino, (uint64_t)k * PG, PG, ext, 2, NULL), 1);
	store_map_done(st);
	return ext[0].pos;
}

/*
 * The index loses pages' rows: a page whose bytes are intact where the
 * map names it is indexed again by the repair, one whose bytes are
 * damaged is a dangling reference; a row whose hash is damaged gets the
 * map's back.  With the dangling reference leaving the references
 * uncounted, the page indexed again is held by one more reference than
 * counted, so that no gc can free it meanwhile.
 */
static void test_store_admin_fsck_dangling(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = write_file(st, STORE_ROOT_INO, "f", 6, 8);
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t pos2 = pack_pos(st, ino, 2), pos3 = pack_pos(st, ino, 3);
	uint64_t pos4 = pack_pos(st, ino, 4);
	assert_int_equal(store_close(st, NULL), 0);

	/* Drop pages 3's and 4's index entries behind the store's back,
	 * and damage page 4's bytes. */
	uint8_t buf[6 * PG];
	tsu_fill(buf, sizeof(buf), 8);
	sqlite3 *sq = tsu_index_open(path);
	drop_page_row(sq, buf, 3);
	drop_page_row(sq, buf, 4);
	/* And make another page's count wrong (page 0: the lowest
	 * location, the pages having been put in order)... */
	assert_int_equal(sqlite3_exec(sq, "UPDATE page SET refs = 7 WHERE loc = (SELECT min(loc) FROM page)",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	/* ...and damage the hash the index records for page 5 (its bytes
	 * still prove the map's hash right). */
	assert_int_equal(sqlite3_exec(sq, "UPDATE page SET hash = zeroblob(32) WHERE loc = (SELECT max(loc) FROM page)",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	/* Page 2: both its hash in the index and its bytes damaged, so that
	 * nothing proves either. */
	char sql[160];
	snprintf(sql, sizeof(sql), "UPDATE page SET hash = zeroblob(32) WHERE (loc & %llu) = %llu",
		 (unsigned long long)((1ull << 36) - 1), (unsigned long long)(pos2 / PG));
	tsu_exec(sq, sql);
	assert_int_equal(sqlite3_changes(sq), 1);
	sqlite3_close(sq);
	char pack[4700];
	pack_path(path, pack, sizeof(pack));
	flip_byte(pack, (off_t)pos4 + 99, 0x10);
	flip_byte(pack, (off_t)pos2 + 7, 0x01);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found f = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &f, &res, NULL), 0);
	assert_int_equal(res.problems, 5);
	assert_true(has(&f, "/f", 2, "disagree on the hash"));
	assert_true(has(&f, "/f", 3, "intact (--repair indexes it again)"));
	assert_true(has(&f, "/f", 4, "dangling"));
	assert_true(has(&f, "", -1, "reference count 7, but 1"));
	assert_true(has(&f, "/f", 5, "the index's hash of the page"));
	memset(&f, 0, sizeof(f));
	assert_int_equal(store_fsck_repair(st, report, NULL, &f, &res, NULL), 0);
	assert_int_equal(res.pages_reindexed, 1);
	assert_int_equal(res.hashes_repaired, 1);
	assert_true(res.refs_left);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(page_refs_at(path, pos3), 2);
	assert_int_equal(page_refs_at(path, pos4), -1);
	tsu_store_remove(path);
}

/* A page whose index row alone is lost comes back whole: indexed again
 * with its references counted, the store clean and the file intact. */
static void test_store_admin_fsck_reindex(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t ino = write_file(st, STORE_ROOT_INO, "f", 6, 8);
	/* A second reference to page 2's bytes, from another file. */
	uint8_t buf[6 * PG];
	tsu_fill(buf, sizeof(buf), 8);
	struct store_attr g;
	assert_int_equal(store_mknod(st, STORE_ROOT_INO, "g", S_IFREG | 0644, 0, 0, 0, &g), 0);
	assert_int_equal(store_write(st, g.ino, buf + 2 * PG, PG, 0), PG);
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t pos2 = pack_pos(st, ino, 2);
	assert_int_equal(store_close(st, NULL), 0);
	sqlite3 *sq = tsu_index_open(path);
	drop_page_row(sq, buf, 2);
	sqlite3_close(sq);

	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	struct store_fsck_result res;
	struct found f = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &f, &res, NULL), 0);
	assert_int_equal(res.problems, 1);
	assert_true(has(&f, "/f", 2, "intact (--repair indexes it again)"));
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(page_refs_at(path, pos2), -1);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	assert_int_equal(store_fsck_repair(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.pages_reindexed, 1);
	assert_false(res.refs_left);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(page_refs_at(path, pos2), 2);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, ino, 6, 8);
	/* Deleting both files frees the page: its count was right. */
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "f", &gone), 0);
	assert_int_equal(store_inode_release(st, ino), 0);
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "g", &gone), 0);
	assert_int_equal(store_inode_release(st, g.ino), 0);
	assert_int_equal(store_sync(st, NULL), 0);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(page_refs_at(path, pos2), 0);
	tsu_store_remove(path);
}

#define SALVAGE_FILES 300

/* Zero page n (from 1) of the file at path, as a failing disk might. */
static void zero_db_page(const char *path, int64_t n)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	static const uint8_t zeros[4096];
	assert_int_equal(pwrite(fd, zeros, sizeof(zeros), (off_t)(n - 1) * 4096), 4096);
	close(fd);
}

/* Which of the SALVAGE_FILES files (i, content tsu_fill seed 100 + i) the
 * 3 pages at buf hold, or -1. */
static int salvage_file_of(const uint8_t *buf)
{
	uint8_t *want = malloc(3 * PG);
	int found = -1;
	for (int i = 0; i < SALVAGE_FILES && found < 0; i++) {
		tsu_fill(want, 3 * PG, 100 + (uint64_t)i);
		if (!memcmp(buf, want, 3 * PG))
			found = i;
	}
	free(want);
	return found;
}

/*
 * A leaf page of each of four tables of index.db zeroed, as a failing
 * disk might: SQLite then finds the index malformed.  salvage copies the
 * rows it can still read into a new index, keeps the old one, and fsck
 * --repair makes the rest consistent: a second fsck finds nothing.  Each
 * file still named holds its bytes or, if its page-map row was lost,
 * only zeros; files whose entry was lost are in lost+found with their
 * bytes; most keep both; new inode numbers stay above the old ones.
 */
static void test_store_admin_salvage(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr d;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d", 0755, 0, 0, &d), 0);
	uint64_t max_ino = 0;
	char name[32];
	for (int i = 0; i < SALVAGE_FILES; i++) {
		snprintf(name, sizeof(name), "f%03d", i);
		uint64_t ino = write_file(st, d.ino, name, 3, 100 + (uint64_t)i);
		max_ino = ino > max_ino ? ino : max_ino;
	}
	assert_int_equal(store_close(st, NULL), 0);

	sqlite3 *sq = tsu_index_open(path);
	tsu_exec(sq, "PRAGMA wal_checkpoint(TRUNCATE)");
	static const char *const tables[] = { "inode", "dentry", "chunk", "page" };
	int64_t pages[4];
	for (int i = 0; i < 4; i++) {
		char sql[160];
		snprintf(sql, sizeof(sql), "SELECT pageno FROM dbstat WHERE name = '%s' AND"
			 " pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 1", tables[i]);
		sqlite3_stmt *s;
		assert_int_equal(sqlite3_prepare_v2(sq, sql, -1, &s, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		pages[i] = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(sq);
	char db[4200];
	snprintf(db, sizeof(db), "%s/index.db", path);
	for (int i = 0; i < 4; i++)
		zero_db_page(db, pages[i]);

	/* fsck cannot count on such an index. */
	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	struct store_fsck_result res;
	int r = store_fsck(st, NULL, NULL, NULL, &res, NULL);
	assert_true(r < 0 || res.problems > 0);
	assert_int_equal(store_close(st, NULL), 0);

	struct store_salvage_result sr;
	assert_int_equal(store_salvage(path, NULL, NULL, &sr, NULL), 0);
	for (unsigned i = 0; i < STORE_SALVAGE_TABLES; i++) {
		bool hit = false;
		for (int k = 0; k < 4; k++)
			hit |= !strcmp(sr.tables[i].name, tables[k]);
		if (hit)
			assert_true(sr.tables[i].damaged > 0 && sr.tables[i].rows > 0);
		else if (strcmp(sr.tables[i].name, "xattr") && strcmp(sr.tables[i].name, "symlink"))
			assert_int_equal(sr.tables[i].damaged, 0);
	}
	char kept[4300];
	snprintf(kept, sizeof(kept), "%s.damaged", db);
	assert_int_equal(access(kept, F_OK), 0);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	assert_int_equal(store_fsck_repair(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_true(res.problems > 0);
	assert_false(res.refs_left);
	tsu_fsck_clean(st);

	uint8_t *buf = malloc(3 * PG);
	int intact = 0, zeroed = 0, lost_found = 0;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "d", &d), 0);
	for (int i = 0; i < SALVAGE_FILES; i++) {
		struct store_attr a;
		snprintf(name, sizeof(name), "f%03d", i);
		if (store_lookup(st, d.ino, name, &a) != 0)
			continue;
		ssize_t n = store_read(st, a.ino, buf, 3 * PG, 0);
		assert_int_equal(n, 3 * PG);
		static const uint8_t zero[3 * PG];
		if (salvage_file_of(buf) == i)
			intact++;
		else if (!memcmp(buf, zero, sizeof(zero)))
			zeroed++;
		else
			fail_msg("d/%s holds neither its bytes nor zeros", name);
	}
	struct store_attr lf;
	if (store_lookup(st, STORE_ROOT_INO, "lost+found", &lf) == 0) {
		for (uint64_t ino = 1; ino <= max_ino; ino++) {
			struct store_attr a;
			snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino);
			if (store_lookup(st, lf.ino, name, &a) != 0)
				continue;
			assert_int_equal(store_read(st, a.ino, buf, 3 * PG, 0), 3 * PG);
			static const uint8_t zero[3 * PG];
			if (salvage_file_of(buf) >= 0)
				lost_found++;
			else if (memcmp(buf, zero, sizeof(zero)))
				fail_msg("lost+found/%s holds neither a file's bytes nor zeros", name);
		}
	}
	free(buf);
	/* A leaf of each table holds at most a few dozen of the rows. */
	assert_true(intact >= SALVAGE_FILES * 6 / 10);
	assert_true(intact + zeroed + lost_found < SALVAGE_FILES);
	struct store_attr fresh;
	assert_int_equal(store_mknod(st, STORE_ROOT_INO, "new", S_IFREG | 0644, 0, 0, 0, &fresh), 0);
	assert_true(fresh.ino > max_ino);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* A salvage of a whole index keeps every row: the files, a symlink and
 * an xattr read back, fsck finds nothing, and inode numbers go on.  A
 * second salvage keeps its old index beside the first one's. */
static void test_store_admin_salvage_whole(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 5, 21);
	struct store_attr l;
	assert_int_equal(store_symlink(st, STORE_ROOT_INO, "l", "f", 0, 0, &l), 0);
	assert_int_equal(store_xattr_set(st, f, "user.k", "v", 1, 0), 0);
	assert_int_equal(store_close(st, NULL), 0);

	struct store_salvage_result sr;
	for (int round = 1; round <= 2; round++) {
		assert_int_equal(store_salvage(path, NULL, NULL, &sr, NULL), 0);
		assert_string_equal(sr.kept, round == 1 ? "index.db.damaged" : "index.db.damaged.2");
		uint64_t rows = 0;
		for (unsigned i = 0; i < STORE_SALVAGE_TABLES; i++) {
			assert_int_equal(sr.tables[i].damaged, 0);
			rows += sr.tables[i].rows;
		}
		/* inodes 3, entries 2, symlink 1, xattr 1, chunk 1, pages 5,
		 * meta 2; and the inode and entry of the file made after
		 * the first round */
		assert_int_equal(rows, round == 1 ? 15 : 17);
		assert_int_equal(store_open(path, 0, &st, NULL), 0);
		tsu_fsck_clean(st);
		check_file(st, f, 5, 21);
		char target[16];
		assert_int_equal(store_readlink(st, l.ino, target, sizeof(target)), 1);
		assert_memory_equal(target, "f", 1);
		char v[4];
		assert_int_equal(store_xattr_get(st, f, "user.k", v, sizeof(v)), 1);
		struct store_attr n;
		snprintf(target, sizeof(target), "n%d", round);
		assert_int_equal(store_mknod(st, STORE_ROOT_INO, target, S_IFREG | 0644, 0, 0, 0, &n), 0);
		assert_true(n.ino > l.ino && n.ino > f);
		assert_int_equal(store_close(st, NULL), 0);
	}
	char kept[4300];
	snprintf(kept, sizeof(kept), "%s/index.db.damaged", path);
	assert_int_equal(access(kept, F_OK), 0);
	tsu_store_remove(path);
}

/* salvage refuses a store that is open (its lock is taken), and one
 * whose index.db SQLite cannot read at all, which it leaves as it was. */
static void test_store_admin_salvage_refused(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_file(st, STORE_ROOT_INO, "f", 2, 3);
	struct store_salvage_result sr;
	struct err e = { 0 };
	assert_int_equal(store_salvage(path, NULL, NULL, &sr, &e), -EBUSY);
	assert_non_null(strstr(e.msg, "is in use"));
	assert_int_equal(store_close(st, NULL), 0);

	char db[4200], other[4300];
	snprintf(db, sizeof(db), "%s/index.db", path);
	zero_db_page(db, 1);
	struct stat before, after;
	assert_int_equal(stat(db, &before), 0);
	assert_int_equal(store_salvage(path, NULL, NULL, &sr, &e), -EUCLEAN);
	assert_non_null(strstr(e.msg, "index.db cannot be read at all"));
	assert_int_equal(stat(db, &after), 0);
	assert_int_equal(after.st_ino, before.st_ino);
	assert_int_equal(after.st_size, before.st_size);
	snprintf(other, sizeof(other), "%s.salvage", db);
	assert_int_equal(access(other, F_OK), -1);
	snprintf(other, sizeof(other), "%s.damaged", db);
	assert_int_equal(access(other, F_OK), -1);
	tsu_store_remove(path);
}

/* Is there a problem whose text holds what, whatever its path? */
static bool has_what(const struct found *f, const char *what)
{
	for (int i = 0; i < f->n && i < FOUND_MAX; i++)
		if (strstr(f->what[i], what))
			return true;
	return false;
}

/*
 * Damage to the tree that fsck names: a size no file can have, an entry in
 * a file, and a directory cut off from the root by an entry in itself
 * (which also leaves its parent column disagreeing with the entry, and
 * the link counts of its old parent and of itself wrong).
 */
static void test_store_admin_fsck_tree_damage(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr d1, d2, f, g;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d1", 0755, 0, 0, &d1), 0);
	assert_int_equal(store_mkdir(st, d1.ino, "d2", 0755, 0, 0, &d2), 0);
	assert_int_equal(store_mknod(st, STORE_ROOT_INO, "f", S_IFREG | 0644, 0, 0, 0, &f), 0);
	assert_int_equal(store_mknod(st, STORE_ROOT_INO, "g", S_IFREG | 0644, 0, 0, 0, &g), 0);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);

	char sql[512];
	sqlite3 *sq = tsu_index_open(path);
	snprintf(sql, sizeof(sql),
		 "UPDATE inode SET size = -5 WHERE ino = %llu;"
		 "UPDATE dentry SET parent = %llu WHERE ino = %llu;"
		 "UPDATE dentry SET parent = %llu WHERE ino = %llu;",
		 (unsigned long long)f.ino, (unsigned long long)f.ino, (unsigned long long)g.ino,
		 (unsigned long long)d2.ino, (unsigned long long)d2.ino);
	assert_int_equal(sqlite3_exec(sq, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(sq);

	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	char want[128];
	assert_true(has(&fd, "/f", -1, "size -5 is not a file size"));
	snprintf(want, sizeof(want), "its entry \"g\" is in inode %llu, not a directory",
		 (unsigned long long)f.ino);
	assert_true(has_what(&fd, want));
	assert_true(has_what(&fd, "directory not reachable from the root"));
	snprintf(want, sizeof(want), "directory records parent %llu, its entry is in %llu",
		 (unsigned long long)d1.ino, (unsigned long long)d2.ino);
	assert_true(has_what(&fd, want));
	assert_true(has(&fd, "/d1", -1, "directory link count 3, expected 2"));
	assert_true(has_what(&fd, "directory link count 2, expected 3"));	/* d2 in d2 */
	assert_int_equal(res.problems, 6);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * Damage only SQLite or the link counts show: an inode counted unlinked
 * that an entry still names is reported and kept (a mount reclaimed it as
 * an orphan), a file whose page map rows are gone is named, and an index
 * out of step with its table (page_dead holding live pages, which gc
 * would free) is SQLite's integrity check's to find.
 */
static void test_store_admin_fsck_index_damage(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 2, 11);
	uint64_t h = write_file(st, STORE_ROOT_INO, "h", 2, 12);
	assert_int_equal(store_close(st, NULL), 0);

	char sql[512];
	sqlite3 *sq = tsu_index_open(path);
	snprintf(sql, sizeof(sql), "UPDATE inode SET nlink = 0 WHERE ino = %llu;"
		 "DELETE FROM chunk WHERE ino = %llu;",
		 (unsigned long long)f, (unsigned long long)h);
	assert_int_equal(sqlite3_exec(sq, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(sq);

	/* A writable open reclaims orphans: f is not one. */
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, f, 2, 11);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(has(&fd, "/f", -1, "link count 0, but 1 names"));
	assert_true(has(&fd, "/h", -1, "inode records 2 stored pages, its map has 0"));
	assert_int_equal(store_close(st, NULL), 0);

	/* page_dead rebuilt over the live pages, its schema text put back. */
	sq = tsu_index_open(path);
	assert_int_equal(sqlite3_exec(sq,
				      "DROP INDEX page_dead;"
				      "CREATE INDEX page_dead ON page(loc) WHERE refs = 1;"
				      "PRAGMA writable_schema = ON;"
				      "UPDATE sqlite_schema SET sql = 'CREATE INDEX page_dead ON page(loc)"
				      " WHERE refs = 0' WHERE name = 'page_dead';"
				      "PRAGMA writable_schema = OFF;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(sq);
	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	memset(&fd, 0, sizeof(fd));
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	bool named = false;
	for (int i = 0; i < fd.n && i < 8; i++)
		named |= !strncmp(fd.what[i], "index.db: ", 10) && strstr(fd.what[i], "page_dead");
	assert_true(named);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * Damage to the page index that fsck names: an entry whose hash is not 32
 * bytes, a negative reference count, a page no file uses whose bytes are
 * not its hash's (gc would only drop it, but the pack is damaged), and a
 * file whose size ends before its last stored page.
 */
static void test_store_admin_fsck_page_damage(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 3, 41);
	write_file(st, STORE_ROOT_INO, "g", 2, 42);
	uint64_t u = write_file(st, STORE_ROOT_INO, "u", 2, 43);
	assert_int_equal(store_sync(st, NULL), 0);
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "u", &gone), 0);
	assert_int_equal(store_inode_release(st, u), 0);
	assert_int_equal(store_close(st, NULL), 0);

	/* Pages in the order written: f's 3, g's 2, u's 2 (now unused). */
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "UPDATE page SET hash = x'0102' WHERE loc = (SELECT loc FROM page ORDER BY loc"
		 " LIMIT 1 OFFSET 3);"
		 "UPDATE page SET refs = -1 WHERE loc = (SELECT loc FROM page ORDER BY loc"
		 " LIMIT 1 OFFSET 4);"
		 "UPDATE page SET hash = randomblob(32) WHERE loc = (SELECT loc FROM page"
		 " ORDER BY loc LIMIT 1 OFFSET 5);"
		 "UPDATE inode SET size = %d WHERE ino = %llu;",
		 PG + 10, (unsigned long long)f);
	tsu_index_exec(path, sql);

	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(has_what(&fd, "page index entry with a 2-byte hash"));
	assert_true(has_what(&fd, "page has a negative reference count -1"));
	bool unused_bad = false;
	for (int i = 0; i < fd.n && i < FOUND_MAX; i++)
		unused_bad |= strstr(fd.what[i], "unreferenced page at ") &&
			      strstr(fd.what[i], ": its bytes do not match its hash");
	assert_true(unused_bad);
	assert_true(has(&fd, "/f", 2, "page beyond the end of the file (size 4106)"));
	assert_true(res.problems >= 4);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Inode ino is named #INO in the directory lf. */
static void in_lost_found(struct store *st, uint64_t lf, uint64_t ino)
{
	char name[32];
	struct store_attr a;
	snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino);
	assert_int_equal(store_lookup(st, lf, name, &a), 0);
	assert_int_equal(a.ino, ino);
}

/*
 * fsck --repair makes the inodes agree with the directory entries: an
 * entry naming a missing inode goes; what no path reaches for want of a
 * directory (a file with a link count but no name, the contents of a
 * directory whose inode is gone) gets a name #INODE in /lost+found, made
 * for it; the link counts of named files (0 included) and of
 * directories, and a directory's recorded parent, are set right.  Damage
 * SQLite finds in index.db stops these repairs.
 */
static void test_store_admin_repair_tree(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr d1, d2, d3, d4, a;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d1", 0755, 0, 0, &d1), 0);
	assert_int_equal(store_mkdir(st, d1.ino, "d2", 0755, 0, 0, &d2), 0);
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d3", 0755, 0, 0, &d3), 0);
	assert_int_equal(store_mkdir(st, d3.ino, "d4", 0755, 0, 0, &d4), 0);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 2, 31);
	uint64_t g = write_file(st, d2.ino, "g", 3, 32);
	assert_int_equal(store_link(st, g, STORE_ROOT_INO, "g2", &a), 0);
	uint64_t u = write_file(st, STORE_ROOT_INO, "u", 2, 33);
	uint64_t h = write_file(st, d3.ino, "h", 2, 34);
	assert_int_equal(store_close(st, NULL), 0);

	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO dentry(parent, name, ino) VALUES (%u, 'ghost', 99999);"
		 "UPDATE inode SET nlink = 5 WHERE ino = %llu;"
		 "UPDATE inode SET nlink = 0 WHERE ino = %llu;"
		 "UPDATE inode SET nlink = 7 WHERE ino = %llu;"
		 "UPDATE inode SET parent = %u WHERE ino = %llu;"
		 "DELETE FROM dentry WHERE ino = %llu;"
		 "DELETE FROM inode WHERE ino = %llu;",
		 STORE_ROOT_INO, (unsigned long long)f, (unsigned long long)g,
		 (unsigned long long)d1.ino, STORE_ROOT_INO, (unsigned long long)d2.ino,
		 (unsigned long long)u, (unsigned long long)d3.ino);
	tsu_index_exec(path, sql);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(has_what(&fd, "entry \"ghost\" names missing inode 99999"));
	assert_true(has(&fd, "/f", -1, "link count 5, but 1 names"));
	assert_true(has_what(&fd, "link count 0, but 2 names"));
	assert_true(has(&fd, "/d1", -1, "directory link count 7, expected 3"));
	assert_true(has(&fd, "/d1/d2", -1, "directory records parent 1, its entry is in"));
	assert_true(has_what(&fd, "link count 1, but 0 names"));
	assert_true(res.problems > 6);	/* and what d3's loss left */
	assert_int_equal(res.names_removed, 2);	/* ghost, d3 */
	assert_int_equal(res.lost_found, 3);	/* u, h, d4 */
	assert_int_equal(res.links_repaired, 4);	/* f, g, d1, lost+found */
	assert_int_equal(res.parents_repaired, 2);	/* d2, d4 */
	assert_int_equal(res.refs_repaired, 0);
	assert_false(res.refs_left);
	tsu_fsck_clean(st);

	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "ghost", &a), -ENOENT);
	assert_int_equal(store_getattr(st, f, &a), 0);
	assert_int_equal(a.nlink, 1);
	assert_int_equal(store_getattr(st, d1.ino, &a), 0);
	assert_int_equal(a.nlink, 3);
	struct store_attr lf;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "lost+found", &lf), 0);
	assert_int_equal(lf.mode, S_IFDIR | 0700);
	assert_int_equal(lf.nlink, 3);
	in_lost_found(st, lf.ino, u);
	check_file(st, u, 2, 33);
	in_lost_found(st, lf.ino, h);
	check_file(st, h, 2, 34);
	in_lost_found(st, lf.ino, d4.ino);
	check_file(st, f, 2, 31);
	assert_int_equal(store_close(st, NULL), 0);

	/* g, counted unlinked before, has its two names counted, and its
	 * pages, after another open (which reclaims unlinked files). */
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "g2", &a), 0);
	assert_int_equal(a.ino, g);
	assert_int_equal(a.nlink, 2);
	check_file(st, g, 3, 32);
	assert_int_equal(store_close(st, NULL), 0);

	/* With index.db damaged as SQLite sees it, the tree is left alone. */
	snprintf(sql, sizeof(sql),
		 "UPDATE inode SET nlink = 9 WHERE ino = %llu;"
		 "DELETE FROM dentry WHERE ino = %llu;"
		 "DROP INDEX dentry_ino;"
		 "CREATE INDEX dentry_ino ON dentry(parent);"
		 "PRAGMA writable_schema = ON;"
		 "UPDATE sqlite_schema SET sql = 'CREATE INDEX dentry_ino ON dentry(ino)'"
		 " WHERE name = 'dentry_ino';"
		 "PRAGMA writable_schema = OFF;",
		 (unsigned long long)f, (unsigned long long)h);
	tsu_index_exec(path, sql);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	memset(&fd, 0, sizeof(fd));
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(res.refs_left);
	assert_int_equal(res.links_repaired, 0);
	assert_int_equal(res.names_removed + res.lost_found + res.parents_repaired, 0);
	assert_int_equal(store_getattr(st, f, &a), 0);
	assert_int_equal(a.nlink, 9);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * fsck --repair sets a file's recorded page count to what its map holds
 * (which also lets it count references: the pages of a map's lost rows
 * get their counts lowered), makes a file again for a page map whose
 * inode is gone (kept under its name if an entry still names it, else
 * named in /lost+found), and gives directories cut off from the tree (a
 * cycle, opened at its lowest-numbered directory, or a directory without
 * an entry) a name in /lost+found, with what hangs below them.
 */
static void test_store_admin_repair_maps_and_cycles(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr low, a, b, c, e, e2, e3, x;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "low", 0755, 0, 0, &low), 0);
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "a", 0755, 0, 0, &a), 0);
	assert_int_equal(store_mkdir(st, a.ino, "b", 0755, 0, 0, &b), 0);
	assert_int_equal(store_mkdir(st, b.ino, "c", 0755, 0, 0, &c), 0);
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "e", 0755, 0, 0, &e), 0);
	assert_int_equal(store_mkdir(st, e.ino, "e2", 0755, 0, 0, &e2), 0);
	assert_int_equal(store_mkdir(st, e2.ino, "e3", 0755, 0, 0, &e3), 0);
	uint64_t in = write_file(st, b.ino, "in", 1, 40);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 3, 41);
	uint64_t h = write_file(st, STORE_ROOT_INO, "h", 2, 42);
	uint64_t m1 = write_file(st, STORE_ROOT_INO, "m1", 3, 43);
	uint64_t m2 = write_file(st, STORE_ROOT_INO, "m2", 2, 44);
	assert_int_equal(store_close(st, NULL), 0);

	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "UPDATE inode SET pages = 7 WHERE ino = %llu;"
		 "DELETE FROM chunk WHERE ino = %llu;"
		 "DELETE FROM inode WHERE ino IN (%llu, %llu);"
		 "DELETE FROM dentry WHERE ino IN (%llu, %llu);"
		 "UPDATE dentry SET parent = %llu WHERE ino = %llu;"
		 "UPDATE dentry SET parent = %llu WHERE ino = %llu;",
		 (unsigned long long)f, (unsigned long long)h, (unsigned long long)m1,
		 (unsigned long long)m2, (unsigned long long)m2, (unsigned long long)e.ino,
		 (unsigned long long)c.ino, (unsigned long long)a.ino, (unsigned long long)b.ino,
		 (unsigned long long)low.ino);
	tsu_index_exec(path, sql);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	char want[128];
	assert_true(has(&fd, "/f", -1, "inode records 7 stored pages, its map has 3"));
	assert_true(has(&fd, "/h", -1, "inode records 2 stored pages, its map has 0"));
	snprintf(want, sizeof(want), "page map of missing inode %llu (3 stored pages)",
		 (unsigned long long)m1);
	assert_true(has_what(&fd, want));
	assert_true(has_what(&fd, "directory not reachable from the root"));
	assert_int_equal(res.pages_repaired, 2);	/* f, h */
	assert_int_equal(res.files_rebuilt, 2);		/* m1, m2 */
	assert_int_equal(res.refs_repaired, 2);		/* h's pages */
	assert_false(res.refs_left);
	assert_int_equal(res.lost_found, 3);		/* m2, a, e */
	assert_int_equal(res.links_repaired, 3);	/* the root, lost+found, b */
	assert_int_equal(res.parents_repaired, 3);	/* low, a, e */
	tsu_fsck_clean(st);

	assert_int_equal(store_getattr(st, f, &x), 0);
	assert_int_equal(x.pages, 3);
	check_file(st, f, 3, 41);
	assert_int_equal(store_getattr(st, h, &x), 0);
	assert_int_equal(x.pages, 0);
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "m1", &x), 0);
	assert_int_equal(x.ino, m1);
	assert_int_equal(x.mode, S_IFREG | 0600);
	assert_int_equal(x.nlink, 1);
	assert_int_equal(x.size, 3 * PG);
	assert_int_equal(x.pages, 3);
	check_file(st, m1, 3, 43);
	struct store_attr lf;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "lost+found", &lf), 0);
	assert_int_equal(lf.nlink, 4);
	in_lost_found(st, lf.ino, m2);
	check_file(st, m2, 2, 44);
	/* The cycle a -> b -> c -> a opens at a, its lowest directory;
	 * low, lower still, stays in b, where it now hangs. */
	in_lost_found(st, lf.ino, a.ino);
	assert_int_equal(store_lookup(st, a.ino, "b", &x), 0);
	assert_int_equal(store_lookup(st, b.ino, "c", &x), 0);
	assert_int_equal(store_lookup(st, c.ino, "a", &x), -ENOENT);
	assert_int_equal(store_lookup(st, b.ino, "low", &x), 0);
	assert_int_equal(x.ino, low.ino);
	assert_int_equal(store_lookup(st, b.ino, "in", &x), 0);
	assert_int_equal(x.ino, in);
	check_file(st, in, 1, 40);
	in_lost_found(st, lf.ino, e.ino);
	assert_int_equal(store_lookup(st, e.ino, "e2", &x), 0);
	assert_int_equal(x.ino, e2.ino);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A file whose inode became a directory (its mode changed) leaves a page
 * map on an inode that is not a file.  fsck names it, and still counts
 * its references (a wrong count elsewhere is repaired); the repair moves
 * the map to a new file in lost+found, with the rows' checksums made
 * for the new inode, and leaves the directory empty.
 */
static void test_store_admin_repair_stray_map(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 300, 45);	/* 3 rows */
	uint64_t g = write_file(st, STORE_ROOT_INO, "g", 2, 46);
	assert_int_equal(store_close(st, NULL), 0);
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "UPDATE inode SET mode = %u WHERE ino = %llu;"
		 "UPDATE page SET refs = refs + 1 WHERE loc = (SELECT min(loc) FROM page);",
		 (unsigned)(S_IFDIR | 0755), (unsigned long long)f);
	tsu_index_exec(path, sql);

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	snprintf(sql, sizeof(sql), "page map of inode %llu, which is not a file (300 stored pages)",
		 (unsigned long long)f);
	assert_true(has_what(&fd, sql));
	assert_true(has_what(&fd, "reference count 2, but 1 references"));
	fd = (struct found){ 0 };
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_int_equal(res.maps_moved, 1);
	assert_int_equal(res.files_rebuilt, 0);
	assert_int_equal(res.refs_repaired, 1);
	assert_false(res.refs_left);
	assert_int_equal(res.lost_found, 1);
	tsu_fsck_clean(st);

	/* The new file is the next inode (lost+found the one after). */
	uint64_t moved = g + 1;
	struct store_attr lf, x;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "lost+found", &lf), 0);
	in_lost_found(st, lf.ino, moved);
	assert_int_equal(store_getattr(st, moved, &x), 0);
	assert_int_equal(x.mode, S_IFREG | 0600);
	assert_int_equal(x.size, 300 * PG);
	assert_int_equal(x.pages, 300);
	check_file(st, moved, 300, 45);
	check_file(st, g, 2, 46);
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f", &x), 0);
	assert_int_equal(x.ino, f);
	assert_int_equal(x.mode, S_IFDIR | 0755);
	assert_int_equal(x.pages, 0);
	assert_int_equal(x.nlink, 2);
	assert_int_equal(store_rmdir(st, STORE_ROOT_INO, "f", NULL), 0);
	tsu_fsck_clean(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A sealed root takes no lost+found: a file no name reaches keeps its
 * link count and pages there, and is still reported.
 */
static void test_store_admin_repair_sealed_root(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t u = write_file(st, STORE_ROOT_INO, "u", 2, 35);
	assert_int_equal(store_close(st, NULL), 0);
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "DELETE FROM dentry WHERE ino = %llu;"
		 "UPDATE inode SET flags = flags | %d WHERE ino = %u;",
		 (unsigned long long)u, STORE_INODE_SEALED, STORE_ROOT_INO);
	tsu_index_exec(path, sql);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_int_equal(res.problems, 1);
	assert_int_equal(res.lost_found + res.links_repaired, 0);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "lost+found", &a), -ENOENT);
	assert_int_equal(store_getattr(st, u, &a), 0);
	assert_int_equal(a.nlink, 1);
	check_file(st, u, 2, 35);
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 1);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A directory whose entry is in a missing inode, and whose name in
 * lost+found is taken, stays where it is with what it holds, reported:
 * no entry is made for the missing inode on the way up.
 */
static void test_store_admin_repair_name_taken(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr lf, x, y, a;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "lost+found", 0700, 0, 0, &lf), 0);
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "x", 0755, 0, 0, &x), 0);
	assert_int_equal(store_mkdir(st, x.ino, "y", 0755, 0, 0, &y), 0);
	char name[32];
	snprintf(name, sizeof(name), "#%llu", (unsigned long long)x.ino);
	assert_int_equal(store_mkdir(st, lf.ino, name, 0755, 0, 0, &a), 0);
	assert_int_equal(store_close(st, NULL), 0);
	char sql[256];
	snprintf(sql, sizeof(sql), "UPDATE dentry SET parent = 99999 WHERE ino = %llu",
		 (unsigned long long)x.ino);
	tsu_index_exec(path, sql);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_int_equal(res.lost_found, 0);
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(has_what(&fd, "directory not reachable from the root"));
	sqlite3 *db = tsu_index_open(path);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM dentry WHERE ino = 99999", -1,
					    &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(s, 0), 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A leaf of the page-map table zeroed: fsck's scan of every row stops
 * there, so it walks the tree by key lookups and names the files the
 * damage hits (f, whose first rows were on that leaf), not the others
 * (g, whose row is on the table's last leaf, and the directory d), and
 * still says it could not run.
 */
static void test_store_admin_fsck_names_hit_files(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct store_attr d;
	assert_int_equal(store_mkdir(st, STORE_ROOT_INO, "d", 0755, 0, 0, &d), 0);
	write_file(st, STORE_ROOT_INO, "f", 2000, 14);
	assert_int_equal(store_sync(st, NULL), 0);
	write_file(st, d.ino, "g", 1, 15);
	assert_int_equal(store_close(st, NULL), 0);

	sqlite3 *sq = tsu_index_open(path);
	assert_int_equal(sqlite3_wal_checkpoint_v2(sq, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
			 SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(sq, "SELECT min(pageno), max(pageno) FROM dbstat"
					    " WHERE name = 'chunk' AND pagetype = 'leaf'",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t first = sqlite3_column_int64(s, 0), last = sqlite3_column_int64(s, 1);
	sqlite3_finalize(s);
	sqlite3_close(sq);
	assert_true(first > 0 && first < last);
	char db[4200];
	snprintf(db, sizeof(db), "%s/index.db", path);
	int fd = open(db, O_RDWR);
	assert_true(fd >= 0);
	static const uint8_t zero[4096];
	assert_int_equal(pwrite(fd, zero, sizeof(zero), (first - 1) * 4096), (ssize_t)sizeof(zero));
	close(fd);

	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	struct store_fsck_result res;
	struct found found = { .only = "/f" };
	struct err e = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &found, &res, &e), -EUCLEAN);
	assert_non_null(strstr(e.msg, "fsck could not run: database disk image is malformed"));
	assert_int_equal(found.n, 1);
	assert_true(has(&found, "/f", -1, "its page map cannot be read: database disk image is malformed"));
	static const char *const spared[] = { "/d/g", "/d" };
	for (unsigned i = 0; i < 2; i++) {
		memset(&found, 0, sizeof(found));
		found.only = spared[i];
		assert_int_equal(store_fsck(st, report, NULL, &found, &res, &e), -EUCLEAN);
		assert_int_equal(found.n, 0);
	}
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static char logged[4096];
static int nlogged;

static void log_msg(void *arg, const char *msg)
{
	(void)arg;
	snprintf(logged, sizeof(logged), "%s", msg);
	nlogged++;
}

/*
 * The page index's root page damaged (its child pointers overwritten):
 * SQLite's own check names the page, and fsck then stops with SQLite's
 * reason, saying it could not run, rather than a count it could not make.
 * Opened for writing (mounted), the store serves reads, but without the
 * page index it cannot deduplicate: changes of file data fail with
 * EUCLEAN, and the log says index.db is damaged and to run fsck.
 */
static void test_store_admin_fsck_index_unreadable(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 2000, 13);
	assert_int_equal(store_close(st, NULL), 0);

	/* Everything in index.db itself, none of it in the WAL, where
	 * SQLite would read a good copy of the page. */
	sqlite3 *sq = tsu_index_open(path);
	int frames = -1;
	assert_int_equal(sqlite3_wal_checkpoint_v2(sq, NULL, SQLITE_CHECKPOINT_TRUNCATE, &frames, NULL),
			 SQLITE_OK);
	assert_int_equal(frames, 0);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(sq, "SELECT pageno, pagetype FROM dbstat"
					    " WHERE name = 'page' AND path = '/'",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int64_t root = sqlite3_column_int64(s, 0);
	assert_string_equal((const char *)sqlite3_column_text(s, 1), "internal");
	sqlite3_finalize(s);
	sqlite3_close(sq);

	char db[4200];
	snprintf(db, sizeof(db), "%s/index.db", path);
	int fd = open(db, O_RDWR);
	assert_true(fd >= 0);
	uint8_t cells[40];
	memset(cells, 0xff, sizeof(cells));	/* 20 cells, each at 65535 */
	assert_int_equal(pwrite(fd, cells, sizeof(cells), (root - 1) * 4096 + 12),
			 (ssize_t)sizeof(cells));
	close(fd);

	assert_int_equal(store_open(path, STORE_RDONLY, &st, NULL), 0);
	struct store_fsck_result res;
	struct found found = { 0 };
	struct err e = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &found, &res, &e), -EUCLEAN);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "fsck could not run: database disk image is malformed"));
	char page[64];
	snprintf(page, sizeof(page), "tree page %lld", (long long)root);
	bool named = false;
	for (int i = 0; i < found.n && i < 8; i++) {
		named |= !strncmp(found.what[i], "index.db: ", 10) && strstr(found.what[i], page);
		/* One line each, SQLite's header line dropped. */
		assert_null(strchr(found.what[i], '\n'));
		assert_null(strstr(found.what[i], "***"));
	}
	assert_true(named);
	assert_int_equal(store_close(st, NULL), 0);

	nlogged = 0;
	assert_int_equal(store_open_log(path, 0, log_msg, NULL, &st, NULL), 0);
	check_file(st, f, 2000, 13);
	uint8_t pg[PG];
	memset(pg, 5, sizeof(pg));
	assert_int_equal(store_write(st, f, pg, PG, 0), -EUCLEAN);
	assert_int_equal(nlogged, 1);
	assert_non_null(strstr(logged, path));
	assert_non_null(strstr(logged, "loading the page index: database disk image is malformed;"
				       " index.db is damaged, so changes of file data fail;"
				       " run snapfs-admin fsck"));
	check_file(st, f, 2000, 13);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A page-map row changed inside its blobs, which SQLite cannot see: f's
 * second row made a copy of g's first, as damage to an overflow page
 * could.  Each row's checksum catches it.  Reading that part of f fails
 * with EUCLEAN (not g's bytes read as f's), the log names the inode and
 * bytes once, and fsck names the row.  A gc that moves g's pages (h is
 * deleted, so the pack is rewritten) points g's row at their new places
 * but leaves the damaged row as it is, not made valid.  Deleting f leaves
 * g's pages alone (decrementing the references the damaged row names
 * would let gc free them), so g reads the same after another gc.
 */
static void test_store_admin_map_checksum(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 2 * 128, 21);
	uint64_t g = write_file(st, STORE_ROOT_INO, "g", 128, 22);
	uint64_t h = write_file(st, STORE_ROOT_INO, "h", 128, 23);
	assert_int_equal(store_close(st, NULL), 0);

	char sql[512];
	snprintf(sql, sizeof(sql),
		 "UPDATE chunk SET (locs, hashes) = (SELECT locs, hashes FROM chunk"
		 " WHERE ino = %llu AND idx = 0) WHERE ino = %llu AND idx = 1",
		 (unsigned long long)g, (unsigned long long)f);
	tsu_index_exec(path, sql);

	nlogged = 0;
	assert_int_equal(store_open_log(path, 0, log_msg, NULL, &st, NULL), 0);
	uint8_t *buf = malloc(256 * PG), *want = malloc(256 * PG);
	tsu_fill(want, 256 * PG, 21);
	assert_int_equal(store_read(st, f, buf, 128 * PG, 0), 128 * PG);
	assert_memory_equal(buf, want, 128 * PG);
	assert_int_equal(store_read(st, f, buf, PG, 128 * PG), -EUCLEAN);
	assert_int_equal(store_read(st, f, buf, PG, 200 * PG), -EUCLEAN);
	assert_int_equal(nlogged, 1);
	char want_log[256];
	snprintf(want_log, sizeof(want_log),
		 "index.db is damaged: the page map of inode %llu for bytes 524288 to 1048575"
		 " does not match its checksum",
		 (unsigned long long)f);
	assert_non_null(strstr(logged, want_log));
	assert_non_null(strstr(logged, path));
	check_file(st, g, 128, 22);

	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &fd, &res, NULL), 0);
	bool named = false;
	for (int i = 0; i < fd.n && i < 8; i++)
		named |= fd.page[i] == 128 && !strcmp(fd.what[i], "page-map row 1 does not match its checksum");
	assert_true(named);
	/* With a row that fails its checksum the references cannot be
	 * counted: a repair changes nothing, and says so. */
	uint64_t problems = res.problems;
	assert_int_equal(store_fsck_repair(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, problems);
	assert_true(res.refs_left);
	assert_int_equal(res.refs_repaired, 0);
	check_file(st, g, 128, 22);

	uint64_t gone;
	struct store_gc_result gr;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "h", &gone), 0);
	assert_int_equal(store_inode_release(st, h), 0);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_gc(st, NULL, NULL, &gr, NULL), 0);
	assert_int_equal(gr.pages_freed, 128);
	assert_true(gr.bytes_after < gr.bytes_before);	/* the pack was rewritten */
	check_file(st, g, 128, 22);
	assert_int_equal(store_read(st, f, buf, PG, 128 * PG), -EUCLEAN);

	assert_int_equal(store_unlink(st, STORE_ROOT_INO, "f", &gone), 0);
	assert_int_equal(store_inode_release(st, f), 0);
	assert_int_equal(store_sync(st, NULL), 0);
	assert_int_equal(store_gc(st, NULL, NULL, &gr, NULL), 0);
	assert_int_equal(gr.pages_freed, 128);	/* f's first row; its second's stay */
	check_file(st, g, 128, 22);

	/* Those 128 pages are counted once but named by no map: a repair
	 * sets their counts to 0, on a writable open only, and gc frees
	 * them then. */
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 128);
	struct store *ro;
	assert_int_equal(store_open(path, STORE_RDONLY, &ro, NULL), 0);
	struct err e = { 0 };
	assert_int_equal(store_fsck_repair(ro, NULL, NULL, NULL, &res, &e), -EROFS);
	assert_non_null(strstr(e.msg, "read-only"));
	assert_int_equal(store_close(ro, NULL), 0);
	assert_int_equal(store_fsck_repair(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 128);
	assert_int_equal(res.refs_repaired, 128);
	assert_false(res.refs_left);
	assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(store_gc(st, NULL, NULL, &gr, NULL), 0);
	assert_int_equal(gr.pages_freed, 128);
	check_file(st, g, 128, 22);
	assert_int_equal(store_close(st, NULL), 0);

	/* A count too low (0 for a page g uses) is set right too, and gc
	 * then keeps the page. */
	tsu_index_exec(path, "UPDATE page SET refs = 0 WHERE loc = (SELECT min(loc) FROM page)");
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	assert_int_equal(store_fsck_repair(st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 1);
	assert_int_equal(res.refs_repaired, 1);
	assert_int_equal(store_gc(st, NULL, NULL, &gr, NULL), 0);
	assert_int_equal(gr.pages_freed, 0);
	check_file(st, g, 128, 22);
	assert_int_equal(store_close(st, NULL), 0);
	free(buf);
	free(want);
	tsu_store_remove(path);
}

/* Flip a bit of byte off (if not -1) of column col (locs or hashes) of
 * page-map row idx of inode ino, and cut its last cut bytes off, behind
 * the store's back. */
static void damage_row(const char *path, uint64_t ino, int idx, const char *col, int off, int cut)
{
	sqlite3 *db = tsu_index_open(path);
	char sql[128];
	sqlite3_stmt *s;
	snprintf(sql, sizeof(sql), "SELECT %s FROM chunk WHERE ino = %llu AND idx = %d", col,
		 (unsigned long long)ino, idx);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int n = sqlite3_column_bytes(s, 0);
	assert_true(off < n);
	uint8_t *b = malloc((size_t)n);
	memcpy(b, sqlite3_column_blob(s, 0), (size_t)n);
	sqlite3_finalize(s);
	if (off >= 0)
		b[off] ^= 0x40;
	snprintf(sql, sizeof(sql), "UPDATE chunk SET %s = ? WHERE ino = %llu AND idx = %d", col,
		 (unsigned long long)ino, idx);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_blob(s, 1, b, n - cut, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
	free(b);
	sqlite3_close(db);
}

/*
 * A page-map row whose locations are damaged (a bit flipped, or cut
 * short) gets them back from its hashes, one whose hashes are damaged
 * from its locations, as the checksum proves; the file then reads as
 * written and the references are counted.  A row damaged in both gets
 * nothing back, and the page count of its file is not set from it.
 */
static void test_store_admin_repair_rows(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t f = write_file(st, STORE_ROOT_INO, "f", 5 * 128, 51);
	uint64_t g = write_file(st, STORE_ROOT_INO, "g", 128, 52);
	assert_int_equal(store_close(st, NULL), 0);
	damage_row(path, f, 0, "locs", 5 * 8, 0);	/* slot 5 names another page */
	damage_row(path, f, 1, "hashes", 7 * STORE_HASH_SIZE + 3, 0);
	damage_row(path, f, 3, "locs", -1, 8);		/* a slot short */
	damage_row(path, f, 4, "hashes", -1, 5);	/* not whole hashes */

	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	uint8_t page[PG];
	assert_int_equal(store_read(st, f, page, PG, 0), -EUCLEAN);
	assert_int_equal(store_read(st, f, page, PG, 128 * PG), -EUCLEAN);
	assert_int_equal(store_read(st, f, page, PG, 3 * 128 * PG), -EUCLEAN);
	assert_int_equal(store_read(st, f, page, PG, 4 * 128 * PG), -EUCLEAN);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	struct store_fsck_result res;
	struct found fd = { 0 };
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(has(&fd, "/f", 0,
			"page-map row 0 does not match its checksum: its locations are damaged"
			" (rebuilt from its hashes)"));
	assert_true(has(&fd, "/f", 128,
			"page-map row 1 does not match its checksum: its hashes are damaged"
			" (rebuilt from its locations)"));
	assert_true(has(&fd, "/f", 3 * 128,
			"page-map row 3 does not match its checksum: its locations are damaged"));
	assert_true(has(&fd, "/f", 4 * 128,
			"page-map row 4 does not match its checksum: its hashes are damaged"));
	assert_int_equal(res.problems, 4);	/* the slots are checked as rebuilt */
	assert_int_equal(res.rows_rebuilt, 4);
	assert_false(res.refs_left);
	assert_int_equal(res.refs_repaired, 0);
	tsu_fsck_clean(st);
	check_file(st, f, 5 * 128, 51);
	check_file(st, g, 128, 52);
	assert_int_equal(store_close(st, NULL), 0);

	damage_row(path, f, 2, "locs", 3 * 8, 0);
	damage_row(path, f, 2, "hashes", 9 * STORE_HASH_SIZE, 0);
	char sql[128];
	snprintf(sql, sizeof(sql), "UPDATE inode SET pages = 1 WHERE ino = %llu",
		 (unsigned long long)f);
	tsu_index_exec(path, sql);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	memset(&fd, 0, sizeof(fd));
	assert_int_equal(store_fsck_repair(st, report, NULL, &fd, &res, NULL), 0);
	assert_true(has(&fd, "/f", 256, "page-map row 2 does not match its checksum"));
	assert_int_equal(res.rows_rebuilt, 0);
	assert_true(res.refs_left);
	assert_int_equal(res.pages_repaired, 0);	/* not counted for sure */
	assert_int_equal(store_read(st, f, page, PG, 256 * PG), -EUCLEAN);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* A pack cut short behind the store's back: reads and maps of the pages
 * it lost fail with EIO (a short splice would read as the end of the
 * file), the log says which inode and byte, and the rest still reads. */
static void test_store_admin_pack_cut_short(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	store_set_log(st, log_msg, NULL);
	uint64_t a = write_file(st, STORE_ROOT_INO, "a", 100, 1);
	assert_int_equal(store_sync(st, NULL), 0);
	char pack[4700];
	pack_path(path, pack, sizeof(pack));
	assert_int_equal(truncate(pack, 50 * PG + 100), 0);

	uint8_t *buf = malloc(100 * PG);
	logged[0] = 0;
	assert_int_equal(store_read(st, a, buf, 100 * PG, 0), -EIO);
	char want[128];
	snprintf(want, sizeof(want), "inode %llu: the page at byte %d cannot be read",
		 (unsigned long long)a, 50 * PG);
	assert_non_null(strstr(logged, want));
	assert_non_null(strstr(logged, path));
	struct store_extent ext[128];
	assert_int_equal(store_map(st, a, 40 * PG, 20 * PG, ext, 128, NULL), -EIO);
	assert_int_equal(store_map(st, a, 0, 50 * PG, ext, 128, NULL), 1);
	store_map_done(st);
	check_file(st, a, 50, 1);
	/* The store goes on taking and serving data. */
	uint64_t b = write_file(st, STORE_ROOT_INO, "b", 3, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	check_file(st, b, 3, 2);
	free(buf);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/*
 * A byte of a pack changed behind the store's back.  An ordinary open
 * returns the changed bytes as the file's (what fsck is for); one opened
 * STORE_VERIFY fails every read that takes that page with EIO, whole or
 * in part, logs the inode, byte and pack position once, and refuses
 * store_map, whose extents would bypass the check; the pages around it
 * and the other files read as written.
 */
static void test_store_admin_verify_reads(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t a = write_file(st, STORE_ROOT_INO, "a", 20, 1);
	uint64_t b = write_file(st, STORE_ROOT_INO, "b", 3, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store_extent ext[4];
	assert_int_equal(store_map(st, a, 10 * PG, PG, ext, 4, NULL), 1);	/* where page 10 is */
	uint64_t pos = ext[0].pos;
	store_map_done(st);
	assert_int_equal(store_close(st, NULL), 0);
	char pack[4700];
	pack_path(path, pack, sizeof(pack));
	flip_byte(pack, (off_t)pos + 7, 0xff);
	uint8_t *want = malloc(20 * PG), *got = malloc(20 * PG);
	tsu_fill(want, 20 * PG, 1);

	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), 0);
	assert_int_equal(store_read(st, a, got, 20 * PG, 0), 20 * PG);
	assert_int_equal(got[10 * PG + 7], want[10 * PG + 7] ^ 0xff);
	assert_int_equal(store_close(st, NULL), 0);

	assert_int_equal(store_open_log(path, STORE_VERIFY, log_msg, NULL, &st, &e), 0);
	nlogged = 0;
	assert_int_equal(store_read(st, a, got, 20 * PG, 0), -EIO);
	char msg[160];
	snprintf(msg, sizeof(msg), "inode %llu: the page at byte %d does not match its hash (at"
		 " packs/", (unsigned long long)a, 10 * PG);
	assert_non_null(strstr(logged, msg));
	snprintf(msg, sizeof(msg), ".pack byte 0x%llx): a pack file is damaged; run snapfs-admin fsck",
		 (unsigned long long)pos);
	assert_non_null(strstr(logged, msg));
	assert_non_null(strstr(logged, path));
	assert_int_equal(store_read(st, a, got, 100, 10 * PG + 50), -EIO);
	assert_int_equal(nlogged, 1);
	assert_int_equal(store_read(st, a, got, 10 * PG, 0), 10 * PG);
	assert_memory_equal(got, want, 10 * PG);
	assert_int_equal(store_read(st, a, got, 100, 11 * PG + 50), 100);
	assert_memory_equal(got, want + 11 * PG + 50, 100);
	assert_int_equal(store_map(st, a, 0, PG, ext, 4, NULL), -EOPNOTSUPP);
	check_file(st, b, 3, 2);
	assert_int_equal(store_close(st, NULL), 0);
	free(want);
	free(got);
	tsu_store_remove(path);
}

/*
 * A pack gone or cut short while the store was closed: after the reopen,
 * reads of the pages it held fail with EIO (the log says the pack is
 * missing), and new pages never take the locations the index still names
 * for them, which would serve the new bytes as the old file's.
 */
static void test_store_admin_pack_gone_locations_kept(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	uint64_t a = write_file(st, STORE_ROOT_INO, "a", 100, 1);
	assert_int_equal(store_close(st, NULL), 0);
	char pack[4700];
	pack_path(path, pack, sizeof(pack));
	uint8_t *buf = malloc(100 * PG);
	struct store_extent ext[128];

	/* Gone: the one pack, so a new one would be numbered 1 again. */
	assert_int_equal(unlink(pack), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	store_set_log(st, log_msg, NULL);
	logged[0] = 0;
	assert_int_equal(store_map(st, a, 0, 3 * PG, ext, 128, NULL), -EIO);
	assert_non_null(strstr(logged, "its pack file is missing"));
	assert_int_equal(store_read(st, a, buf, 3 * PG, 0), -EIO);
	uint64_t b = write_file(st, STORE_ROOT_INO, "b", 3, 2);
	assert_int_equal(store_sync(st, NULL), 0);
	check_file(st, b, 3, 2);
	assert_int_equal(store_read(st, a, buf, 3 * PG, 0), -EIO);
	assert_int_equal(store_map(st, a, 0, 3 * PG, ext, 128, NULL), -EIO);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	assert_int_equal(store_read(st, a, buf, 3 * PG, 0), -EIO);
	check_file(st, b, 3, 2);
	struct store_fsck_result res;
	struct found f = { 0 };
	assert_int_equal(store_fsck(st, report, NULL, &f, &res, NULL), 0);
	assert_int_equal(res.problems, 100);
	assert_true(has(&f, "/a", 0,
			"page damaged at packs/00000001.pack byte 0x0: unreadable: its pack file"
			" is missing"));

	/* Cut short: b's pack loses its last two pages; appending to it
	 * would hand their locations out again. */
	assert_int_equal(store_close(st, NULL), 0);
	pack_path(path, pack, sizeof(pack));
	assert_int_equal(truncate(pack, PG), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	uint64_t c = write_file(st, STORE_ROOT_INO, "c", 4, 3);
	assert_int_equal(store_sync(st, NULL), 0);
	check_file(st, c, 4, 3);
	assert_int_equal(store_read(st, b, buf, 3 * PG, 0), -EIO);
	check_file(st, b, 1, 2);
	f = (struct found){ .only = "/b" };
	assert_int_equal(store_fsck(st, report, NULL, &f, &res, NULL), 0);
	assert_int_equal(res.problems, 102);	/* a's 100 pages, b's last 2 */
	assert_int_equal(f.n, 2);
	assert_true(has(&f, "/b", 1, "unreadable: past the end of its pack"));
	assert_true(has(&f, "/b", 2, "unreadable: past the end of its pack"));
	free(buf);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* gc and fsck, in whatever processes, keep out of each other through
 * STORE/gc.lock: each refuses, saying why, while the other holds it. */
static void test_store_admin_gc_fsck_apart(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_file(st, STORE_ROOT_INO, "a", 10, 1);
	assert_int_equal(store_sync(st, NULL), 0);
	struct store *ro;
	assert_int_equal(store_open(path, STORE_RDONLY, &ro, NULL), 0);
	char lockpath[4200];
	snprintf(lockpath, sizeof(lockpath), "%s/gc.lock", path);
	int other = open(lockpath, O_RDONLY | O_CREAT, 0600);
	assert_true(other >= 0);

	/* A gc elsewhere: fsck refuses. */
	assert_int_equal(flock(other, LOCK_EX | LOCK_NB), 0);
	struct store_fsck_result res;
	struct err e = { 0 };
	assert_int_equal(store_fsck(ro, NULL, NULL, NULL, &res, &e), -EBUSY);
	assert_non_null(strstr(e.msg, "gc is moving its pages"));
	/* An fsck elsewhere: gc refuses, and so would a second gc. */
	assert_int_equal(flock(other, LOCK_SH | LOCK_NB), 0);
	struct store_gc_result g;
	memset(&e, 0, sizeof(e));
	assert_int_equal(store_gc(st, NULL, NULL, &g, &e), -EBUSY);
	assert_non_null(strstr(e.msg, "an fsck is checking it"));
	/* Fscks run side by side. */
	tsu_fsck_clean(ro);

	close(other);
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	tsu_fsck_clean(ro);
	assert_int_equal(store_close(ro, NULL), 0);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_admin_gc_reclaims),
		cmocka_unit_test(test_store_admin_gc_empty),
		cmocka_unit_test(test_store_admin_gc_frees_never_committed),
		cmocka_unit_test(test_store_admin_gc_keeps_pending_pages),
		cmocka_unit_test(test_store_admin_gc_spares_mostly_live_packs),
		cmocka_unit_test(test_store_admin_gc_without_punch),
		cmocka_unit_test(test_store_admin_fsck_corrupt_byte),
		cmocka_unit_test(test_store_admin_fsck_dangling),
		cmocka_unit_test(test_store_admin_fsck_reindex),
		cmocka_unit_test(test_store_admin_salvage),
		cmocka_unit_test(test_store_admin_salvage_refused),
		cmocka_unit_test(test_store_admin_salvage_whole),
		cmocka_unit_test(test_store_admin_gc_fsck_apart),
		cmocka_unit_test(test_store_admin_pack_cut_short),
		cmocka_unit_test(test_store_admin_verify_reads),
		cmocka_unit_test(test_store_admin_pack_gone_locations_kept),
		cmocka_unit_test(test_store_admin_fsck_tree_damage),
		cmocka_unit_test(test_store_admin_fsck_index_damage),
		cmocka_unit_test(test_store_admin_fsck_page_damage),
		cmocka_unit_test(test_store_admin_repair_tree),
		cmocka_unit_test(test_store_admin_repair_sealed_root),
		cmocka_unit_test(test_store_admin_repair_maps_and_cycles),
		cmocka_unit_test(test_store_admin_repair_stray_map),
		cmocka_unit_test(test_store_admin_repair_name_taken),
		cmocka_unit_test(test_store_admin_map_checksum),
		cmocka_unit_test(test_store_admin_repair_rows),
		cmocka_unit_test(test_store_admin_fsck_index_unreadable),
		cmocka_unit_test(test_store_admin_fsck_names_hit_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
