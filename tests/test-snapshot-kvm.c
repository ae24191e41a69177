/*
 * tests/test-snapshot-kvm.c: sandboxes from snapshot directories (needs
 * /dev/kvm; suite kvm).
 *
 * A live sandbox of the hello or warm guest is saved with snapshot_take()
 * into a folder on plain disk, and sandboxes started from it must continue
 * exactly where the live one was: same results, state that carries on,
 * writes private to each sandbox, and the snapshot's files unchanged.
 * The same checks through a snapfs mount are in tests/e2e/snapshot.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "host/snapmap.h"
#include "host/snapshot.h"
#include "host/vm.h"
#include "testutil.h"

static char root[128];

static void guest_path(char *out, size_t cap, const char *name)
{
	const char *b = getenv("SNAPFS_BUILD_ROOT");
	snprintf(out, cap, "%s/guest/%s.elf", b ? b : ".", name);
}

static void dir_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", root, name);
}

/* Call fn(arg) and return the result as a string in out. */
static void call(struct sandbox *sb, const char *fn, const char *arg, char *out, size_t cap)
{
	struct err e = { 0 };
	size_t n;
	int r = sandbox_call(sb, fn, arg, arg ? strlen(arg) : 0, out, cap - 1, &n, &e);
	if (r < 0)
		fail_msg("%s(%s): %s", fn, arg ? arg : "", err_str(&e, r));
	out[n] = 0;
}

static void expect(struct sandbox *sb, const char *fn, const char *arg, const char *want)
{
	char got[256];
	call(sb, fn, arg, got, sizeof(got));
	assert_string_equal(got, want);
}

static struct sandbox *boot_elf(const char *name, struct guest **g, uint64_t heap)
{
	char path[512];
	struct err e = { 0 };
	struct sandbox *sb = NULL;
	struct guest_options go = { .heap_size = heap };
	guest_path(path, sizeof(path), name);
	int r = guest_open_elf(path, &go, g, &e);
	if (r == 0)
		r = sandbox_new(*g, NULL, &sb, &e);
	if (r < 0)
		fail_msg("%s: %s", path, err_str(&e, r));
	return sb;
}

static void take(struct sandbox *sb, const char *elf, const struct snapshot *parent,
		 const char *name, struct snapshot_stats *st)
{
	char path[512], dir[256];
	struct err e = { 0 };
	guest_path(path, sizeof(path), elf);
	dir_path(dir, sizeof(dir), name);
	struct snapshot_origin o = { .elf_path = parent ? NULL : path, .parent = parent };
	int r = snapshot_take(sb, &o, dir, st, &e);
	if (r < 0)
		fail_msg("snapshot_take %s: %s", dir, err_str(&e, r));
}

/* Snapshot name of hello after one call of counter, which a sandbox of
 * the snapshot then answers with 2. */
static void take_hello(const char *name, struct snapshot_stats *st)
{
	struct guest *g;
	struct sandbox *live = boot_elf("hello", &g, 0);
	expect(live, "counter", NULL, "1");
	take(live, "hello", NULL, name, st);
	sandbox_free(live);
	guest_close(g);
}

static struct snapshot *open_snap(const char *name)
{
	char dir[256];
	struct err e = { 0 };
	struct snapshot *s;
	dir_path(dir, sizeof(dir), name);
	int r = snapshot_open(dir, &s, &e);
	if (r < 0)
		fail_msg("%s", err_str(&e, r));
	return s;
}

static struct sandbox *start(const struct snapshot *s)
{
	struct err e = { 0 };
	struct sandbox *sb;
	int r = sandbox_new(snapshot_guest(s), NULL, &sb, &e);
	if (r < 0)
		fail_msg("%s", err_str(&e, r));
	return sb;
}

static int setup(void **state)
{
	(void)state;
	tu_tmpdir(root, sizeof(root), "snapkvm");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_int_equal(tu_rmtree(root), 0);
	assert_int_equal(snapmap_count(), 0);
	return 0;
}

