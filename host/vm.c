/*
 * host/vm.c: KVM VM, memory slots, one vCPU in long mode, and running it
 * under a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "kvm_ioctl.h"
#include "vm.h"

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_WP (1ull << 16)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)

/* the running vCPU of this thread, for the timer signal handler */
static __thread struct kvm_run *volatile tls_run;

static void timer_handler(int sig)
{
	(void)sig;
	struct kvm_run *run = tls_run;
	if (run)
		run->immediate_exit = 1;
}

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int handler_err;

static void install_handler(void)
{
	struct sigaction sa = { .sa_handler = timer_handler };
	sigemptyset(&sa.sa_mask);
	if (sigaction(VM_TIMER_SIGNAL, &sa, NULL) < 0)
		handler_err = -errno;
}

uint64_t vm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * KVM_GET_SUPPORTED_CPUID, asked until it has been answered once in this
 * process: a failure (no memory, no descriptor left) is reported to the
 * caller and not kept, so a later sandbox asks again.
 */
static pthread_mutex_t cpuid_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *cpuid_cache;

static int load_cpuid(struct err *e)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return err_set(e, -errno, "/dev/kvm: %s", strerror(errno));
	int r = 0;
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c) {
			r = err_set(e, -ENOMEM, "KVM_GET_SUPPORTED_CPUID: out of memory");
			break;
		}
		c->nent = n;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			cpuid_cache = c;
			r = 0;
			break;
		}
		r = err_set(e, -errno, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		if (r != -E2BIG)
			break;
	}
	close(kvm);
	return r;
}

/* The CPUID entries KVM supports (loaded on first use). */
static int supported_cpuid(const struct kvm_cpuid2 **out, struct err *e)
{
	pthread_mutex_lock(&cpuid_lock);
	int r = cpuid_cache ? 0 : load_cpuid(e);
	*out = cpuid_cache;
	pthread_mutex_unlock(&cpuid_lock);
	return r;
}

static uint64_t created;

uint64_t vm_created(void)
{
	return __atomic_load_n(&created, __ATOMIC_RELAXED);
}

int vm_new(struct vm **out, struct err *e)
{
	int r;
	*out = NULL;
	pthread_once(&handler_once, install_handler);
	if (handler_err)
		return err_set(e, handler_err, "installing the time-limit signal handler: %s",
			       strerror(-handler_err));
	const struct kvm_cpuid2 *cpuid;
	r = supported_cpuid(&cpuid, e);
	if (r < 0)
		return r;

	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return err_set(e, -ENOMEM, "creating a VM: out of memory");
	vm->vm_fd = vm->vcpu_fd = -1;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		r = err_set(e, -errno, "/dev/kvm: %s", strerror(errno));
		goto fail;
	}
	r = kvm_ioctl_val(e, vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (r < 0)
		goto fail;
	if (r != KVM_API_VERSION) {
		r = err_set(e, -ENOTSUP, "/dev/kvm: API version %d, need %d", r, KVM_API_VERSION);
		goto fail;
	}
	r = kvm_ioctl_val(e, vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM);
	if (r <= 0) {
		r = err_set(e, -ENOTSUP, "KVM has no read-only memory slots (KVM_CAP_READONLY_MEM)");
		goto fail;
	}
	r = kvm_ioctl_val(e, vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT);
	if (r <= 0) {
		r = err_set(e, -ENOTSUP, "KVM lacks KVM_CAP_IMMEDIATE_EXIT");
		goto fail;
	}
	r = vm->vm_fd = kvm_ioctl_val(e, vm->kvm_fd, KVM_CREATE_VM, 0);
	if (r < 0)
		goto fail;
	__atomic_add_fetch(&created, 1, __ATOMIC_RELAXED);
	r = vm->vcpu_fd = kvm_ioctl_val(e, vm->vm_fd, KVM_CREATE_VCPU, 0);
	if (r < 0)
		goto fail;
	r = kvm_ioctl_val(e, vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < 0)
		goto fail;
	vm->run_size = (size_t)r;
	vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	if (vm->run == MAP_FAILED) {
		vm->run = NULL;
		r = err_set(e, -errno, "mapping the vCPU run area: %s", strerror(errno));
		goto fail;
	}
	r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_CPUID2, cpuid);
	if (r < 0)
		goto fail;
	vm->has_xsave = kvm_ioctl_val(NULL, vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0;
	vm->has_xcrs = kvm_ioctl_val(NULL, vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	vm->has_debugregs = kvm_ioctl_val(NULL, vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DEBUGREGS) > 0;
	/* Only setup asks /dev/kvm itself: a sandbox then holds two
	 * descriptors (VM and vCPU), not three. */
	close(vm->kvm_fd);
	vm->kvm_fd = -1;
	*out = vm;
	return 0;
fail:
	vm_free(vm);
	return r;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->timer_ok)
		timer_delete(vm->timer);
	if (vm->run)
		munmap(vm->run, vm->run_size);
	if (vm->vcpu_fd >= 0)
		close(vm->vcpu_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm);
}

