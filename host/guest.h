/*
 * host/guest.h: what sandboxes are made from.
 *
 * A struct guest is an immutable template: the guest's memory regions (its
 * ELF image split by permission, and the heap), its entry point, the names
 * of its exported functions and, for a guest made from a saved state (a
 * snapshot), the scratch image and vCPU state to resume from.
 * Any number of sandboxes may be made from one guest, from any thread; the
 * guest must outlive them all.
 *
 * Region memory is either:
 *   shared   one read-only mapping used by every sandbox as a
 *            KVM_MEM_READONLY slot; the guest's page tables map writable
 *            regions read-only with SNAPVM_PTE_COW, and the guest copies
 *            pages into its scratch on the first write.  This is how
 *            snapshot region files are used, and (GUEST_SHARED) how an ELF
 *            can be run to test it.
 *   private  (writable regions of a cold boot only) each sandbox gets its
 *            own writable copy; writes go straight to it.
 * Regions that are not writable are always shared.
 */
#ifndef SNAPVM_GUEST_H
#define SNAPVM_GUEST_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "cpustate.h"
#include "err.h"
#include "snapvm_abi.h"

#define GUEST_REGION_NAME_MAX 16
#define GUEST_REGIONS_MAX 16
#define GUEST_HEAP_DEFAULT (64ull << 20)

struct guest_region {
	char name[GUEST_REGION_NAME_MAX];	/* "text", "rodata", "data", "heap"... */
	uint64_t gpa, size;			/* page aligned */
	int prot;				/* PROT_READ | PROT_WRITE | PROT_EXEC, the guest's view */
	int shared;				/* see above */
	const void *mem;			/* size bytes; a PROT_READ mapping when shared */
};

/* Everything needed to make a guest from parts (a snapshot loader uses this). */
struct guest_spec {
	const char *name;			/* for messages: file or snapshot path */
	uint64_t entry;				/* guest address of the entry point */
	const struct guest_region *regions;	/* copied; mem is borrowed */
	size_t nregions;
	const char (*exports)[SNAPVM_NAME_MAX];	/* copied */
	size_t nexports;
	/* saved state to resume from; scratch_image NULL for a cold boot */
	const void *scratch_image;		/* copied */
	size_t scratch_image_len;		/* bytes of the image (<= scratch_size) */
	uint64_t scratch_size;			/* scratch size of the saved sandbox */
	const struct cpustate *cpu;		/* vCPU state, copied; required with scratch_image */
	/* called by guest_close() to release what mem points at (may be NULL) */
	void (*release)(void *ctx);
	void *release_ctx;
};

#define GUEST_SHARED 1	/* guest_open_elf: map every region shared (copy on write) */

struct guest_options {
	uint64_t heap_size;	/* bytes, page multiple; 0 means GUEST_HEAP_DEFAULT */
	int flags;		/* GUEST_SHARED */
};

/* A run of pages of the scratch image that are not all zero (bytes). */
struct guest_run {
	uint64_t off, len;
};

struct guest {
	char *name;
	uint64_t entry;
	struct guest_region regions[GUEST_REGIONS_MAX];
	size_t nregions;
	char (*exports)[SNAPVM_NAME_MAX];
	size_t nexports;
	void *scratch_image;
	size_t scratch_image_len;
	uint64_t scratch_size;
	struct cpustate cpu;
	/*
	 * The image's non-zero pages, in address order: a sandbox copies only
	 * these into its fresh scratch, so the zero pages of the image (most of
	 * the call buffer and stack) are never touched and cost no memory.
	 */
	struct guest_run *image_runs;
	size_t nimage_runs;
	void (*release)(void *ctx);
	void *release_ctx;
	/* memory owned when opened from an ELF */
	void *image_map, *heap_map;
	size_t image_map_size, heap_map_size;
};

/*
 * Load the guest ELF at path (ET_EXEC or ET_DYN; see host/elf.h for what
 * is accepted).  Regions: one per run of pages with one permission, named
 * by it, plus "heap" (opt->heap_size bytes at SNAPVM_HEAP_GPA).  Returns 0
 * or -errno with e naming the file and problem (-ENOEXEC for a file that
 * is not a usable guest).
 */
int guest_open_elf(const char *path, const struct guest_options *opt, struct guest **out,
		   struct err *e);

/*
 * Make a guest from parts.  Checks regions (page aligned, inside the
 * image/heap address ranges, not overlapping, shared unless writable and
 * private) and the scratch image size.  On failure release is not called.
 */
int guest_new(const struct guest_spec *spec, struct guest **out, struct err *e);

/* Release the guest (calls spec->release if any).  NULL is fine. */
void guest_close(struct guest *g);

/* Index of the export called name, or -1. */
long guest_find_export(const struct guest *g, const char *name);

#endif
