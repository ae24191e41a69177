/*
 * guest/include/snapvm_abi.h: the contract between a guest ELF and the host.
 *
 * Included by the freestanding guest runtime and by the host, so it uses
 * only fixed-width types and no libc.
 *
 * Exported functions: the guest places one struct snapvm_export per function
 * in the ELF section SNAPVM_EXPORT_SECTION (the SNAPVM_EXPORT macro of the
 * guest runtime does this).  The host lists functions from the section of
 * the file alone; to call one it passes the *name* and the guest's dispatcher
 * finds it in its own (relocated) table, so the host never needs to relocate
 * the fn field itself.
 */
#ifndef SNAPVM_ABI_H
#define SNAPVM_ABI_H

#include <stdint.h>

#define SNAPVM_EXPORT_SECTION ".snapvm_exports"
#define SNAPVM_NAME_MAX 48	/* including the terminating NUL */

struct snapvm_export {
	char name[SNAPVM_NAME_MAX];	/* NUL-terminated, [A-Za-z0-9_.-]+ */
	uint64_t fn;			/* guest virtual address of the function */
	uint64_t flags;			/* reserved, 0 */
};

_Static_assert(sizeof(struct snapvm_export) == 64, "export entry is 64 bytes");

/*
 * Signature of every exported function: reads in_len bytes at in, writes at
 * most out_cap bytes at out, returns the result length (>= 0) or a negative
 * error the host reports.
 */
typedef long (*snapvm_fn)(const void *in, uint64_t in_len, void *out, uint64_t out_cap);

/*
 * ---------------------------------------------------------------------------
 * Memory layout.  Guest-virtual addresses equal guest-physical addresses
 * (identity mapping, 4 KiB pages, built by the host), so a pointer means the
 * same thing to the guest, to its page tables and to the host.
 *
 *   0 .. SNAPVM_IMAGE_MIN            never mapped: null pointers fault
 *   image                            the ELF's PT_LOAD segments, one region
 *                                    per run of pages with one permission;
 *                                    ET_EXEC at its link address, ET_DYN
 *                                    placed at SNAPVM_DYN_BASE
 *   SNAPVM_HEAP_GPA                  the heap region (size chosen by the host)
 *   SNAPVM_SCRATCH_GPA               the private writable scratch region
 *
 * Image and heap are "regions": what a snapshot stores as region files.  In
 * a sandbox they are either private writable memory (a cold boot) or shared
 * read-only memory that the guest copies on write into scratch (a sandbox
 * made from a snapshot).  Scratch holds everything the CPU or the runtime
 * writes: struct snapvm_boot, GDT, TSS, IDT, stacks, the call buffer, page
 * tables, and pages copied on write.
 * ---------------------------------------------------------------------------
 */
#define SNAPVM_PAGE_SIZE	4096ull
#define SNAPVM_IMAGE_MIN	0x00400000ull	/* lowest address of an image */
#define SNAPVM_DYN_BASE		0x01000000ull	/* where ET_DYN images go */
#define SNAPVM_HEAP_GPA		0x40000000ull	/* image must end below this */
#define SNAPVM_HEAP_MAX		0x80000000ull	/* 2 GiB */
#define SNAPVM_SCRATCH_GPA	0xc0000000ull
#define SNAPVM_SCRATCH_MAX	0x20000000ull	/* 512 MiB */

/*
 * Page-table bits the runtime and host agree on, besides the architectural
 * ones: SNAPVM_PTE_COW marks a read-only leaf whose page may be copied into
 * scratch on a write fault (it maps a region page of a writable region).
 */
#define SNAPVM_PTE_P		(1ull << 0)
#define SNAPVM_PTE_RW		(1ull << 1)
#define SNAPVM_PTE_A		(1ull << 5)
#define SNAPVM_PTE_D		(1ull << 6)
#define SNAPVM_PTE_PS		(1ull << 7)
#define SNAPVM_PTE_COW		(1ull << 9)	/* available-to-software bit */
#define SNAPVM_PTE_NX		(1ull << 63)
#define SNAPVM_PTE_ADDR		0x000ffffffffff000ull

/*
 * struct snapvm_boot sits at SNAPVM_SCRATCH_GPA.  The host fills it before
 * the first entry; at boot the guest records where its export table is
 * (so that the functions of a snapshot can be listed from its files);
 * afterwards the guest only advances free_next and cow_pages.  The host
 * treats everything in it as untrusted when it reads it back (to take a
 * snapshot, or to list a snapshot's functions).
 */
#define SNAPVM_BOOT_MAGIC	0x746f6f626d767073ull	/* "spvmboot" */
#define SNAPVM_ABI_VERSION	1

