/*
 * host/elf.h: load a guest ELF file into a flat memory image.
 *
 * A guest is a freestanding x86-64 ELF64, either a fixed-address executable
 * (ET_EXEC) or a position-independent one (ET_DYN, "static PIE").  Loading
 * copies every PT_LOAD segment into one buffer that spans all of them,
 * zeroes the rest (.bss and the gaps between segments), applies the
 * R_X86_64_RELATIVE relocations of a PIE, and reads the table of exported
 * functions (section SNAPVM_EXPORT_SECTION, see guest/include/snapvm_abi.h)
 * from the relocated image.
 *
 * The input is untrusted: every field is checked and a malformed file is
 * refused with a message that names the file and the problem, for example
 * "hello.elf: segment 2: p_filesz 0x2000 > p_memsz 0x1000".  What is
 * accepted:
 *   - ELFCLASS64, little endian, EV_CURRENT, EM_X86_64, ET_EXEC or ET_DYN;
 *   - 1..ELF_SEGMENTS_MAX PT_LOAD segments in ascending p_vaddr order (as
 *     the ELF specification requires) with p_filesz <= p_memsz, file
 *     bytes inside the file, p_align 0, 1 or a power of two with
 *     p_vaddr % p_align == p_offset % p_align, no two segments overlapping
 *     and no page shared by segments of different permissions;
 *   - a span (lowest to highest segment page) of at most ELF_SPAN_MAX bytes,
 *     ending below the canonical address limit ELF_ADDR_LIMIT after bias;
 *   - the entry point inside an executable segment;
 *   - dynamic relocations (DT_RELA) of type R_X86_64_RELATIVE or
 *     R_X86_64_NONE whose 8 bytes lie inside the image, and not in a
 *     relocation table or an export's name or flags (what they write
 *     depends on the load address); DT_REL, DT_RELR, DT_NEEDED and every
 *     other relocation type are refused;
 *   - an export section (optional) of whole 64-byte entries whose names are
 *     NUL-terminated, non-empty, [A-Za-z0-9_.-], unique, whose flags are 0
 *     and whose fn lies inside an executable segment and, in a PIE, is set
 *     by a relocation.
 * So a PIE accepted at one load address is accepted at any other, the
 * same image moved by the difference.
 *
 * Nothing here needs /dev/kvm, and the functions keep no global state
 * beyond libelf's version handshake, so they may run on several threads.
 */
#ifndef SNAPVM_ELF_H
#define SNAPVM_ELF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "snapvm_abi.h"

#define ELF_PAGE_SIZE 4096ull
#define ELF_SPAN_MAX (1ull << 30)		/* 1 GiB of guest image at most */
#define ELF_ADDR_LIMIT (1ull << 47)		/* lowest non-canonical address */
#define ELF_SEGMENTS_MAX 64			/* PT_LOAD entries */
#define ELF_EXPORTS_MAX 4096			/* entries in the export section */
#define ELF_RELOCS_MAX (1u << 24)		/* dynamic relocation entries */

struct elf_segment {
	uint64_t vaddr, memsz, filesz, offset;	/* vaddr after bias; offset in the file */
	int prot;				/* PROT_READ | PROT_WRITE | PROT_EXEC */
};

struct elf_export {
	char name[SNAPVM_NAME_MAX];		/* NUL-terminated, [A-Za-z0-9_.-]+ */
	uint64_t fn;				/* guest virtual address, after bias */
};

struct elf_image {
	int type;				/* ET_EXEC or ET_DYN */
	uint64_t bias;				/* added to every file vaddr: 0 for ET_EXEC */
	uint64_t lo, hi;			/* page-aligned span of all PT_LOAD segments, after bias */
	uint8_t *mem;				/* hi - lo bytes: segments copied, bss zeroed, relocated;
						 * page aligned, released only by elf_image_free */
	uint64_t entry;				/* after bias */
	struct elf_segment *segs;		/* PT_LOAD segments, ascending vaddr, after bias */
	size_t nsegs;
	struct elf_export *exports;		/* in section order, fn after bias */
	size_t nexports;
	size_t nrelocs;				/* R_X86_64_RELATIVE relocations applied */
};

/*
 * Load the ELF file at path.  load_base: for ET_DYN the lowest PT_LOAD page
 * is placed there (must be page aligned); ignored for ET_EXEC.  On success
 * fills *img (the caller frees it with elf_image_free) and returns 0; on
 * failure returns -errno (-ENOEXEC for a malformed or unsupported file,
 * -ENOMEM, or the error of open/read), sets e, and leaves *img empty (safe
 * to pass to elf_image_free).
 */
int elf_image_load(const char *path, uint64_t load_base, struct elf_image *img, struct err *e);

/*
 * Same from len bytes at buf; name is used in error messages only.  The
 * buffer is not modified and not referenced after the call returns.
 */
int elf_image_load_mem(const void *buf, size_t len, const char *name, uint64_t load_base,
		       struct elf_image *img, struct err *e);

/* Release what a load allocated and empty *img.  NULL or empty is fine. */
void elf_image_free(struct elf_image *img);

/*
 * The export called name, or NULL.  Linear search: tables are small.
 */
const struct elf_export *elf_image_export(const struct elf_image *img, const char *name);

/*
 * The PT_LOAD segment that contains guest virtual address addr (after bias),
 * or NULL if none does.
 */
const struct elf_segment *elf_image_segment_at(const struct elf_image *img, uint64_t addr);

#endif
