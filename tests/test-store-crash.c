/*
 * tests/test-store-crash.c: crash safety.  A child process writes files
 * into a store (new files, clones, a scratch file rewritten without
 * committing, now and then a gc) and, each time a commit has returned,
 * tells the parent through a pipe which files are committed; a thread
 * commits beside it all the while, so that commits land inside writes.  The parent
 * kills it with SIGKILL at a random moment, many times over; after each
 * kill it reopens the store, runs fsck (no problems allowed) and checks
 * every file reported so far byte for byte.
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "test-store-util.h"

#define PG STORE_PAGE_SIZE
#define ROUNDS 25

/* Kills land within this many milliseconds of a child's start.  Under
 * ThreadSanitizer the store runs many times slower, and a child would
 * rarely get anything committed before its kill; under AddressSanitizer
 * a few times slower, and on a loaded machine children committed too
 * little in 100 rounds (seen: fewer than 26 files). */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define KILL_WITHIN_MS 1000
#else
#define KILL_WITHIN_MS 250
#endif
#define MAX_FILES 4096

struct rec {
	char name[32];
	uint64_t seed, size;
};

static size_t file_size(uint64_t seed)
{
	/* From a few bytes to ~1.5 MiB, often not page aligned. */
	return 1 + (size_t)((seed * 2654435761u) % (1536 * 1024));
}

static void fill_file(uint8_t *buf, size_t size, uint64_t seed)
{
	tsu_fill(buf, size, seed);
	/* Some zero pages and some repeated pages, so holes and dedup are
	 * part of what crashes. */
	for (size_t p = 0; p + PG <= size; p += PG) {
		if ((p / PG + seed) % 5 == 0)
			memset(buf + p, 0, PG);
		else if ((p / PG + seed) % 7 == 0)
			tsu_fill(buf + p, PG, 7);
	}
}

static void child_fail(const char *what, int r)
{
	fprintf(stderr, "child: %s: %s\n", what, strerror(-r));
	_exit(2);
}

/* The writer.  Never returns. */
/* Commits beside the writes, as a mount's fsync and close of other files
 * bring them: each may land in the middle of a write. */
static void *committer(void *arg)
{
	struct store *st = arg;
	for (;;) {
		store_sync(st, NULL);
		nanosleep(&(struct timespec){ 0, 200 * 1000 }, NULL);
	}
	return NULL;
}

static void child(const char *path, int round, int out)
{
	struct store *st;
	struct err e = { 0 };
	int r = store_open(path, 0, &st, &e);
	if (r)
		child_fail(e.msg, r);
	pthread_t t;
	if (pthread_create(&t, NULL, committer, st))
		child_fail("thread", -EAGAIN);
	uint8_t *buf = malloc(4 * 1024 * 1024);
	uint64_t seed = (uint64_t)round * 1000003;
	struct rec prev = { .name = "" };
	for (int i = 0;; i++) {
		struct rec rc;
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		snprintf(rc.name, sizeof(rc.name), "r%d-%d", round, i);
		rc.seed = seed >> 16;
		rc.size = file_size(rc.seed);
		struct store_attr a;
		r = store_mknod(st, STORE_ROOT_INO, rc.name, S_IFREG | 0644, 0, 0, 0, &a);
		if (r)
			child_fail("mknod", r);
		if (i % 4 == 3 && prev.name[0]) {
			/* A clone of the previous committed file. */
			struct store_attr pa;
			r = store_lookup(st, STORE_ROOT_INO, prev.name, &pa);
			if (r)
				child_fail("lookup", r);
			ssize_t n = store_clone(st, pa.ino, 0, a.ino, 0, prev.size);
			if (n != (ssize_t)prev.size)
				child_fail("clone", n < 0 ? (int)n : -EIO);
			rc.seed = prev.seed;
			rc.size = prev.size;
		} else {
			fill_file(buf, rc.size, rc.seed);
			/* In pieces of uneven size, like a program would. */
			for (size_t off = 0; off < rc.size;) {
				size_t n = 1 + (off * 31 + rc.seed) % (300 * 1024);
				if (n > rc.size - off)
					n = rc.size - off;
				ssize_t w = store_write(st, a.ino, buf + off, n, off);
				if (w != (ssize_t)n)
					child_fail("write", w < 0 ? (int)w : -EIO);
				off += n;
			}
		}
		/* Scratch: rewritten, never committed on purpose before the
		 * next file's commit... which commits it too; its content is
		 * not checked, only that the store stays sound. */
		struct store_attr sa;
		if (store_lookup(st, STORE_ROOT_INO, "scratch", &sa) == -ENOENT)
			store_mknod(st, STORE_ROOT_INO, "scratch", S_IFREG | 0644, 0, 0, 0, &sa);
		tsu_fill(buf, 64 * 1024, seed);
		store_write(st, sa.ino, buf, 64 * 1024, (seed >> 8) % (1 << 20));
		if (i % 6 == 5)
			store_truncate(st, sa.ino, 0);
		/* A new file in one write of 4 MiB, whose pages are mapped
		 * in batches while the committer may commit. */
		struct store_attr ba;
		char big[32];
		snprintf(big, sizeof(big), "big%d-%d", round, i % 8);
		store_unlink(st, STORE_ROOT_INO, big, NULL);
		if (store_mknod(st, STORE_ROOT_INO, big, S_IFREG | 0644, 0, 0, 0, &ba) == 0) {
			tsu_fill(buf, 4 * 1024 * 1024, seed + 1);
			store_write(st, ba.ino, buf, 4 * 1024 * 1024, 0);
		}

		r = store_sync(st, &e);
		if (r)
			child_fail(e.msg, r);
		/* Committed: now tell the parent. */
		if (write(out, &rc, sizeof(rc)) != sizeof(rc))
			_exit(3);
		prev = rc;
		if (i % 10 == 9) {
			r = store_gc(st, NULL, NULL, NULL, &e);
			if (r)
				child_fail(e.msg, r);
		}
	}
}

