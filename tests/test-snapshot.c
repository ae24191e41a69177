/*
 * tests/test-snapshot.c: writing, opening and verifying snapshot
 * directories without KVM (host/snapshot.h, host/snapmap.h).
 *
 * Snapshots here are made from parts in memory (snapshot_write) rather
 * than from a running sandbox, so every check of the file format, the
 * sparse writer, the clone path, the mapping cache, each malformed
 * directory and each allocation failing runs on any machine.  Sandboxes from snapshots are tested in
 * test-snapshot-kvm.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "host/pagetable.h"
#include "host/snapmap.h"
#include "host/snapshot.h"
#include "failalloc.h"
#include "testutil.h"

#define PAGE 4096u
#define HEAP_PAGES 64u
#define SCRATCH_PAGES 3u

struct fixture {
	char root[128];
	uint8_t text[PAGE];
	uint8_t heap[HEAP_PAGES * PAGE];
	uint8_t scratch[SCRATCH_PAGES * PAGE];
	struct snapshot_parts parts;
};

static void path_of(char *out, size_t cap, const struct fixture *f, const char *a, const char *b)
{
	if (b)
		snprintf(out, cap, "%s/%s/%s", f->root, a, b);
	else
		snprintf(out, cap, "%s/%s", f->root, a);
}

/* A guest with a text page, a mostly-zero heap and a small scratch image. */
static void make_parts(struct fixture *f)
{
	memset(f->text, 0x90, sizeof(f->text));
	memset(f->heap, 0, sizeof(f->heap));
	memset(f->heap + 3 * PAGE, 0xab, PAGE);		/* pages 3 and 40 hold data */
	f->heap[40 * PAGE + 17] = 1;
	for (size_t i = 0; i < sizeof(f->scratch); i++)
		f->scratch[i] = (uint8_t)(i * 7);

	struct snapshot_parts *p = &f->parts;
	memset(p, 0, sizeof(*p));
	struct manifest *m = &p->m;
	m->version = MANIFEST_VERSION;
	m->created = 1764000000;
	memset(m->guest_digest, 0x5a, sizeof(m->guest_digest));
	strcpy(m->guest, "test.elf");
	m->entry = 0x1000000;
	m->nregions = 3;
	m->regions[0] = (struct manifest_region){ .name = "text", .gpa = 0x1000000, .size = PAGE,
		.prot = PROT_READ | PROT_EXEC, .kind = MANIFEST_KIND_IMAGE, .file = "text.mem" };
	m->regions[1] = (struct manifest_region){ .name = "heap", .gpa = SNAPVM_HEAP_GPA,
		.size = sizeof(f->heap), .prot = PROT_READ | PROT_WRITE, .kind = MANIFEST_KIND_HEAP,
		.file = "heap.mem" };
	m->regions[2] = (struct manifest_region){ .name = "scratch", .gpa = SNAPVM_SCRATCH_GPA,
		.size = 16 * PAGE, .prot = PROT_READ | PROT_WRITE, .kind = MANIFEST_KIND_SCRATCH,
		.file = SNAPSHOT_SCRATCH_FILE };
	p->mem[0] = f->text;
	p->len[0] = sizeof(f->text);
	p->mem[1] = f->heap;
	p->len[1] = sizeof(f->heap);
	p->mem[2] = f->scratch;
	p->len[2] = sizeof(f->scratch);
	p->cpu.regs.rip = 0x1000000;
	p->cpu.sregs.cr3 = SNAPVM_SCRATCH_GPA + 0x10000;
	p->cpu.sregs.efer = 0xd01;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	tu_tmpdir(f->root, sizeof(f->root), "snapshot");
	make_parts(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(tu_rmtree(f->root), 0);
	free(f);
	return 0;
}

static void write_ok(struct fixture *f, const char *name, struct snapshot_stats *st)
{
	char dir[256];
	struct err e = { 0 };
	path_of(dir, sizeof(dir), f, name, NULL);
	int r = snapshot_write(dir, &f->parts, st, &e);
	if (r < 0)
		fail_msg("snapshot_write: %s", err_str(&e, r));
}

static void read_file(const char *path, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, 0), (ssize_t)len);
	close(fd);
}

