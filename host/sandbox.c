/*
 * host/sandbox.c: sandboxes — memory set-up, boot, calls and the run loop.
 *
 * Scratch layout (offsets from SNAPVM_SCRATCH_GPA), built on a cold boot:
 *
 *   0x0000  struct snapvm_boot
 *   0x1000  GDT (5 entries) and, at 0x1080, the 64-bit TSS
 *   0x2000  IDT (filled by the guest)
 *   0x3000  guard page (not mapped)
 *   0x4000  double-fault stack, 2 pages (IST1)
 *   0x6000  guard page
 *   0x7000  stack (SANDBOX_STACK_DEFAULT)
 *   ...     call buffer
 *   ...     page tables, then free pages for copies on write
 *
 * Everything the CPU writes is here: the GDT's descriptors are created
 * accessed, the TSS busy, and page-table entries with A (and D on writable
 * leaves) already set, so nothing is written outside scratch except by the
 * guest's own stores to private regions.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "callbuf.h"
#include "kvm_ioctl.h"
#include "pagetable.h"
#include "sandbox.h"
#include "vm.h"

#define PAGE SNAPVM_PAGE_SIZE
#define OFF_GDT 0x1000
#define OFF_TSS 0x1080
#define OFF_IDT 0x2000
#define OFF_IST 0x4000
#define IST_SIZE 0x2000
#define OFF_STACK 0x7000
#define GDT_LIMIT (5 * 8 - 1)

struct sandbox {
	struct guest *g;
	struct sandbox_options opt;
	struct vm *vm;
	uint8_t *scratch;
	uint64_t scratch_size;
	void *private_mem[GUEST_REGIONS_MAX];	/* this sandbox's copy, or NULL when shared */
	const char *slot_name[VM_SLOTS_MAX];
	struct callbuf cb;
	uint64_t stack_top;
	uint64_t pt_root;
	uint64_t calls;
	int ended;
	char why[ERR_MSG_MAX];
	struct cpustate power_on;		/* cold boot: the vCPU as KVM made it */
};

static uint64_t page_up(uint64_t a) { return (a + PAGE - 1) & ~(PAGE - 1); }

static struct snapvm_boot *boot_of(const struct sandbox *sb)
{
	return (struct snapvm_boot *)sb->scratch;
}

/* End the sandbox: remember why, return code with the message in e. */
__attribute__((format(printf, 4, 5)))
static int sandbox_end(struct sandbox *sb, struct err *e, int code, const char *fmt, ...)
{
	struct err tmp = { 0 };
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp.msg, sizeof(tmp.msg), fmt, ap);
	va_end(ap);
	sb->ended = 1;
	snprintf(sb->why, sizeof(sb->why), "%s", tmp.msg);
	return err_set(e, code, "%s", tmp.msg);
}

static void write_gdt(uint8_t *scratch)
{
	uint64_t *gdt = (uint64_t *)(scratch + OFF_GDT);
	uint64_t tss = SNAPVM_SCRATCH_GPA + OFF_TSS, limit = 103;
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull;	/* 64-bit code, accessed */
	gdt[2] = 0x00cf93000000ffffull;	/* data, accessed */
	gdt[3] = (limit & 0xffff) | ((tss & 0xffffff) << 16) | (0x8bull << 40) |
		 (((limit >> 16) & 0xf) << 48) | (((tss >> 24) & 0xff) << 56);	/* TSS, busy */
	gdt[4] = tss >> 32;
	/* TSS: ist1 at byte 36, I/O map base beyond the limit (no bitmap) */
	uint8_t *t = scratch + OFF_TSS;
	memset(t, 0, 104);
	uint64_t ist1 = SNAPVM_SCRATCH_GPA + OFF_IST + IST_SIZE;
	memcpy(t + 36, &ist1, 8);
	uint16_t iomap = 104;
	memcpy(t + 102, &iomap, 2);
}

