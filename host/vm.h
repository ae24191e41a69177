/*
 * host/vm.h: one KVM virtual machine with its memory slots and its single
 * vCPU.
 *
 * This is the thin layer over /dev/kvm: it knows ioctls, not guests.  The
 * caller (sandbox.c) decides the memory layout and interprets exits.
 *
 * Time limit: vm_run() takes a deadline.  A per-thread POSIX timer sends
 * VM_TIMER_SIGNAL to the running thread when it passes; the handler sets
 * the vCPU's immediate_exit so KVM_RUN returns -EINTR at once, and
 * vm_run() returns -ETIMEDOUT.  The library installs a handler for that
 * signal (once, process-wide); programs using it must leave that signal
 * alone.  One struct vm must be used by one thread at a time.
 */
#ifndef SNAPVM_VM_H
#define SNAPVM_VM_H

#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <time.h>
#include <linux/kvm.h>

#include "cpustate.h"
#include "err.h"

#define VM_TIMER_SIGNAL (SIGRTMIN + 2)
#define VM_SLOTS_MAX 32

struct vm {
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	unsigned nslots;
	struct vm_slot {
		uint64_t gpa, size;
		void *host;
		int readonly;
	} slots[VM_SLOTS_MAX];
	int has_xsave, has_xcrs;	/* KVM_CAP_XSAVE, KVM_CAP_XCRS */
	int has_debugregs;		/* KVM_CAP_DEBUGREGS */
	int timer_ok;		/* timer created for timer_tid */
	pid_t timer_tid;
	timer_t timer;
};

/* Open /dev/kvm, create a VM and its vCPU (CPUID as KVM supports it). */
int vm_new(struct vm **out, struct err *e);

/* Close everything.  NULL is fine. */
void vm_free(struct vm *vm);

/* How many VMs vm_new() has created in this process (any thread). */
uint64_t vm_created(void);

/*
 * Add a memory slot: size bytes at host address host appear at gpa.
 * readonly: a KVM_MEM_READONLY slot (guest writes become MMIO exits); the
 * host mapping may then be PROT_READ.  Returns 0 or -errno.
 */
int vm_add_slot(struct vm *vm, uint64_t gpa, uint64_t size, void *host, int readonly,
		struct err *e);

/* The slot containing gpa, or NULL. */
const struct vm_slot *vm_slot_at(const struct vm *vm, uint64_t gpa);

/*
 * Put the vCPU into 64-bit long mode: paging with root cr3, flat code and
 * data segments from the GDT at gdt (limit gdt_limit), TR = 64-bit TSS at
 * tss, IDT at idt (limit idt_limit).  Selectors: code 0x08, data 0x10,
 * TSS 0x18.
 */
int vm_set_long_mode(struct vm *vm, uint64_t cr3, uint64_t gdt, uint16_t gdt_limit,
		     uint64_t tss, uint64_t idt, uint16_t idt_limit, struct err *e);

/*
 * The vCPU's whole state, as a snapshot's cpu file holds it: general and
 * special registers, the extended control registers, the debug registers
 * (power-on values where KVM has no KVM_CAP_DEBUGREGS), the FPU/SSE/AVX
 * state (KVM_GET_XSAVE; where KVM has no XSAVE, KVM_GET_FPU stored in the
 * legacy area of the XSAVE layout) and the MSRs of vm_msr_list() that a
 * resumed guest needs.  Returns 0 or -errno.
 */
int vm_get_cpu(struct vm *vm, struct cpustate *cs, struct err *e);

/*
 * Set the vCPU's whole state from cs (what vm_get_cpu() returns, possibly
 * from another process or host).  Returns 0 or -errno: -ENOTSUP when cs
 * holds state this KVM cannot take (XCRs, debug registers or extended
 * XSAVE state without the capability), -EINVAL naming the first MSR KVM
 * refuses.
 */
int vm_set_cpu(struct vm *vm, const struct cpustate *cs, struct err *e);

/*
 * The MSRs vm_get_cpu() saves: those of the SYSCALL/SYSENTER machinery,
 * KERNEL_GS_BASE, TSC_AUX, PAT, MISC_ENABLE and the TSC, as far as KVM
 * lists them (KVM_GET_MSR_INDEX_LIST).  EFER, FS and GS bases and the APIC
 * base are in the special registers.  *n gets the count; 0 or -errno.
 */
int vm_msr_list(const uint32_t **list, size_t *n, struct err *e);

/*
 * Convert between KVM's FPU view and the legacy (FXSAVE) part of an XSAVE
 * area, for hosts without XSAVE.  vm_fpu_to_xsave() clears the rest of the
 * area and marks x87 and SSE state present in its header.
 */
void vm_fpu_to_xsave(const struct kvm_fpu *fpu, struct kvm_xsave *x);
void vm_xsave_to_fpu(const struct kvm_xsave *x, struct kvm_fpu *fpu);

/* Set rip, rsp, rdi, clear the other general registers, rflags = 0x2. */
int vm_set_entry(struct vm *vm, uint64_t rip, uint64_t rsp, uint64_t rdi, struct err *e);

/*
 * Drop every event KVM holds for the vCPU: pending or injected exceptions,
 * interrupts and NMIs, interrupt shadows (as after a fault that ended a
 * run half way).  Returns 0 or -errno.
 */
int vm_clear_events(struct vm *vm, struct err *e);

/*
 * Let KVM finish what the last exit left pending, running no guest
 * instruction: an I/O port or MMIO access completes only at the next
 * KVM_RUN, on whatever state the vCPU then has (an MMIO read's emulation,
 * finished on a state set since, wrecks it).  Call before setting a new
 * state.  Returns 0 or -errno.
 */
int vm_settle(struct vm *vm, struct err *e);

/* The vCPU's rip now (0 if it cannot be read). */
uint64_t vm_rip(struct vm *vm);

/*
 * Run the vCPU until an exit that userspace must handle (vm->run says
 * which).  deadline_ns: CLOCK_MONOTONIC time after which the guest is
 * stopped, 0 for none.  Returns 0, -ETIMEDOUT when the deadline passed, or
 * -errno from KVM_RUN.
 */
int vm_run(struct vm *vm, uint64_t deadline_ns, struct err *e);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t vm_now_ns(void);

/* Name of a KVM exit reason ("KVM_EXIT_MMIO"), or "unknown". */
const char *vm_exit_name(uint32_t reason);

#endif