/* A sandbox from the snapshot answers like the live sandbox it was taken from. */
static void test_snapshot_same_results_as_live(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("hello", &g, 0);
	expect(live, "counter", NULL, "1");
	expect(live, "counter", NULL, "2");
	take(live, "hello", NULL, "h", NULL);
	struct snapshot *s = open_snap("h");
	struct sandbox *sb = start(s);
	const char *calls[][2] = { { "counter", NULL }, { "add", "40 2" }, { "echo", "snap" },
				   { "counter", NULL }, { "greet", "fs" } };
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		char a[256], b[256];
		call(live, calls[i][0], calls[i][1], a, sizeof(a));
		call(sb, calls[i][0], calls[i][1], b, sizeof(b));
		assert_string_equal(a, b);
	}
	expect(sb, "counter", NULL, "5");
	struct err e = { 0 };
	char out[16];
	size_t n;
	assert_int_equal(sandbox_call(sb, "nosuch", NULL, 0, out, sizeof(out), &n, &e), -ENOENT);
	sandbox_free(sb);
	sandbox_free(live);
	guest_close(g);
	snapshot_close(s);
}

/*
 * The warm guest's table, built by init before the snapshot, is there in
 * a sandbox started from it: init reports the table as built before (it
 * does not run again) and lookups return what the live sandbox returns.
 */
static void test_snapshot_warm_state(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("warm", &g, 8ull << 20);
	char got[256], want_q[64], want_sum[64];
	call(live, "init", "64", got, sizeof(got));
	assert_non_null(strstr(got, "8192 entries in"));
	call(live, "query", "12345", want_q, sizeof(want_q));
	call(live, "sum", NULL, want_sum, sizeof(want_sum));
	assert_string_not_equal(want_sum, "0");
	take(live, "warm", NULL, "w", NULL);
	sandbox_free(live);
	guest_close(g);

	struct snapshot *s = open_snap("w");
	struct sandbox *sb = start(s);
	expect(sb, "query", "12345", want_q);
	expect(sb, "sum", NULL, want_sum);
	expect(sb, "init", "64", "8192 entries (built before)");
	struct sandbox_stats st;
	sandbox_stats(sb, &st);
	assert_int_equal(st.calls, 3);
	sandbox_free(sb);
	snapshot_close(s);
}

struct digests {
	size_t n;
	char file[MANIFEST_REGIONS_MAX][MANIFEST_NAME_MAX];
	uint8_t d[MANIFEST_REGIONS_MAX][MANIFEST_DIGEST_LEN];
};

static void digest_files(const char *name, struct digests *out)
{
	char dir[256], path[512];
	dir_path(dir, sizeof(dir), name);
	struct snapshot *s = open_snap(name);
	const struct manifest *m = snapshot_manifest(s);
	out->n = m->nregions;
	for (size_t i = 0; i < m->nregions; i++) {
		snprintf(out->file[i], sizeof(out->file[i]), "%s", m->regions[i].file);
		snprintf(path, sizeof(path), "%s/%s", dir, m->regions[i].file);
		int fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		struct err e = { 0 };
		assert_int_equal(manifest_digest_fd(fd, path, out->d[i], NULL, &e), 0);
		close(fd);
	}
	snapshot_close(s);
}

