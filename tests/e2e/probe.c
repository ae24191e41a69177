/*
 * tests/e2e/probe.c: small file-access programs the end-to-end tests run
 * against a mounted snapfs, for what shell tools cannot do:
 *
 *   probe mmap FILE REF
 *	map FILE shared read-only and private; both must equal REF byte for
 *	byte; writing the private map must not change the file.
 *   probe randwrite FILE REF SEED COUNT
 *	COUNT writes of random bytes at random offsets (unaligned, across
 *	page boundaries, past the end) to FILE and REF alike, then compare.
 *   probe parallel FILE READERS WRITERS ROUNDS
 *	writers rewrite their own pages with a new generation each round
 *	(every byte of a page tells writer and generation); readers read and
 *	map pages at random and fail on a page mixing two versions (torn).
 *	At the end each page must hold its writer's last generation.  Reads
 *	and writes use O_DIRECT so that every one is served by the daemon;
 *	through the page cache a read racing a write of the same page may
 *	see it half copied on any filesystem, which is not what is tested.
 *	A mapping cannot be read that way: a copy out of it that a write of
 *	the same page overlaps (the kernel drops the page mid-copy and the
 *	rest comes from the new one) may mix them on any filesystem, so a
 *	mapped page counts as torn only if no write of it overlapped the
 *	copy (each page has a counter writers bump before and after).
 *   probe unlinked FILE REF
 *	open and map FILE, unlink it, drop the page cache, and check that
 *	reads through the fd and the mapping still return REF's bytes.
 *   probe cfr SRC DST
 *	copy_file_range the whole of SRC to DST (created) in one call.
 *   probe cache DIR
 *	writes through a write-only handle that is the file's only writer
 *	leave no pages in the kernel's cache; writes through a read-write
 *	handle, or beside another writer, do; and a mapping and a reader
 *	that cached the file's pages before a write-only handle changed
 *	them see the new bytes afterwards.
 *
 * Exit status 0 on success, 1 with a message on stderr otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	int err = errno;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "probe: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, err ? " (%s)\n" : "\n", strerror(err));
	return 1;
}

static char *read_all(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	struct stat st;
	fstat(fd, &st);
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return buf;
}

static int probe_mmap(const char *file, const char *ref)
{
	size_t rlen;
	char *r = read_all(ref, &rlen);
	if (!r)
		return fail("%s: cannot read", ref);
	int fd = open(file, O_RDONLY);
	if (fd < 0)
		return fail("%s: open", file);
	struct stat st;
	fstat(fd, &st);
	if ((size_t)st.st_size != rlen)
		return fail("%s: size differs from reference by %ld", file, (long)st.st_size - (long)rlen);
	if (rlen == 0)
		return 0;
	char *s = mmap(NULL, rlen, PROT_READ, MAP_SHARED, fd, 0);
	char *p = mmap(NULL, rlen, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (s == MAP_FAILED || p == MAP_FAILED)
		return fail("%s: mmap", file);
	if (memcmp(s, r, rlen))
		return fail("%s: MAP_SHARED content differs", file);
	if (memcmp(p, r, rlen))
		return fail("%s: MAP_PRIVATE content differs", file);
	memset(p, 0xa5, rlen < PAGE ? rlen : PAGE);
	if (memcmp(s, r, rlen))
		return fail("%s: a private write showed in the shared map", file);
	munmap(s, rlen);
	munmap(p, rlen);
	close(fd);
	size_t flen;
	char *f = read_all(file, &flen);
	int bad = !f || flen != rlen || memcmp(f, r, rlen);
	free(f);
	free(r);
	return bad ? fail("%s: file changed by a private mapping", file) : 0;
}

static int pwrite_all(int fd, const char *buf, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, off);
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int probe_randwrite(const char *file, const char *ref, unsigned seed, int count)
{
	int a = open(file, O_RDWR | O_CREAT, 0644), b = open(ref, O_RDWR | O_CREAT, 0644);
	if (a < 0 || b < 0)
		return fail("%s: open", file);
	srandom(seed);
	char *buf = malloc(300000);
	for (int i = 0; i < count; i++) {
		size_t len = (size_t)(random() % 3 == 0 ? random() % 300000 : random() % 9000) + 1;
		off_t off = (off_t)(random() % (8 << 20));
		if (random() % 4 == 0)
			off &= ~(off_t)(PAGE - 1);
		int zeros = random() % 5 == 0;
		for (size_t j = 0; j < len; j++)
			buf[j] = zeros ? 0 : (char)random();
		if (pwrite_all(a, buf, len, off) || pwrite_all(b, buf, len, off))
			return fail("%s: pwrite at %ld", file, (long)off);
		if (random() % 50 == 0) {
			off_t t = (off_t)(random() % (8 << 20));
			if (ftruncate(a, t) || ftruncate(b, t))
				return fail("%s: ftruncate to %ld", file, (long)t);
		}
	}
	free(buf);
	close(a);
	close(b);
	size_t la, lb;
	char *x = read_all(file, &la), *y = read_all(ref, &lb);
	if (!x || !y || la != lb)
		return fail("%s: length differs from reference by %ld", file, (long)la - (long)lb);
	for (size_t i = 0; i < la; i++)
		if (x[i] != y[i])
			return fail("%s: first difference at byte %ld", file, (long)i);
	free(x);
	free(y);
	return 0;
}

/* ---- parallel readers and writers ---- */