/* Entries in dir other than "." and "..". */
static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	for (struct dirent *de; (de = readdir(d));)
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

/* Zero pages become holes; bytes and figures are exact; no temporary left. */
static void test_snapshot_write_sparse(void **state)
{
	struct fixture *f = *state;
	struct snapshot_stats st;
	write_ok(f, "s1", &st);
	assert_int_equal(st.bytes_zero, (HEAP_PAGES - 2) * PAGE);
	assert_true(st.bytes_written >= PAGE + 2 * PAGE + sizeof(f->scratch));
	assert_int_equal(st.bytes_cloned, 0);
	assert_int_equal(st.sealed, 0);			/* /tmp is not snapfs */
	assert_int_equal(st.seal_errno, ENOTSUP);

	char path[256];
	path_of(path, sizeof(path), f, "s1", "heap.mem");
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, sizeof(f->heap));
	uint8_t *back = malloc(sizeof(f->heap));
	assert_non_null(back);
	read_file(path, back, sizeof(f->heap));
	assert_memory_equal(back, f->heap, sizeof(f->heap));
	free(back);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 0, SEEK_DATA), 3 * PAGE);	/* pages 0-2 are a hole */
	assert_int_equal(lseek(fd, 3 * PAGE, SEEK_HOLE), 4 * PAGE);
	close(fd);

	/* only the snapshot itself in the folder: no temporary directory left */
	path_of(path, sizeof(path), f, "s1", NULL);
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(count_entries(f->root), 1);
}

static void test_snapshot_write_refuses_existing(void **state)
{
	struct fixture *f = *state;
	char dir[256];
	struct err e = { 0 };
	path_of(dir, sizeof(dir), f, "s1", NULL);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(snapshot_write(dir, &f->parts, NULL, &e), -EEXIST);
	assert_non_null(strstr(e.msg, "already exists"));
}

/*
 * renameat2 as snapshot_write sees it (linked with -Wl,--wrap=renameat2):
 * the real call, or the EINVAL of a filesystem without RENAME_NOREPLACE;
 * "raced" first makes the snapshot's name, a directory holding a file, as
 * another program might while the snapshot is written.
 */
enum rename_as { RENAME_AS_REAL, RENAME_AS_NO_NOREPLACE, RENAME_AS_RACED,
		 RENAME_AS_RACED_NO_NOREPLACE };
static enum rename_as rename_as;
static int rename_calls;

int __real_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
		     unsigned int flags);
int __wrap_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
		     unsigned int flags);
int __wrap_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
		     unsigned int flags)
{
	rename_calls++;
	if (rename_as == RENAME_AS_RACED || rename_as == RENAME_AS_RACED_NO_NOREPLACE) {
		char theirs[PATH_MAX];
		snprintf(theirs, sizeof(theirs), "%s/theirs", newpath);
		int fd;
		if (mkdirat(newdirfd, newpath, 0755) != 0 ||
		    (fd = openat(newdirfd, theirs, O_WRONLY | O_CREAT | O_EXCL, 0644)) < 0)
			return -1;
		close(fd);
	}
	if ((rename_as == RENAME_AS_NO_NOREPLACE || rename_as == RENAME_AS_RACED_NO_NOREPLACE) &&
	    (flags & RENAME_NOREPLACE)) {
		errno = EINVAL;
		return -1;
	}
	return __real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}


/* Without RENAME_NOREPLACE the snapshot still lands, by a plain rename. */
static void test_snapshot_write_without_noreplace(void **state)
{
	struct fixture *f = *state;
	rename_as = RENAME_AS_NO_NOREPLACE;
	rename_calls = 0;
	write_ok(f, "s1", NULL);
	rename_as = RENAME_AS_REAL;
	assert_int_equal(rename_calls, 1);

	char path[256];
	struct snapshot *s = NULL;
	struct err e = { 0 };
	path_of(path, sizeof(path), f, "s1", NULL);
	int r = snapshot_open(path, &s, &e);
	if (r < 0)
		fail_msg("snapshot_open: %s", err_str(&e, r));
	snapshot_close(s);
	assert_int_equal(count_entries(f->root), 1);
}

/*
 * A name made while the snapshot was written is never replaced, with or
 * without RENAME_NOREPLACE: the error says so and names the directory,
 * the other directory keeps what it held, and no temporary one is left.
 */