/* 8 sandboxes from one snapshot: private writes, one mapping, files unchanged. */
static void test_snapshot_eight_sandboxes_isolated(void **state)
{
	(void)state;
	take_hello("h", NULL);
	struct digests before, after;
	digest_files("h", &before);

	struct snapshot *s = open_snap("h");
	size_t maps = snapmap_count();
	struct sandbox *sb[8];
	for (int i = 0; i < 8; i++)
		sb[i] = start(s);
	assert_int_equal(snapmap_count(), maps);	/* no new mapping per sandbox */
	/* sandbox i calls counter i + 1 times: each sees only its own calls */
	for (int i = 0; i < 8; i++)
		for (int k = 0; k <= i; k++) {
			char want[16];
			snprintf(want, sizeof(want), "%d", k + 2);
			expect(sb[i], "counter", NULL, want);
		}
	for (int i = 0; i < 8; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%d", i + 3);
		expect(sb[i], "counter", NULL, want);
		struct sandbox_stats st;
		sandbox_stats(sb[i], &st);
		assert_true(st.cow_pages >= 1);	/* the counter's page was copied */
	}
	for (int i = 0; i < 8; i++)
		sandbox_free(sb[i]);
	snapshot_close(s);
	digest_files("h", &after);
	assert_int_equal(before.n, after.n);
	for (size_t i = 0; i < before.n; i++)
		assert_memory_equal(before.d[i], after.d[i], MANIFEST_DIGEST_LEN);
	char dir[256];
	struct err e = { 0 };
	dir_path(dir, sizeof(dir), "h");
	assert_int_equal(snapshot_verify(dir, NULL, NULL, &e), 0);
}

/* Three generations: each writes little, clones the rest, and carries state on. */
static void test_snapshot_derived_generations(void **state)
{
	(void)state;
	struct snapshot_stats st;
	take_hello("g1", &st);
	uint64_t memory = 0;
	const char *names[] = { "g1", "g2", "g3" };
	for (int gen = 1; gen < 3; gen++) {
		struct snapshot *p = open_snap(names[gen - 1]);
		const struct manifest *m = snapshot_manifest(p);
		memory = 0;
		for (size_t i = 0; i < m->nregions; i++)
			memory += m->regions[i].size;
		struct sandbox *sb = start(p);
		char want[16];
		snprintf(want, sizeof(want), "%d", gen + 1);
		expect(sb, "counter", NULL, want);
		take(sb, "hello", p, names[gen], &st);
		/* written: scratch image (its non-zero pages), cpu, manifest */
		assert_true(st.bytes_cloned >= memory - m->regions[m->nregions - 1].size);
		assert_true(st.bytes_written * 64 < memory);
		sandbox_free(sb);
		snapshot_close(p);
	}
	struct snapshot *s = open_snap("g3");
	assert_string_equal(snapshot_manifest(s)->parent, "g2");
	struct sandbox *sb = start(s);
	expect(sb, "counter", NULL, "4");
	/* restore the same sandbox to the snapshot: state back to generation 3 */
	struct err e = { 0 };
	assert_int_equal(snapshot_reset(s, NULL, &sb, &e), 0);
	expect(sb, "counter", NULL, "4");
	sandbox_free(sb);
	snapshot_close(s);
}

/*
 * snapshot_reset() reuses the sandbox: writes and counter increments are
 * undone, a sandbox the guest ended is usable again, and no VM is made;
 * a sandbox of another guest is replaced by one of the snapshot.
 */