struct snapvm_boot {
	uint64_t magic;			/* SNAPVM_BOOT_MAGIC */
	uint32_t version;		/* SNAPVM_ABI_VERSION */
	uint32_t flags;			/* reserved, 0 */
	uint64_t scratch_gpa, scratch_size;
	uint64_t heap_gpa, heap_size;	/* heap_size may be 0 */
	uint64_t callbuf_gpa, callbuf_size;
	uint64_t idt_gpa;		/* one page for the guest's IDT */
	uint64_t stack_top;		/* rsp at every entry */
	uint64_t pt_root;		/* cr3 */
	uint64_t free_next;		/* next free scratch page (CoW copies) */
	uint64_t free_end;		/* end of the free scratch pages */
	uint64_t cow_pages;		/* pages copied on write so far */
	uint64_t exports_gva;		/* guest, at boot: its struct snapvm_export table */
	uint64_t exports_count;		/* guest, at boot: entries in it (0 with
					   exports_gva 0: not recorded) */
};

/*
 * ---------------------------------------------------------------------------
 * Calls.  Every entry into the guest starts at the ELF entry point with
 * rsp = boot.stack_top and rdi = boot.callbuf_gpa.  The call buffer begins
 * with struct snapvm_callbuf (one page); the argument bytes follow at
 * in_off, the result goes to out_off.  The host writes op, fn, the in/out
 * offsets and capacities and in_len; the guest writes out_len and status,
 * then writes any value to SNAPVM_PORT_DONE.
 *
 * Host calls: the guest fills hc_len/hc_msg (print, abort) or nothing
 * (time), then writes to the port; the host answers in hc_ret.  A fault the
 * runtime cannot handle is described in fault and reported on
 * SNAPVM_PORT_FAULT.  Every other port is an error that ends the sandbox.
 * ---------------------------------------------------------------------------
 */
#define SNAPVM_PORT_DONE	0x5e0	/* call (or boot) finished */
#define SNAPVM_PORT_PRINT	0x5e1	/* hc_msg[0..hc_len) to the host's log */
#define SNAPVM_PORT_ABORT	0x5e2	/* guest gives up: message in hc_msg */
#define SNAPVM_PORT_TIME	0x5e3	/* hc_ret = host monotonic time, ns */
#define SNAPVM_PORT_FAULT	0x5e4	/* unhandled fault, see fault */

#define SNAPVM_CALLBUF_MAGIC	0x6c6c61636d767073ull	/* "spvmcall" */
#define SNAPVM_OP_BOOT		1	/* set up the runtime; no function */
#define SNAPVM_OP_CALL		2	/* call fn */
#define SNAPVM_MSG_MAX		2048	/* bytes of hc_msg */

/* status values written by the dispatcher itself (functions return >= -4095) */
#define SNAPVM_STATUS_NOFUNC	(-100000)	/* no export called fn */
#define SNAPVM_STATUS_BADOP	(-100001)	/* op not understood */

/* fault.kind */
#define SNAPVM_FAULT_EXCEPTION	1	/* CPU exception with no handler */
#define SNAPVM_FAULT_WRITE_RO	2	/* write to a page that is never writable */
#define SNAPVM_FAULT_SCRATCH	3	/* no scratch page left for a copy on write */

struct snapvm_fault {
	uint64_t kind;			/* SNAPVM_FAULT_* */
	uint64_t vector;		/* exception vector */
	uint64_t error;			/* exception error code (0 if none) */
	uint64_t rip;			/* where it happened */
	uint64_t addr;			/* cr2 for page faults */
};

struct snapvm_callbuf {
	uint64_t magic;			/* SNAPVM_CALLBUF_MAGIC, host */
	uint32_t op;			/* SNAPVM_OP_*, host */
	uint32_t pad;
	char fn[SNAPVM_NAME_MAX];	/* NUL-terminated name, host */
	uint64_t in_off, in_len;	/* host */
	uint64_t out_off, out_cap;	/* host */
	uint64_t out_len;		/* guest */
	int64_t status;			/* guest: 0, or the function's error */
	uint64_t hc_len;		/* guest: bytes in hc_msg */
	int64_t hc_ret;			/* host: answer to a host call */
	struct snapvm_fault fault;	/* guest */
	char hc_msg[SNAPVM_MSG_MAX];	/* guest */
};

#define SNAPVM_CALLBUF_HDR	SNAPVM_PAGE_SIZE	/* header page, then data */
_Static_assert(sizeof(struct snapvm_callbuf) <= SNAPVM_CALLBUF_HDR, "call buffer header fits a page");

#endif