static void test_snapshot_write_raced(void **state)
{
	static const enum rename_as modes[] = { RENAME_AS_RACED, RENAME_AS_RACED_NO_NOREPLACE };
	struct fixture *f = *state;
	char dir[256], theirs[300];
	path_of(dir, sizeof(dir), f, "s1", NULL);
	path_of(theirs, sizeof(theirs), f, "s1", "theirs");

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct err e = { 0 };
		rename_as = modes[i];
		int r = snapshot_write(dir, &f->parts, NULL, &e);
		rename_as = RENAME_AS_REAL;
		assert_int_equal(r, -EEXIST);
		assert_non_null(strstr(e.msg, dir));
		assert_non_null(strstr(e.msg, "appeared while this snapshot was being written"));
		assert_int_equal(count_entries(f->root), 1);
		assert_int_equal(count_entries(dir), 1);
		assert_int_equal(unlink(theirs), 0);
		assert_int_equal(rmdir(dir), 0);
	}
}

/* The manifest written names every region with the digest of its bytes. */
static void test_snapshot_open_roundtrip(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char dir[256];
	path_of(dir, sizeof(dir), f, "s1", NULL);
	struct err e = { 0 };
	struct snapshot *s;
	int r = snapshot_open(dir, &s, &e);
	if (r < 0)
		fail_msg("snapshot_open: %s", err_str(&e, r));
	const struct manifest *m = snapshot_manifest(s);
	assert_int_equal(m->nregions, 3);
	uint8_t d[MANIFEST_DIGEST_LEN];
	assert_int_equal(manifest_digest_buf(f->heap, sizeof(f->heap), d), 0);
	assert_memory_equal(m->regions[1].digest, d, sizeof(d));
	assert_true(cpustate_equal(snapshot_cpu(s), &f->parts.cpu));

	const struct guest *g = snapshot_guest(s);
	assert_int_equal(g->nregions, 2);
	assert_string_equal(g->regions[1].name, "heap");
	assert_int_equal(g->regions[1].shared, 1);
	assert_memory_equal(g->regions[0].mem, f->text, sizeof(f->text));
	assert_memory_equal(g->regions[1].mem, f->heap, sizeof(f->heap));
	assert_int_equal(g->scratch_image_len, sizeof(f->scratch));
	assert_memory_equal(g->scratch_image, f->scratch, sizeof(f->scratch));
	assert_int_equal(g->scratch_size, 16 * PAGE);
	assert_true(cpustate_equal(&g->cpu, &f->parts.cpu));
	assert_int_equal(snapshot_verify(dir, NULL, NULL, &e), 0);
	snapshot_close(s);
}

/*
 * A scratch image of 10 pages for the export-table tests: the boot block,
 * page tables in pages 1-7 mapping text and heap at
 * themselves, and the boot block recording a table of count entries at va.
 * With copy set, heap page 5 is mapped to scratch page 8 instead (a page the
 * guest wrote: the table is read from the copy).
 */
#define EXP_PAGES 10u
#define EXP_COPY 8u	/* scratch page holding the copy */
static uint8_t exp_scratch[EXP_PAGES * PAGE];

static void exports_image(struct fixture *f, uint64_t va, uint64_t count, int copy)
{
	memset(exp_scratch, 0, sizeof(exp_scratch));
	struct pt pt;
	uint64_t base = SNAPVM_SCRATCH_GPA, flags = SNAPVM_PTE_A;
	assert_int_equal(pt_init(&pt, exp_scratch, base, sizeof(exp_scratch), base + PAGE,
				 base + EXP_COPY * PAGE, NULL), 0);
	assert_int_equal(pt_map(&pt, 0x1000000, 0x1000000, PAGE, flags, NULL), 0);
	uint64_t heap = SNAPVM_HEAP_GPA;
	assert_int_equal(pt_map(&pt, heap, heap, 5 * PAGE, flags, NULL), 0);
	assert_int_equal(pt_map(&pt, heap + 5 * PAGE, copy ? base + EXP_COPY * PAGE : heap + 5 * PAGE,
				PAGE, flags, NULL), 0);
	assert_int_equal(pt_map(&pt, heap + 6 * PAGE, heap + 6 * PAGE, 2 * PAGE, flags, NULL), 0);
	struct snapvm_boot *b = (struct snapvm_boot *)exp_scratch;
	*b = (struct snapvm_boot){ .magic = SNAPVM_BOOT_MAGIC, .version = SNAPVM_ABI_VERSION,
		.scratch_gpa = base, .scratch_size = 16 * PAGE, .pt_root = pt.root,
		.exports_gva = va, .exports_count = count };
	f->parts.mem[2] = exp_scratch;
	f->parts.len[2] = sizeof(exp_scratch);
}

