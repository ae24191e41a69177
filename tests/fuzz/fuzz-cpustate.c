/*
 * tests/fuzz/fuzz-cpustate.c: fuzz the cpu state parser (host/cpustate.h).
 *
 * Any input either parses or fails with "cpu:..." and -EINVAL.  What parses
 * must pass cpustate_check(), be written by cpustate_format(), read back to
 * an equal state, and be written again byte for byte.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "host/cpustate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cpustate a, b;
	struct err e = { 0 };
	int r = cpustate_parse((const char *)data, size, "cpu", &a, &e);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && e.code == r);
		FUZZ_CHECK(strncmp(e.msg, "cpu:", 4) == 0);
		return 0;
	}
	FUZZ_CHECK(cpustate_check(&a, &e) == 0);
	char *t1, *t2;
	size_t n1, n2;
	FUZZ_CHECK(cpustate_format(&a, &t1, &n1, &e) == 0);
	FUZZ_CHECK(strlen(t1) == n1);
	FUZZ_CHECK(cpustate_parse(t1, n1, "cpu", &b, &e) == 0);
	FUZZ_CHECK(cpustate_equal(&a, &b));
	FUZZ_CHECK(cpustate_format(&b, &t2, &n2, &e) == 0);
	FUZZ_CHECK(n1 == n2 && memcmp(t1, t2, n1) == 0);
	free(t1);
	free(t2);
	return 0;
}
