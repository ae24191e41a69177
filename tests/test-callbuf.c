/*
 * tests/test-callbuf.c: encoding of calls into the call buffer and checked
 * decoding of what the guest writes back, on plain memory (no KVM).  The
 * "guest" side here is this test writing the header fields directly, the
 * way the runtime in guest/runtime/runtime.c does.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "host/callbuf.h"

#define SIZE (SNAPVM_CALLBUF_HDR + 2 * 8192)
#define GPA 0xc0010000ull

struct fixture {
	uint8_t *mem;
	struct callbuf cb;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->mem = aligned_alloc(4096, SIZE);
	memset(f->mem, 0xee, SIZE);
	assert_int_equal(callbuf_init(&f->cb, f->mem, GPA, SIZE, NULL), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->mem);
	free(f);
	return 0;
}

static struct snapvm_callbuf *hdr(struct fixture *f)
{
	return (struct snapvm_callbuf *)f->mem;
}

static void test_callbuf_layout(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->cb.in_off, SNAPVM_CALLBUF_HDR);
	assert_int_equal(f->cb.in_cap, 8192);
	assert_int_equal(f->cb.out_off, SNAPVM_CALLBUF_HDR + 8192);
	assert_int_equal(f->cb.out_cap, 8192);
	assert_int_equal(hdr(f)->magic, SNAPVM_CALLBUF_MAGIC);

	struct callbuf cb;
	struct err e = { 0 };
	assert_int_equal(callbuf_init(&cb, f->mem, GPA, CALLBUF_MIN - 4096, &e), -EINVAL);
	assert_int_equal(callbuf_init(&cb, f->mem, GPA, SIZE + 1, &e), -EINVAL);
	assert_int_equal(callbuf_init(&cb, f->mem, GPA + 8, SIZE, &e), -EINVAL);
	/* an odd number of data pages is still split to the last byte */
	assert_int_equal(callbuf_init(&cb, f->mem, GPA, SNAPVM_CALLBUF_HDR + 3 * 4096, &e), 0);
	assert_int_equal(cb.in_cap + cb.out_cap, 3 * 4096);
	assert_int_equal(cb.out_off + cb.out_cap, SNAPVM_CALLBUF_HDR + 3 * 4096);
}

static void test_callbuf_put_call(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	assert_int_equal(callbuf_put_call(&f->cb, "add", "2 3", 3, &e), 0);
	struct snapvm_callbuf *h = hdr(f);
	assert_int_equal(h->op, SNAPVM_OP_CALL);
	assert_string_equal(h->fn, "add");
	for (size_t i = 4; i < SNAPVM_NAME_MAX; i++)
		assert_int_equal(h->fn[i], 0);
	assert_int_equal(h->in_off, f->cb.in_off);
	assert_int_equal(h->in_len, 3);
	assert_int_equal(h->out_off, f->cb.out_off);
	assert_int_equal(h->out_cap, f->cb.out_cap);
	assert_memory_equal(f->mem + h->in_off, "2 3", 3);
	assert_int_equal(h->out_len, 0);
	assert_int_equal(h->status, 0);

	/* a full-size argument fits, one byte more does not */
	uint8_t *big = malloc(8193);
	memset(big, 'x', 8193);
	assert_int_equal(callbuf_put_call(&f->cb, "echo", big, 8192, &e), 0);
	assert_int_equal(callbuf_put_call(&f->cb, "echo", big, 8193, &e), -E2BIG);
	assert_non_null(strstr(e.msg, "8193 bytes"));
	free(big);

	callbuf_put_boot(&f->cb);
	assert_int_equal(h->op, SNAPVM_OP_BOOT);
	assert_int_equal(h->fn[0], 0);
}

static void test_callbuf_names(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	char longname[SNAPVM_NAME_MAX + 1];
	memset(longname, 'a', sizeof(longname));
	longname[SNAPVM_NAME_MAX] = 0;
	assert_int_equal(callbuf_put_call(&f->cb, longname, "", 0, &e), -EINVAL);
	longname[SNAPVM_NAME_MAX - 1] = 0;	/* 47 characters: the longest allowed */
	assert_int_equal(callbuf_put_call(&f->cb, longname, "", 0, &e), 0);
	assert_int_equal(callbuf_put_call(&f->cb, "", "", 0, &e), -EINVAL);
	assert_int_equal(callbuf_put_call(&f->cb, "a b", "", 0, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "not a function name"));
	assert_int_equal(callbuf_put_call(&f->cb, "x/y", "", 0, &e), -EINVAL);
	assert_true(callbuf_name_ok("my.fn-2_b"));
	assert_false(callbuf_name_ok("caf\xc3\xa9"));
}