static uint64_t leaf_flags(const struct guest_region *r)
{
	uint64_t f = SNAPVM_PTE_A;
	if (!(r->prot & PROT_EXEC))
		f |= SNAPVM_PTE_NX;
	if (r->prot & PROT_WRITE)
		f |= r->shared ? SNAPVM_PTE_COW : SNAPVM_PTE_RW | SNAPVM_PTE_D;
	return f;
}

/* Cold boot: lay out scratch, build page tables. */
static int build_scratch(struct sandbox *sb, struct err *e)
{
	uint64_t base = SNAPVM_SCRATCH_GPA;
	uint64_t callbuf_off = OFF_STACK + SANDBOX_STACK_DEFAULT;
	uint64_t tables_off = callbuf_off + sb->opt.callbuf_size;
	if (tables_off + 16 * PAGE > sb->scratch_size)
		return err_set(e, -EINVAL, "scratch of %llu bytes is too small for a call buffer of %llu",
			       (unsigned long long)sb->scratch_size,
			       (unsigned long long)sb->opt.callbuf_size);
	write_gdt(sb->scratch);
	sb->stack_top = base + OFF_STACK + SANDBOX_STACK_DEFAULT;

	struct pt pt;
	int r = pt_init(&pt, sb->scratch, base, sb->scratch_size, base + tables_off,
			base + sb->scratch_size, e);
	for (size_t i = 0; r == 0 && i < sb->g->nregions; i++) {
		const struct guest_region *reg = &sb->g->regions[i];
		r = pt_map(&pt, reg->gpa, reg->gpa, reg->size, leaf_flags(reg), e);
		if (r < 0)
			err_prefix(e, "region \"%s\"", reg->name);
	}
	/* scratch itself, identity-mapped, except the guard pages */
	uint64_t rw = SNAPVM_PTE_RW | SNAPVM_PTE_NX | SNAPVM_PTE_A | SNAPVM_PTE_D;
	if (r == 0)
		r = pt_map(&pt, base, base, 0x3000, rw, e);
	if (r == 0)
		r = pt_map(&pt, base + OFF_IST, base + OFF_IST, IST_SIZE, rw, e);
	if (r == 0)
		r = pt_map(&pt, base + OFF_STACK, base + OFF_STACK,
			   sb->scratch_size - OFF_STACK, rw, e);
	if (r < 0) {
		err_prefix(e, "page tables in %llu bytes of scratch",
			   (unsigned long long)sb->scratch_size);
		return r;
	}

	struct snapvm_boot *b = boot_of(sb);
	*b = (struct snapvm_boot){
		.magic = SNAPVM_BOOT_MAGIC, .version = SNAPVM_ABI_VERSION,
		.scratch_gpa = base, .scratch_size = sb->scratch_size,
		.callbuf_gpa = base + callbuf_off, .callbuf_size = sb->opt.callbuf_size,
		.idt_gpa = base + OFF_IDT, .stack_top = sb->stack_top, .pt_root = pt.root,
		.free_next = pt.next, .free_end = base + sb->scratch_size,
	};
	for (size_t i = 0; i < sb->g->nregions; i++)
		if (strcmp(sb->g->regions[i].name, "heap") == 0) {
			b->heap_gpa = sb->g->regions[i].gpa;
			b->heap_size = sb->g->regions[i].size;
		}
	sb->pt_root = pt.root;
	return callbuf_init(&sb->cb, sb->scratch + callbuf_off, base + callbuf_off,
			    sb->opt.callbuf_size, e);
}

/*
 * The boot block in scratch, which the guest can write: what a resume
 * takes from it must lie inside scratch.  what names the image for the
 * message.
 */
static int check_boot(const struct sandbox *sb, const char *what, struct err *e)
{
	const struct snapvm_boot *b = boot_of(sb);
	uint64_t base = SNAPVM_SCRATCH_GPA, end = base + sb->scratch_size;
	if (b->magic != SNAPVM_BOOT_MAGIC || b->version != SNAPVM_ABI_VERSION ||
	    b->scratch_gpa != base || b->scratch_size != sb->scratch_size)
		return err_set(e, -EINVAL, "%s: %s: no valid boot block", sb->g->name, what);
	if (b->callbuf_gpa < base + OFF_STACK || b->callbuf_gpa >= end || b->callbuf_gpa % PAGE ||
	    b->callbuf_size > end - b->callbuf_gpa || b->stack_top <= base + OFF_STACK ||
	    b->stack_top > end || b->stack_top % 16 || b->pt_root < base || b->pt_root >= end)
		return err_set(e, -EINVAL, "%s: %s: the boot block puts the call buffer, stack or"
			       " page tables outside scratch", sb->g->name, what);
	return 0;
}