static void verify(struct store *st, const struct rec *recs, int n)
{
	uint8_t *want = malloc(2 * 1024 * 1024), *got = malloc(2 * 1024 * 1024);
	for (int i = 0; i < n; i++) {
		struct store_attr a;
		int r = store_lookup(st, STORE_ROOT_INO, recs[i].name, &a);
		if (r)
			fail_msg("committed file %s missing: %s", recs[i].name, strerror(-r));
		assert_int_equal(a.size, recs[i].size);
		fill_file(want, recs[i].size, recs[i].seed);
		assert_int_equal(store_read(st, a.ino, got, recs[i].size + 1, 0), (ssize_t)recs[i].size);
		if (memcmp(got, want, recs[i].size))
			fail_msg("committed file %s differs", recs[i].name);
	}
	free(want);
	free(got);
}

static void test_store_crash_kill9(void **state)
{
	(void)state;
	char *path;
	struct store *st = tsu_new_store(&path);
	assert_int_equal(store_close(st, NULL), 0);
	struct rec *recs = calloc(MAX_FILES, sizeof(*recs));
	int nrecs = 0;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	int killed_mid = 0;

	/* On a loaded machine a child may commit little before its kill:
	 * more rounds then, up to four times as many, until the kills
	 * have hit more than one committed file per round. */
	int round;
	for (round = 0; round < ROUNDS || (nrecs <= ROUNDS && round < 4 * ROUNDS); round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			child(path, round, p[1]);
		}
		close(p[1]);
		/*
		 * Even rounds let it run from a moment to a while from its
		 * start: kills land in opening, writing, committing and gc.
		 * Odd rounds first wait for its first commit, which must come,
		 * so that where opening a store is slow (sanitizers, a loaded
		 * machine) kills still hit children that have committed files
		 * and are writing the next ones.
		 */
		int before = nrecs;
		struct rec rc;
		if (round % 2) {
			assert_int_equal(read(p[0], &rc, sizeof(rc)), (ssize_t)sizeof(rc));
			if (nrecs < MAX_FILES)
				recs[nrecs++] = rc;
		}
		long ms = 1 + rand() % KILL_WITHIN_MS;
		struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status))
			fail_msg("child exited with %d before the kill", WEXITSTATUS(status));
		assert_true(WIFSIGNALED(status));
		while (read(p[0], &rc, sizeof(rc)) == sizeof(rc) && nrecs < MAX_FILES)
			recs[nrecs++] = rc;
		close(p[0]);
		killed_mid += round % 2 == 0 && nrecs > before;

		struct err e = { 0 };
		int r = store_open(path, 0, &st, &e);
		if (r)
			fail_msg("reopen after kill %d: %s", round, err_str(&e, r));
		struct store_fsck_result res;
		assert_int_equal(store_fsck(st, NULL, NULL, NULL, &res, &e), 0);
		if (res.problems)
			fail_msg("fsck after kill %d: %llu problems", round,
				 (unsigned long long)res.problems);
		verify(st, recs, nrecs);
		assert_int_equal(store_close(st, NULL), 0);
	}
	/* The kills must have hit working children, not idle ones. */
	assert_true(nrecs > ROUNDS);
	printf("# %d files committed and checked over %d kills (%d of those from the child's"
	       " start came after a commit)\n", nrecs, round, killed_mid);
	free(recs);
	tsu_store_remove(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_crash_kill9),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