static void test_callbuf_get_result(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	assert_int_equal(callbuf_put_call(&f->cb, "echo", "hi", 2, &e), 0);
	/* the guest answers */
	memcpy(f->mem + f->cb.out_off, "hi!", 3);
	hdr(f)->out_len = 3;
	hdr(f)->status = 0;
	int64_t status = -1;
	const void *out;
	size_t len;
	assert_int_equal(callbuf_get_result(&f->cb, &status, &out, &len, &e), 0);
	assert_int_equal(status, 0);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "hi!", 3);
	assert_ptr_equal(out, f->mem + f->cb.out_off);

	/* exactly full is fine; one more byte is the guest lying */
	hdr(f)->out_len = f->cb.out_cap;
	assert_int_equal(callbuf_get_result(&f->cb, &status, &out, &len, &e), 0);
	hdr(f)->out_len = f->cb.out_cap + 1;
	assert_int_equal(callbuf_get_result(&f->cb, &status, &out, &len, &e), -EPROTO);
	assert_non_null(strstr(e.msg, "8193 bytes"));
	hdr(f)->out_len = UINT64_MAX;
	assert_int_equal(callbuf_get_result(&f->cb, &status, &out, &len, &e), -EPROTO);

	/* the guest changing its copy of the layout does not move the host's */
	hdr(f)->out_off = 0;
	hdr(f)->out_cap = UINT64_MAX;
	hdr(f)->out_len = 5;
	hdr(f)->status = -7;
	assert_int_equal(callbuf_get_result(&f->cb, &status, &out, &len, &e), 0);
	assert_ptr_equal(out, f->mem + f->cb.out_off);
	assert_int_equal(status, -7);
}

static void test_callbuf_messages(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	const char *msg;
	size_t len;
	memcpy(hdr(f)->hc_msg, "hello", 5);
	hdr(f)->hc_len = 5;
	assert_int_equal(callbuf_get_msg(&f->cb, &msg, &len, &e), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(msg, "hello", 5);
	hdr(f)->hc_len = SNAPVM_MSG_MAX;
	assert_int_equal(callbuf_get_msg(&f->cb, &msg, &len, &e), 0);
	hdr(f)->hc_len = SNAPVM_MSG_MAX + 1;
	assert_int_equal(callbuf_get_msg(&f->cb, &msg, &len, &e), -EPROTO);
	assert_non_null(strstr(e.msg, "message length"));

	callbuf_set_ret(&f->cb, 123456789);
	assert_int_equal(hdr(f)->hc_ret, 123456789);
}

static void test_callbuf_faults(void **state)
{
	struct fixture *f = *state;
	char buf[256];
	struct snapvm_fault in = { SNAPVM_FAULT_EXCEPTION, 14, 2, 0x401234, 0 }, out;
	hdr(f)->fault = in;
	callbuf_get_fault(&f->cb, &out);
	assert_memory_equal(&in, &out, sizeof(in));
	callbuf_describe_fault(&out, buf, sizeof(buf));
	assert_string_equal(buf, "page fault (#PF) writing address 0x0 (error 0x2, not mapped) "
			    "at RIP 0x401234");

	struct snapvm_fault de = { SNAPVM_FAULT_EXCEPTION, 0, 0, 0x400010, 0 };
	callbuf_describe_fault(&de, buf, sizeof(buf));
	assert_string_equal(buf, "divide error (#DE) (error 0x0) at RIP 0x400010");
	struct snapvm_fault odd = { SNAPVM_FAULT_EXCEPTION, 200, 0, 1, 0 };
	callbuf_describe_fault(&odd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "exception vector 200"));
	struct snapvm_fault ro = { SNAPVM_FAULT_WRITE_RO, 14, 3, 0x400020, 0x401000 };
	callbuf_describe_fault(&ro, buf, sizeof(buf));
	assert_string_equal(buf, "write to read-only page at address 0x401000 at RIP 0x400020");
	struct snapvm_fault sc = { SNAPVM_FAULT_SCRATCH, 14, 3, 0x400030, 0x40000000 };
	callbuf_describe_fault(&sc, buf, sizeof(buf));
	assert_non_null(strstr(buf, "out of scratch memory"));
	assert_non_null(strstr(buf, "boot it with a larger --scratch)"));
	struct snapvm_fault junk = { 99, 0, 0, 0x5, 0 };
	callbuf_describe_fault(&junk, buf, sizeof(buf));
	assert_non_null(strstr(buf, "unknown fault kind 99"));
	/* a tiny buffer still gets a terminated string */
	callbuf_describe_fault(&in, buf, 8);
	assert_int_equal(strlen(buf), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_callbuf_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callbuf_put_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callbuf_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callbuf_get_result, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callbuf_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callbuf_faults, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
