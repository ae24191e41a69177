/*
 * tests/test-vm.c: sandboxes running the example guests under KVM.
 *
 * hello's functions give the right answers over many calls on both loader
 * paths (ET_DYN and ET_EXEC); state persists within a sandbox and not
 * across sandboxes; with read-only (shared) regions the guest's writes
 * land in scratch copies and the backing memory stays unchanged; every
 * misbehaviour of evil ends its sandbox with the right message while the
 * process goes on to run the next one; a saved state resumes in new
 * sandboxes made from read-only copies of it; a sandbox reset in place
 * (cold boot or saved state, ended or not) starts over on the same VM.
 * A KVM that lacks a capability the host needs is refused by name; one
 * that lacks XSAVE, XCRs and debug registers runs and resumes guests
 * through its older FPU calls.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "host/sandbox.h"
#include "host/vm.h"

static char *guest_path(const char *name)
{
	const char *root = getenv("SNAPFS_BUILD_ROOT");
	static char buf[4096];
	snprintf(buf, sizeof(buf), "%s/guest/%s.elf", root ? root : ".", name);
	return buf;
}

static struct guest *open_guest(const char *name, int flags)
{
	struct err e = { 0 };
	struct guest *g = NULL;
	struct guest_options opt = { .heap_size = 8ull << 20, .flags = flags };
	int r = guest_open_elf(guest_path(name), &opt, &g, &e);
	if (r < 0)
		fail_msg("%s", e.msg);
	return g;
}

static const struct sandbox_options default_opt = { .timeout_ms = 60000 };

static struct sandbox *new_sandbox(struct guest *g, const struct sandbox_options *opt)
{
	struct err e = { 0 };
	struct sandbox *sb = NULL;
	int r = sandbox_new(g, opt ? opt : &default_opt, &sb, &e);
	if (r < 0)
		fail_msg("%s", e.msg);
	return sb;
}

/* Call fn with a string argument, expect success; result as a string. */
static const char *call_ok(struct sandbox *sb, const char *fn, const char *arg)
{
	static char out[4096];
	struct err e = { 0 };
	size_t n;
	int r = sandbox_call(sb, fn, arg, strlen(arg), out, sizeof(out) - 1, &n, &e);
	if (r < 0)
		fail_msg("%s(%s): %s", fn, arg, e.msg);
	out[n] = 0;
	return out;
}

static void hello_values(const char *name)
{
	struct guest *g = open_guest(name, 0);
	struct sandbox *sb = new_sandbox(g, NULL);
	struct err e = { 0 };
	char arg[64], want[64];

	srandom(42);
	for (int i = 0; i < 200; i++) {
		long a = random() % 2000000 - 1000000, b = random() % 2000000 - 1000000;
		snprintf(arg, sizeof(arg), "%ld %ld", a, b);
		snprintf(want, sizeof(want), "%ld", a + b);
		assert_string_equal(call_ok(sb, "add", arg), want);
	}

	/* echo: empty, binary, and the largest argument the buffer takes */
	size_t big = (SANDBOX_CALLBUF_DEFAULT - SNAPVM_CALLBUF_HDR) / 2;
	uint8_t *in = malloc(big), *out = malloc(big);
	for (size_t i = 0; i < big; i++)
		in[i] = (uint8_t)(i * 7 + 3);
	size_t sizes[] = { 0, 1, 255, 4096, 4097, big };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = 12345;
		memset(out, 0, big);
		assert_int_equal(sandbox_call(sb, "echo", in, sizes[k], out, big, &n, &e), 0);
		assert_int_equal(n, sizes[k]);
		assert_memory_equal(out, in, sizes[k]);
	}
	size_t n;
	assert_int_equal(sandbox_call(sb, "echo", in, big + 1, out, big, &n, &e), -E2BIG);
	free(in);
	free(out);

	/* the host's clock, through a host call */
	uint64_t before = vm_now_ns();
	uint64_t t = strtoull(call_ok(sb, "now", ""), NULL, 10);
	uint64_t after = vm_now_ns();
	assert_true(t >= before && t <= after);

	assert_false(sandbox_ended(sb, NULL));
	struct sandbox_stats st;
	sandbox_stats(sb, &st);
	assert_int_equal(st.calls, 200 + 6 + 1);
	sandbox_free(sb);
	guest_close(g);
}