static void test_snapshot_reset_in_place(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("hello", &g, 0);
	expect(live, "counter", NULL, "1");
	expect(live, "counter", NULL, "2");
	take(live, "hello", NULL, "h", NULL);
	struct snapshot *s = open_snap("h");
	struct sandbox *sb = start(s), *was = sb;
	uint64_t vms = vm_created();
	struct err e = { 0 };
	struct sandbox_stats st0;
	sandbox_stats(sb, &st0);
	for (int round = 0; round < 3; round++) {
		expect(sb, "counter", NULL, "3");
		expect(sb, "counter", NULL, "4");
		char big[4096];
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		call(sb, "echo", big, big, sizeof(big));
		assert_int_equal(snapshot_reset(s, NULL, &sb, &e), 0);
		assert_ptr_equal(sb, was);
		struct sandbox_stats st;
		sandbox_stats(sb, &st);
		assert_int_equal(st.calls, 0);
		assert_int_equal(st.cow_pages, st0.cow_pages);	/* the guest's own count, in scratch */
		assert_int_equal(st.scratch_used, st0.scratch_used);
	}
	expect(sb, "counter", NULL, "3");
	assert_int_equal(vm_created(), vms);

	/* a sandbox of the live guest is not the snapshot's: it is replaced */
	assert_int_equal(snapshot_reset(s, NULL, &live, &e), 0);
	assert_ptr_equal(sandbox_guest(live), snapshot_guest(s));
	expect(live, "counter", NULL, "3");
	assert_int_equal(vm_created(), vms + 1);
	sandbox_free(live);
	guest_close(g);
	sandbox_free(sb);
	snapshot_close(s);

	/* an evil snapshot: each way of ending the sandbox, then a reset */
	struct sandbox_options opt = { .timeout_ms = 1500, .scratch_size = 1u << 20 };
	char path[512];
	guest_path(path, sizeof(path), "evil");
	struct guest_options go = { .heap_size = 4u << 20 };	/* more than scratch holds */
	assert_int_equal(guest_open_elf(path, &go, &g, &e), 0);
	assert_int_equal(sandbox_new(g, &opt, &live, &e), 0);
	take(live, "evil", NULL, "e", NULL);
	sandbox_free(live);
	guest_close(g);
	s = open_snap("e");
	assert_int_equal(sandbox_new(snapshot_guest(s), &opt, &sb, &e), 0);
	was = sb;
	vms = vm_created();
	const char *evil[] = { "spin", "triple_fault", "cow_off_data", "wild_port", "halt",
			       "stack_overflow", "scratch_fill", "abort" };
	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		char out[64];
		size_t n;
		if (sandbox_call(sb, evil[i], NULL, 0, out, sizeof(out), &n, &e) >= 0)
			fail_msg("%s succeeded", evil[i]);
		if (!sandbox_ended(sb, NULL))
			fail_msg("%s did not end the sandbox: %s", evil[i], e.msg);
		assert_int_equal(snapshot_reset(s, NULL, &sb, &e), 0);
		assert_ptr_equal(sb, was);
		assert_false(sandbox_ended(sb, NULL));
		expect(sb, "ok", NULL, "ok");
	}
	assert_int_equal(vm_created(), vms);
	sandbox_free(sb);
	snapshot_close(s);
}

/* Pages of a file that are not all zero. */
static uint64_t nonzero_pages(const char *path, uint64_t *pages)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static uint8_t page[4096], zero[4096];
	uint64_t n = 0;
	*pages = 0;
	while (fread(page, 1, sizeof(page), f) == sizeof(page)) {
		n += memcmp(page, zero, sizeof(page)) != 0;
		(*pages)++;
	}
	fclose(f);
	return n;
}

/*
 * A sandbox from a snapshot has only the scratch image's non-zero pages
 * in memory: the zero pages of the image (call buffer, stack) are not
 * copied, and a reset gives back what the calls touched.
 */