int vm_add_slot(struct vm *vm, uint64_t gpa, uint64_t size, void *host, int readonly,
		struct err *e)
{
	if (vm->nslots == VM_SLOTS_MAX)
		return err_set(e, -ENOSPC, "more than %d memory slots", VM_SLOTS_MAX);
	struct kvm_userspace_memory_region region = {
		.slot = vm->nslots,
		.flags = readonly ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uintptr_t)host,
	};
	int r = kvm_ioctl(e, vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
	if (r < 0) {
		err_prefix(e, "slot at 0x%llx, 0x%llx bytes", (unsigned long long)gpa,
			   (unsigned long long)size);
		return r;
	}
	vm->slots[vm->nslots++] = (struct vm_slot){ gpa, size, host, readonly };
	return 0;
}

const struct vm_slot *vm_slot_at(const struct vm *vm, uint64_t gpa)
{
	for (unsigned i = 0; i < vm->nslots; i++)
		if (gpa >= vm->slots[i].gpa && gpa - vm->slots[i].gpa < vm->slots[i].size)
			return &vm->slots[i];
	return NULL;
}

int vm_set_long_mode(struct vm *vm, uint64_t cr3, uint64_t gdt, uint16_t gdt_limit,
		     uint64_t tss, uint64_t idt, uint16_t idt_limit, struct err *e)
{
	struct kvm_sregs s;
	int r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_SREGS, &s);
	if (r < 0)
		return r;
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x08, .type = 11,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment data = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	struct kvm_segment tr = {
		.base = tss, .limit = 103, .selector = 0x18, .type = 11,	/* 64-bit TSS, busy */
		.present = 1, .s = 0,
	};
	struct kvm_segment ldt = { .selector = 0, .type = 2, .present = 1, .limit = 0xffff, .unusable = 1 };
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = tr;
	s.ldt = ldt;
	s.gdt.base = gdt;
	s.gdt.limit = gdt_limit;
	s.idt.base = idt;
	s.idt.limit = idt_limit;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	s.cr3 = cr3;
	s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	s.efer = EFER_LME | EFER_LMA | EFER_NXE;
	return kvm_ioctl(e, vm->vcpu_fd, KVM_SET_SREGS, &s);
}

int vm_set_entry(struct vm *vm, uint64_t rip, uint64_t rsp, uint64_t rdi, struct err *e)
{
	struct kvm_regs regs = { .rip = rip, .rsp = rsp, .rdi = rdi, .rflags = 0x2 };
	int r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_REGS, &regs);
	return r < 0 ? r : 0;
}

/* ---- the whole vCPU state ---- */

#define MSR_IA32_TSC 0x00000010

/*
 * MSRs a resumed guest may depend on.  The TSC goes last: KVM adjusts the
 * TSC offset when it is written, so the guest's clock carries on from the
 * saved value (see vm_restore_tsc for when it does not).
 */