static void test_vm_hello_pie(void **state)
{
	(void)state;
	hello_values("hello");
}

static void test_vm_hello_exec(void **state)
{
	(void)state;
	hello_values("hello-exec");
}

struct log {
	char text[4096];
	size_t len;
};

static void log_append(void *ctx, const char *msg, size_t len)
{
	struct log *l = ctx;
	assert_true(l->len + len < sizeof(l->text));
	memcpy(l->text + l->len, msg, len);
	l->len += len;
	l->text[l->len] = 0;
}

static void test_vm_log_and_state(void **state)
{
	(void)state;
	struct guest *g = open_guest("hello", 0);
	struct log log = { 0 };
	struct sandbox_options opt = { .timeout_ms = 60000, .log = log_append, .log_ctx = &log };
	struct sandbox *a = new_sandbox(g, &opt);
	struct sandbox *b = new_sandbox(g, &opt);

	assert_string_equal(call_ok(a, "greet", "snap"), "hello, snap");
	assert_string_equal(log.text, "greeting 4 bytes of name\n");

	char want[32];
	for (int i = 1; i <= 50; i++) {
		snprintf(want, sizeof(want), "%d", i);
		assert_string_equal(call_ok(a, "counter", ""), want);
	}
	/* another sandbox of the same guest has its own memory */
	assert_string_equal(call_ok(b, "counter", ""), "1");
	assert_string_equal(call_ok(a, "counter", ""), "51");
	sandbox_free(a);
	sandbox_free(b);
	guest_close(g);
}

static void test_vm_call_errors(void **state)
{
	(void)state;
	struct guest *g = open_guest("evil", 0);
	struct sandbox *sb = new_sandbox(g, NULL);
	struct err e = { 0 };
	char out[8];
	size_t n;
	assert_int_equal(sandbox_call(sb, "no_such_fn", "", 0, out, sizeof(out), &n, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "no function \"no_such_fn\""));
	assert_int_equal(sandbox_call(sb, "bad name", "", 0, out, sizeof(out), &n, &e), -EINVAL);
	assert_int_equal(sandbox_call(sb, "fail", "", 0, out, sizeof(out), &n, &e), -EREMOTEIO);
	assert_non_null(strstr(e.msg, "failed with error -7"));
	assert_int_equal(sandbox_call(sb, "ok", "", 0, out, 1, &n, &e), -ENOBUFS);
	assert_int_equal(n, 2);
	/* none of these ends the sandbox */
	assert_false(sandbox_ended(sb, NULL));
	assert_string_equal(call_ok(sb, "ok", ""), "ok");
	sandbox_free(sb);
	guest_close(g);
}

/* Copy every region's bytes, to compare after the guest ran. */
static uint8_t **copy_regions(const struct guest *g)
{
	uint8_t **c = calloc(g->nregions, sizeof(*c));
	for (size_t i = 0; i < g->nregions; i++) {
		c[i] = malloc(g->regions[i].size);
		memcpy(c[i], g->regions[i].mem, g->regions[i].size);
	}
	return c;
}

static void check_regions_unchanged(const struct guest *g, uint8_t **c)
{
	for (size_t i = 0; i < g->nregions; i++) {
		assert_memory_equal(c[i], g->regions[i].mem, g->regions[i].size);
		free(c[i]);
	}
	free(c);
}

static const struct guest_region *region_named(const struct guest *g, const char *name)
{
	for (size_t i = 0; i < g->nregions; i++)
		if (strcmp(g->regions[i].name, name) == 0)
			return &g->regions[i];
	fail_msg("no region %s", name);
	return NULL;
}