static void test_snapshot_scratch_resident(void **state)
{
	(void)state;
	take_hello("h", NULL);
	char path[512];
	dir_path(path, sizeof(path), "h/" SNAPSHOT_SCRATCH_FILE);
	uint64_t pages, nonzero = nonzero_pages(path, &pages);
	print_message("# scratch image: %llu pages, %llu not zero\n", (unsigned long long)pages,
		      (unsigned long long)nonzero);
	assert_true(nonzero > 0 && nonzero * 4 < pages);

	struct snapshot *s = open_snap("h");
	struct sandbox *sb[4];
	for (int i = 0; i < 4; i++) {
		sb[i] = start(s);
		struct sandbox_stats st;
		sandbox_stats(sb[i], &st);
		assert_true(st.scratch_resident >= nonzero * 4096);
		assert_true(st.scratch_resident <= (nonzero + 1) * 4096);
	}
	/* a large argument and result touch many call-buffer pages; reset gives them back */
	static char big[128 << 10];
	memset(big, 'z', sizeof(big) - 1);
	char *out = malloc(sizeof(big));
	call(sb[0], "echo", big, out, sizeof(big));
	assert_string_equal(out, big);
	free(out);
	struct sandbox_stats st;
	sandbox_stats(sb[0], &st);
	print_message("# after a call with 128 KiB in and out: %llu bytes\n",
		      (unsigned long long)st.scratch_resident);
	assert_true(st.scratch_resident >= (nonzero + 2 * sizeof(big) / 4096 - 4) * 4096);
	struct err e = { 0 };
	assert_int_equal(sandbox_reset(sb[0], &e), 0);
	sandbox_stats(sb[0], &st);
	assert_true(st.scratch_resident <= (nonzero + 1) * 4096);
	expect(sb[0], "counter", NULL, "2");
	for (int i = 0; i < 4; i++)
		sandbox_free(sb[i]);
	snapshot_close(s);
}

/* The guest's TSC (rdmsr of IA32_TSC), as a number. */
static uint64_t guest_tsc(struct sandbox *sb)
{
	char got[64];
	call(sb, "msr", "10", got, sizeof(got));
	return strtoull(got, NULL, 16);
}

/*
 * The guest's TSC carries on from the value saved in the cpu file, in
 * every sandbox started from the snapshot and after a reset, even for a
 * snapshot taken in the guest's first second (where KVM takes the write
 * of the saved value for vCPUs being synchronised and drops it).
 */
static void test_snapshot_tsc(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("regs", &g, 1u << 20);
	uint64_t before = guest_tsc(live);
	take(live, "regs", NULL, "t", NULL);
	sandbox_free(live);
	guest_close(g);

	char cpu[512], line[256];
	dir_path(cpu, sizeof(cpu), "t/cpu");
	FILE *f = fopen(cpu, "r");
	assert_non_null(f);
	uint64_t saved = 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "msr 0x00000010 ", 15))
			saved = strtoull(line + 15, NULL, 16);
	fclose(f);
	print_message("# TSC: %llu in the live guest, %llu saved\n", (unsigned long long)before,
		      (unsigned long long)saved);
	assert_true(saved > before);

	struct snapshot *s = open_snap("t");
	struct err e = { 0 };
	for (int i = 0; i < 2; i++) {
		struct sandbox *sb = start(s);
		uint64_t t = guest_tsc(sb);
		print_message("# sandbox %d: TSC %llu\n", i, (unsigned long long)t);
		assert_true(t >= saved);
		assert_int_equal(snapshot_reset(s, NULL, &sb, &e), 0);
		t = guest_tsc(sb);
		print_message("# sandbox %d after a reset: TSC %llu\n", i, (unsigned long long)t);
		assert_true(t >= saved);
		sandbox_free(sb);
	}
	snapshot_close(s);
}

/*
 * State the guest keeps in the vCPU — MSRs written with wrmsr, an SSE
 * register, debug registers — is in the cpu file, comes back in sandboxes
 * started from the snapshot and after a reset, and is taken from the
 * file: an edited cpu file gives the guest the edited value, and a
 * version 1 file (no debug registers) starts them at power-on values.
 * DR7 keeps its breakpoints disabled (no L/G bits), so none fires.
 */
