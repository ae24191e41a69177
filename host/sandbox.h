/*
 * host/sandbox.h: run guests and call their functions — the snapvm library.
 *
 *	struct guest *g;  struct sandbox *sb;  char out[64];  size_t n;
 *	guest_open_elf("hello.elf", NULL, &g, &e);
 *	sandbox_new(g, NULL, &sb, &e);
 *	sandbox_call(sb, "add", "2 3", 3, out, sizeof(out), &n, &e);   -> "5"
 *	sandbox_free(sb);  guest_close(g);
 *
 * A sandbox is one KVM VM with one vCPU, the guest's regions as memory
 * slots and a private scratch region (see guest/include/snapvm_abi.h for
 * the layout).  Calls run one at a time; memory persists between them.
 *
 * Whatever the guest does wrong — an exception its runtime cannot handle,
 * a write to read-only memory, an unknown I/O port, a triple fault, a bad
 * length, running past the time limit — ends the sandbox: that call fails
 * with a message naming what happened and the guest RIP, later calls fail
 * with -ESHUTDOWN and the same message, and the process is unaffected.
 *
 * Threads: one sandbox is used by one thread at a time; different
 * sandboxes (of one guest or several) may run on different threads.
 */
#ifndef SNAPVM_SANDBOX_H
#define SNAPVM_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "err.h"
#include "guest.h"

#define SANDBOX_SCRATCH_DEFAULT (8ull << 20)
#define SANDBOX_CALLBUF_DEFAULT ((256ull << 10) * 2 + SNAPVM_CALLBUF_HDR)
#define SANDBOX_STACK_DEFAULT (64ull << 10)

struct sandbox_options {
	uint64_t scratch_size;	/* bytes; 0: SANDBOX_SCRATCH_DEFAULT (a resumed guest uses its own) */
	uint64_t callbuf_size;	/* bytes; 0: SANDBOX_CALLBUF_DEFAULT (argument and result get half each) */
	uint64_t timeout_ms;	/* per call (and for boot); 0: no limit */
	/* guest log output (SNAPVM_PORT_PRINT); NULL discards it */
	void (*log)(void *ctx, const char *msg, size_t len);
	void *log_ctx;
};

struct sandbox;

/*
 * Make a sandbox from g and bring it to the point where functions can be
 * called: a cold boot runs the guest's runtime set-up; a guest with saved
 * state resumes from it.  Returns 0 or -errno (-ENODEV-like errors from
 * /dev/kvm, -EPROTO if the guest misbehaves during boot, -ETIMEDOUT).
 */
int sandbox_new(struct guest *g, const struct sandbox_options *opt, struct sandbox **out,
		struct err *e);

/* Tear it down.  NULL is fine. */
void sandbox_free(struct sandbox *sb);

/*
 * Call the guest function fn with in_len bytes at in.  The result is
 * copied to out (at most out_cap bytes) and its full length stored in
 * *out_len.  Returns:
 *   0            success
 *   -ENOENT      no function called fn (sandbox lives on)
 *   -EINVAL      fn is not a valid name; -E2BIG: argument too large
 *   -ENOBUFS     result longer than out_cap (*out_len says how long)
 *   -EREMOTEIO   the function returned an error (sandbox lives on)
 *   -EPROTO      the guest misbehaved: the sandbox has ended
 *   -ETIMEDOUT   the time limit passed: the sandbox has ended
 *   -ESHUTDOWN   the sandbox ended earlier
 *   other        KVM failed (the sandbox has ended)
 */
int sandbox_call(struct sandbox *sb, const char *fn, const void *in, size_t in_len,
		 void *out, size_t out_cap, size_t *out_len, struct err *e);