static const uint32_t wanted_msrs[] = {
	0x00000174,	/* IA32_SYSENTER_CS */
	0x00000175,	/* IA32_SYSENTER_ESP */
	0x00000176,	/* IA32_SYSENTER_EIP */
	0x00000277,	/* IA32_PAT */
	0x000001a0,	/* IA32_MISC_ENABLE */
	0xc0000081,	/* STAR */
	0xc0000082,	/* LSTAR */
	0xc0000083,	/* CSTAR */
	0xc0000084,	/* SFMASK */
	0xc0000102,	/* KERNEL_GS_BASE */
	0xc0000103,	/* TSC_AUX */
	MSR_IA32_TSC,
};
_Static_assert(sizeof(wanted_msrs) / sizeof(wanted_msrs[0]) <= CPUSTATE_MSRS_MAX, "MSRs fit a cpu file");

/* Which of wanted_msrs KVM saves, asked until it has been answered once
 * in this process (as supported_cpuid). */
static pthread_mutex_t msr_lock = PTHREAD_MUTEX_INITIALIZER;
static bool msr_loaded;
static uint32_t msr_list[sizeof(wanted_msrs) / sizeof(wanted_msrs[0])];
static size_t msr_count;

static int load_msr_list(struct err *e)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return err_set(e, -errno, "/dev/kvm: %s", strerror(errno));
	int r = 0;
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *l = NULL;
	if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		r = err_set(e, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto out;
	}
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l) {
		r = err_set(e, -ENOMEM, "KVM_GET_MSR_INDEX_LIST: out of memory");
		goto out;
	}
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		r = err_set(e, -errno, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		goto out;
	}
	for (size_t w = 0; w < sizeof(wanted_msrs) / sizeof(wanted_msrs[0]); w++)
		for (uint32_t i = 0; i < l->nmsrs; i++)
			if (l->indices[i] == wanted_msrs[w]) {
				msr_list[msr_count++] = wanted_msrs[w];
				break;
			}
	msr_loaded = true;
out:
	free(l);
	close(kvm);
	return r;
}

int vm_msr_list(const uint32_t **list, size_t *n, struct err *e)
{
	pthread_mutex_lock(&msr_lock);
	int r = msr_loaded ? 0 : load_msr_list(e);
	pthread_mutex_unlock(&msr_lock);
	if (r < 0)
		return r;
	*list = msr_list;
	*n = msr_count;
	return 0;
}

/* struct kvm_msrs with room for a cpu file's MSRs */
struct msr_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry entries[CPUSTATE_MSRS_MAX];
};

/* offsets in the legacy area of an XSAVE (FXSAVE) image */
#define FX_FCW 0
#define FX_FSW 2
#define FX_FTW 4
#define FX_FOP 6
#define FX_FIP 8
#define FX_FDP 16
#define FX_MXCSR 24
#define FX_ST 32
#define FX_XMM 160
#define FX_LEGACY 512
#define XSAVE_HDR_BV 512	/* XSTATE_BV: which components the image holds */
#define XSAVE_EXT 576		/* first byte after the XSAVE header */

void vm_fpu_to_xsave(const struct kvm_fpu *fpu, struct kvm_xsave *x)
{
	uint8_t *b = (uint8_t *)x->region;
	memset(x->region, 0, sizeof(x->region));
	memcpy(b + FX_FCW, &fpu->fcw, 2);
	memcpy(b + FX_FSW, &fpu->fsw, 2);
	b[FX_FTW] = fpu->ftwx;
	memcpy(b + FX_FOP, &fpu->last_opcode, 2);
	memcpy(b + FX_FIP, &fpu->last_ip, 8);
	memcpy(b + FX_FDP, &fpu->last_dp, 8);
	memcpy(b + FX_MXCSR, &fpu->mxcsr, 4);
	for (int i = 0; i < 8; i++)
		memcpy(b + FX_ST + 16 * i, fpu->fpr[i], 16);
	for (int i = 0; i < 16; i++)
		memcpy(b + FX_XMM + 16 * i, fpu->xmm[i], 16);
	uint64_t bv = 3;	/* x87 and SSE */
	memcpy(b + XSAVE_HDR_BV, &bv, 8);
}

