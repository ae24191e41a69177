/*
 * tests/test-vm-cpu.c: the FPU <-> XSAVE conversion that lets a host
 * without XSAVE read and write the cpu file's xsave lines (no KVM needed).
 *
 * The legacy area of an XSAVE image has the FXSAVE layout of the Intel
 * SDM (Vol. 1, 10.5.1): FCW at 0, FSW at 2, abridged FTW at 4, FOP at 6,
 * FIP at 8, FDP at 16, MXCSR at 24, ST0-7 from 32, XMM0-15 from 160, 16
 * bytes each; XSTATE_BV is the first quadword of the header at 512.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "host/vm.h"

static void fill(struct kvm_fpu *f)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < 8; i++)
		for (int k = 0; k < 10; k++)	/* 80-bit registers */
			f->fpr[i][k] = (uint8_t)(0x10 * i + k + 1);
	f->fcw = 0x0f7f;
	f->fsw = 0x3800;
	f->ftwx = 0x81;
	f->last_opcode = 0x7ff;
	f->last_ip = 0x1000123;
	f->last_dp = 0xc0016f00;
	for (int i = 0; i < 16; i++)
		for (int k = 0; k < 16; k++)
			f->xmm[i][k] = (uint8_t)(i * 16 + k);
	f->mxcsr = 0x7f80;
}

static void test_vm_cpu_fpu_layout(void **state)
{
	(void)state;
	struct kvm_fpu f;
	static struct kvm_xsave x;
	fill(&f);
	memset(&x, 0xee, sizeof(x));
	vm_fpu_to_xsave(&f, &x);
	const uint8_t *b = (const uint8_t *)x.region;
	uint16_t w;
	uint32_t d;
	uint64_t q;
	memcpy(&w, b + 0, 2);
	assert_int_equal(w, 0x0f7f);
	memcpy(&w, b + 2, 2);
	assert_int_equal(w, 0x3800);
	assert_int_equal(b[4], 0x81);
	memcpy(&w, b + 6, 2);
	assert_int_equal(w, 0x7ff);
	memcpy(&q, b + 8, 8);
	assert_int_equal(q, 0x1000123);
	memcpy(&q, b + 16, 8);
	assert_int_equal(q, 0xc0016f00);
	memcpy(&d, b + 24, 4);
	assert_int_equal(d, 0x7f80);
	assert_memory_equal(b + 32 + 16 * 3, f.fpr[3], 16);
	assert_memory_equal(b + 160 + 16 * 7, f.xmm[7], 16);
	assert_memory_equal(b + 160 + 16 * 15, f.xmm[15], 16);
	memcpy(&q, b + 512, 8);
	assert_int_equal(q, 3);		/* x87 and SSE present */
	for (size_t i = 520; i < sizeof(x.region); i++)
		assert_int_equal(b[i], 0);
}

static void test_vm_cpu_fpu_round_trip(void **state)
{
	(void)state;
	struct kvm_fpu f, back;
	static struct kvm_xsave x;
	fill(&f);
	vm_fpu_to_xsave(&f, &x);
	memset(&back, 0xee, sizeof(back));
	vm_xsave_to_fpu(&x, &back);
	assert_memory_equal(&back, &f, sizeof(f));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_cpu_fpu_layout),
		cmocka_unit_test(test_vm_cpu_fpu_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