static void test_vm_copy_on_write(void **state)
{
	(void)state;
	struct guest *g = open_guest("hello", GUEST_SHARED);
	const struct guest_region *data = region_named(g, "data");
	assert_true(data->shared);
	assert_true(region_named(g, "heap")->shared);
	uint8_t **before = copy_regions(g);
	struct sandbox *a = new_sandbox(g, NULL);
	struct sandbox *b = new_sandbox(g, NULL);
	struct sandbox_stats st;
	sandbox_stats(a, &st);
	uint64_t cow_at_boot = st.cow_pages;

	/* before any write the data page maps the shared region, read-only */
	uint64_t gpa, flags;
	assert_int_equal(sandbox_translate(a, data->gpa, &gpa, &flags, NULL), 0);
	assert_int_equal(gpa, data->gpa);
	assert_true(flags & SNAPVM_PTE_COW);
	assert_false(flags & SNAPVM_PTE_RW);

	char want[16];
	for (int i = 1; i <= 20; i++) {
		snprintf(want, sizeof(want), "%d", i);
		assert_string_equal(call_ok(a, "counter", ""), want);
	}
	assert_string_equal(call_ok(b, "counter", ""), "1");

	/* the written page is now a private copy in scratch */
	sandbox_stats(a, &st);
	assert_true(st.cow_pages > cow_at_boot);
	int copied = 0;
	for (uint64_t va = data->gpa; va < data->gpa + data->size; va += SNAPVM_PAGE_SIZE) {
		assert_int_equal(sandbox_translate(a, va, &gpa, &flags, NULL), 0);
		if (gpa >= SNAPVM_SCRATCH_GPA) {
			copied++;
			assert_true(flags & SNAPVM_PTE_RW);
			assert_false(flags & SNAPVM_PTE_COW);
		}
	}
	assert_true(copied >= 1);
	/* ...and the shared memory behind every region is exactly as before */
	check_regions_unchanged(g, before);
	sandbox_free(a);
	sandbox_free(b);
	guest_close(g);
}

struct evil_case {
	const char *fn;
	int flags;		/* GUEST_SHARED or 0 */
	int code;
	const char *msg;
};

static const struct evil_case evil_cases[] = {
	{ "spin", 0, -ETIMEDOUT, "past the time limit of 1500 ms" },
	{ "write_rodata", 0, -EPROTO, "guest fault: write to read-only page at address" },
	{ "cow_off", 0, -EPROTO, "to read-only memory at 0x" },
	{ "cow_off_data", GUEST_SHARED, -EPROTO, "(region \"data\")" },
	{ "wild_port", 0, -EPROTO, "unknown I/O port 0x1234 at RIP 0x" },
	{ "port_read", 0, -EPROTO, "guest read from I/O port 0x1234 at RIP 0x" },
	{ "no_memory", 0, -EPROTO, "guest read 8 bytes at 0xfec00" },
	{ "bad_length", 0, -EPROTO, "guest claims a result of" },
	{ "triple_fault", 0, -EPROTO, "shut down (triple fault) at RIP 0x" },
	{ "alloc_huge", 0, -EPROTO, "guest aborted: alloc_huge: cannot allocate 1099511627776 bytes" },
	{ "scratch_fill", GUEST_SHARED, -EPROTO, "out of scratch memory" },
	{ "null_write", 0, -EPROTO, "page fault (#PF) writing address 0x0 (error 0x2, not mapped)" },
	{ "divide_zero", 0, -EPROTO, "divide error (#DE)" },
	{ "stack_overflow", 0, -EPROTO, "double fault (#DF)" },
	{ "halt", 0, -EPROTO, "guest halted (hlt) at RIP 0x" },
	{ "abort", 0, -EPROTO, "guest aborted: evil: asked to abort" },
};

static void test_vm_evil(void **state)
{
	(void)state;
	struct guest *priv = open_guest("evil", 0), *shared = open_guest("evil", GUEST_SHARED);
	struct sandbox_options opt = { .timeout_ms = 1500, .scratch_size = 1u << 20 };
	for (size_t i = 0; i < sizeof(evil_cases) / sizeof(evil_cases[0]); i++) {
		const struct evil_case *c = &evil_cases[i];
		struct guest *g = c->flags & GUEST_SHARED ? shared : priv;
		struct sandbox *sb = new_sandbox(g, &opt);
		struct err e = { 0 };
		char out[64];
		size_t n;
		int r = sandbox_call(sb, c->fn, "", 0, out, sizeof(out), &n, &e);
		print_message("# %s: %s\n", c->fn, e.msg);
		if (r != c->code || !strstr(e.msg, c->msg))
			fail_msg("%s: got %d \"%s\", want %d \"%s\"", c->fn, r, e.msg, c->code, c->msg);
		assert_non_null(strstr(e.msg, c->fn));	/* says which call */
		const char *why = NULL;
		assert_true(sandbox_ended(sb, &why));
		assert_non_null(strstr(why, c->msg));
		assert_int_equal(sandbox_call(sb, "ok", "", 0, out, sizeof(out), &n, &e), -ESHUTDOWN);
		assert_non_null(strstr(e.msg, c->msg));
		sandbox_free(sb);

		/* the process is fine: the next sandbox works */
		sb = new_sandbox(g, &opt);
		assert_string_equal(call_ok(sb, "ok", ""), "ok");
		sandbox_free(sb);
	}
	guest_close(priv);
	guest_close(shared);
}