void vm_xsave_to_fpu(const struct kvm_xsave *x, struct kvm_fpu *fpu)
{
	const uint8_t *b = (const uint8_t *)x->region;
	memset(fpu, 0, sizeof(*fpu));
	memcpy(&fpu->fcw, b + FX_FCW, 2);
	memcpy(&fpu->fsw, b + FX_FSW, 2);
	fpu->ftwx = b[FX_FTW];
	memcpy(&fpu->last_opcode, b + FX_FOP, 2);
	memcpy(&fpu->last_ip, b + FX_FIP, 8);
	memcpy(&fpu->last_dp, b + FX_FDP, 8);
	memcpy(&fpu->mxcsr, b + FX_MXCSR, 4);
	for (int i = 0; i < 8; i++)
		memcpy(fpu->fpr[i], b + FX_ST + 16 * i, 16);
	for (int i = 0; i < 16; i++)
		memcpy(fpu->xmm[i], b + FX_XMM + 16 * i, 16);
}

int vm_get_cpu(struct vm *vm, struct cpustate *cs, struct err *e)
{
	const uint32_t *list;
	size_t n;
	memset(cs, 0, sizeof(*cs));
	int r = vm_msr_list(&list, &n, e);
	if (r == 0)
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_REGS, &cs->regs);
	if (r >= 0)
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_SREGS, &cs->sregs);
	if (r >= 0 && vm->has_xsave) {
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_XSAVE, &cs->xsave);
	} else if (r >= 0) {
		struct kvm_fpu fpu;
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_FPU, &fpu);
		if (r >= 0)
			vm_fpu_to_xsave(&fpu, &cs->xsave);
	}
	if (r >= 0 && vm->has_xcrs)
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_XCRS, &cs->xcrs);
	if (r >= 0 && vm->has_debugregs) {
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_DEBUGREGS, &cs->debugregs);
		cs->debugregs.flags = 0;
	} else {
		cs->debugregs.dr6 = CPUSTATE_DR6_INIT;
		cs->debugregs.dr7 = CPUSTATE_DR7_INIT;
	}
	if (r < 0)
		return r;
	struct msr_buf buf = { .hdr.nmsrs = (uint32_t)n };
	for (size_t i = 0; i < n; i++)
		buf.entries[i].index = list[i];
	r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_MSRS, &buf.hdr);
	if (r < 0)
		return r;
	if ((size_t)r != n)
		return err_set(e, -EIO, "KVM_GET_MSRS: MSR 0x%x could not be read", list[r]);
	cs->nmsrs = (uint32_t)n;
	memcpy(cs->msrs, buf.entries, n * sizeof(buf.entries[0]));
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Set the debug registers: only their fields, never KVM's flags or reserved words. */
static int vm_set_debugregs(struct vm *vm, const struct kvm_debugregs *in, struct err *e)
{
	struct kvm_debugregs d = { .dr6 = in->dr6, .dr7 = in->dr7 };
	memcpy(d.db, in->db, sizeof(d.db));
	if (vm->has_debugregs)
		return kvm_ioctl(e, vm->vcpu_fd, KVM_SET_DEBUGREGS, &d);
	if (all_zero((const uint8_t *)d.db, sizeof(d.db)) && d.dr6 == CPUSTATE_DR6_INIT &&
	    d.dr7 == CPUSTATE_DR7_INIT)
		return 0;
	return err_set(e, -ENOTSUP, "the state sets debug registers (dr7 0x%llx); this KVM cannot "
		       "set them", (unsigned long long)d.dr7);
}

/*
 * Make the guest's TSC carry on from want, the value just written with
 * KVM_SET_MSRS.  KVM takes a write from the host that lands within a
 * second's worth of cycles of the value it expects (for a new vCPU, the
 * cycles since it was made) as vCPUs being synchronised, and keeps the
 * offset it has: the value is dropped.  A snapshot taken in the guest's
 * first second then resumed with its clock behind the saved one, and each
 * sandbox from it at a different value.  So the TSC is read back, and if
 * it is behind, the offset (KVM_VCPU_TSC_OFFSET, Linux 5.16) is moved by
 * the difference.
 */