/* Write export entries with the given names at guest address va (heap or scratch copy). */
static void put_exports(struct fixture *f, uint64_t va, const char *const *names, size_t n,
			int in_copy)
{
	uint8_t *at = in_copy ? exp_scratch + EXP_COPY * PAGE + (va - SNAPVM_HEAP_GPA - 5 * PAGE)
			      : f->heap + (va - SNAPVM_HEAP_GPA);
	for (size_t i = 0; i < n; i++) {
		struct snapvm_export x = { .fn = 0x1000010 + i };
		memcpy(x.name, names[i], strlen(names[i]));
		memcpy(at + i * sizeof(x), &x, sizeof(x));
	}
}

static int exports_of(struct fixture *f, const char *name, char (**names)[SNAPVM_NAME_MAX],
		      size_t *n, struct err *e)
{
	write_ok(f, name, NULL);
	char dir[256];
	path_of(dir, sizeof(dir), f, name, NULL);
	struct snapshot *s;
	int r = snapshot_open(dir, &s, e);
	if (r < 0)
		fail_msg("snapshot_open: %s", err_str(e, r));
	r = snapshot_exports(s, names, n, e);
	snapshot_close(s);
	return r;
}

/*
 * The export table is found through the recorded address and the saved
 * page tables: in a region file, in a scratch copy, across a page
 * boundary; a missing record, an unmapped table or a bad name is refused.
 */
