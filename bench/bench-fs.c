/*
 * bench/bench-fs.c: how fast a snapfs mount serves and takes file data,
 * against baselines measured in the same run.
 *
 *   read     sequential read() of a file through the mount, cold (its page
 *            cache dropped with POSIX_FADV_DONTNEED) and warm, vs the same
 *            bytes in a tmpfs file; cold is also shown against writing a
 *            new tmpfs file of that size, which fills as much fresh page
 *            cache as a cold read must before its copy to the reader, and
 *            beside the reading thread's own CPU time (readahead allocates
 *            the cache pages in that thread), which bounds it
 *   mmap     first touch of every page of a fresh MAP_SHARED mapping, cold
 *            and warm, vs a tmpfs file (whose pages are always resident,
 *            so it only measures mapping; cold is also shown against
 *            the tmpfs write of a new file, as cold read is)
 *   copy-in  writing a file of random bytes and one of zeros into the
 *            mount vs the SHA-256 rate of this machine (OpenSSL EVP, one
 *            thread, 4 KiB pages), the ceiling of a store that hashes
 *            every page; new pages also vs writing the same bytes to a
 *            new tmpfs file (what storing new bytes in memory costs)
 *   dirs     a directory of --entries empty files (20,000 unless told):
 *            creating them, listing it (readdir), listing and stat'ing
 *            each (ls -l without its xattr calls), looking up as many
 *            missing names twice each (the second time the kernel can
 *            answer from its cache), unlinking them, vs the same on tmpfs.  Each call is a round trip to the daemon and
 *            most are a SQLite transaction, so expect small ratios; the
 *            point is that they stay flat as directories grow.
 *
 * The store and the baselines live on tmpfs (/dev/shm), so the figures are
 * the cost of the filesystem, not of a disk.  Before each copy-in of new
 * pages and its baseline, as much anonymous memory as the copy into the
 * mount will need (twice the file: its pack and the mounted file's page
 * cache) is touched and freed (--no-prefault: not): on a virtual machine
 * whose host backs guest memory lazily and takes back what the guest
 * frees, the first touch of a page costs a host fault, 0.5-6 s per GiB on
 * the machines this was written on, which is the host's cost, not the
 * filesystem's, and lands on whichever copy gets the fresh memory.  The
 * same is done after dropping the page cache for each cold read or cold
 * mapping, and before each write of a new tmpfs file they are shown against:
 * the cache just dropped is handed back to the host, so without
 * it every cold run also pays a host fault per page it caches, which the
 * tmpfs baseline (always resident) never does.  Beside the copy-ins of
 * new pages come the CPU time the host stole meanwhile (steal in
 * /proc/stat) and the CPU time of the daemon's pack writer thread, whose
 * writes into the pack are the same work as the tmpfs baseline: where
 * that thread needs several times the baseline's time, fresh memory was
 * slow to come, not snapfs.  Last, the CPU time of each of the daemon's
 * kinds of thread and of the copying thread, and how many cores they kept
 * busy in all: near the machine's count, the copy-in is bound by CPU
 * time, not by waiting.  Each measurement is run
 * several times; min and median are printed (the first cold run is often
 * slow on this kind of machine).  The mount is served both multi-threaded
 * (the default) and single-threaded (-s) for the read figures.
 *
 * usage: bench-fs [--size MIB] [--runs N] [--entries N] [--snapfs PATH] [-o OPTS]
 *                 [--no-prefault] [--only reads|copy-in]
 * (--only reads: the read and mmap figures, after the copy-ins that place
 * the file; --only copy-in: the copy-ins alone; both leave out dirs)
 * (-o OPTS is passed to snapfs, e.g. -o read_size=256,readahead=512)
 * (meson benchmark passes --snapfs; bench/bench-fs.sh runs it by hand.)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)
#define BUF (1u << 20)

static size_t bench_size = 1024u << 20;
static int bench_runs = 5;
static char bench_dir[PATH_MAX];
static const char *snapfs_bin = "snapfs";
static const char *snapfs_opts;	/* -o for snapfs, or NULL */
static bool prefault = true;
static long bench_entries = 20000;
/* --only: every part, or the reads (after the copy-ins that place the
 * file), or the copy-ins alone. */
