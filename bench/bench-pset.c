/*
 * bench/bench-pset.c: the prefix set, the in-memory table a writer looks
 * each new page's hash up in, at the sizes of large stores.  For each
 * size it fills a set with random prefixes and reports:
 *
 *   memory      bytes of table per page held
 *   fill        seconds to add them all (what opening a store pays on top
 *               of reading its page index)
 *   absent      ns per lookup of a prefix the set does not hold: the
 *               lookup of every new page of a copy-in
 *   present     ns per lookup of a prefix it holds: a duplicate page
 *
 * and, as the baseline measured in the same run, ns per random 8-byte
 * read from an array as large as the table's key array: one cache (and
 * often TLB) miss, the least a lookup in a table this size costs.
 *
 * usage: bench-pset [MILLION_PAGES...]   (default 1 4 12)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsd/store_i.h"

#define LOOKUPS 2000000

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64: prefixes as random as SHA-256's, reproducibly. */
static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void hash_of(uint8_t *hash, uint64_t v)
{
	memset(hash, 0, STORE_HASH_SIZE);
	put_le64(hash, v);
}

/*
 * A writer looks up the pages of a write in one loop, one independent
 * lookup after another, so the CPU overlaps their cache misses: lookups
 * and the baseline's reads are timed the same way, back to back.
 */

/* ns per lookup of LOOKUPS prefixes, the first `cycle` drawn from seed
 * again and again; *hits counts those found or not as `expect` says. */
static double lookups(const struct pset *s, uint64_t seed, size_t cycle, bool expect, size_t *hits)
{
	uint8_t h[STORE_HASH_SIZE];
	uint64_t x = seed, loc;
	*hits = 0;
	double t0 = now();
	for (size_t i = 0; i < LOOKUPS; i++) {
		size_t it = 0;
		if (i % cycle == 0)
			x = seed;
		hash_of(h, next(&x));
		*hits += pset_next(s, h, &it, &loc) == expect;
	}
	return (now() - t0) / LOOKUPS * 1e9;
}

/* ns per random read of one uint64_t from an array of cap of them. */
static double one_miss(size_t cap)
{
	uint64_t *a = malloc(cap * sizeof(*a));
	if (!a)
		return 0;
	for (size_t i = 0; i < cap; i++)
		a[i] = 1;
	uint64_t x = 99, sum = 0;
	double t0 = now();
	for (int i = 0; i < LOOKUPS; i++)
		sum += a[next(&x) & (cap - 1)];
	double t = (now() - t0) / LOOKUPS * 1e9;
	free(a);
	return sum == LOOKUPS ? t : 0;
}

int main(int argc, char **argv)
{
	double sizes[16] = { 1, 4, 12 };
	int nsizes = 3;
	if (argc > 1) {
		nsizes = 0;
		for (int i = 1; i < argc && nsizes < 16; i++)
			sizes[nsizes++] = atof(argv[i]);
	}
	printf("%10s %8s %9s %9s %9s %9s %9s\n", "pages", "B/page", "fill s", "absent", "present",
	       "one miss", "absent/miss");
	for (int k = 0; k < nsizes; k++) {
		size_t n = (size_t)(sizes[k] * 1e6);
		struct pset s = { 0 };
		uint8_t h[STORE_HASH_SIZE];
		uint64_t x = 1;
		double t0 = now();
		for (size_t i = 0; i < n; i++) {
			hash_of(h, next(&x));
			if (pset_add(&s, h, i + 1)) {
				fprintf(stderr, "bench-pset: out of memory at %zu pages\n", i);
				return 1;
			}
		}
		double fill = now() - t0;
		size_t absent_ok, present_ok;
		size_t cycle = n < LOOKUPS ? n : LOOKUPS;
		double absent = lookups(&s, 12345, LOOKUPS, false, &absent_ok);
		double present = lookups(&s, 1, cycle, true, &present_ok);
		double miss = one_miss(s.cap);
		printf("%10zu %8.1f %9.3f %7.0fns %7.0fns %7.0fns %9.2f\n", n,
		       (double)s.cap * (sizeof(*s.slots) + sizeof(*s.locs)) / (double)n, fill,
		       absent, present, miss, absent / miss);
		if (present_ok < LOOKUPS || absent_ok < LOOKUPS)
			fprintf(stderr, "bench-pset: %zu of %d added prefixes found, %zu of %d others not\n",
				present_ok, LOOKUPS, absent_ok, LOOKUPS);
		pset_free(&s);
	}
	return 0;
}
