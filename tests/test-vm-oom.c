/*
 * tests/test-vm-oom.c: sandboxes whose allocations fail.
 *
 * Opening a guest, making a sandbox, calling into it and saving its state
 * run with the Nth allocation of the host's code failing (failalloc.h),
 * for N = 1, 2, ... until a run meets none; then again with every
 * allocation from the Nth on failing.  Each run either works or fails
 * with ENOMEM and a message naming the guest and saying that memory ran
 * out, and leaks nothing (under the address sanitizer).  This program starts with nothing of
 * KVM asked yet, so the first runs also fail what the host asks KVM once
 * per process (its CPUID entries and MSR list): a failure there must not
 * be kept, and every later run, and a last one without failures, works.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "failalloc.h"
#include "host/sandbox.h"
#include "testutil.h"

#define RUNS_MAX 500

/* Open hello, make a sandbox, call counter twice, save the state.
 * Returns 0 or the first failure, with e set. */
static int steps(struct err *e)
{
	const char *root = getenv("SNAPFS_BUILD_ROOT");
	char path[4096];
	snprintf(path, sizeof(path), "%s/guest/hello.elf", root ? root : ".");
	struct guest_options gopt = { .heap_size = 8ull << 20 };
	struct sandbox_options sopt = { .timeout_ms = 60000 };
	struct guest *g = NULL;
	struct sandbox *sb = NULL;
	int r = guest_open_elf(path, &gopt, &g, e);
	if (r == 0)
		r = sandbox_new(g, &sopt, &sb, e);
	for (int i = 1; r == 0 && i <= 2; i++) {
		char out[64];
		size_t n;
		r = sandbox_call(sb, "counter", "", 0, out, sizeof(out) - 1, &n, e);
		if (r == 0) {
			out[n] = 0;
			assert_int_equal(strtol(out, NULL, 10), i);
		}
	}
	if (r == 0) {
		struct sandbox_state st;
		r = sandbox_save(sb, &st, e);
		if (r == 0) {
			assert_true(st.scratch_len > 0);
			sandbox_state_release(&st);
		}
	}
	sandbox_free(sb);
	guest_close(g);
	return r;
}

static void test_vm_allocations_fail(void **state)
{
	(void)state;
	unsigned failed_runs[2] = { 0 };
	for (int on = 0; on < 2; on++) {
		uint64_t n;
		for (n = 1; n <= RUNS_MAX; n++) {
			struct err e = { 0 };
			failalloc_arm(n, on);
			int r = steps(&e);
			failalloc_disarm();
			if (!failalloc_failed()) {
				assert_int_equal(r, 0);
				break;	/* the steps make fewer than n allocations */
			}
			failed_runs[on] += r != 0;
			if (r != 0 && (r != -ENOMEM || !strstr(e.msg, "hello.elf: ") ||
				       (!strstr(e.msg, "out of memory") &&
					!strstr(e.msg, strerror(ENOMEM)))))
				fail_msg("allocation %lu%s failing: %d %s", (unsigned long)n,
					 on ? " and on" : "", r, e.msg);
		}
		assert_true(n <= RUNS_MAX);
		printf("# %lu allocations, each failing%s: %u runs failed, ENOMEM\n",
		       (unsigned long)n - 1, on ? " with all after it" : " alone",
		       failed_runs[on]);
	}
	struct err e = { 0 };
	if (steps(&e))
		fail_msg("afterwards: %s", e.msg);
}

int main(void)
{
	tu_require_kvm();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_allocations_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
