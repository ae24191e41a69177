/*
 * bench/bench-store.c: how fast the page store takes data in, against the
 * raw SHA-256 rate measured in the same run (the floor every page must
 * pay).  Cases, each written as one file in 1 MiB writes and committed:
 *
 *   sha256      hashing the random pages alone (EVP, reused context)
 *   random      pages never seen before: hash, append to a pack, index
 *   zero        all-zero pages: detected, never hashed or stored
 *   duplicate   the random pages again into a second file: hash + dedup
 *   clone       copy_file_range of the random file (references only)
 *   gc          a file as large again deleted, so that gc copies the
 *               random pages into a new pack, while one thread reads 4 KiB
 *               of the random file in a loop and another writes 4 KiB
 *               into a small file: the longest of those reads and writes
 *               against the whole gc is how long gc holds reads and
 *               changes off (it copies beside them)
 *   far         committing one changed page at a time of a file with a
 *               page at the largest offset (its map reaches 8 million
 *               chunks) against the same in a file whose map is short,
 *               then the first read of each after opening the store
 *               again: a commit costs what changed, and loading a map
 *               what it holds, not how far the file reaches
 *
 * usage: bench-store [MIB [FOLDER]]   (default 256 MiB under $TMPDIR)
 * Prints pages/s, MB/s and the ratio to sha256 for each case; run it a few
 * times, figures on a shared machine are noisy.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <ftw.h>

#include "store.h"
#include "store_hash.h"

#define MB (1024 * 1024)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = 0x243f6a8885a308d3ull ^ seed;
	for (size_t i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
}

static void line(const char *name, size_t bytes, double secs, double sha_rate)
{
	double rate = (double)bytes / secs;
	printf("%-10s %10.0f pages/s %9.1f MB/s", name, rate / STORE_PAGE_SIZE, rate / 1e6);
	if (sha_rate > 0)
		printf("   %.2fx sha256", rate / sha_rate);
	printf("\n");
}

static int die(const char *what, int r, const struct err *e)
{
	fprintf(stderr, "bench-store: %s: %s\n", what, err_str(e, r));
	return 1;
}

/* Write len bytes of buf into a new file name and commit; seconds. */
static double last_commit;	/* seconds the final store_sync took */

static int put_file(struct store *st, const char *name, const uint8_t *buf, size_t len,
		    uint64_t *ino, double *secs)
{
	struct store_attr a;
	int r = store_mknod(st, STORE_ROOT_INO, name, 0100644, 0, 0, 0, &a);
	if (r)
		return r;
	*ino = a.ino;
	double t0 = now();
	for (size_t off = 0; off < len; off += MB) {
		ssize_t w = store_write(st, a.ino, buf + off, MB, off);
		if (w < 0)
			return (int)w;
	}
	double t1 = now();
	r = store_sync(st, NULL);
	*secs = now() - t0;
	last_commit = now() - t1;
	return r;
}

/* A reader or writer beside gc: 4 KiB reads of ino (at pages over the
 * file), or writes of one page of it, until stop, the longest timed. */
struct reader {
	struct store *st;
	uint64_t ino, pages;
	bool write;
	atomic_bool stop;
	double longest;
	unsigned long reads;
	int err;
};

static void *reader_run(void *arg)
{
	struct reader *rd = arg;
	uint8_t buf[STORE_PAGE_SIZE];
	fill_random(buf, sizeof(buf), 99);
	while (!atomic_load(&rd->stop)) {
		uint64_t off = (rd->reads * 7919 % rd->pages) * STORE_PAGE_SIZE;
		double t0 = now();
		ssize_t n = rd->write ? store_write(rd->st, rd->ino, buf, sizeof(buf), off)
				      : store_read(rd->st, rd->ino, buf, sizeof(buf), off);
		double d = now() - t0;
		if (n != (ssize_t)sizeof(buf)) {
			rd->err = n < 0 ? (int)n : -EIO;
			break;
		}
		if (d > rd->longest)
			rd->longest = d;
		rd->reads++;
	}
	return NULL;
}

/* gc of a store where a file as large as ino's was deleted, with a reader
 * of ino beside it. */