/*
 * Resume: scratch (all zero) from the saved image, its non-zero pages only;
 * check what the guest left there.
 */
static int load_scratch(struct sandbox *sb, struct err *e)
{
	const struct guest *g = sb->g;
	for (size_t i = 0; i < g->nimage_runs; i++)
		memcpy(sb->scratch + g->image_runs[i].off,
		       (const uint8_t *)g->scratch_image + g->image_runs[i].off, g->image_runs[i].len);
	int r = check_boot(sb, "scratch image", e);
	if (r)
		return r;
	const struct snapvm_boot *b = boot_of(sb);
	uint64_t base = SNAPVM_SCRATCH_GPA;
	sb->stack_top = b->stack_top;
	sb->pt_root = b->pt_root;
	return callbuf_init(&sb->cb, sb->scratch + (b->callbuf_gpa - base), b->callbuf_gpa,
			    b->callbuf_size, e);
}

/*
 * Make len bytes of anonymous private memory read as zeros again, giving
 * the pages back to the kernel (KVM drops its mappings of them too).
 */
static void zero_pages(void *addr, uint64_t len)
{
	if (len && madvise(addr, len, MADV_DONTNEED) != 0)
		memset(addr, 0, len);
}

/* A private region's first contents: the guest's bytes (a cold boot's heap is zero). */
static void fill_private(struct sandbox *sb, size_t i)
{
	const struct guest_region *reg = &sb->g->regions[i];
	if (strcmp(reg->name, "heap") != 0 || sb->g->scratch_image)
		memcpy(sb->private_mem[i], reg->mem, reg->size);
}

