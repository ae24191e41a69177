/*
 * tests/fuzz/fuzz-manifest.c: fuzz the snapshot manifest parser
 * (host/manifest.h).
 *
 * Any input either parses or fails with "manifest:..." and -EINVAL.  What
 * parses must pass manifest_check(), be written by manifest_format(), read
 * back to an equal manifest, and be written again byte for byte.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "host/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct manifest a, b;	/* 10 KiB each: keep them off the stack */
	struct err e = { 0 };
	int r = manifest_parse((const char *)data, size, "manifest", &a, &e);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL && e.code == r);
		FUZZ_CHECK(strncmp(e.msg, "manifest:", 9) == 0);
		return 0;
	}
	FUZZ_CHECK(manifest_check(&a, &e) == 0);
	char *t1, *t2;
	size_t n1, n2;
	FUZZ_CHECK(manifest_format(&a, &t1, &n1, &e) == 0);
	FUZZ_CHECK(strlen(t1) == n1);
	FUZZ_CHECK(manifest_parse(t1, n1, "manifest", &b, &e) == 0);
	FUZZ_CHECK(manifest_equal(&a, &b));
	FUZZ_CHECK(manifest_format(&b, &t2, &n2, &e) == 0);
	FUZZ_CHECK(n1 == n2 && memcmp(t1, t2, n1) == 0);
	free(t1);
	free(t2);
	return 0;
}
