/*
 * guest/examples/warm.c: a guest whose start-up is expensive.
 *
 *   init   build the table (argument: its size in KiB, default 32768); returns
 *          "ENTRIES entries in MS ms"
 *   query  "I" (decimal) -> table[I % entries] as decimal; builds the table
 *          first if init has not run
 *   sum    checksum of the whole table, as decimal
 *
 * Each entry is the result of many rounds of an integer mixing function, so
 * building tens of MiB takes a noticeable time while a lookup is instant:
 * the case where starting from a snapshot taken after init pays off.  The
 * table lives in the heap region, so a snapshot stores it in a region file
 * shared by every sandbox started from it.
 */
#include "snapvm.h"

#define ROUNDS 8

#define DEFAULT_KIB 32768

static uint64_t *table;
static uint64_t entries;

static uint64_t mix(uint64_t x)
{
	for (int r = 0; r < ROUNDS; r++) {
		x += 0x9e3779b97f4a7c15ull;
		x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
		x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
		x ^= x >> 31;
	}
	return x;
}

static long build(uint64_t kib)
{
	if (kib == 0 || kib > (1u << 20))
		return -22;
	uint64_t n = kib * 1024 / sizeof(uint64_t);
	uint64_t *t = snapvm_alloc(n * sizeof(uint64_t), 4096);
	if (!t)
		snapvm_abort("warm: no heap for a %lu KiB table (%lu bytes free)",
			     (unsigned long)kib, (unsigned long)snapvm_heap_free());
	for (uint64_t i = 0; i < n; i++)
		t[i] = mix(i);
	table = t;
	entries = n;
	return 0;
}

static long init(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	if (table)
		return (long)snapvm_snprintf(out, out_cap, "%lu entries (built before)",
					     (unsigned long)entries);
	const char *p = in;
	long kib = in_len ? snapvm_strtol(p, p + in_len, NULL) : DEFAULT_KIB;
	uint64_t t0 = snapvm_time_ns();
	long r = build((uint64_t)kib);
	if (r < 0)
		return r;
	uint64_t ms = (snapvm_time_ns() - t0) / 1000000;
	return (long)snapvm_snprintf(out, out_cap, "%lu entries in %lu ms",
				     (unsigned long)entries, (unsigned long)ms);
}
SNAPVM_EXPORT(init);

static long query(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	if (!table) {
		long r = build(DEFAULT_KIB);
		if (r < 0)
			return r;
	}
	const char *p = in;
	long i = snapvm_strtol(p, p + in_len, NULL);
	uint64_t v = table[(uint64_t)i % entries];
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)v);
}
SNAPVM_EXPORT(query);

static long sum(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	(void)in;
	(void)in_len;
	uint64_t s = 0;
	for (uint64_t i = 0; i < entries; i++)
		s = s * 31 + table[i];
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)s);
}
SNAPVM_EXPORT(sum);