static int vm_restore_tsc(struct vm *vm, uint64_t want, struct err *e)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entry;
	} m = { .hdr.nmsrs = 1, .entry.index = MSR_IA32_TSC };
	int r = kvm_ioctl(e, vm->vcpu_fd, KVM_GET_MSRS, &m.hdr);
	if (r < 0)
		return r;
	if (r != 1)
		return err_set(e, -EIO, "KVM_GET_MSRS: the TSC could not be read");
	uint64_t now = m.entry.data;
	if (now >= want)
		return 0;
	uint64_t offset;
	struct kvm_device_attr a = { .group = KVM_VCPU_TSC_CTRL, .attr = KVM_VCPU_TSC_OFFSET,
				     .addr = (uintptr_t)&offset };
	if (ioctl(vm->vcpu_fd, KVM_GET_DEVICE_ATTR, &a) < 0)
		return err_set(e, -errno, "restoring the guest's TSC 0x%llx (KVM kept 0x%llx): "
			       "KVM_VCPU_TSC_OFFSET: %s", (unsigned long long)want,
			       (unsigned long long)now, strerror(errno));
	offset += want - now;
	return kvm_ioctl(e, vm->vcpu_fd, KVM_SET_DEVICE_ATTR, &a);
}

int vm_set_cpu(struct vm *vm, const struct cpustate *cs, struct err *e)
{
	int r = cpustate_check(cs, e);
	if (r < 0)
		return r;
	r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_REGS, &cs->regs);
	if (r >= 0 && vm->has_xsave) {
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_XSAVE, &cs->xsave);
	} else if (r >= 0) {
		const uint8_t *b = (const uint8_t *)cs->xsave.region;
		if (!all_zero(b + XSAVE_EXT, sizeof(cs->xsave.region) - XSAVE_EXT))
			return err_set(e, -ENOTSUP, "the state has AVX or other extended registers; "
				       "this KVM has no XSAVE to set them");
		struct kvm_fpu fpu;
		vm_xsave_to_fpu(&cs->xsave, &fpu);
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_FPU, &fpu);
	}
	if (r >= 0 && vm->has_xcrs) {
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_XCRS, &cs->xcrs);
	} else if (r >= 0) {
		for (uint32_t i = 0; i < cs->xcrs.nr_xcrs; i++)
			if (cs->xcrs.xcrs[i].xcr != 0 || cs->xcrs.xcrs[i].value != 1)
				return err_set(e, -ENOTSUP, "the state sets XCR%u to 0x%llx; this KVM "
					       "cannot set XCRs", cs->xcrs.xcrs[i].xcr,
					       (unsigned long long)cs->xcrs.xcrs[i].value);
	}
	if (r >= 0)
		r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_SREGS, &cs->sregs);
	if (r >= 0)
		r = vm_set_debugregs(vm, &cs->debugregs, e);
	if (r < 0)
		return r;
	struct msr_buf buf = { .hdr.nmsrs = cs->nmsrs };
	memcpy(buf.entries, cs->msrs, cs->nmsrs * sizeof(buf.entries[0]));
	r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_MSRS, &buf.hdr);
	if (r < 0)
		return r;
	if ((uint32_t)r != cs->nmsrs)
		return err_set(e, -EINVAL, "KVM_SET_MSRS: MSR 0x%x = 0x%llx refused", cs->msrs[r].index,
			       (unsigned long long)cs->msrs[r].data);
	for (uint32_t i = 0; i < cs->nmsrs; i++)
		if (cs->msrs[i].index == MSR_IA32_TSC)
			return vm_restore_tsc(vm, cs->msrs[i].data, e);
	return 0;
}

int vm_clear_events(struct vm *vm, struct err *e)
{
	struct kvm_vcpu_events ev = {
		.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW,
	};
	int r = kvm_ioctl(e, vm->vcpu_fd, KVM_SET_VCPU_EVENTS, &ev);
	return r < 0 ? r : 0;
}

int vm_settle(struct vm *vm, struct err *e)
{
	/* An access split in pieces may exit again before it is done. */
	for (int i = 0; i < 4; i++) {
		vm->run->immediate_exit = 1;
		int r = ioctl(vm->vcpu_fd, KVM_RUN, 0);
		int err = errno;
		vm->run->immediate_exit = 0;
		if (r < 0)
			return err == EINTR ? 0 : err_set(e, -err, "KVM_RUN: %s", strerror(err));
		if (vm->run->exit_reason != KVM_EXIT_IO && vm->run->exit_reason != KVM_EXIT_MMIO)
			return 0;
	}
	return err_set(e, -EPROTO, "KVM_RUN: a pending %s access did not finish",
		       vm_exit_name(vm->run->exit_reason));
}