static void test_snapshot_exports(void **state)
{
	struct fixture *f = *state;
	const char *const two[] = { "alpha", "beta" }, *const other[] = { "gamma", "delta" };
	char (*names)[SNAPVM_NAME_MAX];
	size_t n;
	struct err e = { 0 };
	uint64_t heap = SNAPVM_HEAP_GPA;

	exports_image(f, heap + 5 * PAGE, 2, 0);
	put_exports(f, heap + 5 * PAGE, two, 2, 0);
	assert_int_equal(exports_of(f, "plain", &names, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "alpha");
	assert_string_equal(names[1], "beta");
	free(names);

	/* the same address, the page now a copy in scratch with other contents */
	exports_image(f, heap + 5 * PAGE, 2, 1);
	put_exports(f, heap + 5 * PAGE, other, 2, 1);
	assert_int_equal(exports_of(f, "copied", &names, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "gamma");
	assert_string_equal(names[1], "delta");
	free(names);

	/* an entry across the end of a page: half from the region file, half from the copy */
	uint64_t va = heap + 5 * PAGE - 96;
	exports_image(f, va, 2, 1);
	memset(f->heap + 5 * PAGE - 96, 0, 96);
	struct snapvm_export x[2] = { { .name = "first" }, { .name = "straddling_name" } };
	memcpy(f->heap + 5 * PAGE - 96, x, 96);
	memcpy(exp_scratch + EXP_COPY * PAGE, (uint8_t *)x + 96, 32);
	assert_int_equal(exports_of(f, "straddle", &names, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "first");
	assert_string_equal(names[1], "straddling_name");
	free(names);

	/* no record */
	exports_image(f, 0, 0, 0);
	assert_int_equal(exports_of(f, "none", &names, &n, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "does not record"));
	assert_null(names);
	/* a table where nothing is mapped */
	exports_image(f, heap + 40 * PAGE, 2, 0);
	assert_int_equal(exports_of(f, "unmapped", &names, &n, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "export table entry 0"));
	/* too many entries */
	exports_image(f, heap + 5 * PAGE, SNAPSHOT_EXPORTS_MAX + 1, 0);
	assert_int_equal(exports_of(f, "huge", &names, &n, &e), -EINVAL);
	/* a name that is not one */
	const char *const bad[] = { "ok", "not a name" };
	exports_image(f, heap + 5 * PAGE, 2, 0);
	put_exports(f, heap + 5 * PAGE, bad, 2, 0);
	assert_int_equal(exports_of(f, "badname", &names, &n, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "entry 1 has no valid name"));
	memset(f->heap + 5 * PAGE, 0x41, 2 * sizeof(struct snapvm_export));	/* no NUL */
	assert_int_equal(exports_of(f, "nonul", &names, &n, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "entry 0 has no valid name"));
}

/* Two opens of one snapshot share one mapping per region file. */
static void test_snapshot_maps_each_file_once(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char dir[256];
	path_of(dir, sizeof(dir), f, "s1", NULL);
	struct err e = { 0 };
	struct snapshot *a, *b;
	assert_int_equal(snapmap_count(), 0);
	assert_int_equal(snapshot_open(dir, &a, &e), 0);
	assert_int_equal(snapmap_count(), 2);
	assert_int_equal(snapshot_open(dir, &b, &e), 0);
	assert_int_equal(snapmap_count(), 2);
	assert_ptr_equal(snapshot_guest(a)->regions[1].mem, snapshot_guest(b)->regions[1].mem);
	snapshot_close(a);
	assert_int_equal(snapmap_count(), 2);
	assert_memory_equal(snapshot_guest(b)->regions[1].mem, f->heap, sizeof(f->heap));

	/* a file replaced under the name gets its own mapping; the old one lives on */
	char path[256], tmp[256];
	path_of(path, sizeof(path), f, "s1", "heap.mem");
	path_of(tmp, sizeof(tmp), f, "s1", "heap.new");
	f->heap[40 * PAGE + 17] = 2;
	int fd = open(tmp, O_WRONLY | O_CREAT, 0444);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, f->heap, sizeof(f->heap)), (ssize_t)sizeof(f->heap));
	close(fd);
	assert_int_equal(rename(tmp, path), 0);
	struct snapshot *c;
	assert_int_equal(snapshot_open(dir, &c, &e), 0);
	assert_int_equal(snapmap_count(), 3);
	assert_int_equal(((const uint8_t *)snapshot_guest(b)->regions[1].mem)[40 * PAGE + 17], 1);
	assert_int_equal(((const uint8_t *)snapshot_guest(c)->regions[1].mem)[40 * PAGE + 17], 2);
	snapshot_close(b);
	snapshot_close(c);
	assert_int_equal(snapmap_count(), 0);
}

/* A derived snapshot clones its parent's files and copies their digests. */
static void test_snapshot_write_clone(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char parent[256], child[256], a[256], b[256];
	path_of(parent, sizeof(parent), f, "s1", NULL);
	path_of(child, sizeof(child), f, "s2", NULL);
	struct err e = { 0 };
	struct snapshot *s;
	assert_int_equal(snapshot_open(parent, &s, &e), 0);
	f->parts.m = *snapshot_manifest(s);
	strcpy(f->parts.m.parent, "s1");
	f->parts.mem[0] = f->parts.mem[1] = NULL;
	f->parts.clone_dir = parent;
	f->scratch[5] ^= 1;
	struct snapshot_stats st;
	int r = snapshot_write(child, &f->parts, &st, &e);
	if (r < 0)
		fail_msg("%s", err_str(&e, r));
	assert_int_equal(st.bytes_cloned, PAGE + sizeof(f->heap));
	/* written: the scratch image, cpu and manifest only */
	assert_true(st.bytes_written < sizeof(f->scratch) + 3 * PAGE);
	snapshot_close(s);

	assert_int_equal(snapshot_open(child, &s, &e), 0);
	assert_string_equal(snapshot_manifest(s)->parent, "s1");
	assert_memory_equal(snapshot_guest(s)->regions[1].mem, f->heap, sizeof(f->heap));
	assert_int_equal(((const uint8_t *)snapshot_guest(s)->scratch_image)[5], f->scratch[5]);
	snapshot_close(s);
	assert_int_equal(snapshot_verify(child, NULL, NULL, &e), 0);
	path_of(a, sizeof(a), f, "s1", "heap.mem");
	path_of(b, sizeof(b), f, "s2", "heap.mem");
	uint8_t *x = malloc(sizeof(f->heap)), *y = malloc(sizeof(f->heap));
	assert_non_null(x);
	assert_non_null(y);
	read_file(a, x, sizeof(f->heap));
	read_file(b, y, sizeof(f->heap));
	assert_memory_equal(x, y, sizeof(f->heap));
	free(x);
	free(y);
}

/* ---- malformed snapshots: each refused, naming the file -------------------- */

static void expect_open_fails(struct fixture *f, int code, const char *needle)
{
	char dir[256];
	path_of(dir, sizeof(dir), f, "s1", NULL);
	struct err e = { 0 };
	struct snapshot *s = (struct snapshot *)1;
	int r = snapshot_open(dir, &s, &e);
	if (r == 0)
		fail_msg("snapshot_open accepted a snapshot with a broken %s", needle);
	assert_null(s);
	assert_int_equal(r, code);
	if (!strstr(e.msg, needle))
		fail_msg("message \"%s\" does not name \"%s\"", e.msg, needle);
	assert_int_equal(snapmap_count(), 0);
}

static void put_file(struct fixture *f, const char *name, const char *text)
{
	char path[256];
	path_of(path, sizeof(path), f, "s1", name);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_snapshot_open_bad_manifest(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	put_file(f, "manifest", "snapfs-snapshot 1\nparent -\nbogus line\n");
	expect_open_fails(f, -EINVAL, "manifest:3");
}

static void test_snapshot_open_bad_cpu(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	put_file(f, "cpu", "snapvm-cpu 1\nrax 0x1\n");
	expect_open_fails(f, -EINVAL, "s1/cpu");
}

static void test_snapshot_open_missing_region(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char path[256];
	path_of(path, sizeof(path), f, "s1", "heap.mem");
	assert_int_equal(unlink(path), 0);
	expect_open_fails(f, -ENOENT, "s1/heap.mem");
}

static void test_snapshot_open_size_mismatch(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char path[256];
	path_of(path, sizeof(path), f, "s1", "heap.mem");
	assert_int_equal(truncate(path, 5 * PAGE), 0);
	expect_open_fails(f, -EINVAL, "s1/heap.mem: 20480 bytes, the manifest says 262144");
}

static void test_snapshot_open_symlinked_region(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char path[256], target[256];
	path_of(path, sizeof(path), f, "s1", "text.mem");
	path_of(target, sizeof(target), f, "s1", "text.real");
	assert_int_equal(rename(path, target), 0);
	assert_int_equal(symlink("text.real", path), 0);
	expect_open_fails(f, -ELOOP, "s1/text.mem");
}

static void test_snapshot_open_scratch_corrupt(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char path[256];
	path_of(path, sizeof(path), f, "s1", SNAPSHOT_SCRATCH_FILE);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 100), 1);
	close(fd);
	expect_open_fails(f, -EINVAL, "scratch.img: digest mismatch");
}

