/*
 * tests/test-store-htab.c: the store's open-addressing tables (by page
 * hash or by location), above all emptying one for reuse: a commit hands
 * its tables on to the next with their slots, and an entry added after
 * that must start as a new one does, all zero but for its key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_i.h"

struct ent {
	uint64_t loc;
	int64_t n;
	uint8_t pad[20];
};

/* Add locations from..to-1 to t, each with n = loc * 3. */
static void fill(struct htab *t, uint64_t from, uint64_t to)
{
	for (uint64_t loc = from; loc < to; loc++) {
		struct ent *e = htab_get(t, &loc);
		assert_non_null(e);
		assert_int_equal(e->loc, loc);
		assert_int_equal(e->n, 0);	/* new: all zero but the key */
		for (size_t i = 0; i < sizeof(e->pad); i++)
			assert_int_equal(e->pad[i], 0);
		e->n = (int64_t)loc * 3;
		memset(e->pad, 0xa5, sizeof(e->pad));
	}
}

static size_t walk_count(const struct htab *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->cap; i++)
		n += htab_at(t, i) != NULL;
	return n;
}

static void test_htab_clear_keeps_slots(void **state)
{
	(void)state;
	struct htab t = HTAB_LOC(struct ent);
	fill(&t, 1, 5001);
	assert_int_equal(t.n, 5000);
	size_t cap = t.cap;
	assert_true(cap >= 10000);
	uint64_t loc = 1234;
	assert_int_equal(((struct ent *)htab_find(&t, &loc))->n, 1234 * 3);

	/* Emptied with room to keep: the slots stay, the entries go. */
	htab_clear(&t, cap);
	assert_int_equal(t.cap, cap);
	assert_int_equal(t.n, 0);
	assert_int_equal(walk_count(&t), 0);
	assert_null(htab_find(&t, &loc));

	/* Added again, over slots that held other entries: each starts as
	 * new (fill checks), and a full refill does not grow the table. */
	fill(&t, 3001, 8001);
	assert_int_equal(t.cap, cap);
	assert_int_equal(t.n, 5000);
	assert_int_equal(walk_count(&t), 5000);
	assert_null(htab_find(&t, &loc));
	loc = 8000;
	assert_int_equal(((struct ent *)htab_find(&t, &loc))->n, 8000 * 3);

	/* Larger than the caller keeps: freed, and still usable. */
	htab_clear(&t, cap / 2);
	assert_int_equal(t.cap, 0);
	assert_int_equal(t.n, 0);
	assert_null(htab_find(&t, &loc));
	fill(&t, 1, 10);
	assert_int_equal(t.n, 9);
	htab_free(&t);
	htab_clear(&t, 0);	/* empty and freed: nothing to do */
	assert_int_equal(t.cap, 0);
}

static void test_htab_by_hash(void **state)
{
	(void)state;
	struct htab t = HTAB(struct ptab_ent);
	uint8_t h[STORE_HASH_SIZE];
	for (unsigned i = 0; i < 3000; i++) {
		memset(h, (int)(i % 251), sizeof(h));
		put_le64(h, (uint64_t)i * 0x9e3779b97f4a7c15ull);
		struct ptab_ent *e = htab_get(&t, h);
		assert_non_null(e);
		assert_int_equal(e->loc, 0);
		e->loc = i + 1;
	}
	size_t cap = t.cap;
	htab_clear(&t, cap);
	for (unsigned i = 0; i < 3000; i += 2) {
		memset(h, (int)(i % 251), sizeof(h));
		put_le64(h, (uint64_t)i * 0x9e3779b97f4a7c15ull);
		assert_null(htab_find(&t, h));
		struct ptab_ent *e = htab_get(&t, h);
		assert_int_equal(e->loc, 0);
		e->loc = i + 7;
	}
	for (unsigned i = 0; i < 3000; i++) {
		memset(h, (int)(i % 251), sizeof(h));
		put_le64(h, (uint64_t)i * 0x9e3779b97f4a7c15ull);
		struct ptab_ent *e = htab_find(&t, h);
		if (i % 2)
			assert_null(e);
		else
			assert_int_equal(e->loc, i + 7);
	}
	assert_int_equal(t.cap, cap);
	htab_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_htab_clear_keeps_slots),
		cmocka_unit_test(test_htab_by_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
