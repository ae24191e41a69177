/*
 * host/pagetable.h: x86-64 four-level page tables inside guest scratch
 * memory, built and inspected by the host.
 *
 * The host builds the guest's initial page tables (4 KiB leaves only) in a
 * buffer that is the host's view of the scratch region, and later walks
 * tables that the guest may have changed (to take a snapshot).  Walking
 * treats the tables as untrusted: every table address must be a page inside
 * the buffer, no table page may be reached twice, and large pages are
 * refused, so a hostile table can neither make the host read outside the
 * buffer nor make a walk take more than (pages in buffer x 512) steps.
 *
 * Nothing here touches KVM; tests run it on plain memory.  Not thread safe
 * per struct pt.
 */
#ifndef SNAPVM_PAGETABLE_H
#define SNAPVM_PAGETABLE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "snapvm_abi.h"

struct pt {
	uint8_t *mem;		/* host view of the memory holding the tables */
	uint64_t base;		/* guest-physical address of mem[0] */
	uint64_t size;		/* bytes at mem, a multiple of 4 KiB */
	uint64_t root;		/* guest-physical address of the top table (cr3) */
	uint64_t next, end;	/* pages [next, end) are free for new tables (builder) */
};

/*
 * Start building: tables will be allocated from guest-physical
 * [alloc, alloc_end), which must lie inside [base, base + size); the top
 * table is allocated at once.  Pages handed out are zeroed.  Returns 0 or
 * -EINVAL (bad arguments) / -ENOSPC.
 */
int pt_init(struct pt *pt, void *mem, uint64_t base, uint64_t size,
	    uint64_t alloc, uint64_t alloc_end, struct err *e);

/*
 * Look at existing tables rooted at root (no allocation possible).  Returns
 * 0 or -EINVAL if root is not a page inside the buffer.
 */
int pt_attach(struct pt *pt, void *mem, uint64_t base, uint64_t size, uint64_t root,
	      struct err *e);

/*
 * Map [va, va + len) to [pa, pa + len) with 4 KiB pages.  flags are the
 * leaf bits (SNAPVM_PTE_P is added; RW, NX, COW, A, D as wanted).  Every
 * address and len must be page aligned and va canonical below 2^47; a page
 * already mapped is refused (-EEXIST).  Returns 0 or -EINVAL / -ENOSPC /
 * -EEXIST.
 */
int pt_map(struct pt *pt, uint64_t va, uint64_t pa, uint64_t len, uint64_t flags,
	   struct err *e);

/*
 * Translate va: fills *pa (with the page offset) and *flags (the leaf
 * entry's bits outside the address).  Returns 0, -ENOENT if va is not
 * mapped, or -EINVAL if the walk meets a table outside the buffer or a
 * large page.
 */
int pt_translate(const struct pt *pt, uint64_t va, uint64_t *pa, uint64_t *flags,
		 struct err *e);

/*
 * Call fn for every present leaf entry, in address order, with its virtual
 * address and a pointer to the entry (which fn may change).  A nonzero
 * return from fn stops the walk and is returned.  Validates the tables as
 * described above: -EINVAL with a message on any violation.
 */
typedef int (*pt_leaf_fn)(void *ctx, uint64_t va, uint64_t *pte);
int pt_walk(const struct pt *pt, pt_leaf_fn fn, void *ctx, struct err *e);

/*
 * Make every writable leaf that maps a page of guest-physical [lo, hi)
 * read-only and copy-on-write (clear RW, set SNAPVM_PTE_COW).  This turns
 * the tables of a sandbox whose regions were private writable memory into
 * tables for a sandbox whose regions are read-only snapshot files.  Returns
 * the number of entries changed (>= 0) or -EINVAL.
 */
long pt_make_cow(const struct pt *pt, uint64_t lo, uint64_t hi, struct err *e);

#endif