static enum { ONLY_ALL, ONLY_READS, ONLY_COPY_IN } only;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double sum_of(const double *t, int n)
{
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += t[i];
	return sum;
}

/* CPU time (user + system, seconds) of the threads of process pid named
 * comm so far. */
static double thread_cpu(pid_t pid, const char *comm)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	unsigned long long ticks = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		char stat[sizeof(path) + 300], line[512];
		snprintf(stat, sizeof(stat), "%s/%s/stat", path, de->d_name);
		FILE *f = fopen(stat, "re");
		if (!f)
			continue;
		/* "tid (comm) state ...": utime and stime are fields 14, 15. */
		char *lp = fgets(line, sizeof(line), f) ? strchr(line, '(') : NULL;
		char *rp = lp ? strrchr(lp, ')') : NULL;
		unsigned long long ut, st;
		if (rp && (size_t)(rp - lp - 1) == strlen(comm) && !strncmp(lp + 1, comm, strlen(comm)) &&
		    sscanf(rp + 2, "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) == 2)
			ticks += ut + st;
		fclose(f);
	}
	closedir(d);
	return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

/* CPU time (user + system, seconds) of the calling thread so far. */
static double self_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time the hypervisor took from this machine so far, all CPUs, in
 * seconds (the steal column of /proc/stat; 0 where there is none). */
static double steal_seconds(void)
{
	FILE *f = fopen("/proc/stat", "re");
	unsigned long long v[8] = { 0 };
	if (f) {
		if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
			   &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
			v[7] = 0;
		fclose(f);
	}
	return (double)v[7] / (double)sysconf(_SC_CLK_TCK);
}

static void die(const char *what)
{
	fprintf(stderr, "bench-fs: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct result {
	double min, median;	/* seconds */
};

/* Min and median of the n (at most 16, as --runs) times in t, left in
 * their order. */
static struct result summarise(const double *t, int n)
{
	double s[16];
	memcpy(s, t, sizeof(*t) * (size_t)n);
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return (struct result){ s[0], s[n / 2] };
}

/* Fill buf with fast pseudo-random bytes (xorshift). */
static void fill_random(char *buf, size_t len, uint64_t *s)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		*s ^= *s << 13;
		*s ^= *s >> 7;
		*s ^= *s << 17;
		memcpy(buf + i, s, 8);
	}
}

static void make_random_file(const char *path, size_t size, uint64_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path);
	char *buf = malloc(BUF);
	uint64_t s = 0x9e3779b97f4a7c15ull ^ seed;
	for (size_t done = 0; done < size; done += BUF) {
		fill_random(buf, BUF, &s);
		if (write(fd, buf, BUF) != BUF)
			die(path);
	}
	free(buf);
	close(fd);
}

/* Touch every page of n bytes of anonymous memory and free it, so that
 * the next allocations get memory the host has backed (see the top). */
static void prefault_memory(size_t n)
{
	if (!prefault)
		return;
	char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	for (size_t i = 0; i < n; i += 4096)
		p[i] = 1;
	munmap(p, n);
}

/* Copy src to dst with 1 MiB writes; returns seconds including close. */
static double copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0)
		die(dst);
	char *buf = malloc(BUF);
	double t0 = now();
	ssize_t n;
	while ((n = read(in, buf, BUF)) > 0)
		if (write(out, buf, (size_t)n) != n)
			die(dst);
	if (close(out) != 0)
		die(dst);
	double t = now() - t0;
	close(in);
	free(buf);
	return t;
}