uint64_t vm_rip(struct vm *vm)
{
	struct kvm_regs regs;
	if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &regs) < 0)
		return 0;
	return regs.rip;
}

/* Arm (ns > 0) or disarm (ns == 0) this thread's timer for vm. */
static int arm_timer(struct vm *vm, uint64_t ns, struct err *e)
{
	pid_t tid = gettid();
	if (vm->timer_ok && vm->timer_tid != tid) {
		timer_delete(vm->timer);
		vm->timer_ok = 0;
	}
	if (!vm->timer_ok) {
		if (ns == 0)
			return 0;
		struct sigevent sev = {
			.sigev_notify = SIGEV_THREAD_ID,
			.sigev_signo = VM_TIMER_SIGNAL,
		};
		sev._sigev_un._tid = tid;
		if (timer_create(CLOCK_MONOTONIC, &sev, &vm->timer) < 0)
			return err_set(e, -errno, "timer_create: %s", strerror(errno));
		vm->timer_ok = 1;
		vm->timer_tid = tid;
	}
	struct itimerspec its = {
		.it_value = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) },
	};
	if (timer_settime(vm->timer, 0, &its, NULL) < 0)
		return err_set(e, -errno, "timer_settime: %s", strerror(errno));
	return 0;
}

int vm_run(struct vm *vm, uint64_t deadline_ns, struct err *e)
{
	int r;
	/* Before the timer is armed: a timer that fires before KVM_RUN
	 * must still find the vCPU to stop (it then returns at once). */
	vm->run->immediate_exit = 0;
	tls_run = vm->run;
	if (deadline_ns) {
		uint64_t now = vm_now_ns();
		r = now >= deadline_ns ? err_set(e, -ETIMEDOUT, "time limit reached")
				       : arm_timer(vm, deadline_ns - now, e);
		if (r < 0) {
			tls_run = NULL;
			return r;
		}
	}
	for (;;) {
		r = ioctl(vm->vcpu_fd, KVM_RUN, 0);
		if (r == 0)
			break;
		int err = errno;
		if (err == EINTR || err == EAGAIN) {
			vm->run->immediate_exit = 0;
			if (deadline_ns && vm_now_ns() >= deadline_ns) {
				r = err_set(e, -ETIMEDOUT, "time limit reached");
				break;
			}
			continue;
		}
		if (err == EFAULT)	/* KVM could not read or map guest memory */
			r = err_set(e, -err, "KVM_RUN: %s: guest memory is gone from its backing "
				    "(a region file shrank, or its filesystem went away)",
				    strerror(err));
		else
			r = err_set(e, -err, "KVM_RUN: %s", strerror(err));
		break;
	}
	tls_run = NULL;
	if (deadline_ns)
		arm_timer(vm, 0, NULL);
	return r;
}

const char *vm_exit_name(uint32_t reason)
{
	switch (reason) {
#define X(n) case n: return #n;
	X(KVM_EXIT_UNKNOWN) X(KVM_EXIT_EXCEPTION) X(KVM_EXIT_IO) X(KVM_EXIT_HYPERCALL)
	X(KVM_EXIT_DEBUG) X(KVM_EXIT_HLT) X(KVM_EXIT_MMIO) X(KVM_EXIT_IRQ_WINDOW_OPEN)
	X(KVM_EXIT_SHUTDOWN) X(KVM_EXIT_FAIL_ENTRY) X(KVM_EXIT_INTR) X(KVM_EXIT_SET_TPR)
	X(KVM_EXIT_TPR_ACCESS) X(KVM_EXIT_NMI) X(KVM_EXIT_INTERNAL_ERROR) X(KVM_EXIT_OSI)
	X(KVM_EXIT_SYSTEM_EVENT) X(KVM_EXIT_X86_RDMSR) X(KVM_EXIT_X86_WRMSR)
#undef X
	default:
		return "unknown";
	}
}
