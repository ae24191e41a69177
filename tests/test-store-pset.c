/*
 * tests/test-store-pset.c: the prefix set, the store's in-memory list of
 * every page's hash prefix and location, against a plain model: adding,
 * removing (which closes the gap it leaves in a probe run) and moving
 * entries, with prefixes chosen to collide in long runs and at the end of
 * the table, where runs wrap around, and the table nearly full; and growing,
 * which moves every entry into a table twice the size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_i.h"

#define MAX_ENTRIES 3500u	/* just below 7/8 of the first table (4096) */

struct entry {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t loc;
	bool live;
};

/* A hash whose prefix lands in one of a few crowded home slots: near
 * the start of the table, or in the last slots, so runs wrap. */
static void crowded_hash(uint8_t *hash, unsigned r)
{
	uint64_t home = r % 2 ? r % 7 : 4095 - r % 5;
	memset(hash, 0, STORE_HASH_SIZE);
	put_le64(hash, home << 1);
	hash[8] = (uint8_t)r;	/* past the prefix: only the bytes differ */
}

static bool found(const struct pset *s, const struct entry *e)
{
	size_t it = 0;
	uint64_t loc;
	while (pset_next(s, e->hash, &it, &loc))
		if (loc == e->loc)
			return true;
	return false;
}

/* Along a run, each entry is at most one slot further from its home than
 * the one before it: what lets a lookup stop early (Robin Hood order). */
static void check_order(const struct pset *s)
{
	size_t mask = s->cap - 1;
	for (size_t i = 0; i < s->cap; i++) {
		size_t j = (i + 1) & mask;
		if (!s->slots[j])
			continue;
		size_t dj = (j - (size_t)(s->slots[j] >> 1)) & mask;
		if (!s->slots[i])
			assert_int_equal(dj, 0);
		else
			assert_true(dj <= ((i - (size_t)(s->slots[i] >> 1)) & mask) + 1);
	}
}

static void check_model(const struct pset *s, const struct entry *m, size_t n)
{
	size_t live = 0;
	check_order(s);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(found(s, &m[i]), m[i].live);
		live += m[i].live;
	}
	assert_int_equal(s->n, live);
}

static void test_pset_model(void **state)
{
	(void)state;
	struct pset s = { 0 };
	static struct entry m[20000];
	size_t n = 0, live = 0, most = 0;
	uint64_t next_loc = 1;
	srand(7);
	for (unsigned op = 0; op < 20000; op++) {
		unsigned r = (unsigned)rand();
		/* Mostly adds at first, until the table is nearly full. */
		bool grow = op < 12000 && r % 3 == 1;
		if (live < MAX_ENTRIES && (r % 3 == 0 || grow || live == 0)) {
			struct entry *e = &m[n++];
			crowded_hash(e->hash, r >> 2);
			e->loc = next_loc++;
			e->live = true;
			live++;
			most = live > most ? live : most;
			assert_int_equal(pset_add(&s, e->hash, e->loc), 0);
		} else {
			/* A live entry, picked from where the walk lands. */
			size_t i = (size_t)(r >> 2) % n;
			while (!m[i].live)
				i = (i + 1) % n;
			if (r % 3 == 1) {
				assert_true(pset_remove(&s, m[i].hash, m[i].loc));
				assert_false(pset_remove(&s, m[i].hash, m[i].loc));
				m[i].live = false;
				live--;
			} else {
				uint64_t to = next_loc++;
				assert_true(pset_move(&s, m[i].hash, m[i].loc, to));
				/* The old location is gone: a dead entry keeps it
				 * so that the check sees it absent. */
				m[n] = m[i];
				m[n++].live = false;
				m[i].loc = to;
			}
		}
		if (op % 500 == 0)
			check_model(&s, m, n);
	}
	check_model(&s, m, n);
	assert_int_equal(s.cap, 4096);	/* the runs were exercised in one table */
	assert_int_equal(most, MAX_ENTRIES);	/* and it was nearly full */
	/* Emptied, the set finds nothing and says so. */
	for (size_t i = 0; i < n; i++)
		if (m[i].live) {
			assert_true(pset_remove(&s, m[i].hash, m[i].loc));
			m[i].live = false;
		}
	check_model(&s, m, n);
	for (size_t i = 0; i < s.cap; i++)
		assert_int_equal(s.slots[i], 0);
	uint8_t h[STORE_HASH_SIZE] = { 1 };
	assert_false(pset_move(&s, h, 1, 2));
	pset_free(&s);
}

/* A prefix whose home in a table of cap slots is one of a few crowded
 * ones at either end of each half, so that runs cross the middle (where
 * growing splits entries between the halves) and wrap around the end
 * (where growing puts the last of them back at the start), at every size
 * from 4096 to cap; half of them spread at random. */
static void growing_hash(uint8_t *hash, unsigned r, size_t cap)
{
	static const uint64_t near[] = { 0, 1, 2, 3 };
	uint64_t home = (uint64_t)rand() << 31 ^ (uint64_t)rand();
	if (r % 2) {
		uint64_t size = 4096u << (r / 2 % 4);	/* a table size the set passes */
		uint64_t at = near[r / 8 % 4];
		home = r / 32 % 2 ? at : size - 1 - at;
		if (r / 64 % 2)
			home += size / 2;
		home &= cap - 1;
		home |= (uint64_t)rand() % 4 * cap;	/* bits a larger table would use */
	}
	memset(hash, 0, STORE_HASH_SIZE);
	put_le64(hash, home << 1);
	hash[8] = (uint8_t)r;
	hash[9] = (uint8_t)(r >> 8);
	hash[10] = (uint8_t)(r >> 16);
}

static void test_pset_grow(void **state)
{
	(void)state;
	enum { N = 29000 };	/* through 4096, 8192, 16384 and 32768 slots */
	struct pset s = { 0 };
	static struct entry m[N];
	srand(11);
	size_t cap = 0, grown = 0;
	for (unsigned i = 0; i < N; i++) {
		growing_hash(m[i].hash, i, 32768);
		m[i].loc = i + 1;
		m[i].live = true;
		assert_int_equal(pset_add(&s, m[i].hash, m[i].loc), 0);
		if (s.cap != cap) {
			/* Every entry so far is found in the grown table, and
			 * its runs are in order. */
			check_model(&s, m, i + 1);
			cap = s.cap;
			grown++;
		}
	}
	check_model(&s, m, N);
	assert_int_equal(s.cap, 65536);
	assert_int_equal(grown, 5);	/* 4096 .. 65536 */
	pset_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pset_model),
		cmocka_unit_test(test_pset_grow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