static void test_snapshot_cpu_state(void **state)
{
	(void)state;
	const char *kgs = "0xffff888012345678", *lstar = "0xffffffff81000000";
	const char *pattern = "00112233445566778899aabbccddeeff";
	struct guest *g;
	struct sandbox *live = boot_elf("regs", &g, 1u << 20);
	char got[256];
	call(live, "msr", "c0000102 0xffff888012345678", got, sizeof(got));
	assert_string_equal(got, kgs);
	call(live, "msr", "c0000082 0xffffffff81000000", got, sizeof(got));
	assert_string_equal(got, lstar);
	call(live, "xmm", pattern, got, sizeof(got));
	assert_string_equal(got, pattern);
	const char *dr0 = "0xffffffff81234000", *dr3 = "0x7ffff008", *dr7 = "0xffff0400";
	call(live, "dr", "0 0xffffffff81234000", got, sizeof(got));
	assert_string_equal(got, dr0);
	call(live, "dr", "3 0x7ffff008", got, sizeof(got));
	assert_string_equal(got, dr3);
	call(live, "dr", "7 0xffff0400", got, sizeof(got));
	assert_string_equal(got, dr7);
	take(live, "regs", NULL, "r", NULL);

	/* a cold-booted sandbox reset: the vCPU as it was made */
	struct err e = { 0 };
	assert_int_equal(sandbox_reset(live, &e), 0);
	expect(live, "msr", "c0000102", "0x0");
	expect(live, "xmm", NULL, "00000000000000000000000000000000");
	expect(live, "dr", "0", "0x0");
	expect(live, "dr", "7", "0x400");
	sandbox_free(live);
	guest_close(g);

	char cpu[512];
	dir_path(cpu, sizeof(cpu), "r/cpu");
	FILE *f = fopen(cpu, "r");
	assert_non_null(f);
	char line[256];
	int found = 0;
	while (fgets(line, sizeof(line), f))
		found += strcmp(line, "msr 0xc0000102 0xffff888012345678\n") == 0 ||
			 strcmp(line, "dr7 0x00000000ffff0400\n") == 0;
	fclose(f);
	assert_int_equal(found, 2);

	struct snapshot *s = open_snap("r");
	struct sandbox *sb = start(s);
	expect(sb, "msr", "c0000102", kgs);
	expect(sb, "msr", "c0000082", lstar);
	expect(sb, "xmm", NULL, pattern);
	expect(sb, "dr", "0", dr0);
	expect(sb, "dr", "3", dr3);
	expect(sb, "dr", "7", dr7);
	call(sb, "msr", "c0000102 0x1000", got, sizeof(got));
	call(sb, "xmm", "ffffffffffffffffffffffffffffffff", got, sizeof(got));
	call(sb, "dr", "0 0x1000", got, sizeof(got));
	assert_int_equal(snapshot_reset(s, NULL, &sb, &e), 0);
	expect(sb, "msr", "c0000102", kgs);
	expect(sb, "xmm", NULL, pattern);
	expect(sb, "dr", "0", dr0);
	sandbox_free(sb);
	snapshot_close(s);

	/* the value comes from the file */
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "chmod u+w '%s' && sed -i 's/^msr 0xc0000102 .*/msr 0xc0000102 "
		 "0xffff8880abcdef00/' '%s'", cpu, cpu);
	assert_int_equal(system(cmd), 0);
	s = open_snap("r");
	sb = start(s);
	expect(sb, "msr", "c0000102", "0xffff8880abcdef00");
	expect(sb, "xmm", NULL, pattern);
	expect(sb, "dr", "7", dr7);
	sandbox_free(sb);
	snapshot_close(s);
	snprintf(cmd, sizeof(cmd), "sed -i 's/^dr3 .*/dr3 0x0000000000c0ffe8/' '%s'", cpu);
	assert_int_equal(system(cmd), 0);
	s = open_snap("r");
	sb = start(s);
	expect(sb, "dr", "3", "0xc0ffe8");
	sandbox_free(sb);
	snapshot_close(s);

	/* a version 1 cpu file, as snapshots written before debug registers were kept */
	snprintf(cmd, sizeof(cmd), "sed -i -e '/^dr[0-7] /d' -e 's/^snapvm-cpu 2$/snapvm-cpu 1/' '%s'",
		 cpu);
	assert_int_equal(system(cmd), 0);
	s = open_snap("r");
	sb = start(s);
	expect(sb, "msr", "c0000102", "0xffff8880abcdef00");
	expect(sb, "dr", "3", "0x0");
	expect(sb, "dr", "7", "0x400");
	sandbox_free(sb);
	snapshot_close(s);
}

