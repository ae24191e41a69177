/*
 * tests/fuzz/elfgen.h: build small, valid guest ELF files in memory.
 *
 * The ELF loader tests start from a well-formed file and break one field at
 * a time; the fuzz seed corpus is made from the same files.  The layout is
 * fixed so that tests can find every structure by its offset:
 *
 *   file 0x0000  ELF header, then the program headers
 *                  0: PT_LOAD  text  R X  vaddr V+0x1000, 0x1000 bytes
 *                  1: PT_LOAD  data  R W  vaddr V+0x2000, file 0x1000, mem 0x3000
 *                  2: PT_DYNAMIC          vaddr V+0x2c00 (only with relocations)
 *   file 0x1000  text: EG_NFUNCS functions of 16 bytes ("mov eax, k; ret"),
 *                the entry point is function 0
 *   file 0x2000  data: the export table (64-byte entries)
 *   file 0x2400  data: a table of EG_NPTRS pointers to the functions
 *   file 0x2800  data: the Elf64_Rela table
 *   file 0x2c00  data: the dynamic section
 *   file 0x3000  section name strings, then the section headers
 *                  (null, .text, .data, .snapvm_exports, .shstrtab)
 *
 * V is 0x400000 for ET_EXEC and 0 for ET_DYN.  An ET_DYN file stores 0 in
 * every pointer and export fn field and has one R_X86_64_RELATIVE relocation
 * for each; an ET_EXEC file stores the final addresses and has no dynamic
 * section.
 */
#ifndef SNAPFS_TESTS_ELFGEN_H
#define SNAPFS_TESTS_ELFGEN_H

#include <elf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapvm_abi.h"

#define EG_EXEC_BASE 0x400000ull
#define EG_TEXT_OFF 0x1000u
#define EG_DATA_OFF 0x2000u
#define EG_EXPORTS_OFF 0x2000u
#define EG_PTRS_OFF 0x2400u
#define EG_RELA_OFF 0x2800u
#define EG_DYN_OFF 0x2c00u
#define EG_SHSTR_OFF 0x3000u
#define EG_SHDR_OFF 0x3100u
#define EG_NSHDR 5
#define EG_SIZE (EG_SHDR_OFF + EG_NSHDR * sizeof(Elf64_Shdr))
#define EG_NFUNCS 8
#define EG_NPTRS 4
#define EG_MAX_EXPORTS 16	/* 16 * 64 bytes fit before the pointer table */

struct eg_elf {
	uint8_t buf[EG_SIZE];
	size_t len;		/* bytes of buf that make the file */
	uint64_t base;		/* V */
	size_t nexports;
	size_t nrela;
};

static inline Elf64_Ehdr *eg_ehdr(struct eg_elf *g)
{
	return (Elf64_Ehdr *)g->buf;
}

static inline Elf64_Phdr *eg_phdr(struct eg_elf *g, size_t i)
{
	return (Elf64_Phdr *)(g->buf + sizeof(Elf64_Ehdr)) + i;
}

static inline Elf64_Shdr *eg_shdr(struct eg_elf *g, size_t i)
{
	return (Elf64_Shdr *)(g->buf + EG_SHDR_OFF) + i;
}

static inline Elf64_Rela *eg_rela(struct eg_elf *g, size_t i)
{
	return (Elf64_Rela *)(g->buf + EG_RELA_OFF) + i;
}

static inline Elf64_Dyn *eg_dyn(struct eg_elf *g, size_t i)
{
	return (Elf64_Dyn *)(g->buf + EG_DYN_OFF) + i;
}

static inline struct snapvm_export *eg_export(struct eg_elf *g, size_t i)
{
	return (struct snapvm_export *)(g->buf + EG_EXPORTS_OFF) + i;
}

/* Address (file vaddr) of function k and of pointer slot k. */
static inline uint64_t eg_func(const struct eg_elf *g, size_t k)
{
	return g->base + EG_TEXT_OFF + 16 * k;
}

static inline uint64_t eg_ptr_addr(const struct eg_elf *g, size_t k)
{
	return g->base + EG_PTRS_OFF + 8 * k;
}

static inline void eg_add_rela(struct eg_elf *g, uint64_t where, uint64_t addend)
{
	Elf64_Rela *r = eg_rela(g, g->nrela++);
	r->r_offset = where;
	r->r_info = ELF64_R_INFO(0, R_X86_64_RELATIVE);
	r->r_addend = (int64_t)addend;
}

/*
 * Fill g with a valid file of type ET_EXEC or ET_DYN exporting the
 * nexports (<= EG_MAX_EXPORTS) names, export i pointing at function
 * i % EG_NFUNCS.
 */