/* Seconds to read path through (drop: after dropping its page cache);
 * cpu, if not NULL: the CPU time the reading thread spent meanwhile. */
static double read_file(const char *path, bool drop, double *cpu)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	if (drop) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		prefault_memory(bench_size);
	}
	char *buf = malloc(BUF);
	double c0 = self_cpu(), t0 = now();
	size_t total = 0;
	ssize_t n;
	while ((n = read(fd, buf, BUF)) > 0)
		total += (size_t)n;
	double t = now() - t0;
	if (cpu)
		*cpu = self_cpu() - c0;
	if (total != bench_size)
		die("short read");
	free(buf);
	close(fd);
	return t;
}

/*
 * Write the file's size from a buffer to a new file at path (on tmpfs) and
 * remove it: filling as much fresh page cache as a cold read of the file
 * must before its copy to the reader.  Seconds.
 */
static double write_new_file(const char *path)
{
	prefault_memory(bench_size);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die(path);
	char *buf = malloc(BUF);
	memset(buf, 0x5a, BUF);
	double t0 = now();
	for (size_t done = 0; done < bench_size; done += BUF)
		if (write(fd, buf, BUF) != BUF)
			die(path);
	if (close(fd) != 0)
		die(path);
	double t = now() - t0;
	unlink(path);
	free(buf);
	return t;
}

static double mmap_touch(const char *path, bool drop)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	if (drop) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		prefault_memory(bench_size);
	}
	double t0 = now();
	volatile char *m = mmap(NULL, bench_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap");
	unsigned sum = 0;
	for (size_t i = 0; i < bench_size; i += 4096)
		sum += (unsigned char)m[i];
	double t = now() - t0;
	munmap((void *)m, bench_size);
	close(fd);
	(void)sum;
	return t;
}

/*
 * SHA-256 of the file's bytes in 4 KiB pages, best of 3, in seconds: the
 * hashing alone, as fast as OpenSSL goes on one thread.  The bytes are
 * mapped (resident on tmpfs, no copy), so they stream from memory as a
 * copy-in's do; the implementation is fetched once and one context is
 * reused, as the store does (EVP_sha256() in every init would look it up
 * each time and lower the ceiling by about 6%).
 */
static double sha256_ceiling(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	const unsigned char *m = mmap(NULL, bench_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (m == MAP_FAILED)
		die(path);
	EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!md || !ctx)
		die("SHA-256");
	unsigned char out[32];
	double best = 1e9;
	for (int r = 0; r < 3; r++) {
		double t0 = now();
		for (size_t o = 0; o < bench_size; o += 4096) {
			EVP_DigestInit_ex2(ctx, md, NULL);
			EVP_DigestUpdate(ctx, m + o, 4096);
			EVP_DigestFinal_ex(ctx, out, NULL);
		}
		double t = now() - t0;
		if (t < best)
			best = t;
	}
	EVP_MD_CTX_free(ctx);
	EVP_MD_free(md);
	munmap((void *)m, bench_size);
	close(fd);
	return best;
}

static pid_t mount_snapfs(const char *store, const char *mnt, bool single)
{
	pid_t pid = fork();
	if (pid == 0) {
		const char *argv[9] = { "snapfs", store, mnt, "-f" };
		int n = 4;
		if (single)
			argv[n++] = "-s";
		if (snapfs_opts) {
			argv[n++] = "-o";
			argv[n++] = snapfs_opts;
		}
		execv(snapfs_bin, (char *const *)argv);
		_exit(127);
	}
	/* Mounted once the mount point's device differs from its parent's. */
	struct stat a, b;
	stat(bench_dir, &a);
	for (int i = 0; i < 500; i++) {
		if (stat(mnt, &b) == 0 && b.st_dev != a.st_dev)
			return pid;
		usleep(10000);
	}
	fprintf(stderr, "bench-fs: snapfs did not mount\n");
	exit(1);
}

