/*
 * tests/test-store-packs.c: a store built with 64 KiB packs (16 pages;
 * tests/meson.build sets PACK_MAX_BYTES), so that a few hundred pages
 * fill many.  Files spread over several packs read back, also after the
 * store is reopened; gc compacts them into packs no larger than the
 * limit, and everything reads back and checks clean afterwards.  gc
 * copies pages with other calls going on: files written, deduplicated
 * against pages being moved, deleted and read meanwhile come out right.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "file.h"
#include "store_i.h"
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

/* How many of this process's fds are packs of store path deleted since:
 * gc's reclaim closes them (closing is what frees their space). */
static unsigned deleted_packs_open(const char *path)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	char prefix[4200];
	snprintf(prefix, sizeof(prefix), "%s/packs/", path);
	unsigned n = 0;
	for (struct dirent *de; (de = readdir(d));) {
		char link[300], target[4300];
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = 0;
		if (!strncmp(target, prefix, strlen(prefix)) && strstr(target, " (deleted)"))
			n++;
	}
	closedir(d);
	return n;
}

/* fsck finds nothing; then the store is closed and opened again. */
static void fsck_reopen(struct store **st, const char *path)
{
	tsu_fsck_clean(*st);
	assert_int_equal(store_close(*st, NULL), 0);
	assert_int_equal(store_open(path, 0, st, NULL), 0);
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

/* A file name of FILE_PAGES pages of seed's bytes, made. */
static void write_file(struct store *st, const char *name, uint64_t seed)
{
	static uint8_t buf[FILE_PAGES * PG];
	tsu_fill(buf, sizeof(buf), seed);
	uint64_t ino = tsu_file(st, name);
	assert_int_equal(store_write(st, ino, buf, sizeof(buf), 0), sizeof(buf));
}

/* Files f0..f9 of seeds 1..10, written in turns of 8 pages, so that each
 * pack holds pieces of two files. */
static void write_files(struct store *st)
{
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
}

static void remove_file(struct store *st, const char *name)
{
	uint64_t gone;
	assert_int_equal(store_unlink(st, STORE_ROOT_INO, name, &gone), 0);
	assert_int_equal(store_inode_release(st, gone), 0);
}

static void test_store_packs_many(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	static uint8_t buf[FILE_PAGES * PG];
	write_files(st);
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
		remove_file(st, name);
	}
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, FILES / 2 * FILE_PAGES);
	struct packs after = list_packs(path, before.max_id);
	assert_int_equal(g.bytes_after, after.total);
	assert_true(after.max_id > before.max_id);	/* gc filled new packs */
	assert_true(after.largest_above <= PACK_LIMIT);
	assert_true(after.total < before.total);
	assert_int_equal(deleted_packs_open(path), 0);
	fsck_reopen(&st, path);
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
	fsck_reopen(&st, path);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	unsigned n = 0;
	for (struct dirent *de; (de = readdir(d));)
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1;	/* d's own */
}

/* Every pack stays open: a store of more packs than the soft limit on
 * open files allows fails to open, with a message, until the programs'
 * file_raise_open_limit lifts it. */
static void test_store_packs_file_limit(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_files(st);
	assert_int_equal(store_close(st, NULL), 0);
	struct packs p = list_packs(path, 0);
	assert_true(p.n >= 20);

	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	struct rlimit low = { .rlim_cur = open_fds() + 10, .rlim_max = old.rlim_max };
	if (low.rlim_cur >= low.rlim_max)
		skip();		/* the hard limit leaves no room to test */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	struct err e = { 0 };
	int r = store_open(path, 0, &st, &e);
	assert_int_equal(r, -EMFILE);
	assert_non_null(strstr(e.msg, path));
	assert_non_null(strstr(e.msg, "ulimit -n"));
	assert_int_equal(open_fds() + 10, low.rlim_cur);	/* none left open */

	assert_int_equal(file_raise_open_limit(), 0);
	struct rlimit now;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
	assert_int_equal(now.rlim_cur, now.rlim_max);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, "f3", 4);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	tsu_store_remove(path);
}

/* A pack is a regular file the store made.  One replaced by a symbolic
 * link (to the very same bytes) or by a FIFO is refused at open with a
 * message naming it, without blocking; put back, the store opens and
 * reads as before. */