struct par {
	const char *file;
	int writers, rounds;
	int id;
	_Atomic int *stop;	/* set once the writers are done */
	_Atomic unsigned *writing;	/* per page: odd while a write of it runs */
	int bad;
	pthread_barrier_t *start;
};

#define PAR_PAGES 64	/* pages per writer */

static void par_fill(char *page, int writer, int gen)
{
	/* Each 8-byte word carries writer and generation. */
	uint64_t w = ((uint64_t)writer << 32) | (uint32_t)gen;
	for (int i = 0; i < PAGE / 8; i++)
		memcpy(page + 8 * i, &w, 8);
}

/* 1 if every word of the page is the same version (or all zero). */
static int par_whole(const char *page)
{
	for (int i = 1; i < PAGE / 8; i++)
		if (memcmp(page, page + 8 * i, 8))
			return 0;
	return 1;
}

static void *par_writer(void *arg)
{
	struct par *p = arg;
	int fd = open(p->file, O_WRONLY | O_DIRECT);
	char *page = aligned_alloc(PAGE, PAGE);
	pthread_barrier_wait(p->start);
	for (int g = 1; g <= p->rounds && fd >= 0; g++) {
		for (int i = 0; i < PAR_PAGES; i++) {
			par_fill(page, p->id, g);
			size_t pg = (size_t)p->id * PAR_PAGES + (size_t)i;
			atomic_fetch_add(&p->writing[pg], 1);
			if (pwrite(fd, page, PAGE, (off_t)(pg * PAGE)) != PAGE)
				p->bad = 1;
			atomic_fetch_add(&p->writing[pg], 1);
		}
	}
	if (fd < 0)
		p->bad = 1;
	else
		close(fd);
	free(page);
	return NULL;
}

static void *par_reader(void *arg)
{
	struct par *p = arg;
	int fd = open(p->file, O_RDONLY | O_DIRECT);
	size_t len = (size_t)p->writers * PAR_PAGES * PAGE;
	char *map = fd >= 0 ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	char *page = aligned_alloc(PAGE, PAGE);
	unsigned seed = (unsigned)p->id;
	pthread_barrier_wait(p->start);
	if (map == MAP_FAILED) {
		p->bad = 1;
		free(page);
		return NULL;
	}
	while (!*p->stop) {
		size_t pg = (size_t)rand_r(&seed) % ((size_t)p->writers * PAR_PAGES);
		if (pread(fd, page, PAGE, (off_t)(pg * PAGE)) != PAGE || !par_whole(page))
			p->bad = 1;
		unsigned before = atomic_load(&p->writing[pg]);
		memcpy(page, map + pg * PAGE, PAGE);
		atomic_thread_fence(memory_order_seq_cst);
		unsigned after = atomic_load(&p->writing[pg]);
		if (!par_whole(page) && before == after && !(before & 1))
			p->bad = 1;
	}
	munmap(map, len);
	close(fd);
	free(page);
	return NULL;
}

static int probe_parallel(const char *file, int readers, int writers, int rounds)
{
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)writers * PAR_PAGES * PAGE))
		return fail("%s: create", file);
	close(fd);
	int n = readers + writers;
	pthread_t *t = calloc((size_t)n, sizeof(*t));
	struct par *ps = calloc((size_t)n, sizeof(*ps));
	_Atomic int stop = 0;
	_Atomic unsigned *writing = calloc((size_t)writers * PAR_PAGES, sizeof(*writing));
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		ps[i] = (struct par){ .file = file, .writers = writers, .rounds = rounds,
				      .id = i < writers ? i : i + 1000, .stop = &stop,
				      .writing = writing, .start = &start };
		pthread_create(&t[i], NULL, i < writers ? par_writer : par_reader, &ps[i]);
	}
	for (int i = 0; i < writers; i++)
		pthread_join(t[i], NULL);
	stop = 1;
	for (int i = writers; i < n; i++)
		pthread_join(t[i], NULL);
	int bad = 0;
	for (int i = 0; i < n; i++)
		bad |= ps[i].bad;
	if (bad)
		return fail("%s: a reader saw a torn page or an I/O failed", file);
	fd = open(file, O_RDONLY);
	if (fd < 0)
		return fail("%s: open after the writers", file);
	char page[PAGE], want[PAGE];
	for (int w = 0; w < writers; w++) {
		par_fill(want, w, rounds);
		for (int i = 0; i < PAR_PAGES; i++) {
			off_t off = ((off_t)w * PAR_PAGES + i) * PAGE;
			ssize_t got = pread(fd, page, PAGE, off);
			if (got != PAGE)
				return fail("%s: pread of the page at %ld gave %zd", file, (long)off, got);
			if (memcmp(page, want, PAGE)) {
				uint32_t word[2];
				memcpy(word, page, sizeof(word));
				errno = 0;
				return fail("%s: page at %ld lacks the last generation: it starts with "
					    "writer %u generation %u, not writer %d generation %d",
					    file, (long)off, word[1], word[0], w, rounds);
			}
		}
	}
	close(fd);
	free(t);
	free(ps);
	free(writing);
	return 0;
}

