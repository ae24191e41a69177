/*
 * host/cpustate.h: the vCPU state of a snapshot (its "cpu" file).
 *
 * The state is what KVM hands out and takes back: struct kvm_regs,
 * struct kvm_sregs, the MSRs the host saves, the extended control registers
 * (struct kvm_xcrs), the debug registers (struct kvm_debugregs) and the
 * 4096-byte XSAVE area (struct kvm_xsave, which holds the FPU, SSE and AVX
 * state).  Nothing here needs /dev/kvm.
 *
 * Format (version 2; lexical rules of textparse.h): one key per line,
 * numbers as 0x hex (the formatter writes registers at full width so that
 * columns line up in a diff), every key exactly once, in any order:
 *
 *   snapvm-cpu 2
 *   rax 0x0000000000000000        ... and rbx rcx rdx rsi rdi rsp rbp r8-r15
 *   rip 0x0000000001000000            rip rflags
 *   rflags 0x0000000000000002
 *   cs base=0x0000000000000000 limit=0xffffffff selector=0x0008 type=11 present=1 dpl=0 db=0 s=1 l=1 g=1 avl=0 unusable=0
 *                                 ... and ds es fs gs ss tr ldt, fields in this order
 *   gdt base=0x00000000c0001000 limit=0x002f      and idt
 *   cr0 0x0000000080050033        ... and cr2 cr3 cr4 cr8 efer apic_base
 *   interrupt_bitmap 0x0000000000000000 0x0000000000000000 0x0000000000000000 0x0000000000000000
 *   dr0 0x0000000000000000        ... and dr1 dr2 dr3 dr6 dr7 (dr6, dr7 <= 0xffffffff)
 *   xcr 0x0 0x0000000000000007    (0 to KVM_MAX_XCRS lines, index unique)
 *   msr 0xc0000080 0x0000000000000d01   (0 to CPUSTATE_MSRS_MAX lines, index unique)
 *   xsave 0x0000 00000000...128 hex digits...   (64 lines: offsets 0x0000 to 0x0fc0,
 *                                                64 bytes each, all present)
 *
 * Segment fields: limit <= 0xffffffff, selector <= 0xffff, type <= 15,
 * dpl <= 3, the flags 0 or 1.  Descriptor-table limits <= 0xffff.  Padding
 * and reserved fields of the kernel structs are not stored: they are zero
 * after parsing and ignored when writing.  xcr and msr lines keep their
 * order.  Errors read "FILE:LINE: reason" (-EINVAL).
 *
 * Version 1 files, written before the debug registers were kept, are read
 * too: they have no dr lines, and the registers get their power-on values
 * (CPUSTATE_DR6_INIT, CPUSTATE_DR7_INIT, the others 0).
 */
#ifndef SNAPVM_CPUSTATE_H
#define SNAPVM_CPUSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "err.h"

#define CPUSTATE_MAGIC "snapvm-cpu"
#define CPUSTATE_VERSION 2
#define CPUSTATE_VERSION_MIN 1		/* oldest version read */
#define CPUSTATE_FILE_MAX (256u << 10)	/* bytes in a cpu file */
#define CPUSTATE_MSRS_MAX 64
#define CPUSTATE_XSAVE_SIZE 4096
#define CPUSTATE_XSAVE_LINE 64		/* bytes of XSAVE area per line */
#define CPUSTATE_DR6_INIT 0xffff0ff0ull	/* DR6 and DR7 at power-on */
#define CPUSTATE_DR7_INIT 0x400ull

_Static_assert(sizeof(struct kvm_xsave) == CPUSTATE_XSAVE_SIZE, "kvm_xsave is the 4 KiB legacy area");

struct cpustate {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;			/* nr_xcrs entries of xcrs[] used */
	uint32_t nmsrs;
	struct kvm_msr_entry msrs[CPUSTATE_MSRS_MAX];	/* index, data */
	struct kvm_debugregs debugregs;		/* db[4], dr6, dr7; flags 0 */
	struct kvm_xsave xsave;			/* last: the kernel type ends in a flexible array */
};

/*
 * Parse len bytes of text into *cs (path names the file in messages).
 * Returns 0 or -EINVAL with e set to "PATH:LINE: reason"; *cs is
 * unspecified on failure.
 */
int cpustate_parse(const char *text, size_t len, const char *path, struct cpustate *cs,
		   struct err *e);

/* Read and parse the file at path (at most CPUSTATE_FILE_MAX bytes). */
int cpustate_load(const char *path, struct cpustate *cs, struct err *e);

/* Check a state built in memory (field ranges, counts, unique indexes). */
int cpustate_check(const struct cpustate *cs, struct err *e);

/*
 * Write *cs in canonical form into a malloc'd NUL-terminated buffer (*text,
 * *len bytes without the NUL; the caller frees it).  Refuses (-EINVAL) what
 * cpustate_check() refuses; -ENOMEM.
 */
int cpustate_format(const struct cpustate *cs, char **text, size_t *len, struct err *e);

/* Same values in every stored field (padding and reserved fields ignored). */
bool cpustate_equal(const struct cpustate *a, const struct cpustate *b);

#endif