static void test_store_packs_not_regular(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_files(st);
	assert_int_equal(store_close(st, NULL), 0);
	char pack[4200], kept[4200];
	snprintf(pack, sizeof(pack), "%s/packs/00000001.pack", path);
	snprintf(kept, sizeof(kept), "%s/kept", path);
	assert_int_equal(rename(pack, kept), 0);

	assert_int_equal(symlink(kept, pack), 0);
	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), -ELOOP);
	assert_non_null(strstr(e.msg, pack));
	assert_non_null(strstr(e.msg, "is a symbolic link"));
	assert_int_equal(store_open(path, STORE_RDONLY, &st, &e), -ELOOP);

	assert_int_equal(unlink(pack), 0);
	assert_int_equal(mkfifo(pack, 0600), 0);
	assert_int_equal(store_open(path, STORE_RDONLY, &st, &e), -EINVAL);
	assert_non_null(strstr(e.msg, pack));
	assert_non_null(strstr(e.msg, "is not a regular file"));
	assert_int_equal(store_open(path, 0, &st, &e), -EINVAL);

	assert_int_equal(unlink(pack), 0);
	assert_int_equal(rename(kept, pack), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, "f0", 1);
	fsck_reopen(&st, path);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Write len bytes of junk to packs/name of the store at path. */
static void put_junk(const char *path, const char *name, size_t len)
{
	char file[4200];
	snprintf(file, sizeof(file), "%s/packs/%s", path, name);
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	uint8_t *junk = malloc(len ? len : 1);
	memset(junk, 'Z', len);
	assert_int_equal(write(fd, junk, len), (ssize_t)len);
	free(junk);
	assert_int_equal(close(fd), 0);
}

/*
 * Only the names the store gives packs are packs: other spellings of a
 * pack's number (which sscanf's %x would take) are files of someone
 * else's, ignored, and a pack name whose number no location can hold is
 * refused, naming it, rather than wrapped onto another pack.
 */
static void test_store_packs_names(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_files(st);
	assert_int_equal(store_close(st, NULL), 0);
	char pack[4200];
	snprintf(pack, sizeof(pack), "%s/packs/00000001.pack", path);
	struct stat sb;
	assert_int_equal(stat(pack, &sb), 0);
	static const char *const alike[] = { "0x000001.pack", "+0000001.pack", " 0000001.pack",
					     "-0000001.pack", "0000000A.pack", "00000001.PACK",
					     "00000002.pack~" };
	for (size_t i = 0; i < sizeof(alike) / sizeof(alike[0]); i++)
		put_junk(path, alike[i], (size_t)sb.st_size);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(store_open(path, round ? STORE_RDONLY : 0, &st, NULL), 0);
		for (int i = 0; i < FILES; i++) {
			char name[16];
			snprintf(name, sizeof(name), "f%d", i);
			check_file(st, name, (uint64_t)i + 1);
		}
		if (!round)
			tsu_fsck_clean(st);
		assert_int_equal(store_close(st, NULL), 0);
	}

	/* 2^28 is the first number beyond PACK_SHIFT's 36 bits of offset. */
	put_junk(path, "10000000.pack", 0);
	struct err e = { 0 };
	assert_int_equal(store_open(path, 0, &st, &e), -EUCLEAN);
	assert_non_null(strstr(e.msg, "/packs/10000000.pack"));
	assert_non_null(strstr(e.msg, "beyond the largest"));
	assert_int_equal(store_open(path, STORE_RDONLY, &st, &e), -EUCLEAN);
	char big[4200];
	snprintf(big, sizeof(big), "%s/packs/10000000.pack", path);
	assert_int_equal(unlink(big), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_file(st, "f0", 1);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Pages in a new file name of pages pages of seed's bytes, committed. */
static void write_small(struct store *st, const char *name, int pages, uint64_t seed)
{
	uint8_t buf[4 * PG];
	assert_true(pages <= 4);
	tsu_fill(buf, (size_t)pages * PG, seed);
	uint64_t ino = tsu_file(st, name);
	assert_int_equal(store_write(st, ino, buf, (size_t)pages * PG, 0), pages * PG);
	assert_int_equal(store_sync(st, NULL), 0);
}

static void check_small(struct store *st, const char *name, int pages, uint64_t seed)
{
	uint8_t want[4 * PG], got[4 * PG];
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, name, &a), 0);
	tsu_fill(want, (size_t)pages * PG, seed);
	assert_int_equal(store_read(st, a.ino, got, (size_t)pages * PG, 0), pages * PG);
	assert_memory_equal(got, want, (size_t)pages * PG);
}

