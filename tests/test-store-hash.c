/*
 * tests/test-store-hash.c: page identity.  SHA-256 known answers (values
 * from sha256sum), zero-page detection, hex formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store_hash.h"

static void hex(const uint8_t *h, char *out)
{
	store_hash_hex(h, out);
}

static void pattern_page(uint8_t *p)
{
	for (unsigned i = 0; i < STORE_PAGE_SIZE; i++)
		p[i] = (uint8_t)(i * 7 + 3);
}

static void test_store_hash_known_answers(void **state)
{
	(void)state;
	struct store_hasher *h = store_hasher_new();
	assert_non_null(h);
	uint8_t out[STORE_HASH_SIZE];
	char x[65];

	assert_int_equal(store_hash(h, "abc", 3, out), 0);
	hex(out, x);
	assert_string_equal(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	static uint8_t zero[STORE_PAGE_SIZE];
	assert_int_equal(store_hash(h, zero, sizeof(zero), out), 0);
	hex(out, x);
	assert_string_equal(x, "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7");

	/* page[i] = i * 7 + 3 (mod 256) */
	uint8_t page[STORE_PAGE_SIZE];
	pattern_page(page);
	assert_int_equal(store_hash(h, page, sizeof(page), out), 0);
	hex(out, x);
	assert_string_equal(x, "7486da8f1e13943fae21a0b043f1e99640d7d8ebafb25266478b5cddae1272b5");

	/* The reused context gives the same answer again, and incremental
	 * hashing in pieces equals one shot. */
	assert_int_equal(store_hash_begin(h), 0);
	assert_int_equal(store_hash_add(h, page, 1000), 0);
	assert_int_equal(store_hash_add(h, page + 1000, STORE_PAGE_SIZE - 1000), 0);
	assert_int_equal(store_hash_end(h, out), 0);
	hex(out, x);
	assert_string_equal(x, "7486da8f1e13943fae21a0b043f1e99640d7d8ebafb25266478b5cddae1272b5");
	store_hasher_free(h);
}

static void test_store_hash_zero_page(void **state)
{
	(void)state;
	static uint8_t buf[STORE_PAGE_SIZE + 1];
	memset(buf, 0, sizeof(buf));
	assert_true(store_page_is_zero(buf));
	/* Unaligned start works too. */
	assert_true(store_page_is_zero(buf + 1));
	/* A single non-zero byte anywhere makes it data: first, middle, last. */
	static const unsigned where[] = { 0, 1, 63, 64, 2047, 4032, 4095 };
	for (unsigned i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		buf[where[i]] = 0x80;
		assert_false(store_page_is_zero(buf));
		buf[where[i]] = 0;
	}
	assert_true(store_page_is_zero(buf));
}

static void test_store_hash_hole_marker(void **state)
{
	(void)state;
	uint8_t h[STORE_HASH_SIZE] = { 0 };
	assert_true(store_hash_is_hole(h));
	h[31] = 1;
	assert_false(store_hash_is_hole(h));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_hash_known_answers),
		cmocka_unit_test(test_store_hash_zero_page),
		cmocka_unit_test(test_store_hash_hole_marker),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