/*
 * Bring sb back, in place, to the state sandbox_new() gave it: same VM and
 * vCPU, no new memory mappings.  For a guest with saved state: scratch
 * holds the saved image again and every other scratch page is zero (and
 * given back to the kernel), the vCPU has the saved state.  For a cold
 * boot: private regions are copied from the guest again, scratch is built
 * again and the guest's boot runs again.  An ended sandbox is usable again
 * afterwards; the call count starts over.  Options stay as they were.
 * Returns 0 or -errno (the codes of sandbox_new()); on failure the sandbox
 * has ended.
 */
int sandbox_reset(struct sandbox *sb, struct err *e);

/* The guest sb was made from. */
const struct guest *sandbox_guest(const struct sandbox *sb);

/* 1 if the sandbox has ended (then *why, if not NULL, says why). */
int sandbox_ended(const struct sandbox *sb, const char **why);

struct sandbox_stats {
	uint64_t calls;			/* calls completed */
	uint64_t cow_pages;		/* pages the guest copied on write (as it reports) */
	uint64_t scratch_used;		/* bytes of scratch in use (as the guest reports) */
	uint64_t scratch_size;
	uint64_t scratch_resident;	/* bytes of scratch in memory (mincore: pages the
					   host or guest wrote, or read while unwritten) */
};
void sandbox_stats(const struct sandbox *sb, struct sandbox_stats *st);

/*
 * Translate a guest address through the sandbox's page tables: *gpa gets
 * the guest-physical address, *pte_flags the leaf's flag bits.  Returns 0,
 * -ENOENT (not mapped) or -EINVAL (broken tables).
 */
int sandbox_translate(const struct sandbox *sb, uint64_t va, uint64_t *gpa, uint64_t *pte_flags,
		      struct err *e);

/*
 * Read len bytes at guest-physical gpa (any region or scratch) into buf.
 * Returns 0 or -EFAULT if the range is not inside one slot.
 */
int sandbox_read_phys(const struct sandbox *sb, uint64_t gpa, void *buf, size_t len,
		      struct err *e);

/*
 * ---------------------------------------------------------------------------
 * Saving state (the basis of snapshots).  Between calls a sandbox is fully
 * described by: the contents of each region, the used part of scratch, and
 * the vCPU's state — special registers, MSRs, XCRs and the FPU/SSE/AVX
 * registers, which a guest may leave set from one call to the next
 * (general registers are set at every entry, but are kept too).
 *
 * sandbox_save() fills *st:
 *   regions[i].mem   the region's current bytes, borrowed from the sandbox
 *                    (valid until it runs again or is freed).  For a shared
 *                    region these are the shared backing pages unchanged —
 *                    a snapshot can clone the parent's region file — since
 *                    every page the guest wrote is in scratch.
 *   scratch          a malloc'd copy of scratch up to the guest's highest
 *                    used page, with the page tables rewritten so that every
 *                    writable mapping of a private region page becomes
 *                    read-only + SNAPVM_PTE_COW: the image is then right for
 *                    regions that will be read-only files.
 *   cpu              the vCPU state (vm_get_cpu()).
 * A guest made with guest_new() from these parts (regions shared, mem =
 * read-only mappings of what was saved) resumes where this sandbox was.
 * ---------------------------------------------------------------------------
 */
struct sandbox_state {
	struct guest_region regions[GUEST_REGIONS_MAX];	/* shared = 1, mem as above */
	size_t nregions;
	void *scratch;				/* malloc'd, scratch_len bytes */
	size_t scratch_len;
	uint64_t scratch_size;			/* the whole scratch the state needs */
	struct cpustate cpu;			/* the whole vCPU state (vm_get_cpu()) */
	uint64_t entry;
};

/* Returns 0 or -errno (-ESHUTDOWN for an ended sandbox, -EINVAL if the
 * guest's own bookkeeping or page tables are broken). */
int sandbox_save(struct sandbox *sb, struct sandbox_state *st, struct err *e);

/* Free what sandbox_save allocated.  NULL or empty is fine. */
void sandbox_state_release(struct sandbox_state *st);

#endif