static inline void eg_build(struct eg_elf *g, int type, const char *const *names, size_t nexports)
{
	memset(g, 0, sizeof(*g));
	g->len = EG_SIZE;
	g->base = type == ET_EXEC ? EG_EXEC_BASE : 0;
	g->nexports = nexports;
	int dyn = type == ET_DYN;

	Elf64_Ehdr *eh = eg_ehdr(g);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = (uint16_t)type;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = eg_func(g, 0);
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_shoff = EG_SHDR_OFF;
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = dyn ? 3 : 2;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = EG_NSHDR;
	eh->e_shstrndx = EG_NSHDR - 1;

	*eg_phdr(g, 0) = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_offset = EG_TEXT_OFF,
		.p_vaddr = g->base + EG_TEXT_OFF, .p_paddr = g->base + EG_TEXT_OFF,
		.p_filesz = 0x1000, .p_memsz = 0x1000, .p_align = 0x1000,
	};
	*eg_phdr(g, 1) = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_flags = PF_R | PF_W, .p_offset = EG_DATA_OFF,
		.p_vaddr = g->base + EG_DATA_OFF, .p_paddr = g->base + EG_DATA_OFF,
		.p_filesz = 0x1000, .p_memsz = 0x3000, .p_align = 0x1000,
	};

	for (size_t k = 0; k < EG_NFUNCS; k++) {
		uint8_t *f = g->buf + EG_TEXT_OFF + 16 * k;
		f[0] = 0xb8;		/* mov eax, imm32 */
		f[1] = (uint8_t)k;
		f[5] = 0xc3;		/* ret */
	}
	for (size_t i = 0; i < nexports; i++) {
		struct snapvm_export *ex = eg_export(g, i);
		size_t n = strlen(names[i]);
		memcpy(ex->name, names[i], n < sizeof(ex->name) ? n : sizeof(ex->name));
		uint64_t fn = eg_func(g, i % EG_NFUNCS);
		if (dyn)
			eg_add_rela(g, g->base + EG_EXPORTS_OFF + 64 * i + 48, fn);
		else
			ex->fn = fn;
	}
	for (size_t k = 0; k < EG_NPTRS; k++) {
		uint64_t fn = eg_func(g, k);
		if (dyn)
			eg_add_rela(g, eg_ptr_addr(g, k), fn);
		else
			memcpy(g->buf + EG_PTRS_OFF + 8 * k, &fn, 8);
	}
	if (dyn) {
		Elf64_Dyn d[] = {
			{ .d_tag = DT_RELA, .d_un.d_ptr = g->base + EG_RELA_OFF },
			{ .d_tag = DT_RELASZ, .d_un.d_val = g->nrela * sizeof(Elf64_Rela) },
			{ .d_tag = DT_RELAENT, .d_un.d_val = sizeof(Elf64_Rela) },
			{ .d_tag = DT_NULL },
		};
		memcpy(eg_dyn(g, 0), d, sizeof(d));
		*eg_phdr(g, 2) = (Elf64_Phdr){
			.p_type = PT_DYNAMIC, .p_flags = PF_R | PF_W, .p_offset = EG_DYN_OFF,
			.p_vaddr = g->base + EG_DYN_OFF, .p_paddr = g->base + EG_DYN_OFF,
			.p_filesz = sizeof(d), .p_memsz = sizeof(d), .p_align = 8,
		};
	}

	static const char shstr[] = "\0.text\0.data\0" SNAPVM_EXPORT_SECTION "\0.shstrtab";
	memcpy(g->buf + EG_SHSTR_OFF, shstr, sizeof(shstr));
	*eg_shdr(g, 1) = (Elf64_Shdr){
		.sh_name = 1, .sh_type = SHT_PROGBITS, .sh_flags = SHF_ALLOC | SHF_EXECINSTR,
		.sh_addr = g->base + EG_TEXT_OFF, .sh_offset = EG_TEXT_OFF, .sh_size = 0x1000,
		.sh_addralign = 16,
	};
	*eg_shdr(g, 2) = (Elf64_Shdr){
		.sh_name = 7, .sh_type = SHT_PROGBITS, .sh_flags = SHF_ALLOC | SHF_WRITE,
		.sh_addr = g->base + EG_DATA_OFF, .sh_offset = EG_DATA_OFF, .sh_size = 0x1000,
		.sh_addralign = 8,
	};
	*eg_shdr(g, 3) = (Elf64_Shdr){
		.sh_name = 13, .sh_type = SHT_PROGBITS, .sh_flags = SHF_ALLOC | SHF_WRITE,
		.sh_addr = g->base + EG_EXPORTS_OFF, .sh_offset = EG_EXPORTS_OFF,
		.sh_size = 64 * nexports, .sh_addralign = 8,
	};
	*eg_shdr(g, 4) = (Elf64_Shdr){
		.sh_name = (uint32_t)(13 + sizeof(SNAPVM_EXPORT_SECTION)), .sh_type = SHT_STRTAB,
		.sh_offset = EG_SHSTR_OFF, .sh_size = sizeof(shstr), .sh_addralign = 1,
	};
}

#endif