/* Saved region bytes in read-only mappings, as snapshot files would be. */
struct saved {
	void *maps[GUEST_REGIONS_MAX];
	size_t sizes[GUEST_REGIONS_MAX];
	size_t n;
};

static void release_saved(void *ctx)
{
	struct saved *s = ctx;
	for (size_t i = 0; i < s->n; i++)
		munmap(s->maps[i], s->sizes[i]);
	free(s);
}

static struct guest *guest_from_state(struct sandbox_state *st, const struct guest *parent)
{
	struct saved *s = calloc(1, sizeof(*s));
	struct guest_region regions[GUEST_REGIONS_MAX];
	for (size_t i = 0; i < st->nregions; i++) {
		regions[i] = st->regions[i];
		assert_true(regions[i].shared);
		void *m = mmap(NULL, regions[i].size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(m != MAP_FAILED);
		memcpy(m, regions[i].mem, regions[i].size);
		assert_int_equal(mprotect(m, regions[i].size, PROT_READ), 0);
		s->maps[i] = m;
		s->sizes[i] = regions[i].size;
		s->n++;
		regions[i].mem = m;
	}
	struct guest_spec spec = {
		.name = "saved", .entry = st->entry, .regions = regions, .nregions = st->nregions,
		.exports = (const char (*)[SNAPVM_NAME_MAX])parent->exports,
		.nexports = parent->nexports,
		.scratch_image = st->scratch, .scratch_image_len = st->scratch_len,
		.scratch_size = st->scratch_size, .cpu = &st->cpu,
		.release = release_saved, .release_ctx = s,
	};
	struct guest *g;
	struct err e = { 0 };
	if (guest_new(&spec, &g, &e) < 0)
		fail_msg("%s", e.msg);
	return g;
}

static void save_restore(int flags)
{
	struct guest *g = open_guest("hello", flags);
	struct sandbox *sb = new_sandbox(g, NULL);
	for (int i = 0; i < 3; i++)
		call_ok(sb, "counter", "");
	struct sandbox_state st;
	struct err e = { 0 };
	if (sandbox_save(sb, &st, &e) < 0)
		fail_msg("%s", e.msg);
	assert_true(st.scratch_len < st.scratch_size);
	struct guest *saved = guest_from_state(&st, g);
	sandbox_state_release(&st);
	uint8_t **before = copy_regions(saved);

	/* the original goes on on its own */
	assert_string_equal(call_ok(sb, "counter", ""), "4");
	assert_string_equal(call_ok(sb, "counter", ""), "5");

	struct sandbox *r1 = new_sandbox(saved, NULL), *r2 = new_sandbox(saved, NULL);
	assert_string_equal(call_ok(r1, "counter", ""), "4");
	assert_string_equal(call_ok(r1, "counter", ""), "5");
	assert_string_equal(call_ok(r1, "counter", ""), "6");
	assert_string_equal(call_ok(r2, "counter", ""), "4");
	assert_string_equal(call_ok(r2, "add", "40 2"), "42");
	check_regions_unchanged(saved, before);

	/*
	 * reset in place: every page table entry of data is as in a fresh
	 * sandbox of the saved state, scratch past the saved image is zero
	 * (with private regions r2 had copied the counter's page there), and
	 * the counter starts over
	 */
	before = copy_regions(saved);
	const struct guest_region *data = region_named(saved, "data");
	uint64_t image_end = SNAPVM_SCRATCH_GPA + saved->scratch_image_len, vms = vm_created();
	struct sandbox_stats sst;
	sandbox_stats(r2, &sst);
	uint64_t used = SNAPVM_SCRATCH_GPA + sst.scratch_used;
	static uint8_t page[SNAPVM_PAGE_SIZE], zero[SNAPVM_PAGE_SIZE];
	int dirty = 0;
	for (uint64_t a = image_end; a < used; a += SNAPVM_PAGE_SIZE) {
		assert_int_equal(sandbox_read_phys(r2, a, page, sizeof(page), NULL), 0);
		dirty += memcmp(page, zero, sizeof(page)) != 0;
	}
	if (!flags)
		assert_true(dirty > 0);
	if (sandbox_reset(r2, &e) < 0)
		fail_msg("%s", e.msg);
	assert_int_equal(vm_created(), vms);
	for (uint64_t a = image_end; a < SNAPVM_SCRATCH_GPA + sst.scratch_size; a += SNAPVM_PAGE_SIZE) {
		assert_int_equal(sandbox_read_phys(r2, a, page, sizeof(page), NULL), 0);
		assert_memory_equal(page, zero, sizeof(page));
	}
	struct sandbox *fresh = new_sandbox(saved, NULL);
	for (uint64_t va = data->gpa; va < data->gpa + data->size; va += SNAPVM_PAGE_SIZE) {
		uint64_t gpa, pte, want_gpa, want_pte;
		assert_int_equal(sandbox_translate(r2, va, &gpa, &pte, NULL), 0);
		assert_int_equal(sandbox_translate(fresh, va, &want_gpa, &want_pte, NULL), 0);
		assert_int_equal(gpa, want_gpa);
		assert_int_equal(pte, want_pte);
	}
	sandbox_free(fresh);
	sandbox_stats(r2, &sst);
	assert_int_equal(sst.calls, 0);
	assert_string_equal(call_ok(r2, "counter", ""), "4");
	assert_string_equal(call_ok(r2, "counter", ""), "5");
	check_regions_unchanged(saved, before);

	/* a state saved from a resumed sandbox resumes too (a second generation) */
	if (sandbox_save(r1, &st, &e) < 0)
		fail_msg("%s", e.msg);
	struct guest *saved2 = guest_from_state(&st, g);
	sandbox_state_release(&st);
	struct sandbox *r3 = new_sandbox(saved2, NULL);
	assert_string_equal(call_ok(r3, "counter", ""), "7");
	sandbox_free(r3);
	guest_close(saved2);

	sandbox_free(r1);
	sandbox_free(r2);
	sandbox_free(sb);
	guest_close(saved);
	guest_close(g);
}

static void test_vm_save_restore_private(void **state)
{
	(void)state;
	save_restore(0);
}

static void test_vm_save_restore_shared(void **state)
{
	(void)state;
	save_restore(GUEST_SHARED);
}

/* warm's table entry, computed here independently */
static uint64_t warm_mix(uint64_t x)
{
	for (int r = 0; r < 8; r++) {
		x += 0x9e3779b97f4a7c15ull;
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		x ^= x >> 31;
	}
	return x;
}

static void test_vm_warm(void **state)
{
	(void)state;
	struct guest *g = open_guest("warm", 0);
	struct sandbox *sb = new_sandbox(g, NULL);
	const char *r = call_ok(sb, "init", "64");	/* 64 KiB: 8192 entries */
	assert_non_null(strstr(r, "8192 entries"));
	char arg[32], want[32];
	for (uint64_t i = 0; i < 8192; i += 397) {
		snprintf(arg, sizeof(arg), "%llu", (unsigned long long)i);
		snprintf(want, sizeof(want), "%llu", (unsigned long long)warm_mix(i));
		assert_string_equal(call_ok(sb, "query", arg), want);
	}
	/* the table is in the heap region, not in scratch */
	struct sandbox_stats st;
	sandbox_stats(sb, &st);
	assert_true(st.scratch_used < 1u << 20);
	uint64_t first;
	assert_int_equal(sandbox_read_phys(sb, SNAPVM_HEAP_GPA, &first, 8, NULL), 0);
	assert_int_equal(first, warm_mix(0));
	sandbox_free(sb);
	guest_close(g);
}

/*
 * A cold-booted sandbox reset in place starts over: private memory as the
 * ELF has it, the boot run again, the same VM.
 */
static void test_vm_reset_cold(void **state)
{
	(void)state;
	struct guest *g = open_guest("hello", 0);
	struct sandbox *sb = new_sandbox(g, NULL);
	for (int i = 1; i <= 5; i++)
		call_ok(sb, "counter", "");
	uint64_t vms = vm_created();
	struct err e = { 0 };
	for (int round = 0; round < 3; round++) {
		if (sandbox_reset(sb, &e) < 0)
			fail_msg("%s", e.msg);
		struct sandbox_stats st;
		sandbox_stats(sb, &st);
		assert_int_equal(st.calls, 0);
		assert_string_equal(call_ok(sb, "counter", ""), "1");
		assert_string_equal(call_ok(sb, "counter", ""), "2");
		assert_string_equal(call_ok(sb, "add", "40 2"), "42");
	}
	assert_int_equal(vm_created(), vms);
	sandbox_free(sb);
	guest_close(g);
}

/*
 * Every way evil ends a sandbox, followed by a reset: the sandbox answers
 * again, on the same VM.  Both a cold boot and a resumed saved state.
 */
static void test_vm_reset_after_ended(void **state)
{
	(void)state;
	struct guest *g = open_guest("evil", GUEST_SHARED);
	struct sandbox_options opt = { .timeout_ms = 1500, .scratch_size = 1u << 20 };
	struct sandbox *cold = new_sandbox(g, &opt);
	struct sandbox_state st;
	struct err e = { 0 };
	if (sandbox_save(cold, &st, &e) < 0)
		fail_msg("%s", e.msg);
	struct guest *saved = guest_from_state(&st, g);
	sandbox_state_release(&st);
	struct sandbox *resumed = new_sandbox(saved, &opt);
	uint64_t vms = vm_created();
	struct sandbox *both[] = { cold, resumed };
	for (size_t k = 0; k < 2; k++) {
		struct sandbox *sb = both[k];
		for (size_t i = 0; i < sizeof(evil_cases) / sizeof(evil_cases[0]); i++) {
			const struct evil_case *c = &evil_cases[i];
			char out[64];
			size_t n;
			int r = sandbox_call(sb, c->fn, "", 0, out, sizeof(out), &n, &e);
			if (r != c->code)
				fail_msg("%s: got %d \"%s\", want %d", c->fn, r, e.msg, c->code);
			assert_true(sandbox_ended(sb, NULL));
			if (sandbox_reset(sb, &e) < 0)
				fail_msg("reset after %s: %s", c->fn, e.msg);
			assert_false(sandbox_ended(sb, NULL));
			assert_string_equal(call_ok(sb, "ok", ""), "ok");
			assert_int_equal(sandbox_call(sb, "fail", "", 0, out, sizeof(out), &n, &e),
					 -EREMOTEIO);
		}
	}
	assert_int_equal(vm_created(), vms);
	sandbox_free(resumed);
	sandbox_free(cold);
	guest_close(saved);
	guest_close(g);
}

static void test_vm_bad_guest_files(void **state)
{
	(void)state;
	struct err e = { 0 };
	struct guest *g;
	assert_int_equal(guest_open_elf("/nonexistent/x.elf", NULL, &g, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "/nonexistent/x.elf"));
	char path[] = "/tmp/test-vm-XXXXXX";
	int fd = mkstemp(path);
	assert_true(write(fd, "not an elf file at all", 22) == 22);
	close(fd);
	assert_true(guest_open_elf(path, NULL, &g, &e) < 0);
	assert_non_null(strstr(e.msg, path));
	unlink(path);
	struct guest_options opt = { .heap_size = 4097 };
	assert_int_equal(guest_open_elf(guest_path("hello"), &opt, &g, &e), -EINVAL);
}

/*
 * The boot block is the guest's to write, and a resume takes the call
 * buffer, stack and page tables from it: a save refuses a boot block that
 * a resume would refuse, and a resume refuses an image whose boot block
 * puts the call buffer past scratch (the host would write outside it).
 */
static void test_vm_boot_block_checked(void **state)
{
	(void)state;
	struct guest *g = open_guest("evil", GUEST_SHARED);
	static const struct {
		const char *arg, *msg;
	} cases[] = {
		{ "callbuf", "evil.elf: not saved: the boot block puts the call buffer" },
		{ "magic", "evil.elf: not saved: no valid boot block" },
	};
	struct sandbox_state st;
	struct err e = { 0 };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sandbox *sb = new_sandbox(g, NULL);
		assert_string_equal(call_ok(sb, "boot_break", cases[i].arg), "ok");
		assert_int_equal(sandbox_save(sb, &st, &e), -EINVAL);
		if (!strstr(e.msg, cases[i].msg))
			fail_msg("%s: got \"%s\", want \"%s\"", cases[i].arg, e.msg, cases[i].msg);
		sandbox_free(sb);
	}