struct verify_log {
	int ok, failed;
	char failed_file[64];
	char msg[512];
};

static void log_report(void *ctx, const char *file, int code, const char *msg)
{
	struct verify_log *l = ctx;
	if (code == 0) {
		l->ok++;
		return;
	}
	l->failed++;
	snprintf(l->failed_file, sizeof(l->failed_file), "%s", file);
	snprintf(l->msg, sizeof(l->msg), "%s", msg);
}

/* A changed byte keeps the size: open maps it, verify names the file. */
static void test_snapshot_verify_digest_mismatch(void **state)
{
	struct fixture *f = *state;
	write_ok(f, "s1", NULL);
	char dir[256], path[256];
	path_of(dir, sizeof(dir), f, "s1", NULL);
	path_of(path, sizeof(path), f, "s1", "heap.mem");
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 7 * PAGE), 1);
	close(fd);
	struct verify_log l = { 0 };
	struct err e = { 0 };
	assert_int_equal(snapshot_verify(dir, log_report, &l, &e), -EINVAL);
	assert_int_equal(l.failed, 1);
	assert_int_equal(l.ok, 4);	/* manifest, cpu, text, scratch */
	assert_string_equal(l.failed_file, "heap.mem");
	assert_non_null(strstr(l.msg, "digest mismatch"));
	/* The count is of the files reported, the manifest too. */
	assert_non_null(strstr(e.msg, "1 of 5 files failed"));
}