struct beside_small {
	struct store *st;
	const char *name;
	uint64_t seed;
	int calls;
};

/* gc's progress: the first time, a new file (whose pages go to a new
 * pack, as the one taking pages is being compacted). */
static void write_beside_gc(void *arg, const char *what, uint64_t done, uint64_t total)
{
	struct beside_small *b = arg;
	(void)done;
	(void)total;
	if (strcmp(what, "compacting packs"))
		return;
	if (!b->calls++)
		write_small(b->st, b->name, 2, b->seed);
}

/* The last pack a gc fills stays partly full when a new pack took the
 * puts made during the gc; such packs are merged once there are two. */
static void test_store_packs_gc_merges_small(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	struct beside_small b = { .st = st };
	const char *keep[] = { "a", "c", "e" }, *gone[] = { "b", "d" };
	write_small(st, "a", 2, 1);
	for (int round = 0; round < 2; round++) {
		/* The pack taking pages is half dead: gc moves its live half
		 * to a new pack, and a file written meanwhile starts another. */
		write_small(st, gone[round], 2, 10 + (uint64_t)round);
		remove_file(st, gone[round]);
		b.name = keep[round + 1];
		b.seed = 2 + (uint64_t)round;
		b.calls = 0;
		assert_int_equal(store_gc(st, write_beside_gc, &b, NULL, NULL), 0);
		assert_int_equal(b.calls, 1);
	}
	/* Two packs of a's and c's pages, filled by gc, and e's. */
	struct packs p = list_packs(path, 0);
	assert_int_equal(p.n, 3);
	assert_int_equal(p.total, 6 * PG);

	/* Nothing is dead, but the two small packs gc filled are merged;
	 * the one taking pages is left alone. */
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, 0);
	struct packs q = list_packs(path, p.max_id);
	assert_int_equal(q.n, 2);
	assert_int_equal(q.total, 6 * PG);
	assert_int_equal(q.max_id, p.max_id + 1);
	assert_int_equal(q.largest_above, 4 * PG);
	/* And a gc with one small pack besides the current one does not. */
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	p = list_packs(path, 0);
	assert_int_equal(p.n, 2);
	assert_int_equal(p.max_id, q.max_id);

	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < 3; i++)
			check_small(st, keep[i], 2, (uint64_t)i + 1);
		fsck_reopen(&st, path);
	}
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

struct beside {
	struct store *st;
	int calls, later_calls;
};

/* gc's progress while it copies pages, with no lock of the store held:
 * the first time, change the store the ways a mounted one is changed;
 * once copying is done and gc has listed the page maps naming moved
 * pages, commit one more that names them, and change a committed file
 * without committing the change. */
static void change_beside_gc(void *arg, const char *what, uint64_t done, uint64_t total)
{
	struct beside *b = arg;
	(void)done;
	(void)total;
	if (!strcmp(what, "finding page maps to update")) {
		if (!b->later_calls++) {
			write_file(b->st, "same0-later", 1);
			assert_int_equal(store_sync(b->st, NULL), 0);
			/* A committed file changed but not committed when gc
			 * relocates: its map keeps the committed slots, which
			 * name moved pages, for the commit to compare with. */
			struct store_attr a;
			assert_int_equal(store_lookup(b->st, STORE_ROOT_INO, "f8", &a), 0);
			assert_int_equal(store_punch(b->st, a.ino, 0, PG), 0);
		}
		return;
	}
	assert_string_equal(what, "compacting packs");
	if (b->calls++)
		return;
	/* Committed and uncommitted references to pages being moved (the
	 * same bytes as f0 and f6), a file of new pages over several new
	 * packs, a deleted file whose pages are being moved, a read, and a
	 * file of the same bytes as one deleted before it was committed
	 * (whose pages, in no index, step 1 did not list). */
	write_file(b->st, "revived", 55);
	assert_int_equal(store_sync(b->st, NULL), 0);
	write_file(b->st, "same0", 1);
	assert_int_equal(store_sync(b->st, NULL), 0);
	write_file(b->st, "same6", 7);
	write_file(b->st, "late", 77);
	remove_file(b->st, "f2");
	check_file(b->st, "f4", 5);
}