static void umount_snapfs(const char *mnt, pid_t pid)
{
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "fusermount3 -u %s", mnt);
	if (system(cmd) != 0)
		fprintf(stderr, "bench-fs: unmount failed\n");
	waitpid(pid, NULL, 0);
}

static double gibps(double secs)
{
	return (double)bench_size / GIB / secs;
}

/* One line of figures: what took r (min and median), as seconds and
 * GiB/s; with base (not NULL), also base's best over r's best. */
static void show(const char *what, struct result r, const struct result *base)
{
	printf("%-34s min %6.3f s %6.2f GiB/s  median %6.3f s %6.2f GiB/s", what, r.min,
	       gibps(r.min), r.median, gibps(r.median));
	if (base)
		printf("  ratio(best) %.2f", base->min / r.min);
	printf("\n");
}

/* Ratios of a mount's read figures to their baselines (min, median). */
struct read_ratios {
	struct result cold;		/* cold read / tmpfs read */
	struct result cold_fill;	/* cold read / tmpfs write of a new file */
	struct result mmap;		/* cold mapping / tmpfs first touch */
	struct result mmap_fill;	/* cold mapping / tmpfs write of a new file */
	struct result mmap_warm;	/* warm mapping / tmpfs first touch */
};

static struct result ratio(struct result base, struct result r)
{
	return (struct result){ base.min / r.min, base.median / r.median };
}

static struct read_ratios bench_reads(const char *file, const char *base_file, bool single)
{
	double t[16] = { 0 }, b[16] = { 0 }, w[16] = { 0 }, c[16] = { 0 };
	int n = bench_runs;
	const char *mode = single ? "single-thread" : "multi-thread";
	char name[96], fill[PATH_MAX + 16];
	struct read_ratios out;
	snprintf(fill, sizeof(fill), "%s/fill", bench_dir);

	for (int i = 0; i < n; i++) {
		b[i] = read_file(base_file, false, NULL);
		w[i] = write_new_file(fill);
		t[i] = read_file(file, true, &c[i]);
	}
	struct result base = summarise(b, n), cold = summarise(t, n), fresh = summarise(w, n);
	show("tmpfs read", base, NULL);
	show("tmpfs write of a new file", fresh, NULL);
	snprintf(name, sizeof(name), "snapfs cold read (%s)", mode);
	show(name, cold, &base);
	/*
	 * tmpfs read only copies resident pages out.  A cold read through
	 * any page cache must first fill as many fresh pages (allocate,
	 * charge, copy in), which is what a write of a new tmpfs file does,
	 * so that is the second reference.  It is no strict floor (the
	 * reader's copy and the fill overlap, the source is colder, folio
	 * sizes differ), but near 1 the filesystem adds little to it.
	 */
	out.cold = ratio(base, cold);
	out.cold_fill = ratio(fresh, cold);
	printf("  cold read vs tmpfs write of a new file: min %.2f  median %.2f\n",
	       out.cold_fill.min, out.cold_fill.median);
	/*
	 * Readahead allocates the new cache pages in the reading thread, which
	 * then copies them out: that thread's own CPU time bounds the cold
	 * read whatever the daemon does, and tmpfs read over it bounds the
	 * ratio to tmpfs read.
	 */
	struct result rc = summarise(c, n);
	printf("  the reading thread's own CPU (allocating the cache pages, copying them out):"
	       " min %.3f s, median %.3f s; tmpfs read / that: %.2f\n",
	       rc.min, rc.median, base.min / rc.min);
	for (int i = 0; i < n; i++)
		t[i] = read_file(file, false, NULL);
	snprintf(name, sizeof(name), "snapfs warm read (%s)", mode);
	show(name, summarise(t, n), &base);

