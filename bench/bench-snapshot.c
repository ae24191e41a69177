/*
 * bench/bench-snapshot.c: what snapshots buy, as ratios measured in one run.
 *
 *   1. time to the first answer of the warm guest: cold (load the ELF,
 *      boot, run init, query) against from a snapshot taken after init
 *      (open the directory, start a sandbox, query), with the snapshot's
 *      files in the page cache and with their cached pages dropped first
 *      (what a sandbox started long after the snapshot was taken waits
 *      for: the pages the guest touches, read through the filesystem);
 *   2. resident memory of N sandboxes started from one snapshot, each
 *      having read the whole table, against N times the snapshot's size;
 *   3. bytes written by a derived snapshot against the guest's memory size.
 *
 * usage: bench-snapshot BUILD_ROOT [DIR [INIT_KIB [N]]]
 *   DIR       folder to write snapshots in (a snapfs mount to measure
 *             through it; default: a temporary folder in /tmp)
 *   INIT_KIB  size of warm's table (default 1024)
 *   N         sandboxes for the memory figure (default 8)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "host/snapshot.h"

#define RUNS 5

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, struct err *e, int r)
{
	fprintf(stderr, "bench-snapshot: %s: %s\n", what, err_str(e, r));
	exit(1);
}

static void call(struct sandbox *sb, const char *fn, const char *arg, char *out, size_t cap)
{
	struct err e = { 0 };
	size_t n;
	int r = sandbox_call(sb, fn, arg, arg ? strlen(arg) : 0, out, cap - 1, &n, &e);
	if (r < 0)
		die(fn, &e, r);
	out[n] = 0;
}

/* Rss of this process in KiB, from /proc/self/smaps_rollup. */
static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* Rss in KiB of this process's mappings of files whose path contains dir. */
static long mapped_rss_kib(const char *dir)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[4400];
	unsigned long lo, hi;
	long total = 0, v;
	int in = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)	/* a mapping's header line */
			in = strstr(line, dir) != NULL;
		else if (in && sscanf(line, "Rss: %ld kB", &v) == 1)
			total += v;
	}
	if (f)
		fclose(f);
	return total;
}

/* Drop the cached pages of every file in dir (posix_fadvise DONTNEED:
 * clean pages of files no longer mapped go). */
static void drop_cached(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4600];
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	if (d)
		closedir(d);
}

/* Seconds to open the snapshot in dir, start a sandbox and query it
 * (checked against want); dropped: its files' pages dropped first. */