static void check_beside(struct store *st)
{
	for (int i = 0; i < FILES; i += 2) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		if (i != 2 && i != 8)
			check_file(st, name, (uint64_t)i + 1);
	}
	/* f8, its first page punched out. */
	static uint8_t want[FILE_PAGES * PG], got[FILE_PAGES * PG];
	struct store_attr f8;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f8", &f8), 0);
	tsu_fill(want, sizeof(want), 9);
	memset(want, 0, PG);
	assert_int_equal(store_read(st, f8.ino, got, sizeof(got), 0), sizeof(got));
	assert_memory_equal(got, want, sizeof(got));
	check_file(st, "same0", 1);
	check_file(st, "same0-later", 1);
	check_file(st, "same6", 7);
	check_file(st, "late", 77);
	check_file(st, "revived", 55);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f2", &a), -ENOENT);
	tsu_fsck_clean(st);
}

static void test_store_packs_gc_beside_changes(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_files(st);
	for (int i = 1; i < FILES; i += 2) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		remove_file(st, name);
	}
	write_file(st, "orphan", 55);
	remove_file(st, "orphan");
	struct beside b = { .st = st };
	struct store_gc_result g;
	assert_int_equal(store_gc(st, change_beside_gc, &b, &g, NULL), 0);
	assert_true(b.calls > 0);
	assert_int_equal(b.later_calls, 1);
	assert_int_equal(g.pages_freed, FILES / 2 * FILE_PAGES);
	assert_true(g.bytes_after < g.bytes_before);
	check_beside(st);
	assert_int_equal(store_close(st, NULL), 0);
	assert_int_equal(store_open(path, 0, &st, NULL), 0);
	check_beside(st);

	/* The next gc frees what was deleted during this one, and the page
	 * punched out of f8. */
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	assert_int_equal(g.pages_freed, FILE_PAGES + 1);
	check_beside(st);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* A read in flight (a store_map not done) when gc starts pointing the
 * index at the pages it moved: the relocation goes on beside it, later
 * maps of the same bytes name the new copies, and the old ones stay
 * readable until the read is done, only then freed. */
struct held_read {
	struct store *st;
	uint64_t ino;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool holding;
	bool relocated, old_intact, new_intact;	/* what the reader saw */
	int err;
};

static bool extents_read(const struct store_extent *ext, int n, uint8_t *out, size_t len)
{
	size_t at = 0;
	for (int i = 0; i < n; i++) {
		if (ext[i].fd < 0 || at + ext[i].len > len ||
		    pread(ext[i].fd, out + at, ext[i].len, (off_t)ext[i].pos) != (ssize_t)ext[i].len)
			return false;
		at += ext[i].len;
	}
	return at == len;
}

static void *held_reader(void *arg)
{
	struct held_read *h = arg;
	static uint8_t want[FILE_PAGES * PG], got[FILE_PAGES * PG];
	struct store_extent held[FILE_PAGES], now[FILE_PAGES];
	size_t covered;
	tsu_fill(want, sizeof(want), 1);
	int n = store_map(h->st, h->ino, 0, sizeof(want), held, FILE_PAGES, &covered);
	pthread_mutex_lock(&h->lock);
	h->err = n < 0 ? n : 0;
	h->holding = true;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (n < 0)
		return NULL;
	/* Wait (20 s at most) for maps to name other places than held. */
	for (int tries = 0; tries < 2000 && !h->relocated; tries++) {
		int m = store_map(h->st, h->ino, 0, sizeof(want), now, FILE_PAGES, &covered);
		if (m < 0) {
			h->err = m;
			break;
		}
		h->relocated = m != n;
		for (int i = 0; i < n && !h->relocated; i++)
			h->relocated = now[i].fd != held[i].fd || now[i].pos != held[i].pos ||
				       now[i].len != held[i].len;
		if (h->relocated)
			h->new_intact = extents_read(now, m, got, sizeof(got)) &&
					!memcmp(got, want, sizeof(got));
		store_map_done(h->st);
		if (!h->relocated)
			usleep(10000);
	}
	h->old_intact = extents_read(held, n, got, sizeof(got)) && !memcmp(got, want, sizeof(got));
	store_map_done(h->st);
	return NULL;
}