	for (int i = 0; i < n; i++) {
		b[i] = mmap_touch(base_file, false);
		t[i] = mmap_touch(file, true);
	}
	base = summarise(b, n);
	cold = summarise(t, n);
	show("tmpfs mmap first touch", base, NULL);
	snprintf(name, sizeof(name), "snapfs mmap cold (%s)", mode);
	show(name, cold, &base);
	/* The same fill stands behind a cold mapping's first touch. */
	out.mmap = ratio(base, cold);
	out.mmap_fill = ratio(fresh, cold);
	printf("  mmap cold vs tmpfs write of a new file: min %.2f  median %.2f\n",
	       out.mmap_fill.min, out.mmap_fill.median);
	for (int i = 0; i < n; i++)
		t[i] = mmap_touch(file, false);
	struct result warm = summarise(t, n);
	snprintf(name, sizeof(name), "snapfs mmap warm (%s)", mode);
	show(name, warm, &base);
	out.mmap_warm = ratio(base, warm);
	return out;
}

/* ---- directories ----------------------------------------------------------- */

struct dir_times {
	double create, list, list_stat, miss, miss_again, unlink;
};

/* Entries of dir, each lstat'ed if stat_each; the count. */
static long list_dir(const char *dir, bool stat_each)
{
	DIR *d = opendir(dir);
	if (!d)
		die(dir);
	long n = 0;
	struct dirent *de;
	struct stat st;
	while ((de = readdir(d))) {
		if (stat_each && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			die(de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* Create, list (runs times each way, the best kept) and remove
 * bench_entries empty files in a new directory dir. */
static struct dir_times bench_dir_in(const char *dir, int runs)
{
	struct dir_times t = { 0 };
	if (mkdir(dir, 0755))
		die(dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		die(dir);
	char name[32];
	double t0 = now();
	for (long i = 0; i < bench_entries; i++) {
		snprintf(name, sizeof(name), "entry-%ld", i);
		int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0 || close(fd))
			die(name);
	}
	t.create = now() - t0;
	for (int r = 0; r < runs; r++) {
		double a = now();
		if (list_dir(dir, false) != bench_entries + 2)
			die("listing: wrong count");
		double b = now();
		list_dir(dir, true);
		double c = now();
		if (!r || b - a < t.list)
			t.list = b - a;
		if (!r || c - b < t.list_stat)
			t.list_stat = c - b;
	}
	/* Names that are not there, twice each in a row: the second time
	 * the kernel may know the miss without asking (within the mount's
	 * timeout, which a pass over all names could outlast). */
	struct stat st;
	for (long i = 0; i < bench_entries; i++) {
		snprintf(name, sizeof(name), "missing-%ld", i);
		for (int again = 0; again < 2; again++) {
			t0 = now();
			if (!fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) || errno != ENOENT)
				die(name);
			*(again ? &t.miss_again : &t.miss) += now() - t0;
		}
	}
	t0 = now();
	for (long i = 0; i < bench_entries; i++) {
		snprintf(name, sizeof(name), "entry-%ld", i);
		if (unlinkat(dfd, name, 0))
			die(name);
	}
	t.unlink = now() - t0;
	close(dfd);
	if (rmdir(dir))
		die(dir);
	return t;
}

static void report_dir(const char *what, double base, double snap)
{
	printf("  %-24s tmpfs %8.3f s  snapfs %8.3f s  %7.1f us/entry  ratio %.3f\n", what, base,
	       snap, snap * 1e6 / (double)bench_entries, base / snap);
}

static void bench_dirs(const char *base_dir, const char *mnt_dir, int runs)
{
	struct dir_times b = bench_dir_in(base_dir, runs);
	struct dir_times m = bench_dir_in(mnt_dir, runs);
	printf("directory of %ld entries (best of %d listings)\n", bench_entries, runs);
	report_dir("create", b.create, m.create);
	report_dir("list (readdir)", b.list, m.list);
	report_dir("list and lstat each", b.list_stat, m.list_stat);
	report_dir("lstat of a missing name", b.miss, m.miss);
	report_dir("the same name again", b.miss_again, m.miss_again);
	report_dir("unlink", b.unlink, m.unlink);
}

static void print_read_summary(const struct read_ratios *mt, const struct read_ratios *st)
{
	printf("\nsummary (targets: cold read >= 0.5, mmap first touch >= 0.7, copy-in >= 0.6)\n");
	printf("  cold read / tmpfs read:        multi %.2f (median %.2f), single %.2f (median %.2f)\n",
	       mt->cold.min, mt->cold.median, st->cold.min, st->cold.median);
	printf("  mmap cold / tmpfs first touch: multi %.2f (median %.2f), single %.2f (median %.2f)\n",
	       mt->mmap.min, mt->mmap.median, st->mmap.min, st->mmap.median);
	printf("  cold read / tmpfs write of a new file: multi %.2f (median %.2f), single %.2f (median %.2f)\n",
	       mt->cold_fill.min, mt->cold_fill.median, st->cold_fill.min, st->cold_fill.median);
	printf("  mmap cold / tmpfs write of a new file: multi %.2f (median %.2f), single %.2f (median %.2f)\n",
	       mt->mmap_fill.min, mt->mmap_fill.median, st->mmap_fill.min, st->mmap_fill.median);
	printf("  mmap warm / tmpfs first touch: multi %.2f (median %.2f), single %.2f (median %.2f)\n",
	       mt->mmap_warm.min, mt->mmap_warm.median, st->mmap_warm.min, st->mmap_warm.median);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc)
			bench_size = (size_t)atol(argv[++i]) << 20;
		else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			bench_runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--snapfs") && i + 1 < argc)
			snapfs_bin = argv[++i];
		else if (!strcmp(argv[i], "-o") && i + 1 < argc)
			snapfs_opts = argv[++i];
		else if (!strcmp(argv[i], "--no-prefault"))
			prefault = false;
		else if (!strcmp(argv[i], "--entries") && i + 1 < argc)
			bench_entries = atol(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc &&
			 (!strcmp(argv[i + 1], "reads") || !strcmp(argv[i + 1], "copy-in")))
			only = !strcmp(argv[++i], "reads") ? ONLY_READS : ONLY_COPY_IN;
		else {
			fprintf(stderr, "usage: bench-fs [--size MIB] [--runs N] [--entries N]"
					" [--snapfs PATH] [-o OPTS] [--no-prefault]"
					" [--only reads|copy-in]\n");
			return 2;
		}
	}
	if (bench_runs < 1 || bench_runs > 16 || bench_size < BUF || bench_entries < 1) {
		fprintf(stderr, "bench-fs: --runs 1..16, --size >= 1, --entries >= 1\n");
		return 2;
	}
	if (access("/dev/fuse", R_OK | W_OK)) {
		printf("bench-fs: no /dev/fuse, skipped\n");
		return 0;
	}
	snprintf(bench_dir, sizeof(bench_dir), "/dev/shm/bench-fs.XXXXXX");
	if (!mkdtemp(bench_dir))
		die("mkdtemp");
	char store[PATH_MAX + 16], mnt[PATH_MAX + 16], base[PATH_MAX + 16], zeros[PATH_MAX + 16];
	char file[PATH_MAX + 32], zfile[PATH_MAX + 32];
	snprintf(store, sizeof(store), "%s/store", bench_dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", bench_dir);
	snprintf(base, sizeof(base), "%s/base", bench_dir);
	snprintf(zeros, sizeof(zeros), "%s/zeros", bench_dir);
	snprintf(file, sizeof(file), "%s/file", mnt);
	snprintf(zfile, sizeof(zfile), "%s/zeros", mnt);
	mkdir(mnt, 0755);
	printf("bench-fs: %.0f MiB files, %d runs, store and baselines on tmpfs, snapfs -o %s\n",
	       (double)bench_size / MIB, bench_runs, snapfs_opts ? snapfs_opts : "(defaults)");
	/* Cold paths need the reader and the daemon on separate cores; on a
	 * busy machine they suffer far more than the baselines do. */
	FILE *la = fopen("/proc/loadavg", "r");
	char load[64] = "?\n";
	if (la) {
		if (!fgets(load, sizeof(load), la))
			strcpy(load, "?\n");
		fclose(la);
	}
	printf("load average at start: %s", load);
	make_random_file(base, bench_size, 0);
	int zfd = open(zeros, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	char *zb = calloc(1, BUF);
	for (size_t d = 0; d < bench_size; d += BUF)
		if (write(zfd, zb, BUF) != BUF)
			die(zeros);
	free(zb);
	close(zfd);

	double sha = sha256_ceiling(base);
	printf("SHA-256 ceiling (1 thread, 4 KiB pages)  %.3f s  %.2f GiB/s\n", sha, gibps(sha));

	pid_t pid = mount_snapfs(store, mnt, false);
	double t[16] = { 0 };
	int n = bench_runs < 3 ? bench_runs : 3;
	for (int i = 0; i < n; i++) {
		unlink(file);
		t[i] = copy_file(base, file);
	}
	struct result cin = summarise(t, n);
	/* Only the first copy stores pages; later ones find them stored. */
	for (int i = 0; i < n; i++) {
		unlink(zfile);
		t[i] = copy_file(zeros, zfile);
	}
	struct result zin = summarise(t, n);
	printf("copy-in random (repeat: dedup hits) min %6.3f s %6.2f GiB/s  ratio to SHA-256 %.2f\n",
	       cin.min, gibps(cin.min), sha / cin.min);
	printf("copy-in zeros                      min %6.3f s %6.2f GiB/s  ratio to SHA-256 %.2f\n",
	       zin.min, gibps(zin.min), sha / zin.min);
	unlink(zfile);

	umount_snapfs(mnt, pid);
	struct read_ratios mt = { 0 }, st = { 0 };
	if (only != ONLY_COPY_IN) {
		pid = mount_snapfs(store, mnt, false);
		mt = bench_reads(file, base, false);
		umount_snapfs(mnt, pid);
		pid = mount_snapfs(store, mnt, true);
		st = bench_reads(file, base, true);
		umount_snapfs(mnt, pid);
	}
	if (only == ONLY_READS) {
		print_read_summary(&mt, &st);
		goto out;
	}

	/*
	 * New random content in every run: every page is new to the store.
	 * Storing new bytes needs memory the machine has to hand out, which
	 * on some virtual machines costs far more than hashing them; writing
	 * the same bytes to a new tmpfs file, in the same run and state, is
	 * the least any store of them costs, so it is shown beside the
	 * SHA-256 ceiling.  The two go first in turn, each after
	 * prefault_memory.
	 */
	pid = mount_snapfs(store, mnt, false);
	double tn[16] = { 0 }, tb[16] = { 0 }, tp[16] = { 0 }, steal_n = 0, steal_b = 0;
	/* CPU per copy-in: the daemon's FUSE workers, hashing helper and
	 * committer (the pack writer is tp), and this thread's copying. */
	double tw[16] = { 0 }, th[16] = { 0 }, tc[16] = { 0 }, tself[16] = { 0 };
	for (int i = 0; i < n; i++) {
		char fresh[PATH_MAX + 48], plain[PATH_MAX + 48];
		snprintf(fresh, sizeof(fresh), "%s/fresh%d", mnt, i);
		snprintf(plain, sizeof(plain), "%s/plain", bench_dir);
		make_random_file(base, bench_size, (uint64_t)i + 1);
		/* The copy into the mount needs the file's size twice over:
		 * once in the pack, once in the page cache of the mounted
		 * file, which the kernel keeps after each write. */
		size_t room = 2 * bench_size + (bench_size >> 3);
		for (int k = 0; k < 2; k++) {
			prefault_memory(room);
			double s0 = steal_seconds();
			if ((i + k) % 2) {	/* alternate which goes first */
				double p0 = thread_cpu(pid, "snapfs-pack");
				double w0 = thread_cpu(pid, "snapfs-worker"), h0 = thread_cpu(pid, "snapfs-hash");
				double c0 = thread_cpu(pid, "snapfs-commit"), me0 = self_cpu();
				tn[i] = copy_file(base, fresh);
				tp[i] = thread_cpu(pid, "snapfs-pack") - p0;
				tw[i] = thread_cpu(pid, "snapfs-worker") - w0;
				th[i] = thread_cpu(pid, "snapfs-hash") - h0;
				tc[i] = thread_cpu(pid, "snapfs-commit") - c0;
				tself[i] = self_cpu() - me0;
				steal_n += steal_seconds() - s0;
			} else {
				tb[i] = copy_file(base, plain);
				steal_b += steal_seconds() - s0;
			}
		}
		unlink(plain);
	}
	if (only != ONLY_COPY_IN) {
		char dbase[PATH_MAX + 32], dmnt[PATH_MAX + 32];
		snprintf(dbase, sizeof(dbase), "%s/dir", bench_dir);
		snprintf(dmnt, sizeof(dmnt), "%s/dir", mnt);
		bench_dirs(dbase, dmnt, n);
	}
	umount_snapfs(mnt, pid);
	struct result fresh = summarise(tn, n), plain = summarise(tb, n), pack = summarise(tp, n);
	printf("(host memory prefaulted before each: %s)\n", prefault ? "yes" : "no, --no-prefault");
	show("tmpfs write of new data (new file)", plain, NULL);
	show("copy-in random (new pages)", fresh, NULL);
	printf("  ratio to SHA-256 %.2f (median %.2f), to the tmpfs write %.2f (median %.2f)\n",
	       sha / fresh.min, sha / fresh.median, plain.min / fresh.min,
	       plain.median / fresh.median);
	printf("  CPU time the host stole during them (all runs): %.2f s of the copy-ins' %.2f s,"
	       " %.2f s of the tmpfs writes' %.2f s\n", steal_n, sum_of(tn, n), steal_b, sum_of(tb, n));
	printf("  the pack writer thread (writes the new pages into the pack on tmpfs, as the tmpfs\n"
	       "  write does): min %.2f s, median %.2f s of CPU per copy-in; per run:", pack.min,
	       pack.median);
	for (int i = 0; i < n; i++)
		printf(" %.2f/%.2f s", tp[i], tn[i]);
	printf(" (thread CPU/copy-in)\n");
	struct result w = summarise(tw, n), h = summarise(th, n), c = summarise(tc, n),
		      self = summarise(tself, n);
	double busy = w.median + h.median + c.median + pack.median + self.median;
	printf("  CPU per copy-in, median: FUSE workers %.2f s, hashing helper %.2f s, committer %.2f s,\n"
	       "  pack writer %.2f s, the copying thread %.2f s: %.2f s in all, %.2f of %ld cores busy\n",
	       w.median, h.median, c.median, pack.median, self.median, busy, busy / fresh.median,
	       sysconf(_SC_NPROCESSORS_ONLN));

	if (only != ONLY_COPY_IN)
		print_read_summary(&mt, &st);
	else
		printf("\nsummary (target: copy-in >= 0.6)\n");
	printf("  copy-in / SHA-256:             new pages %.2f (median %.2f), repeated %.2f, zeros %.2f\n",
	       sha / fresh.min, sha / fresh.median, sha / cin.min, sha / zin.min);
	printf("  copy-in of new pages / tmpfs write of new data: %.2f (median %.2f)\n",
	       plain.min / fresh.min, plain.median / fresh.median);

out:;
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", bench_dir);
	return system(cmd) == 0 ? 0 : 1;
}
