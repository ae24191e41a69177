/*
 * bench/bench-vm.c: what a sandbox costs, as ratios measured in one run.
 *
 *   call         one call of hello's echo with an empty argument, in a live
 *                sandbox (also reported as calls per second)
 *   cold         open the guest ELF, create a sandbox (boot), first call
 *   resume       create a sandbox from a saved state of an already booted
 *                one (read-only regions, scratch image), first call
 *   reset        reset such a sandbox in place after a call, next call
 *   warm cold    warm: boot, init of a table, one query
 *   warm resume  warm: sandbox from the state saved after init, one query
 *
 * Absolute times depend on the machine (and are meaningless inside the
 * emulated VM harness); compare the ratios.  Each figure is the median
 * (and minimum) of several runs.
 *
 * usage: bench-vm [BUILD_ROOT]   (default: $SNAPFS_BUILD_ROOT or .)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "host/sandbox.h"
#include "host/vm.h"

#define RUNS 7

static const char *root;

static void die(const char *what, const struct err *e, int r)
{
	fprintf(stderr, "bench-vm: %s: %s\n", what, err_str(e, r));
	exit(1);
}

static struct guest *open_guest(const char *name, int flags)
{
	char path[4096];
	struct err e = { 0 };
	struct guest *g;
	struct guest_options opt = { .heap_size = 16ull << 20, .flags = flags };
	snprintf(path, sizeof(path), "%s/guest/%s.elf", root, name);
	int r = guest_open_elf(path, &opt, &g, &e);
	if (r < 0)
		die(path, &e, r);
	return g;
}

static struct sandbox *new_sandbox(struct guest *g)
{
	struct err e = { 0 };
	struct sandbox *sb;
	int r = sandbox_new(g, NULL, &sb, &e);
	if (r < 0)
		die("sandbox", &e, r);
	return sb;
}

static void call(struct sandbox *sb, const char *fn, const char *arg)
{
	char out[256];
	size_t n;
	struct err e = { 0 };
	int r = sandbox_call(sb, fn, arg, strlen(arg), out, sizeof(out), &n, &e);
	if (r < 0)
		die(fn, &e, r);
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct stat2 {
	double median, min;	/* microseconds */
};

static struct stat2 summarize(uint64_t *ns, int n)
{
	qsort(ns, (size_t)n, sizeof(*ns), cmp);
	return (struct stat2){ ns[n / 2] / 1e3, ns[0] / 1e3 };
}

/* A guest from a saved state, region bytes in read-only mappings. */
struct saved {
	void *maps[GUEST_REGIONS_MAX];
	size_t sizes[GUEST_REGIONS_MAX], n;
};

static void release_saved(void *ctx)
{
	struct saved *s = ctx;
	for (size_t i = 0; i < s->n; i++)
		munmap(s->maps[i], s->sizes[i]);
	free(s);
}