static int probe_unlinked(const char *file, const char *ref)
{
	size_t rlen;
	char *r = read_all(ref, &rlen);
	int fd = open(file, O_RDONLY);
	if (!r || fd < 0 || rlen == 0)
		return fail("%s: open", file);
	char *m = mmap(NULL, rlen, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return fail("%s: mmap", file);
	if (unlink(file))
		return fail("%s: unlink", file);
	struct stat st;
	if (stat(file, &st) == 0)
		return fail("%s: still there after unlink", file);
	/* Drop what the kernel caches so the daemon must serve the pages. */
	madvise(m, rlen, MADV_DONTNEED);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	char *buf = malloc(rlen);
	size_t got = 0;
	while (got < rlen) {
		ssize_t n = pread(fd, buf + got, rlen - got, (off_t)got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got != rlen || memcmp(buf, r, rlen))
		return fail("%s: read after unlink differs", file);
	if (memcmp(m, r, rlen))
		return fail("%s: mapping after unlink differs", file);
	munmap(m, rlen);
	close(fd);
	free(buf);
	free(r);
	return 0;
}

static int probe_cfr(const char *src, const char *dst)
{
	int a = open(src, O_RDONLY), b = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct stat st;
	if (a < 0 || b < 0 || fstat(a, &st))
		return fail("%s: open", src);
	size_t left = (size_t)st.st_size;
	while (left) {
		ssize_t n = copy_file_range(a, NULL, b, NULL, left, 0);
		if (n <= 0)
			return fail("%s: copy_file_range, %ld bytes left", src, (long)left);
		left -= (size_t)n;
	}
	close(a);
	return close(b) ? fail("%s: close", dst) : 0;
}

/* Pages of the mapping m of len bytes that are in the page cache, or -1. */
static long cached_pages(void *m, size_t len)
{
	unsigned char vec[len / PAGE];
	if (mincore(m, len, vec))
		return -1;
	long n = 0;
	for (size_t i = 0; i < len / PAGE; i++)
		n += vec[i] & 1;
	return n;
}

/*
 * Write len bytes of c to a new file at path through a handle opened with
 * flags (O_WRONLY or O_RDWR), another handle open for writing beside it if
 * other_writer.  Returns how many of the pages are then in the page cache
 * (seen through a mapping made before the write, as opening the file anew
 * may drop its cache), or -1.
 */
static long write_new(const char *path, int flags, bool other_writer, char c, size_t len)
{
	int o = -1, r = open(path, O_RDONLY | O_CREAT | O_TRUNC, 0644);
	if (other_writer)
		o = open(path, O_RDWR);
	int fd = open(path, flags);
	if (r < 0 || fd < 0 || (other_writer && o < 0) || ftruncate(fd, (off_t)len))
		return fail("%s: open", path), -1;
	void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, r, 0);
	char *buf = malloc(len);
	memset(buf, c, len);
	long n = -1;
	if (m == MAP_FAILED || pwrite_all(fd, buf, len, 0))
		fail("%s: write", path);
	else
		n = cached_pages(m, len);
	if (close(fd))
		n = -1;
	if (m != MAP_FAILED)
		munmap(m, len);
	free(buf);
	if (o >= 0)
		close(o);
	close(r);
	return n;
}

static int probe_cache(const char *dir)
{
	enum { N = 16 };
	const size_t len = N * PAGE;
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];
	snprintf(a, sizeof(a), "%s/cache-wronly", dir);
	snprintf(b, sizeof(b), "%s/cache-rdwr", dir);
	snprintf(c, sizeof(c), "%s/cache-two", dir);
	long na = write_new(a, O_WRONLY, false, 'a', len);
	long nb = write_new(b, O_RDWR, false, 'b', len);
	long nc = write_new(c, O_WRONLY, true, 'c', len);
	if (na < 0 || nb < 0 || nc < 0)
		return 1;
	if (na != 0)
		return fail("%s: %ld of %d pages cached after a write-only write", a, na, N);
	if (nb != N)
		return fail("%s: %ld of %d pages cached after a read-write write", b, nb, N);
	if (nc != N)
		return fail("%s: %ld of %d pages cached after a write beside another writer", c,
			    nc, N);

	/* Cache a's pages through a mapping and a reader, then change the
	 * middle of the file through a write-only handle. */
	int fd = open(a, O_RDONLY);
	char *m = fd < 0 ? MAP_FAILED : mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return fail("%s: map", a);
	char ref[N * PAGE], got[N * PAGE];
	memset(ref, 'a', len);
	if (memcmp(m, ref, len) || pread(fd, got, len, 0) != (ssize_t)len || memcmp(got, ref, len))
		return fail("%s: first read differs", a);
	int w = open(a, O_WRONLY);
	const size_t off = PAGE + 100, n = 3 * PAGE;
	memset(ref + off, 'z', n);
	if (w < 0 || pwrite_all(w, ref + off, n, (off_t)off) || close(w))
		return fail("%s: rewrite", a);
	if (memcmp(m, ref, len))
		return fail("%s: a mapping made before a write-only write still shows old bytes", a);
	if (pread(fd, got, len, 0) != (ssize_t)len || memcmp(got, ref, len))
		return fail("%s: a reader open before a write-only write still reads old bytes", a);
	munmap(m, len);
	close(fd);
	return 0;
}