static int bench_gc(struct store *st, uint64_t ino, uint8_t *buf, size_t len)
{
	fill_random(buf, len, 1);
	uint64_t gone, ino_g;
	double secs;
	int r = put_file(st, "gone", buf, len, &ino_g, &secs);
	if (!r)
		r = store_unlink(st, STORE_ROOT_INO, "gone", &gone);
	if (!r)
		r = store_inode_release(st, gone);
	if (r)
		return die("gc: a file to delete", r, NULL);
	uint64_t ino_w;
	r = put_file(st, "written", buf, STORE_PAGE_SIZE, &ino_w, &secs);
	if (r)
		return die("gc: a file to write", r, NULL);
	struct reader rd = { .st = st, .ino = ino, .pages = len / STORE_PAGE_SIZE };
	struct reader wr = { .st = st, .ino = ino_w, .pages = 1, .write = true };
	pthread_t t, tw;
	if ((r = -pthread_create(&t, NULL, reader_run, &rd)))
		return die("gc: reader thread", r, NULL);
	if ((r = -pthread_create(&tw, NULL, reader_run, &wr)))
		return die("gc: writer thread", r, NULL);
	usleep(100000);
	struct store_gc_result g;
	struct err e = { 0 };
	double t0 = now();
	r = store_gc(st, NULL, NULL, &g, &e);
	secs = now() - t0;
	usleep(100000);
	atomic_store(&rd.stop, true);
	atomic_store(&wr.stop, true);
	pthread_join(t, NULL);
	pthread_join(tw, NULL);
	if (r)
		return die("gc", r, &e);
	if (rd.err)
		return die("gc: a read beside it", rd.err, NULL);
	if (wr.err)
		return die("gc: a write beside it", wr.err, NULL);
	printf("gc         %.3f s, packs %llu -> %llu MiB; %lu reads beside it, the longest "
	       "%.3f s = %.2f of the gc; %lu writes, the longest %.3f s = %.2f\n",
	       secs, (unsigned long long)(g.bytes_before / MB),
	       (unsigned long long)(g.bytes_after / MB), rd.reads, rd.longest, rd.longest / secs,
	       wr.reads, wr.longest, wr.longest / secs);
	return 0;
}

/* Seconds for n rounds of writing page i of file name, then committing,
 * the file having a page at last (its map reaches that far). */
static int commit_rounds(struct store *st, const char *name, uint64_t last, const uint8_t *buf,
			 unsigned n, uint64_t *ino, double *secs)
{
	struct store_attr a;
	int r = store_mknod(st, STORE_ROOT_INO, name, 0100644, 0, 0, 0, &a);
	ssize_t w = r ? r : store_write(st, a.ino, buf, STORE_PAGE_SIZE, last);
	r = w < 0 ? (int)w : store_sync(st, NULL);
	*ino = a.ino;
	double t0 = now();
	for (unsigned i = 0; i < n && !r; i++) {
		w = store_write(st, a.ino, buf + (size_t)(i + 1) * STORE_PAGE_SIZE, STORE_PAGE_SIZE,
				(uint64_t)i * STORE_PAGE_SIZE);
		r = w < 0 ? (int)w : store_sync(st, NULL);
	}
	*secs = now() - t0;
	return r;
}

/* Seconds for the first read of a page of ino, its map not yet loaded. */
static int first_read(struct store *st, uint64_t ino, double *secs)
{
	uint8_t page[STORE_PAGE_SIZE];
	double t0 = now();
	ssize_t n = store_read(st, ino, page, sizeof(page), 0);
	*secs = now() - t0;
	return n < 0 ? (int)n : 0;
}

