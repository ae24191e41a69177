/*
 * tests/test-fs-acl.c: the POSIX ACL rules of fsd/fs_acl.c on values
 * made here, including malformed ones the kernel would not pass on but a
 * damaged store could hold (test-fs checks them on a mount).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fs_i.h"
#include "testutil.h"

enum { UO = 1, U = 2, GO = 4, G = 8, M = 0x10, O = 0x20 };
#define ANY 0xffffffffu

static unsigned perm_at(const uint8_t *buf, unsigned i)
{
	uint16_t perm;
	memcpy(&perm, buf + 4 + 8 * i + 2, 2);
	return perm;
}

static void test_check(void **state)
{
	(void)state;
	uint8_t b[128];
	const uint32_t ok[][3] = { { UO, 6, ANY }, { U, 4, 7 }, { GO, 4, ANY }, { M, 4, ANY },
				   { O, 0, ANY } };
	size_t n = tu_acl_make(b, ok, 5);
	assert_int_equal(fs_acl_check(b, n), 0);
	assert_int_equal(fs_acl_check(b, 3), -EINVAL);		/* short */
	assert_int_equal(fs_acl_check(b, n - 1), -EINVAL);	/* a partial entry */
	b[0] = 3;						/* version */
	assert_int_equal(fs_acl_check(b, n), -EINVAL);
	const uint32_t no_mask[][3] = { { UO, 6, ANY }, { U, 4, 7 }, { GO, 4, ANY }, { O, 0, ANY } };
	assert_int_equal(fs_acl_check(b, tu_acl_make(b, no_mask, 4)), -EINVAL);
	const uint32_t twice[][3] = { { UO, 6, ANY }, { UO, 4, ANY }, { GO, 4, ANY }, { O, 0, ANY } };
	assert_int_equal(fs_acl_check(b, tu_acl_make(b, twice, 4)), -EINVAL);
	const uint32_t no_other[][3] = { { UO, 6, ANY }, { GO, 4, ANY } };
	assert_int_equal(fs_acl_check(b, tu_acl_make(b, no_other, 2)), -EINVAL);
	const uint32_t bad_perm[][3] = { { UO, 8, ANY }, { GO, 4, ANY }, { O, 0, ANY } };
	assert_int_equal(fs_acl_check(b, tu_acl_make(b, bad_perm, 3)), -EINVAL);
	const uint32_t bad_tag[][3] = { { UO, 6, ANY }, { 0x40, 4, ANY }, { GO, 4, ANY },
					{ O, 0, ANY } };
	assert_int_equal(fs_acl_check(b, tu_acl_make(b, bad_tag, 4)), -EINVAL);
}

static void test_mode_and_chmod(void **state)
{
	(void)state;
	uint8_t b[128];
	bool equiv;
	const uint32_t base[][3] = { { UO, 7, ANY }, { GO, 5, ANY }, { O, 1, ANY } };
	size_t n = tu_acl_make(b, base, 3);
	assert_int_equal(fs_acl_mode(b, n, S_IFREG | 04000, &equiv), 04751);
	assert_true(equiv);
	const uint32_t named[][3] = { { UO, 6, ANY }, { G, 7, 100 }, { GO, 4, ANY }, { M, 2, ANY },
				      { O, 0, ANY } };
	n = tu_acl_make(b, named, 5);
	assert_int_equal(fs_acl_mode(b, n, 0, &equiv), 0620);	/* the mask's bits */
	assert_false(equiv);
	fs_acl_chmod(b, n, 0751);
	assert_int_equal(perm_at(b, 0), 7);
	assert_int_equal(perm_at(b, 1), 7);	/* a named entry keeps its own */
	assert_int_equal(perm_at(b, 2), 4);	/* the owning group too */
	assert_int_equal(perm_at(b, 3), 5);	/* the mask takes the group bits */
	assert_int_equal(perm_at(b, 4), 1);
	/* Without a mask chmod sets the owning group's entry. */
	n = tu_acl_make(b, base, 3);
	fs_acl_chmod(b, n, 0640);
	assert_int_equal(perm_at(b, 0), 6);
	assert_int_equal(perm_at(b, 1), 4);
	assert_int_equal(perm_at(b, 2), 0);
}

static void test_inherit(void **state)
{
	(void)state;
	uint8_t b[128];
	/* With a mask: the mode limits owner, mask and other. */
	const uint32_t named[][3] = { { UO, 7, ANY }, { U, 7, 9 }, { GO, 5, ANY }, { M, 7, ANY },
				      { O, 5, ANY } };
	size_t n = tu_acl_make(b, named, 5);
	uint32_t mode = S_IFREG | 0640;
	assert_true(fs_acl_inherit(b, n, &mode));
	assert_int_equal(mode, S_IFREG | 0640);
	assert_int_equal(perm_at(b, 0), 6);
	assert_int_equal(perm_at(b, 1), 7);
	assert_int_equal(perm_at(b, 2), 5);
	assert_int_equal(perm_at(b, 3), 4);
	assert_int_equal(perm_at(b, 4), 0);
	/* Only base entries: the result is the mode, nothing to keep. */
	const uint32_t base[][3] = { { UO, 6, ANY }, { GO, 0, ANY }, { O, 0, ANY } };
	n = tu_acl_make(b, base, 3);
	mode = 0777;
	assert_false(fs_acl_inherit(b, n, &mode));
	assert_int_equal(mode, 0600);
	assert_int_equal(perm_at(b, 1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_mode_and_chmod),
		cmocka_unit_test(test_inherit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
