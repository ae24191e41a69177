/*
 * tests/test-store-threads.c: the store used from several threads at once,
 * as the multi-threaded FUSE daemon does: writers on their own files and on
 * one shared file (page-disjoint ranges), an appender writing pieces that
 * are not whole pages (its last page held in memory between them), readers
 * and splice maps running alongside, metadata changes, explicit syncs and
 * the automatic commits.
 * Every byte is checked afterwards, then again after reopening, and fsck
 * must find nothing.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "store_backend.h"
#include "test-store-util.h"

#define PG STORE_PAGE_SIZE
#define WRITERS 4
#define FILE_PAGES 6016	/* per writer (a multiple of 64): 4 writers pass a commit batch */
#define PIECE 10000		/* the appender's writes */
#define APPEND (400 * PIECE)	/* and its file's size */

struct ctx {
	struct store *st;
	uint64_t own[WRITERS], shared, appended;
	int stop;
	int failures;
};

struct warg {
	struct ctx *c;
	int id;
};

static void *writer(void *p)
{
	struct warg *w = p;
	struct ctx *c = w->c;
	uint8_t *buf = malloc(64 * PG);
	for (int off = 0; off < FILE_PAGES; off += 64) {
		tsu_fill(buf, 64 * PG, (uint64_t)w->id * 100000 + (uint64_t)off);
		if (store_write(c->st, c->own[w->id], buf, 64 * PG, (uint64_t)off * PG) != 64 * PG)
			__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
		/* Slot w->id of every group of WRITERS pages in the shared file. */
		if (store_write(c->st, c->shared, buf, PG, ((uint64_t)off / 64 * WRITERS + w->id) * PG) != PG)
			__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
		if (off % 1024 == 0 && store_flush(c->st, c->own[w->id], w->id % 2, NULL))
			__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
		char name[32];
		snprintf(name, sizeof(name), "meta-%d-%d", w->id, off);
		if (store_mknod(c->st, STORE_ROOT_INO, name, S_IFREG | 0600, 0, 0, 0, NULL))
			__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

static void *appender(void *p)
{
	struct ctx *c = p;
	uint8_t *buf = malloc(APPEND);
	tsu_fill(buf, APPEND, 777);
	for (size_t off = 0; off < APPEND; off += PIECE)
		if (store_write(c->st, c->appended, buf + off, PIECE, off) != PIECE)
			__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
	free(buf);
	return NULL;
}

static void *reader(void *p)
{
	struct ctx *c = p;
	uint8_t *buf = malloc(32 * PG);
	struct store_extent ext[40];
	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		for (int i = 0; i < WRITERS && !__atomic_load_n(&c->stop, __ATOMIC_RELAXED); i++) {
			/* Whatever is there must be consistent within a page:
			 * either all of a page written, or a hole. */
			ssize_t n = store_read(c->st, c->own[i], buf, 32 * PG, 0);
			if (n < 0)
				__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
			int m = store_map(c->st, c->own[i], 0, 32 * PG, ext, 40, NULL);
			if (m < 0)
				__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
			else
				store_map_done(c->st);
			struct store_attr a;
			if (store_getattr(c->st, c->own[i], &a))
				__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
		}
		/* What the appender has written so far, every byte. */
		struct store_attr a;
		if (store_getattr(c->st, c->appended, &a) || a.size > APPEND ||
		    store_read(c->st, c->appended, buf, 32 * PG, a.size > 32 * PG ? a.size - 32 * PG : 0) < 0)
			__atomic_add_fetch(&c->failures, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

static void check(struct store *st, const struct ctx *c)
{
	uint8_t *want = malloc(64 * PG), *got = malloc(64 * PG);
	for (int id = 0; id < WRITERS; id++)
		for (int off = 0; off < FILE_PAGES; off += 64) {
			tsu_fill(want, 64 * PG, (uint64_t)id * 100000 + (uint64_t)off);
			assert_int_equal(store_read(st, c->own[id], got, 64 * PG, (uint64_t)off * PG),
					 64 * PG);
			assert_memory_equal(got, want, 64 * PG);
			assert_int_equal(store_read(st, c->shared, got, PG,
						    ((uint64_t)off / 64 * WRITERS + id) * PG),
					 PG);
			assert_memory_equal(got, want, PG);
		}
	free(want);
	free(got);
	want = malloc(APPEND);
	got = malloc(APPEND);
	tsu_fill(want, APPEND, 777);
	assert_int_equal(store_read(st, c->appended, got, APPEND, 0), APPEND);
	assert_memory_equal(got, want, APPEND);
	free(want);
	free(got);
}

static void test_store_threads_writers_and_readers(void **state)
{
	(void)state;
	char *path;
	struct ctx c = { 0 };
	c.st = tsu_new_store(&path);
	char name[16];
	for (int i = 0; i < WRITERS; i++) {
		snprintf(name, sizeof(name), "w%d", i);
		c.own[i] = tsu_file(c.st, name);
	}
	c.shared = tsu_file(c.st, "shared");
	c.appended = tsu_file(c.st, "appended");
	pthread_t wt[WRITERS], rt[2], at;
	struct warg wa[WRITERS];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&rt[i], NULL, reader, &c), 0);
	for (int i = 0; i < WRITERS; i++) {
		wa[i] = (struct warg){ &c, i };
		assert_int_equal(pthread_create(&wt[i], NULL, writer, &wa[i]), 0);
	}
	assert_int_equal(pthread_create(&at, NULL, appender, &c), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(wt[i], NULL);
	pthread_join(at, NULL);
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++)
		pthread_join(rt[i], NULL);
	assert_int_equal(c.failures, 0);
	check(c.st, &c);
	struct store_fsck_result res;
	assert_int_equal(store_fsck(c.st, NULL, NULL, NULL, &res, NULL), 0);
	assert_int_equal(res.problems, 0);
	assert_int_equal(store_close(c.st, NULL), 0);

	assert_int_equal(store_open(path, 0, &c.st, NULL), 0);
	check(c.st, &c);
	struct store_stats s;
	assert_int_equal(store_stats(c.st, &s, NULL), 0);
	/* Own files plus the shared one, which holds copies of their
	 * first pages: stored once; and the appended file's pages. */
	assert_int_equal(s.unique_pages, WRITERS * FILE_PAGES + (APPEND + PG - 1) / PG);
	assert_int_equal(store_close(c.st, NULL), 0);
	tsu_store_remove(path);
}

/* The nice value of this process's thread named comm, or -100 while no
 * thread has that name; fails the test if two have. */
static int nice_of_thread_now(const char *comm)
{
	DIR *d = opendir("/proc/self/task");
	assert_non_null(d);
	int found = 0, nice = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[300], name[64] = "";
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;	/* the thread has ended */
		if (fgets(name, sizeof(name), f))
			name[strcspn(name, "\n")] = 0;
		fclose(f);
		if (strcmp(name, comm))
			continue;
		found++;
		errno = 0;
		nice = getpriority(PRIO_PROCESS, (id_t)atoi(de->d_name));
		assert_int_equal(errno, 0);
	}
	closedir(d);
	assert_true(found <= 1);
	return found ? nice : -100;
}

/* The same, waiting up to 10 s for a thread just started to name itself
 * (the store's threads set their priority first). */
static int nice_of_thread(const char *comm)
{
	int nice = nice_of_thread_now(comm);
	for (int i = 0; i < 1000 && nice == -100; i++) {
		usleep(10000);
		nice = nice_of_thread_now(comm);
	}
	assert_int_not_equal(nice, -100);
	return nice;
}

/* The committer and the pack writer run below the threads a writer waits
 * for; the hashing helper does not. */
static void test_store_threads_background_priority(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	errno = 0;
	int mine = getpriority(PRIO_PROCESS, (id_t)gettid());
	assert_int_equal(errno, 0);
	int low = mine + STORE_BACKGROUND_NICE < 19 ? mine + STORE_BACKGROUND_NICE : 19;
	assert_true(low > mine);
	assert_int_equal(nice_of_thread("snapfs-commit"), low);
	assert_int_equal(nice_of_thread("snapfs-pack"), low);
	assert_int_equal(nice_of_thread("snapfs-hash"), mine);
	assert_int_equal(store_close(st, NULL), 0);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_threads_background_priority),
		cmocka_unit_test(test_store_threads_writers_and_readers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