	/* An image saved whole, its boot block then changed as a file's
	 * bytes could be: the call buffer one page past scratch. */
	struct sandbox *sb = new_sandbox(g, NULL);
	if (sandbox_save(sb, &st, &e) < 0)
		fail_msg("%s", e.msg);
	sandbox_free(sb);
	struct snapvm_boot *b = st.scratch;
	b->callbuf_gpa = b->scratch_gpa + b->scratch_size + SNAPVM_PAGE_SIZE;
	struct guest *saved = guest_from_state(&st, g);
	sandbox_state_release(&st);
	assert_int_equal(sandbox_new(saved, NULL, &sb, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "scratch image: the boot block puts the call buffer"));
	guest_close(saved);
	guest_close(g);
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* A VM holds two descriptors (VM and vCPU), /dev/kvm only while it is
 * made: with -N sandboxes the file limit is reached later. */
static void test_vm_descriptors(void **state)
{
	(void)state;
	int before = open_fds();
	struct vm *vm;
	struct err e = { 0 };
	if (vm_new(&vm, &e) < 0)
		fail_msg("%s", e.msg);
	assert_int_equal(open_fds(), before + 2);
	vm_free(vm);
	assert_int_equal(open_fds(), before);
}

static void watchdog_fired(int sig)
{
	(void)sig;
	static const char msg[] = "vm_run ran past its deadline: the timer was lost\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(2);
}

/*
 * A deadline so near that the timer fires while it is being armed: the
 * vCPU, spinning at the reset vector in real mode, must still be stopped.
 * (When the handler ran before vm_run recorded its vCPU, the stop was
 * lost and KVM_RUN spun for ever; a watchdog turns that into a failure.)
 */
static void test_vm_deadline_near(void **state)
{
	(void)state;
	struct vm *vm;
	struct err e = { 0 };
	if (vm_new(&vm, &e) < 0)
		fail_msg("%s", e.msg);
	/* jmp $ (eb fe) at 0xfffffff0, where a new vCPU starts. */
	uint8_t *rom = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	assert_true(rom != MAP_FAILED);
	rom[0xfff0] = 0xeb;
	rom[0xfff1] = 0xfe;
	assert_int_equal(vm_add_slot(vm, 0xffff0000, 0x10000, rom, 1, &e), 0);
	signal(SIGALRM, watchdog_fired);
	alarm(60);
	for (int i = 0; i < 400; i++) {
		/* 0-40 us ahead: shorter than arming takes, or about as long */
		uint64_t ahead = (uint64_t)(i % 41) * 1000;
		int r = vm_run(vm, vm_now_ns() + ahead + 1, &e);
		assert_int_equal(r, -ETIMEDOUT);
	}
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	vm_free(vm);
	munmap(rom, 0x10000);
}

/*
 * ioctl as the host's code sees it (this program is linked with
 * -Wl,--wrap=ioctl): the real call, but KVM_CHECK_EXTENSION says no to
 * the capabilities in refused, as an older or stricter KVM would.
 */
static long refused[3];

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	unsigned long arg = va_arg(ap, unsigned long);
	va_end(ap);
	for (size_t i = 0; req == KVM_CHECK_EXTENSION && i < sizeof(refused) / sizeof(*refused); i++)
		if (refused[i] && (long)arg == refused[i])
			return 0;
	return __real_ioctl(fd, req, arg);
}

