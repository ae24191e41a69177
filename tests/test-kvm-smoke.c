/*
 * tests/test-kvm-smoke.c: prove that KVM works here the way snapvm uses it.
 *
 * A guest's memory comes from a file mapped PROT_READ/MAP_SHARED and
 * registered as a KVM_MEM_READONLY slot, exactly as snapshot regions are.
 * A few real-mode instructions read from it, compute, report through an
 * I/O port, and then try to write to it: that write must reach the host as
 * an MMIO exit and leave the file unchanged.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "testutil.h"

#define SLOT_SIZE 0x2000

/* 16-bit real mode, loaded at guest-physical 0 */
static const uint8_t guest_code[] = {
	0xa1, 0x00, 0x01,	/* mov ax, [0x100]  */
	0x05, 0x01, 0x01,	/* add ax, 0x0101   */
	0xba, 0x10, 0x00,	/* mov dx, 0x10     */
	0xef,			/* out dx, ax       */
	0xa3, 0x02, 0x01,	/* mov [0x102], ax  (read-only slot) */
	0xf4,			/* hlt              */
};

static void test_kvm_smoke_readonly_file_slot(void **state)
{
	(void)state;
	char path[] = "/tmp/kvm-smoke-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, SLOT_SIZE), 0);
	assert_int_equal(pwrite(fd, guest_code, sizeof(guest_code), 0), (ssize_t)sizeof(guest_code));
	uint16_t value = 0x1234;
	assert_int_equal(pwrite(fd, &value, sizeof(value), 0x100), (ssize_t)sizeof(value));

	void *mem = mmap(NULL, SLOT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(mem != MAP_FAILED);

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(kvm >= 0);
	assert_int_equal(ioctl(kvm, KVM_GET_API_VERSION, 0), KVM_API_VERSION);
	assert_true(ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) > 0);
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	assert_true(vm >= 0);

	struct kvm_userspace_memory_region region = {
		.slot = 0,
		.flags = KVM_MEM_READONLY,
		.guest_phys_addr = 0,
		.memory_size = SLOT_SIZE,
		.userspace_addr = (uintptr_t)mem,
	};
	assert_int_equal(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region), 0);

	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	assert_true(vcpu >= 0);
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(run_size >= (int)sizeof(struct kvm_run));
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	assert_true(run != MAP_FAILED);

	struct kvm_sregs sregs;
	assert_int_equal(ioctl(vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	assert_int_equal(ioctl(vcpu, KVM_SET_SREGS, &sregs), 0);
	struct kvm_regs regs = { .rip = 0, .rflags = 0x2 };
	assert_int_equal(ioctl(vcpu, KVM_SET_REGS, &regs), 0);

	/* out dx, ax */
	assert_int_equal(ioctl(vcpu, KVM_RUN, 0), 0);
	assert_int_equal(run->exit_reason, KVM_EXIT_IO);
	assert_int_equal(run->io.direction, KVM_EXIT_IO_OUT);
	assert_int_equal(run->io.port, 0x10);
	assert_int_equal(run->io.size, 2);
	uint16_t out;
	memcpy(&out, (uint8_t *)run + run->io.data_offset, sizeof(out));
	assert_int_equal(out, 0x1335);

	/* the write to the read-only slot comes back as MMIO */
	assert_int_equal(ioctl(vcpu, KVM_RUN, 0), 0);
	assert_int_equal(run->exit_reason, KVM_EXIT_MMIO);
	assert_true(run->mmio.is_write);
	assert_int_equal(run->mmio.phys_addr, 0x102);
	assert_int_equal(run->mmio.len, 2);

	/* hlt */
	assert_int_equal(ioctl(vcpu, KVM_RUN, 0), 0);
	assert_int_equal(run->exit_reason, KVM_EXIT_HLT);

	/* the backing file never changed */
	uint16_t back;
	assert_int_equal(pread(fd, &back, sizeof(back), 0x102), (ssize_t)sizeof(back));
	assert_int_equal(back, 0);
	assert_memory_equal(mem, guest_code, sizeof(guest_code));

	munmap(run, run_size);
	close(vcpu);
	close(vm);
	close(kvm);
	munmap(mem, SLOT_SIZE);
	close(fd);
}

int main(void)
{
	tu_require_kvm();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kvm_smoke_readonly_file_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