/*
 * A watchpoint armed before the snapshot (DR0 and DR7) is armed in every
 * sandbox started from it: the guest's write to the watched word raises
 * a debug exception there, which ends that sandbox with a message, while
 * the live sandbox, reset to power-on, writes it freely.
 */
static void test_snapshot_watchpoint(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("regs", &g, 1u << 20);
	expect(live, "poke", NULL, "1");
	expect(live, "watch", NULL, "0xd0401");
	take(live, "regs", NULL, "w", NULL);
	struct err e = { 0 };
	assert_int_equal(sandbox_reset(live, &e), 0);
	expect(live, "poke", NULL, "1");	/* power-on: nothing armed */
	sandbox_free(live);
	guest_close(g);

	struct snapshot *s = open_snap("w");
	for (int i = 0; i < 2; i++) {
		struct sandbox *sb = start(s);
		expect(sb, "dr", "7", "0xd0401");
		char out[64];
		size_t n;
		e = (struct err){ 0 };
		int r = sandbox_call(sb, "poke", "", 0, out, sizeof(out), &n, &e);
		print_message("# poke in a sandbox from the snapshot: %s\n", e.msg);
		assert_int_equal(r, -EPROTO);
		assert_non_null(strstr(e.msg, "debug (#DB)"));
		const char *why = NULL;
		assert_true(sandbox_ended(sb, &why));
		sandbox_free(sb);
	}
	snapshot_close(s);
}

/* The functions listed from a snapshot's files are the guest ELF's, in its order. */
static void expect_exports(const char *name, const struct guest *elf)
{
	struct snapshot *s = open_snap(name);
	char (*names)[SNAPVM_NAME_MAX];
	size_t n;
	struct err e = { 0 };
	int r = snapshot_exports(s, &names, &n, &e);
	if (r < 0)
		fail_msg("%s", err_str(&e, r));
	assert_int_equal(n, elf->nexports);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(names[i], elf->exports[i]);
	free(names);
	snapshot_close(s);
}

/*
 * Listing a snapshot's functions: from a cold-booted guest of each kind
 * (ET_DYN and ET_EXEC), and from a derived snapshot whose guest wrote to
 * the page holding its export table (the table is read from the copy in
 * scratch, through the saved page tables).
 */
static void test_snapshot_exports_listed(void **state)
{
	(void)state;
	const char *guests[] = { "hello", "hello-exec", "evil", "regs" };
	for (size_t i = 0; i < sizeof(guests) / sizeof(guests[0]); i++) {
		struct guest *g;
		struct sandbox *live = boot_elf(guests[i], &g, 1u << 20);
		take(live, guests[i], NULL, guests[i], NULL);
		expect_exports(guests[i], g);
		sandbox_free(live);
		guest_close(g);
	}
	/* hello's counter lives in the page of its export table: counting copies that page */
	char path[512];
	struct guest *g;
	struct err e = { 0 };
	guest_path(path, sizeof(path), "hello");
	assert_int_equal(guest_open_elf(path, NULL, &g, &e), 0);
	struct snapshot *p = open_snap("hello");
	struct sandbox *sb = start(p);
	expect(sb, "counter", NULL, "1");
	take(sb, "hello", p, "hello2", NULL);
	const struct snapvm_boot *b = snapshot_guest(p)->scratch_image;
	uint64_t gpa, flags;
	assert_int_equal(sandbox_translate(sb, b->exports_gva, &gpa, &flags, &e), 0);
	assert_true(gpa >= SNAPVM_SCRATCH_GPA);
	sandbox_free(sb);
	snapshot_close(p);
	expect_exports("hello2", g);
	guest_close(g);
}