static int bench_far(struct store **st, const char *dir, const uint8_t *buf, size_t len)
{
	unsigned n = 500;
	if ((size_t)(n + 1) * STORE_PAGE_SIZE > len)
		n = (unsigned)(len / STORE_PAGE_SIZE) - 1;
	uint64_t ino_near, ino_far;
	double near, far;
	int r = commit_rounds(*st, "near", 1 << 20, buf, n, &ino_near, &near);
	if (!r)
		r = commit_rounds(*st, "far", STORE_MAX_FILE_SIZE - STORE_PAGE_SIZE, buf, n, &ino_far,
				  &far);
	if (r)
		return die("far", r, NULL);
	printf("far        %u one-page commits: %.1f us each in a file reaching 4 TiB,"
	       " %.1f us in one reaching 1 MiB (far/near %.2f)\n",
	       n, far / n * 1e6, near / n * 1e6, far / near);
	/* The store opened again: nothing of either map is in memory. */
	struct err e = { 0 };
	if ((r = store_close(*st, &e)) || (r = store_open(dir, 0, st, &e)))
		return die(dir, r, &e);
	if ((r = first_read(*st, ino_near, &near)) || (r = first_read(*st, ino_far, &far)))
		return die("far: first read", r, NULL);
	printf("           first read after opening the store: %.1f us in the far file,"
	       " %.1f us in the near one\n", far * 1e6, near * 1e6);
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	if (mib == 0)
		mib = 256;
	size_t len = mib * MB;
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	if (argc > 2)
		snprintf(dir, sizeof(dir), "%s/bench-store-%d", argv[2], (int)getpid());
	else
		snprintf(dir, sizeof(dir), "%s/bench-store-%d", tmp && *tmp ? tmp : "/tmp",
			 (int)getpid());

	uint8_t *random = malloc(len), *zero = malloc(len);
	if (!random || !zero)
		return die("buffers", -ENOMEM, NULL);
	/* Touch both buffers first: page faults here are slow and are not
	 * what is measured. */
	fill_random(random, len, 0);
	memset(zero, 0, len);

	/* The baseline: SHA-256 of the same pages, nothing else. */
	struct store_hasher *h = store_hasher_new();
	uint8_t out[STORE_HASH_SIZE];
	double t0 = now();
	for (size_t off = 0; off < len; off += STORE_PAGE_SIZE)
		store_hash(h, random + off, STORE_PAGE_SIZE, out);
	double sha_secs = now() - t0;
	store_hasher_free(h);
	double sha_rate = (double)len / sha_secs;

	struct store *st;
	struct err e = { 0 };
	int r = store_open(dir, STORE_CREATE, &st, &e);
	if (r)
		return die(dir, r, &e);
	printf("store %s, %zu MiB per case, 1 MiB writes, commit included\n", dir, mib);
	line("sha256", len, sha_secs, 0);

	uint64_t ino_r, ino_z, ino_d;
	double secs;
	if ((r = put_file(st, "random", random, len, &ino_r, &secs)))
		return die("random", r, NULL);
	line("random", len, secs, sha_rate);
	printf("           (of which the last commit: %.3f s of %.3f s)\n", last_commit, secs);
	if ((r = put_file(st, "zero", zero, len, &ino_z, &secs)))
		return die("zero", r, NULL);
	line("zero", len, secs, sha_rate);
	if ((r = put_file(st, "duplicate", random, len, &ino_d, &secs)))
		return die("duplicate", r, NULL);
	line("duplicate", len, secs, sha_rate);

	struct store_attr a;
	if ((r = store_mknod(st, STORE_ROOT_INO, "clone", 0100644, 0, 0, 0, &a)))
		return die("clone", r, NULL);
	t0 = now();
	ssize_t n = store_clone(st, ino_r, 0, a.ino, 0, len);
	r = n < 0 ? (int)n : store_sync(st, NULL);
	if (r)
		return die("clone", r, NULL);
	line("clone", len, now() - t0, sha_rate);

	if ((r = bench_gc(st, ino_r, zero, len)))	/* zero's buffer: done with */
		return r;
	if ((r = bench_far(&st, dir, random, len)))
		return r;

	struct store_stats s;
	if ((r = store_stats(st, &s, &e)))
		return die("stats", r, &e);
	printf("stored %llu MiB in packs for %llu MiB of files (dedup ratio %.2f)\n",
	       (unsigned long long)(s.pack_bytes / MB), (unsigned long long)(s.logical_bytes / MB),
	       s.dedup_ratio);
	store_close(st, NULL);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(random);
	free(zero);
	return 0;
}