static bool all_bytes(const char *p, size_t n, char c)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != c)
			return false;
	return true;
}

static int probe_lost(const char *file, const char *big, const char *dst)
{
	enum { MB = 1 << 20, CHANGE = 16 * PAGE };
	static char buf[MB];
	int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0644);
	memset(buf, 'A', MB);
	if (fd < 0 || pwrite_all(fd, buf, MB, 0) || fsync(fd))
		return fail("%s: committed write", file);
	memset(buf, 'B', CHANGE);
	if (pwrite_all(fd, buf, CHANGE, 0) || pwrite_all(fd, buf, CHANGE, MB))
		return fail("%s: uncommitted write", file);

	/* Fill the disk: a write or the close fails with ENOSPC. */
	int in = open(big, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0)
		return fail("%s or %s: open", big, dst);
	ssize_t n;
	int err = 0;
	while (!err && (n = read(in, buf, MB)) > 0)
		if (write(out, buf, (size_t)n) != n)
			err = errno;
	if (close(out) && !err)
		err = errno;
	close(in);
	if (err != ENOSPC)
		return fail("%s: filling the disk ended with %s, not ENOSPC", dst, strerror(err));
	if (unlink(dst))
		return fail("%s: unlink", dst);

	sleep(2);	/* past the attribute timeout */
	struct stat st;
	if (pread(fd, buf, PAGE, 0) != PAGE || fstat(fd, &st))
		return fail("%s: read after the loss", file);
	if (!all_bytes(buf, PAGE, 'A'))
		return fail("%s: the open handle still reads bytes the store dropped", file);
	if (st.st_size != MB)
		return fail("%s: size %lld after the loss, not the committed %d", file,
			    (long long)st.st_size, MB);
	errno = 0;
	if (close(fd) == 0 || errno != ENOSPC)
		return fail("%s: close did not report the loss with ENOSPC", file);
	fd = open(file, O_RDONLY);
	if (fd < 0 || pread(fd, buf, MB, 0) != MB || !all_bytes(buf, MB, 'A') || fstat(fd, &st) ||
	    st.st_size != MB)
		return fail("%s: reopened, not the committed 1 MiB of A", file);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	if (!strcmp(cmd, "mmap") && argc == 4)
		return probe_mmap(argv[2], argv[3]);
	if (!strcmp(cmd, "randwrite") && argc == 6)
		return probe_randwrite(argv[2], argv[3], (unsigned)atoi(argv[4]), atoi(argv[5]));
	if (!strcmp(cmd, "parallel") && argc == 6)
		return probe_parallel(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (!strcmp(cmd, "unlinked") && argc == 4)
		return probe_unlinked(argv[2], argv[3]);
	if (!strcmp(cmd, "cfr") && argc == 4)
		return probe_cfr(argv[2], argv[3]);
	if (!strcmp(cmd, "cache") && argc == 3)
		return probe_cache(argv[2]);
	if (!strcmp(cmd, "lost") && argc == 5)
		return probe_lost(argv[2], argv[3], argv[4]);
	fprintf(stderr, "usage: probe mmap|randwrite|parallel|unlinked|cfr|cache|lost ...\n");
	return 2;
}