/* gc's progress after copying, with no lock held: start the reader, and
 * go on once it holds its map. */
static void hold_read_beside_gc(void *arg, const char *what, uint64_t done, uint64_t total)
{
	struct held_read *h = arg;
	(void)done;
	(void)total;
	if (strcmp(what, "finding page maps to update"))
		return;
	assert_int_equal(pthread_create(&h->thread, NULL, held_reader, h), 0);
	pthread_mutex_lock(&h->lock);
	while (!h->holding)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
}

static void test_store_packs_gc_relocates_beside_reads(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_files(st);	/* f0's pages share packs with f1's */
	remove_file(st, "f1");
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f0", &a), 0);
	struct held_read h = { .st = st, .ino = a.ino, .lock = PTHREAD_MUTEX_INITIALIZER,
			       .cond = PTHREAD_COND_INITIALIZER };
	struct store_gc_result g;
	assert_int_equal(store_gc(st, hold_read_beside_gc, &h, &g, NULL), 0);
	assert_true(h.holding);
	assert_int_equal(pthread_join(h.thread, NULL), 0);
	assert_int_equal(h.err, 0);
	assert_int_equal(g.pages_freed, FILE_PAGES);
	assert_true(h.relocated);
	assert_true(h.new_intact);
	assert_true(h.old_intact);
	for (int i = 0; i < FILES; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		if (i != 1)
			check_file(st, name, (uint64_t)i + 1);
	}
	fsck_reopen(&st, path);
	check_file(st, "f0", 1);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Several threads change the store while another runs gc after gc.
 * Each churner writes files of FILE_PAGES pages, deletes every other one
 * a round later (dead pages for gc), and makes some the same as an
 * earlier file it kept (writes deduplicated against pages gc may be
 * moving).  No cmocka asserts off the main thread: failures are counted. */
#define CHURNERS 2
#define ROUNDS 24

struct churn {
	struct store *st;
	int id;
	int failures;
	int *running;		/* churners not done yet (atomic) */
};

static uint64_t churn_seed(int id, int round)
{
	if (round % 4 >= 2)	/* 2: as a deleted file, 3: as a kept one */
		return churn_seed(id, round - 2);
	return 1000u * (uint64_t)(id + 1) + (uint64_t)round;
}

static void *churner(void *p)
{
	struct churn *c = p;
	uint8_t *buf = malloc(FILE_PAGES * PG);
	for (int round = 0; round < ROUNDS && buf; round++) {
		char name[32];
		snprintf(name, sizeof(name), "c%d-%d", c->id, round);
		tsu_fill(buf, FILE_PAGES * PG, churn_seed(c->id, round));
		struct store_attr a;
		/* Committed, so that the file deleted next round is in the
		 * index and a gc after its deletion frees its pages. */
		if (store_mknod(c->st, STORE_ROOT_INO, name, 0100644, 0, 0, 0, &a) ||
		    store_write(c->st, a.ino, buf, FILE_PAGES * PG, 0) != FILE_PAGES * PG ||
		    store_sync(c->st, NULL))
			c->failures++;
		if (round % 2 == 0)
			continue;
		snprintf(name, sizeof(name), "c%d-%d", c->id, round - 1);
		uint64_t gone = 0;
		if (store_unlink(c->st, STORE_ROOT_INO, name, &gone) ||
		    (gone && store_inode_release(c->st, gone)))
			c->failures++;
	}
	if (!buf)
		c->failures++;
	free(buf);
	__atomic_sub_fetch(c->running, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* What gc's steps 1 and 3a hold off: calls that change file data hold
 * change_lock shared for their whole course, reads do not (they go on
 * beside those steps, test_store_packs_gc_relocates_beside_reads). */
static void test_store_packs_change_lock(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_file(st, "f", 1);
	struct store_attr a;
	assert_int_equal(store_lookup(st, STORE_ROOT_INO, "f", &a), 0);
	for (int change = 0; change < 2; change++) {
		struct sinode *si;
		assert_int_equal(data_begin(st, a.ino, change, &si), 0);
		int r = pthread_rwlock_trywrlock(&st->change_lock);
		if (!r)
			pthread_rwlock_unlock(&st->change_lock);
		assert_int_equal(r, change ? EBUSY : 0);
		data_end(st, si, change);
	}
	assert_int_equal(pthread_rwlock_trywrlock(&st->change_lock), 0);
	pthread_rwlock_unlock(&st->change_lock);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

/* Beside the churners and gc: read the files they keep (odd rounds),
 * through store_map and the pack files as the daemon does, and compare. */
struct reader {
	struct store *st;
	int *running;
	unsigned reads, failures;
};

static void *churn_reader(void *p)
{
	struct reader *rd = p;
	static uint8_t want[FILE_PAGES * PG], got[FILE_PAGES * PG];
	struct store_extent ext[FILE_PAGES];
	while (__atomic_load_n(rd->running, __ATOMIC_ACQUIRE)) {
		for (int id = 0; id < CHURNERS; id++)
			for (int round = 1; round < ROUNDS; round += 2) {
				char name[32];
				struct store_attr a;
				snprintf(name, sizeof(name), "c%d-%d", id, round);
				if (store_lookup(rd->st, STORE_ROOT_INO, name, &a) || a.size != sizeof(want))
					continue;	/* not (all) written yet */
				tsu_fill(want, sizeof(want), churn_seed(id, round));
				size_t covered;
				int n = store_map(rd->st, a.ino, 0, sizeof(want), ext, FILE_PAGES, &covered);
				if (n < 0) {
					rd->failures++;
					continue;
				}
				bool ok = extents_read(ext, n, got, sizeof(got)) &&
					  !memcmp(got, want, sizeof(got));
				store_map_done(rd->st);
				rd->failures += !ok;
				rd->reads++;
			}
	}
	return NULL;
}

static void test_store_packs_gc_beside_threads(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	write_files(st);
	struct churn c[CHURNERS];
	pthread_t t[CHURNERS], rt;
	int running = CHURNERS;
	for (int i = 0; i < CHURNERS; i++) {
		c[i] = (struct churn){ .st = st, .id = i, .running = &running };
		assert_int_equal(pthread_create(&t[i], NULL, churner, &c[i]), 0);
	}
	struct reader rd = { .st = st, .running = &running };
	assert_int_equal(pthread_create(&rt, NULL, churn_reader, &rd), 0);
	int runs = 0;
	uint64_t freed = 0;
	for (; runs < 3 || __atomic_load_n(&running, __ATOMIC_ACQUIRE); runs++) {
		struct store_gc_result g;
		struct err e = { 0 };
		int r = store_gc(st, NULL, NULL, &g, &e);
		if (r)
			fail_msg("gc run %d: %s", runs, e.msg);
		freed += g.pages_freed;
	}
	for (int i = 0; i < CHURNERS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].failures, 0);
	}
	pthread_join(rt, NULL);
	assert_int_equal(rd.failures, 0);
	assert_true(rd.reads > 0);
	/* One more once they are done: the last deletions may have come
	 * after the last run's step 1. */
	struct store_gc_result g;
	assert_int_equal(store_gc(st, NULL, NULL, &g, NULL), 0);
	freed += g.pages_freed;
	runs++;
	assert_true(freed > 0);
	printf("# %d gc runs beside the churners freed %llu pages; %u reads beside them\n", runs,
	       (unsigned long long)freed, rd.reads);

	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < FILES; i++) {
			char name[16];
			snprintf(name, sizeof(name), "f%d", i);
			check_file(st, name, (uint64_t)i + 1);
		}
		for (int id = 0; id < CHURNERS; id++)
			for (int round = 0; round < ROUNDS; round++) {
				char name[32];
				snprintf(name, sizeof(name), "c%d-%d", id, round);
				if (round % 2 == 0 && round < ROUNDS - 1) {
					struct store_attr a;
					assert_int_equal(store_lookup(st, STORE_ROOT_INO, name, &a),
							 -ENOENT);
				} else {
					check_file(st, name, churn_seed(id, round));
				}
			}
		fsck_reopen(&st, path);
	}
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_packs_many),
		cmocka_unit_test(test_store_packs_file_limit),
		cmocka_unit_test(test_store_packs_not_regular),
		cmocka_unit_test(test_store_packs_names),
		cmocka_unit_test(test_store_packs_gc_merges_small),
		cmocka_unit_test(test_store_packs_gc_beside_changes),
		cmocka_unit_test(test_store_packs_gc_relocates_beside_reads),
		cmocka_unit_test(test_store_packs_change_lock),
		cmocka_unit_test(test_store_packs_gc_beside_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