static double from_snapshot(const char *dir, const char *want, bool dropped)
{
	struct sandbox_options so = { 0 };
	struct err e = { 0 };
	struct snapshot *s;
	struct sandbox *sb;
	char result[256];
	int r;
	if (dropped)
		drop_cached(dir);
	double t0 = now_s();
	if ((r = snapshot_open(dir, &s, &e)) < 0 ||
	    (r = sandbox_new(snapshot_guest(s), &so, &sb, &e)) < 0)
		die(dir, &e, r);
	call(sb, "query", "4242", result, sizeof(result));
	double t = now_s() - t0;
	if (strcmp(result, want) != 0) {
		fprintf(stderr, "bench-snapshot: query from the snapshot gave %s, live gave %s\n",
			result, want);
		exit(1);
	}
	sandbox_free(sb);
	snapshot_close(s);
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 5) {
		fprintf(stderr, "usage: bench-snapshot BUILD_ROOT [DIR [INIT_KIB [N]]]\n");
		return 2;
	}
	char elf[4096], base[4096], dir[4200], derived[4200], result[256], want[256];
	snprintf(elf, sizeof(elf), "%s/guest/warm.elf", argv[1]);
	const char *kib = argc > 3 ? argv[3] : "1024";
	int n = argc > 4 ? atoi(argv[4]) : 8;
	if (n < 1 || n > 256)
		n = 8;
	int own_dir = argc < 3;
	if (own_dir) {
		strcpy(base, "/tmp/bench-snapshot.XXXXXX");
		if (!mkdtemp(base)) {
			perror("bench-snapshot: mkdtemp");
			return 1;
		}
	} else {
		snprintf(base, sizeof(base), "%s", argv[2]);
	}
	snprintf(dir, sizeof(dir), "%s/warm-%ld", base, (long)getpid());
	snprintf(derived, sizeof(derived), "%s/warm-%ld-derived", base, (long)getpid());
	struct sandbox_options so = { 0 };
	struct err e = { 0 };
	int r;

	/* 1. cold boot + init + first query, once (it is the slow path) */
	double t0 = now_s();
	struct guest *g = NULL;
	struct sandbox *sb = NULL;
	struct guest_options go = { .heap_size = 64ull << 20 };
	if ((r = guest_open_elf(elf, &go, &g, &e)) < 0 || (r = sandbox_new(g, &so, &sb, &e)) < 0)
		die(elf, &e, r);
	call(sb, "init", kib, result, sizeof(result));
	call(sb, "query", "4242", want, sizeof(want));
	double cold = now_s() - t0;
	printf("cold boot + init(%s KiB) + query: %.3f s (%s)\n", kib, cold, result);

	struct snapshot_origin o = { .elf_path = elf };
	struct snapshot_stats st;
	if ((r = snapshot_take(sb, &o, dir, &st, &e)) < 0)
		die("snapshot", &e, r);
	sandbox_free(sb);
	guest_close(g);

	double warm[RUNS], uncached[RUNS];
	for (int i = 0; i < RUNS; i++) {
		warm[i] = from_snapshot(dir, want, false);
		uncached[i] = from_snapshot(dir, want, true);
	}
	qsort(warm, RUNS, sizeof(double), cmp_double);
	qsort(uncached, RUNS, sizeof(double), cmp_double);
	printf("snapshot open + sandbox + query: min %.4f s, median %.4f s (%d runs)\n", warm[0],
	       warm[RUNS / 2], RUNS);
	printf("the same, the snapshot's cached pages dropped first: min %.4f s, median %.4f s\n",
	       uncached[0], uncached[RUNS / 2]);
	printf("RATIO first answer, cold / from snapshot (median): %.1fx\n", cold / warm[RUNS / 2]);
	printf("RATIO first answer, cold / from an uncached snapshot (median): %.1fx\n",
	       cold / uncached[RUNS / 2]);

	/* 2. resident memory of n sandboxes that each read the whole table */
	struct snapshot *s;
	if ((r = snapshot_open(dir, &s, &e)) < 0)
		die(dir, &e, r);
	const struct manifest *m = snapshot_manifest(s);
	uint64_t snap_bytes = 0, mem_bytes = 0;
	for (size_t i = 0; i < m->nregions; i++)
		mem_bytes += m->regions[i].size;
	snap_bytes = st.bytes_written;	/* the snapshot's non-zero bytes */
	long rss0 = rss_kib();
	struct sandbox **sbs = calloc((size_t)n, sizeof(*sbs));
	if (!sbs)
		return 1;
	char sum0[256] = "";
	for (int i = 0; i < n; i++) {
		if ((r = sandbox_new(snapshot_guest(s), &so, &sbs[i], &e)) < 0)
			die("sandbox", &e, r);
		call(sbs[i], "sum", NULL, result, sizeof(result));
		if (i == 0)
			snprintf(sum0, sizeof(sum0), "%s", result);
		else if (strcmp(result, sum0) != 0)
			return fprintf(stderr, "bench-snapshot: sandboxes disagree\n"), 1;
	}
	long rss1 = rss_kib();
	uint64_t scratch_res = 0;
	for (int i = 0; i < n; i++) {
		struct sandbox_stats sst;
		sandbox_stats(sbs[i], &sst);
		scratch_res += sst.scratch_resident;
	}
	printf("scratch in memory per sandbox: %.1f KiB (the snapshot's scratch image: %.1f KiB)\n",
	       (double)scratch_res / n / 1024, (double)snapshot_guest(s)->scratch_image_len / 1024);
	double grown = (double)(rss1 - rss0) * 1024;
	printf("%d sandboxes from one snapshot, each summing the table: Rss grew %.1f MiB; "
	       "%d x snapshot data (%.1f MiB each) = %.1f MiB\n", n, grown / 1048576, n,
	       (double)snap_bytes / 1048576, (double)n * (double)snap_bytes / 1048576);
	printf("of which the snapshot's region files, mapped once and shared: %.1f MiB\n",
	       (double)mapped_rss_kib(dir) / 1024);
	printf("RATIO resident memory of %d sandboxes / (%d x snapshot data): %.3f\n", n, n,
	       grown / ((double)n * (double)snap_bytes));

	/* 3. a derived snapshot after a few calls */
	call(sbs[0], "query", "7", result, sizeof(result));
	struct snapshot_origin od = { .parent = s };
	struct snapshot_stats dst;
	if ((r = snapshot_take(sbs[0], &od, derived, &dst, &e)) < 0)
		die("derived snapshot", &e, r);
	printf("derived snapshot: %llu bytes written, %llu cloned; guest memory %llu bytes\n",
	       (unsigned long long)dst.bytes_written, (unsigned long long)dst.bytes_cloned,
	       (unsigned long long)mem_bytes);
	printf("RATIO bytes written by a derived snapshot / guest memory: %.5f\n",
	       (double)dst.bytes_written / (double)mem_bytes);
	for (int i = 0; i < n; i++)
		sandbox_free(sbs[i]);
	free(sbs);
	snapshot_close(s);
	if (own_dir) {
		char cmd[4300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		if (system(cmd) != 0)
			fprintf(stderr, "bench-snapshot: could not remove %s\n", base);
	}
	return 0;
}
