/*
 * tests/fuzz/fuzz.h: what the fuzz targets share.
 *
 * Each target is a libFuzzer entry point, LLVMFuzzerTestOneInput(), that
 * feeds one input to a parser and then checks an invariant of the result.
 * A broken invariant aborts, which libFuzzer reports as a crash and the
 * corpus replay (replay.c, for builds without libFuzzer) as a failed test.
 */
#ifndef SNAPFS_TESTS_FUZZ_H
#define SNAPFS_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,    \
				__LINE__, #cond);                                     \
			abort();                                                      \
		}                                                                     \
	} while (0)

#endif