/* ---- allocations that fail ---------------------------------------------------- */

/*
 * Write s (from memory), open it, write c cloned from it, and verify both
 * while allocations fail (failalloc.h): the at-th, and with on every one
 * after it.  Returns the first failure (0 if none) with e set, and how
 * many of the steps went through in *done.
 */
static int snapshot_steps(struct fixture *f, uint64_t at, bool on, unsigned *done,
			  struct err *e)
{
	char s_dir[256], c_dir[256];
	path_of(s_dir, sizeof(s_dir), f, "s", NULL);
	path_of(c_dir, sizeof(c_dir), f, "c", NULL);
	struct snapshot_parts clone = f->parts;
	clone.mem[0] = clone.mem[1] = NULL;
	clone.clone_dir = s_dir;
	struct snapshot *s = NULL;
	*done = 0;
	failalloc_arm(at, on);
	int r = snapshot_write(s_dir, &f->parts, NULL, e);
	if (!r && ++*done)
		r = snapshot_open(s_dir, &s, e);
	if (!r && ++*done) {
		clone.m = *snapshot_manifest(s);
		strcpy(clone.m.parent, "s");
		clone.clone_from = s;
		r = snapshot_write(c_dir, &clone, NULL, e);
	}
	if (!r && ++*done)
		r = snapshot_verify(s_dir, NULL, NULL, e);
	if (!r && ++*done)
		r = snapshot_verify(c_dir, NULL, NULL, e);
	if (!r)
		++*done;
	snapshot_close(s);
	failalloc_disarm();
	return r;
}

/*
 * Each allocation that writing, opening, cloning and verifying snapshots
 * make fails in turn (alone, and with every one after it): the step that
 * meets it fails with ENOMEM naming the snapshot, a snapshot that failed
 * to be written leaves nothing behind (not even its temporary directory),
 * and once memory is back what was written opens and verifies.
 */
static void test_snapshot_allocations_fail(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	unsigned done;
	failalloc_arm(0, false);
	assert_int_equal(snapshot_steps(f, 0, false, &done, &e), 0);
	uint64_t total = failalloc_disarm();
	assert_int_equal(done, 5);
	assert_true(total > 10);
	assert_int_equal(tu_rmtree(f->root), 0);
	assert_int_equal(mkdir(f->root, 0700), 0);
	unsigned met = 0;
	for (int on = 0; on < 2; on++)
		for (uint64_t n = 1; n <= total; n++) {
			memset(&e, 0, sizeof(e));
			int r = snapshot_steps(f, n, on, &done, &e);
			met += failalloc_failed() > 0;
			if (r != 0 && (r != -ENOMEM || !strstr(e.msg, f->root)))
				fail_msg("allocation %lu%s failing, step %u: %s", (unsigned long)n,
					 on ? " and on" : "", done + 1, err_str(&e, r));
			/* written: s (step 1), c (step 3) */
			assert_int_equal(count_entries(f->root), (done >= 1) + (done >= 3));
			for (unsigned i = 0; i < 2 && done >= 1 + 2 * i; i++) {
				char dir[256];
				path_of(dir, sizeof(dir), f, i ? "c" : "s", NULL);
				struct snapshot *s;
				if ((r = snapshot_open(dir, &s, &e)) < 0 ||
				    (snapshot_close(s), r = snapshot_verify(dir, NULL, NULL, &e)) < 0)
					fail_msg("allocation %lu failed, then: %s", (unsigned long)n,
						 err_str(&e, r));
				assert_int_equal(tu_rmtree(dir), 0);
			}
		}
	printf("# %lu allocations, each failed alone and with all after it: %u runs met it\n",
	       (unsigned long)total, met);
	assert_true(met > 2 * total * 9 / 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_write_sparse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_write_refuses_existing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_write_without_noreplace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_write_raced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_exports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_maps_each_file_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_write_clone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_bad_manifest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_bad_cpu, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_missing_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_size_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_symlinked_region, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_open_scratch_corrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_verify_digest_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_allocations_fail, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