/*
 * A derived snapshot copies its parent's files as they were when the parent
 * was opened (the ones its sandboxes map), even when the parent directory
 * is deleted and another snapshot of the same guest put in its place
 * before the derived one is taken.
 */
static void test_snapshot_derived_parent_replaced(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("hello", &g, 0);
	expect(live, "counter", NULL, "1");
	take(live, "hello", NULL, "p", NULL);
	struct snapshot *p = open_snap("p");
	struct sandbox *sb = start(p);
	expect(sb, "add", "40 2", "42");	/* writes nothing of the data region */

	char dir[256];
	dir_path(dir, sizeof(dir), "p");
	assert_int_equal(tu_rmtree(dir), 0);
	for (int i = 2; i <= 5; i++) {
		char want[8];
		snprintf(want, sizeof(want), "%d", i);
		expect(live, "counter", NULL, want);
	}
	take(live, "hello", NULL, "p", NULL);	/* another "p": counter at 5 */
	sandbox_free(live);
	guest_close(g);

	take(sb, "hello", p, "child", NULL);
	sandbox_free(sb);
	snapshot_close(p);
	struct snapshot *c = open_snap("child");
	sb = start(c);
	expect(sb, "counter", NULL, "2");	/* from the first p's 1, not 5 */
	sandbox_free(sb);
	snapshot_close(c);
}

/* A derived snapshot of a sandbox that was not made from that parent is refused. */
static void test_snapshot_derived_wrong_parent(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("hello", &g, 0);
	take(live, "hello", NULL, "p", NULL);
	struct snapshot *p = open_snap("p");
	char dir[256];
	dir_path(dir, sizeof(dir), "child");
	struct snapshot_origin o = { .parent = p };
	struct err e = { 0 };
	assert_int_equal(snapshot_take(live, &o, dir, NULL, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "was the sandbox made from it"));
	assert_int_equal(access(dir, F_OK), -1);
	sandbox_free(live);
	guest_close(g);
	snapshot_close(p);
}

/*
 * A region file that shrinks under a running sandbox: the guest's next
 * touch of the lost pages fails the call with an error, the process lives
 * on, and other sandboxes can still be made from intact snapshots.
 */
static void test_snapshot_file_truncated_under_sandbox(void **state)
{
	(void)state;
	struct guest *g;
	struct sandbox *live = boot_elf("hello", &g, 0);
	expect(live, "counter", NULL, "1");
	take(live, "hello", NULL, "t", NULL);
	take(live, "hello", NULL, "u", NULL);
	sandbox_free(live);
	guest_close(g);
	struct snapshot *s = open_snap("t");
	struct sandbox *sb = start(s);
	char path[512];
	dir_path(path, sizeof(path), "t/data.mem");
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(truncate(path, 0), 0);
	struct err e = { 0 };
	char out[64];
	size_t n;
	int r = sandbox_call(sb, "counter", NULL, 0, out, sizeof(out), &n, &e);
	assert_int_equal(r, -EFAULT);
	assert_non_null(strstr(e.msg, "region file"));
	assert_true(sandbox_ended(sb, NULL));
	sandbox_free(sb);
	snapshot_close(s);
	/* the broken snapshot is refused at load; the other one works */
	char dir[256];
	dir_path(dir, sizeof(dir), "t");
	assert_int_equal(snapshot_open(dir, &s, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "data.mem"));
	s = open_snap("u");
	sb = start(s);
	expect(sb, "counter", NULL, "2");
	sandbox_free(sb);
	snapshot_close(s);
}

int main(void)
{
	tu_require_kvm();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_snapshot_same_results_as_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_eight_sandboxes_isolated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_derived_generations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_reset_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_scratch_resident, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_cpu_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_tsc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_watchpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_exports_listed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_derived_parent_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_derived_wrong_parent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_file_truncated_under_sandbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_warm_state, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