static int setup_memory(struct sandbox *sb, struct err *e)
{
	int r;
	for (size_t i = 0; i < sb->g->nregions; i++) {
		const struct guest_region *reg = &sb->g->regions[i];
		void *host = (void *)reg->mem;
		if (!reg->shared) {
			host = mmap(NULL, reg->size, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (host == MAP_FAILED)
				return err_set(e, -errno, "region \"%s\": mapping %llu bytes: %s",
					       reg->name, (unsigned long long)reg->size, strerror(errno));
			sb->private_mem[i] = host;
			fill_private(sb, i);
		}
		sb->slot_name[sb->vm->nslots] = reg->name;
		r = vm_add_slot(sb->vm, reg->gpa, reg->size, host, reg->shared, e);
		if (r < 0) {
			err_prefix(e, "region \"%s\"", reg->name);
			return r;
		}
	}
	sb->slot_name[sb->vm->nslots] = "scratch";
	return vm_add_slot(sb->vm, SNAPVM_SCRATCH_GPA, sb->scratch_size, sb->scratch, 0, e);
}

static int run_guest(struct sandbox *sb, struct err *e);

/*
 * Put the vCPU in its starting state, memory being in place: the saved
 * state of a guest that has one; for a cold boot, the vCPU as KVM made it,
 * switched to long mode, then the guest's boot run.
 */
static int start_vcpu(struct sandbox *sb, struct err *e)
{
	const struct guest *g = sb->g;
	int r;
	if (g->scratch_image) {
		r = vm_set_cpu(sb->vm, &g->cpu, e);
		if (r < 0)
			err_prefix(e, "setting the saved vCPU state");
		return r < 0 ? r : 0;
	}
	r = vm_set_cpu(sb->vm, &sb->power_on, e);
	if (r < 0)
		return r;
	r = vm_set_long_mode(sb->vm, sb->pt_root, SNAPVM_SCRATCH_GPA + OFF_GDT, GDT_LIMIT,
			     SNAPVM_SCRATCH_GPA + OFF_TSS, SNAPVM_SCRATCH_GPA + OFF_IDT, PAGE - 1, e);
	if (r < 0)
		return r;
	callbuf_put_boot(&sb->cb);
	return run_guest(sb, e);
}

int sandbox_new(struct guest *g, const struct sandbox_options *opt, struct sandbox **out,
		struct err *e)
{
	int r;
	*out = NULL;
	struct sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return err_set(e, -ENOMEM, "%s: out of memory", g->name);
	sb->g = g;
	if (opt)
		sb->opt = *opt;
	if (!sb->opt.scratch_size)
		sb->opt.scratch_size = SANDBOX_SCRATCH_DEFAULT;
	if (!sb->opt.callbuf_size)
		sb->opt.callbuf_size = SANDBOX_CALLBUF_DEFAULT;
	sb->opt.callbuf_size = page_up(sb->opt.callbuf_size);
	sb->scratch_size = g->scratch_image ? g->scratch_size : page_up(sb->opt.scratch_size);
	if (sb->scratch_size > SNAPVM_SCRATCH_MAX || sb->opt.callbuf_size > SNAPVM_SCRATCH_MAX) {
		r = err_set(e, -EINVAL, "scratch size %llu is larger than %llu",
			    (unsigned long long)sb->scratch_size, SNAPVM_SCRATCH_MAX);
		goto fail;
	}
	sb->scratch = mmap(NULL, sb->scratch_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (sb->scratch == MAP_FAILED) {
		sb->scratch = NULL;
		r = err_set(e, -errno, "mapping %llu bytes of scratch: %s",
			    (unsigned long long)sb->scratch_size, strerror(errno));
		goto fail;
	}
	/*
	 * Scratch is used sparsely (a few pages of tables, stack and call
	 * buffer, then copies on write): with transparent huge pages one
	 * touched page would make 2 MiB resident.  Best effort: a kernel
	 * without THP refuses the advice and has nothing to avoid.
	 */
	madvise(sb->scratch, sb->scratch_size, MADV_NOHUGEPAGE);
	r = g->scratch_image ? load_scratch(sb, e) : build_scratch(sb, e);
	if (r < 0)
		goto fail;
	r = vm_new(&sb->vm, e);
	if (r < 0)
		goto fail;
	r = setup_memory(sb, e);
	if (r < 0)
		goto fail;
	if (!g->scratch_image) {
		r = vm_get_cpu(sb->vm, &sb->power_on, e);
		if (r < 0)
			goto fail;
	}
	r = start_vcpu(sb, e);
	if (r < 0)
		goto fail;
	*out = sb;
	return 0;
fail:
	err_prefix(e, "%s: starting a sandbox", g->name);
	sandbox_free(sb);
	return r;
}

int sandbox_reset(struct sandbox *sb, struct err *e)
{
	const struct guest *g = sb->g;
	/* first, on the old state: the access that ended the last call */
	int r = vm_settle(sb->vm, e);
	sb->ended = 0;
	sb->why[0] = 0;
	sb->calls = 0;
	for (size_t i = 0; i < g->nregions; i++)
		if (sb->private_mem[i]) {
			zero_pages(sb->private_mem[i], g->regions[i].size);
			fill_private(sb, i);
		}
	/* whatever the guest wrote anywhere in scratch goes, not only what it admits to */
	zero_pages(sb->scratch, sb->scratch_size);
	if (r == 0)
		r = g->scratch_image ? load_scratch(sb, e) : build_scratch(sb, e);
	if (r == 0)
		r = vm_clear_events(sb->vm, e);
	if (r == 0)
		r = start_vcpu(sb, e);
	if (r < 0) {
		if (!sb->ended)
			sandbox_end(sb, NULL, r, "%s", e ? e->msg : "reset failed");
		err_prefix(e, "%s: resetting a sandbox", g->name);
		return r;
	}
	return 0;
}

const struct guest *sandbox_guest(const struct sandbox *sb)
{
	return sb->g;
}

void sandbox_free(struct sandbox *sb)
{
	if (!sb)
		return;
	vm_free(sb->vm);
	for (size_t i = 0; i < GUEST_REGIONS_MAX; i++)
		if (sb->private_mem[i])
			munmap(sb->private_mem[i], sb->g->regions[i].size);
	if (sb->scratch)
		munmap(sb->scratch, sb->scratch_size);
	free(sb);
}

int sandbox_ended(const struct sandbox *sb, const char **why)
{
	if (sb->ended && why)
		*why = sb->why;
	return sb->ended;
}

/* Guest wrote to one of the ports; 1 = continue running, 0 = done, < 0 ended. */
static int handle_out(struct sandbox *sb, uint16_t port, uint64_t rip, struct err *e)
{
	const char *msg;
	size_t len;
	int r;
	switch (port) {
	case SNAPVM_PORT_DONE:
		return 0;
	case SNAPVM_PORT_PRINT:
	case SNAPVM_PORT_ABORT:
		r = callbuf_get_msg(&sb->cb, &msg, &len, e);
		if (r < 0)
			return sandbox_end(sb, e, r, "%s at RIP 0x%llx", e ? e->msg : "bad message",
					   (unsigned long long)rip);
		if (port == SNAPVM_PORT_ABORT)
			return sandbox_end(sb, e, -EPROTO, "guest aborted: %.*s", (int)len, msg);
		if (sb->opt.log)
			sb->opt.log(sb->opt.log_ctx, msg, len);
		return 1;
	case SNAPVM_PORT_TIME:
		callbuf_set_ret(&sb->cb, (int64_t)vm_now_ns());
		return 1;
	case SNAPVM_PORT_FAULT: {
		struct snapvm_fault f;
		char desc[256];
		callbuf_get_fault(&sb->cb, &f);
		callbuf_describe_fault(&f, desc, sizeof(desc));
		return sandbox_end(sb, e, -EPROTO, "guest fault: %s", desc);
	}
	default:
		return sandbox_end(sb, e, -EPROTO, "guest wrote to unknown I/O port 0x%x at RIP 0x%llx",
				   port, (unsigned long long)rip);
	}
}

/* The deadline timeout_ms from now: 0 (none) for no limit, or for a limit
 * past the end of the clock's range (hundreds of years). */
static uint64_t deadline_after(uint64_t timeout_ms)
{
	uint64_t now = vm_now_ns();
	if (!timeout_ms || timeout_ms > (UINT64_MAX - now) / 1000000ull)
		return 0;
	return now + timeout_ms * 1000000ull;
}

/*
 * Run until the guest reports SNAPVM_PORT_DONE.  Every other way the run
 * can stop is handled here, in one switch.
 */
static int run_guest(struct sandbox *sb, struct err *e)
{
	uint64_t deadline = deadline_after(sb->opt.timeout_ms);
	int r = vm_set_entry(sb->vm, sb->g->entry, sb->stack_top, sb->cb.gpa, e);
	if (r < 0)
		return sandbox_end(sb, e, r, "%s", e ? e->msg : "KVM_SET_REGS failed");
	struct kvm_run *run = sb->vm->run;
	for (;;) {
		r = vm_run(sb->vm, deadline, e);
		if (r == -ETIMEDOUT)
			return sandbox_end(sb, e, r, "guest ran past the time limit of %llu ms "
					   "(stopped at RIP 0x%llx)",
					   (unsigned long long)sb->opt.timeout_ms,
					   (unsigned long long)vm_rip(sb->vm));
		if (r < 0)
			return sandbox_end(sb, e, r, "%s", e ? e->msg : "KVM_RUN failed");
		uint64_t rip = vm_rip(sb->vm);
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.direction != KVM_EXIT_IO_OUT)
				return sandbox_end(sb, e, -EPROTO, "guest read from I/O port 0x%x at "
						   "RIP 0x%llx", run->io.port,
						   (unsigned long long)rip);
			r = handle_out(sb, run->io.port, rip, e);
			if (r <= 0)
				return r;
			break;
		case KVM_EXIT_MMIO: {
			const struct vm_slot *s = vm_slot_at(sb->vm, run->mmio.phys_addr);
			const char *what = s ? sb->slot_name[s - sb->vm->slots] : NULL;
			if (run->mmio.is_write && what)
				return sandbox_end(sb, e, -EPROTO, "guest wrote %u bytes to read-only "
						   "memory at 0x%llx (region \"%s\") at RIP 0x%llx",
						   run->mmio.len, (unsigned long long)run->mmio.phys_addr,
						   what, (unsigned long long)rip);
			return sandbox_end(sb, e, -EPROTO, "guest %s %u bytes at 0x%llx, where there "
					   "is no memory, at RIP 0x%llx",
					   run->mmio.is_write ? "wrote" : "read", run->mmio.len,
					   (unsigned long long)run->mmio.phys_addr,
					   (unsigned long long)rip);
		}
		case KVM_EXIT_HLT:
			return sandbox_end(sb, e, -EPROTO, "guest halted (hlt) at RIP 0x%llx",
					   (unsigned long long)rip);
		case KVM_EXIT_SHUTDOWN:
			return sandbox_end(sb, e, -EPROTO, "guest shut down (triple fault) at RIP 0x%llx",
					   (unsigned long long)rip);
		case KVM_EXIT_FAIL_ENTRY:
			return sandbox_end(sb, e, -EPROTO, "KVM could not enter the guest (hardware "
					   "reason 0x%llx) at RIP 0x%llx",
					   (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
					   (unsigned long long)rip);
		case KVM_EXIT_INTERNAL_ERROR:
			return sandbox_end(sb, e, -EPROTO, "KVM internal error (suberror %u) at RIP 0x%llx",
					   run->internal.suberror, (unsigned long long)rip);
		default:
			return sandbox_end(sb, e, -EPROTO, "unexpected KVM exit %u (%s) at RIP 0x%llx",
					   run->exit_reason, vm_exit_name(run->exit_reason),
					   (unsigned long long)rip);
		}
	}
}

int sandbox_call(struct sandbox *sb, const char *fn, const void *in, size_t in_len,
		 void *out, size_t out_cap, size_t *out_len, struct err *e)
{
	*out_len = 0;
	if (sb->ended)
		return err_set(e, -ESHUTDOWN, "sandbox has ended: %s", sb->why);
	int r = callbuf_put_call(&sb->cb, fn, in, in_len, e);
	if (r < 0)
		return r;
	r = run_guest(sb, e);
	if (r < 0) {
		err_prefix(e, "calling %s", fn);
		return r;
	}
	int64_t status;
	const void *res;
	size_t len;
	r = callbuf_get_result(&sb->cb, &status, &res, &len, e);
	if (r < 0) {
		sandbox_end(sb, NULL, r, "%s", e ? e->msg : "bad result");
		err_prefix(e, "calling %s", fn);
		return r;
	}
	sb->calls++;
	if (status == SNAPVM_STATUS_NOFUNC)
		return err_set(e, -ENOENT, "%s: no function \"%s\"", sb->g->name, fn);
	if (status < 0)
		return err_set(e, -EREMOTEIO, "%s: function %s failed with error %lld", sb->g->name,
			       fn, (long long)status);
	*out_len = len;
	if (len > out_cap) {
		memcpy(out, res, out_cap);
		return err_set(e, -ENOBUFS, "%s: result of %s is %zu bytes, more than %zu", sb->g->name,
			       fn, len, out_cap);
	}
	if (len)
		memcpy(out, res, len);
	return 0;
}

static uint64_t resident_bytes(void *addr, uint64_t len)
{
	unsigned char vec[4096];
	uint64_t n = 0;
	for (uint64_t off = 0; off < len; off += sizeof(vec) * PAGE) {
		uint64_t chunk = len - off < sizeof(vec) * PAGE ? len - off : sizeof(vec) * PAGE;
		if (mincore((uint8_t *)addr + off, chunk, vec) != 0)
			return 0;
		for (uint64_t i = 0; i < chunk / PAGE; i++)
			n += vec[i] & 1;
	}
	return n * PAGE;
}

void sandbox_stats(const struct sandbox *sb, struct sandbox_stats *st)
{
	const volatile struct snapvm_boot *b = boot_of(sb);
	uint64_t next = b->free_next;
	*st = (struct sandbox_stats){
		.calls = sb->calls,
		.cow_pages = b->cow_pages,
		.scratch_used = next >= SNAPVM_SCRATCH_GPA && next - SNAPVM_SCRATCH_GPA <= sb->scratch_size
					? next - SNAPVM_SCRATCH_GPA : sb->scratch_size,
		.scratch_size = sb->scratch_size,
		.scratch_resident = resident_bytes(sb->scratch, sb->scratch_size),
	};
}

int sandbox_translate(const struct sandbox *sb, uint64_t va, uint64_t *gpa, uint64_t *pte_flags,
		      struct err *e)
{
	struct pt pt;
	int r = pt_attach(&pt, sb->scratch, SNAPVM_SCRATCH_GPA, sb->scratch_size, sb->pt_root, e);
	if (r < 0)
		return r;
	return pt_translate(&pt, va, gpa, pte_flags, e);
}

int sandbox_read_phys(const struct sandbox *sb, uint64_t gpa, void *buf, size_t len,
		      struct err *e)
{
	const struct vm_slot *s = vm_slot_at(sb->vm, gpa);
	if (!s || len > s->size - (gpa - s->gpa))
		return err_set(e, -EFAULT, "guest-physical 0x%llx+%zu is not inside one region",
			       (unsigned long long)gpa, len);
	memcpy(buf, (const uint8_t *)s->host + (gpa - s->gpa), len);
	return 0;
}

int sandbox_save(struct sandbox *sb, struct sandbox_state *st, struct err *e)
{
	memset(st, 0, sizeof(*st));
	if (sb->ended)
		return err_set(e, -ESHUTDOWN, "sandbox has ended: %s", sb->why);
	/* What a resume checks, checked before saving: no snapshot is
	 * written that could not be resumed. */
	int r = check_boot(sb, "not saved", e);
	if (r)
		return r;
	const struct snapvm_boot *b = boot_of(sb);
	uint64_t next = b->free_next;
	if (next < SNAPVM_SCRATCH_GPA + OFF_STACK || next > SNAPVM_SCRATCH_GPA + sb->scratch_size ||
	    next % PAGE)
		return err_set(e, -EINVAL, "%s: guest's free-page pointer 0x%llx is outside scratch",
			       sb->g->name, (unsigned long long)next);
	st->scratch_len = next - SNAPVM_SCRATCH_GPA;
	st->scratch = malloc(st->scratch_len);
	if (!st->scratch)
		return err_set(e, -ENOMEM, "%s: saving state: out of memory for a %zu-byte scratch image",
			       sb->g->name, st->scratch_len);
	memcpy(st->scratch, sb->scratch, st->scratch_len);
	st->scratch_size = sb->scratch_size;

	/* walk the copy: tables must lie inside what is saved */
	struct pt pt;
	r = pt_attach(&pt, st->scratch, SNAPVM_SCRATCH_GPA, st->scratch_len, sb->pt_root, e);
	for (size_t i = 0; r >= 0 && i < sb->g->nregions; i++) {
		const struct guest_region *reg = &sb->g->regions[i];
		st->regions[i] = *reg;
		st->regions[i].shared = 1;
		if (!reg->shared) {
			st->regions[i].mem = sb->private_mem[i];
			long n = pt_make_cow(&pt, reg->gpa, reg->gpa + reg->size, e);
			r = n < 0 ? (int)n : 0;
		}
	}
	st->nregions = sb->g->nregions;
	if (r >= 0)
		r = vm_get_cpu(sb->vm, &st->cpu, e);
	if (r < 0) {
		sandbox_state_release(st);
		err_prefix(e, "%s: saving state", sb->g->name);
		return r;
	}
	st->entry = sb->g->entry;
	return 0;
}

void sandbox_state_release(struct sandbox_state *st)
{
	if (!st)
		return;
	free(st->scratch);
	memset(st, 0, sizeof(*st));
}