/* A KVM without read-only memory slots or without immediate exits is
 * refused, saying which it lacks. */
static void test_vm_required_caps(void **state)
{
	(void)state;
	const struct {
		long cap;
		const char *name;
	} need[] = {
		{ KVM_CAP_READONLY_MEM, "KVM_CAP_READONLY_MEM" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	};
	struct guest *g = open_guest("hello", 0);
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		struct sandbox *sb = NULL;
		struct err e = { 0 };
		refused[0] = need[i].cap;
		int r = sandbox_new(g, &default_opt, &sb, &e);
		refused[0] = 0;
		assert_int_equal(r, -ENOTSUP);
		assert_null(sb);
		if (!strstr(e.msg, need[i].name))
			fail_msg("without %s: \"%s\"", need[i].name, e.msg);
	}
	struct sandbox *sb = new_sandbox(g, NULL);
	assert_string_equal(call_ok(sb, "add", "40 2"), "42");
	sandbox_free(sb);
	guest_close(g);
}

/* Make KVM_CHECK_EXTENSION say no to XSAVE, XCRs and debug registers
 * (refuse) or to nothing. */
static void refuse_optional(bool refuse)
{
	refused[0] = refuse ? KVM_CAP_XSAVE : 0;
	refused[1] = refuse ? KVM_CAP_XCRS : 0;
	refused[2] = refuse ? KVM_CAP_DEBUGREGS : 0;
}