static struct guest *save(struct sandbox *sb, const struct guest *parent)
{
	struct sandbox_state st;
	struct err e = { 0 };
	int r = sandbox_save(sb, &st, &e);
	if (r < 0)
		die("save", &e, r);
	struct saved *s = calloc(1, sizeof(*s));
	struct guest_region regions[GUEST_REGIONS_MAX];
	for (size_t i = 0; i < st.nregions; i++) {
		regions[i] = st.regions[i];
		void *m = mmap(NULL, regions[i].size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			die("mmap", NULL, -12);
		memcpy(m, regions[i].mem, regions[i].size);
		mprotect(m, regions[i].size, PROT_READ);
		s->maps[s->n] = m;
		s->sizes[s->n++] = regions[i].size;
		regions[i].mem = m;
	}
	struct guest_spec spec = {
		.name = "saved", .entry = st.entry, .regions = regions, .nregions = st.nregions,
		.exports = (const char (*)[SNAPVM_NAME_MAX])parent->exports,
		.nexports = parent->nexports,
		.scratch_image = st.scratch, .scratch_image_len = st.scratch_len,
		.scratch_size = st.scratch_size, .cpu = &st.cpu,
		.release = release_saved, .release_ctx = s,
	};
	struct guest *g;
	r = guest_new(&spec, &g, &e);
	sandbox_state_release(&st);
	if (r < 0)
		die("guest from state", &e, r);
	return g;
}

int main(int argc, char **argv)
{
	root = argc > 1 ? argv[1] : getenv("SNAPFS_BUILD_ROOT");
	if (!root)
		root = ".";
	uint64_t t[RUNS], t0;
	const char *warm_kib = "256";

	/* one trivial call */
	struct guest *hello = open_guest("hello", 0);
	struct sandbox *sb = new_sandbox(hello);
	const int ncalls = 2000;
	for (int i = 0; i < 100; i++)
		call(sb, "echo", "");
	for (int k = 0; k < RUNS; k++) {
		t0 = vm_now_ns();
		for (int i = 0; i < ncalls; i++)
			call(sb, "echo", "");
		t[k] = (vm_now_ns() - t0) / ncalls;
	}
	struct stat2 s_call = summarize(t, RUNS);

	/* cold: open + boot + first call */
	guest_close(open_guest("hello", 0));
	for (int k = 0; k < RUNS; k++) {
		t0 = vm_now_ns();
		struct guest *g = open_guest("hello", 0);
		struct sandbox *c = new_sandbox(g);
		call(c, "echo", "");
		t[k] = vm_now_ns() - t0;
		sandbox_free(c);
		guest_close(g);
	}
	struct stat2 s_cold = summarize(t, RUNS);

	/* resume from a saved state */
	struct guest *saved = save(sb, hello);
	for (int k = 0; k < RUNS; k++) {
		t0 = vm_now_ns();
		struct sandbox *c = new_sandbox(saved);
		call(c, "echo", "");
		t[k] = vm_now_ns() - t0;
		sandbox_free(c);
	}
	struct stat2 s_resume = summarize(t, RUNS);

	/* reset one sandbox of the saved state in place, then call */
	struct sandbox *rs = new_sandbox(saved);
	for (int k = 0; k < RUNS; k++) {
		call(rs, "counter", "");
		struct err e = { 0 };
		t0 = vm_now_ns();
		int r = sandbox_reset(rs, &e);
		if (r < 0)
			die("reset", &e, r);
		call(rs, "echo", "");
		t[k] = vm_now_ns() - t0;
	}
	struct stat2 s_reset = summarize(t, RUNS);
	sandbox_free(rs);
	guest_close(saved);
	sandbox_free(sb);
	guest_close(hello);

	/* warm: cold boot + init + query, against resuming after init */
	struct guest *warm = open_guest("warm", 0);
	struct sandbox *w = NULL;
	for (int k = 0; k < 3; k++) {
		if (w)
			sandbox_free(w);
		t0 = vm_now_ns();
		w = new_sandbox(warm);
		call(w, "init", warm_kib);
		call(w, "query", "12345");
		t[k] = vm_now_ns() - t0;
	}
	struct stat2 s_wcold = summarize(t, 3);
	struct guest *wsaved = save(w, warm);
	for (int k = 0; k < RUNS; k++) {
		t0 = vm_now_ns();
		struct sandbox *c = new_sandbox(wsaved);
		call(c, "query", "12345");
		t[k] = vm_now_ns() - t0;
		sandbox_free(c);
	}
	struct stat2 s_wresume = summarize(t, RUNS);
	guest_close(wsaved);
	sandbox_free(w);
	guest_close(warm);

	printf("bench-vm: median (min) of %d runs\n", RUNS);
	printf("  trivial call            %10.1f us (%8.1f)   %.0f calls/s\n", s_call.median,
	       s_call.min, 1e6 / s_call.median);
	printf("  cold: open+boot+call    %10.1f us (%8.1f)   = %.1f x a call\n", s_cold.median,
	       s_cold.min, s_cold.median / s_call.median);
	printf("  resume+call             %10.1f us (%8.1f)   = %.2f x cold\n", s_resume.median,
	       s_resume.min, s_resume.median / s_cold.median);
	printf("  reset in place+call     %10.1f us (%8.1f)   = %.2f x resume+call\n",
	       s_reset.median, s_reset.min, s_reset.median / s_resume.median);
	printf("  warm %s KiB cold+init   %10.1f us (%8.1f)\n", warm_kib, s_wcold.median,
	       s_wcold.min);
	printf("  warm resume+query       %10.1f us (%8.1f)   = %.2e x cold+init (%.0fx faster)\n",
	       s_wresume.median, s_wresume.min, s_wresume.median / s_wcold.median,
	       s_wcold.median / s_wresume.median);
	return 0;
}