/* XMM15 in a state's XSAVE area (the legacy FXSAVE layout's place). */
static uint8_t *xmm15(struct cpustate *cs)
{
	return (uint8_t *)cs->xsave.region + 160 + 15 * 16;
}

/* A sandbox of g saved at once, before it runs: its XMM15 must be want. */
static struct sandbox *xmm15_kept(struct guest *g, const uint8_t *want)
{
	struct sandbox *sb = new_sandbox(g, NULL);
	struct sandbox_state st;
	struct err e = { 0 };
	if (sandbox_save(sb, &st, &e) < 0)
		fail_msg("%s", e.msg);
	assert_memory_equal(xmm15(&st.cpu), want, 16);
	sandbox_state_release(&st);
	return sb;
}

/*
 * Without XSAVE, XCRs and debug registers (KVM's older calls for the FPU
 * only) a guest runs, and a state saved there resumes, there and on a KVM
 * with them all, and the other way round.  An SSE register set in the
 * state (to a value the guest never left there) is set and read back
 * both ways.
 */
static void test_vm_without_optional_caps(void **state)
{
	(void)state;
	static const uint8_t mark[16] = "xmm15 is kept!";
	refuse_optional(true);
	struct guest *g = open_guest("hello", 0);
	struct sandbox *sb = new_sandbox(g, NULL);
	assert_string_equal(call_ok(sb, "add", "40 2"), "42");
	for (int i = 1; i <= 3; i++) {
		char want[8];
		snprintf(want, sizeof(want), "%d", i);
		assert_string_equal(call_ok(sb, "counter", ""), want);
	}
	struct sandbox_state st;
	struct err e = { 0 };
	if (sandbox_save(sb, &st, &e) < 0)
		fail_msg("%s", e.msg);
	assert_memory_not_equal(xmm15(&st.cpu), mark, 16);
	memcpy(xmm15(&st.cpu), mark, 16);
	struct guest *saved = guest_from_state(&st, g);
	sandbox_state_release(&st);

	struct sandbox *r1 = xmm15_kept(saved, mark);
	assert_string_equal(call_ok(r1, "counter", ""), "4");
	assert_string_equal(call_ok(r1, "add", "1 2"), "3");
	refuse_optional(false);
	struct sandbox *r2 = xmm15_kept(saved, mark);

	/* the other way: a state saved with them all, resumed without */
	if (sandbox_save(r2, &st, &e) < 0)
		fail_msg("%s", e.msg);
	struct guest *saved2 = guest_from_state(&st, g);
	sandbox_state_release(&st);
	assert_string_equal(call_ok(r2, "counter", ""), "4");
	refuse_optional(true);
	struct sandbox *r3 = xmm15_kept(saved2, mark);
	refuse_optional(false);
	assert_string_equal(call_ok(r3, "counter", ""), "4");

	sandbox_free(r3);
	sandbox_free(r2);
	sandbox_free(r1);
	sandbox_free(sb);
	guest_close(saved2);
	guest_close(saved);
	guest_close(g);
}

int main(void)
{
	tu_require_kvm();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_hello_pie),
		cmocka_unit_test(test_vm_hello_exec),
		cmocka_unit_test(test_vm_log_and_state),
		cmocka_unit_test(test_vm_call_errors),
		cmocka_unit_test(test_vm_copy_on_write),
		cmocka_unit_test(test_vm_evil),
		cmocka_unit_test(test_vm_save_restore_private),
		cmocka_unit_test(test_vm_save_restore_shared),
		cmocka_unit_test(test_vm_warm),
		cmocka_unit_test(test_vm_reset_cold),
		cmocka_unit_test(test_vm_reset_after_ended),
		cmocka_unit_test(test_vm_bad_guest_files),
		cmocka_unit_test(test_vm_boot_block_checked),
		cmocka_unit_test(test_vm_deadline_near),
		cmocka_unit_test(test_vm_descriptors),
		cmocka_unit_test(test_vm_required_caps),
		cmocka_unit_test(test_vm_without_optional_caps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
