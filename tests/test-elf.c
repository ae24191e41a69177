/*
 * tests/test-elf.c: the guest ELF loader (host/elf.h).
 *
 * Good ET_EXEC and ET_DYN files are built in memory (fuzz/elfgen.h) and
 * loaded; then each malformed case breaks one field of a good file and must
 * be refused with a message that names the file and the problem.  Guests
 * built by the project, where present, must load too.  Allocations that
 * fail make the load fail cleanly.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "failalloc.h"
#include "fuzz/elfgen.h"
#include "host/elf.h"

#define NAME "t.elf"
#define DYN_BASE 0x1000000ull

static const char *const names3[] = { "echo", "add", "counter.get-1" };

static void build(struct eg_elf *g, int type)
{
	eg_build(g, type, names3, 3);
}

static int load(struct eg_elf *g, struct elf_image *img, struct err *e)
{
	return elf_image_load_mem(g->buf, g->len, NAME, DYN_BASE, img, e);
}

/* g must be refused with -ENOEXEC and a message containing want. */
static void expect_bad_code(struct eg_elf *g, int code, const char *want)
{
	struct elf_image img;
	struct err e = { 0 };
	int r = load(g, &img, &e);
	if (r != code || !strstr(e.msg, want))
		fail_msg("want %d \"%s\", got %d \"%s\"", code, want, r, e.msg);
	assert_int_equal(e.code, r);
	assert_memory_equal(e.msg, NAME ": ", strlen(NAME ": "));
	assert_null(img.mem);
	assert_null(img.segs);
	assert_null(img.exports);
	elf_image_free(&img);
}

static void expect_bad(struct eg_elf *g, const char *want)
{
	expect_bad_code(g, -ENOEXEC, want);
}

static uint64_t rd64(const struct elf_image *img, uint64_t addr)
{
	uint64_t v;
	assert_true(addr >= img->lo && addr + 8 <= img->hi);
	memcpy(&v, img->mem + (addr - img->lo), 8);
	return v;
}

static void test_elf_good_exec(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_EXEC);
	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(load(&g, &img, &e), 0);
	assert_int_equal(img.type, ET_EXEC);
	assert_int_equal(img.bias, 0);
	assert_int_equal(img.lo, 0x401000);
	assert_int_equal(img.hi, 0x405000);
	assert_int_equal(img.entry, 0x401000);
	assert_int_equal(img.nsegs, 2);
	assert_int_equal(img.segs[0].vaddr, 0x401000);
	assert_int_equal(img.segs[0].prot, PROT_READ | PROT_EXEC);
	assert_int_equal(img.segs[1].vaddr, 0x402000);
	assert_int_equal(img.segs[1].filesz, 0x1000);
	assert_int_equal(img.segs[1].memsz, 0x3000);
	assert_int_equal(img.segs[1].offset, EG_DATA_OFF);
	assert_int_equal(img.segs[1].prot, PROT_READ | PROT_WRITE);
	assert_int_equal(img.nrelocs, 0);
	/* text copied byte for byte, bss zero */
	assert_memory_equal(img.mem, g.buf + EG_TEXT_OFF, 0x1000);
	assert_memory_equal(img.mem + 0x1000, g.buf + EG_DATA_OFF, 0x1000);
	for (size_t i = 0x2000; i < 0x4000; i++)
		assert_int_equal(img.mem[i], 0);
	assert_int_equal(img.nexports, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(img.exports[i].name, names3[i]);
		assert_int_equal(img.exports[i].fn, 0x401000 + 16 * i);
	}
	assert_ptr_equal(elf_image_export(&img, "add"), &img.exports[1]);
	assert_null(elf_image_export(&img, "nope"));
	assert_ptr_equal(elf_image_segment_at(&img, 0x404fff), &img.segs[1]);
	assert_null(elf_image_segment_at(&img, 0x405000));
	assert_null(elf_image_segment_at(&img, 0x400fff));
	assert_int_equal(rd64(&img, eg_ptr_addr(&g, 2)), eg_func(&g, 2));
	elf_image_free(&img);
	assert_null(img.mem);
	elf_image_free(&img);	/* twice is harmless */
}

static void test_elf_good_dyn_relocated(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_DYN);
	/* in the file every pointer is 0: only the relocations fill them */
	for (size_t k = 0; k < EG_NPTRS; k++)
		assert_int_equal(*(uint64_t *)(g.buf + EG_PTRS_OFF + 8 * k), 0);
	assert_int_equal(eg_export(&g, 0)->fn, 0);

	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(load(&g, &img, &e), 0);
	uint64_t bias = DYN_BASE - 0x1000;
	assert_int_equal(img.type, ET_DYN);
	assert_int_equal(img.bias, bias);
	assert_int_equal(img.lo, DYN_BASE);
	assert_int_equal(img.hi, DYN_BASE + 0x4000);
	assert_int_equal(img.entry, DYN_BASE);
	assert_int_equal(img.segs[0].vaddr, DYN_BASE);
	assert_int_equal(img.segs[1].vaddr, DYN_BASE + 0x1000);
	assert_int_equal(img.nrelocs, 3 + EG_NPTRS);
	for (size_t k = 0; k < EG_NPTRS; k++)
		assert_int_equal(rd64(&img, eg_ptr_addr(&g, k) + bias), eg_func(&g, k) + bias);
	assert_int_equal(img.nexports, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(img.exports[i].fn, eg_func(&g, i) + bias);
	elf_image_free(&img);

	/* another base moves everything with it */
	assert_int_equal(elf_image_load_mem(g.buf, g.len, NAME, 0x7f0000000000ull, &img, &e), 0);
	assert_int_equal(img.lo, 0x7f0000000000ull);
	assert_int_equal(img.exports[2].fn, 0x7f0000000000ull + 0x20);
	elf_image_free(&img);
}

static void test_elf_dyn_bad_base(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_DYN);
	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(elf_image_load_mem(g.buf, g.len, NAME, DYN_BASE + 1, &img, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "load base 0x1000001 is not page aligned"));
	assert_int_equal(elf_image_load_mem(g.buf, g.len, NAME, ELF_ADDR_LIMIT - 0x1000, &img, &e),
			 -EINVAL);
	assert_non_null(strstr(e.msg, "canonical address limit"));
	assert_null(img.mem);
	/* ET_EXEC ignores the base */
	build(&g, ET_EXEC);
	assert_int_equal(elf_image_load_mem(g.buf, g.len, NAME, 12345, &img, &e), 0);
	assert_int_equal(img.lo, 0x401000);
	elf_image_free(&img);
}

static void test_elf_no_sections_no_exports(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_DYN);
	eg_ehdr(&g)->e_shoff = 0;
	eg_ehdr(&g)->e_shnum = 0;
	eg_ehdr(&g)->e_shstrndx = 0;
	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(load(&g, &img, &e), 0);
	assert_int_equal(img.nexports, 0);
	assert_null(img.exports);
	assert_int_equal(img.nrelocs, 3 + EG_NPTRS);
	elf_image_free(&img);

	eg_build(&g, ET_EXEC, NULL, 0);	/* an empty export section */
	assert_int_equal(load(&g, &img, &e), 0);
	assert_int_equal(img.nexports, 0);
	elf_image_free(&img);
}

static void test_elf_from_file(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_DYN);
	char path[] = "/tmp/test-elf-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, g.buf, g.len), (ssize_t)g.len);
	close(fd);
	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(elf_image_load(path, DYN_BASE, &img, &e), 0);
	assert_int_equal(img.nexports, 3);
	assert_int_equal(img.exports[0].fn, DYN_BASE);
	elf_image_free(&img);

	/* a truncated file on disk names the path */
	assert_int_equal(truncate(path, EG_DATA_OFF + 0x800), 0);
	assert_int_equal(elf_image_load(path, DYN_BASE, &img, &e), -ENOEXEC);
	assert_memory_equal(e.msg, path, strlen(path));
	assert_non_null(strstr(e.msg, "segment 1: file bytes 0x2000+0x1000 beyond the end of the file"));
	unlink(path);

	assert_int_equal(elf_image_load(path, DYN_BASE, &img, &e), -ENOENT);
	assert_non_null(strstr(e.msg, "open"));
	assert_int_equal(elf_image_load("/tmp", DYN_BASE, &img, &e), -ENOEXEC);
	assert_non_null(strstr(e.msg, "/tmp: not a regular file"));
	assert_null(img.mem);
}

static void test_elf_bad_ident(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_EXEC);
	g.buf[1] = 'X';
	expect_bad(&g, "not an ELF file (bad magic)");
	build(&g, ET_EXEC);
	g.buf[EI_CLASS] = ELFCLASS32;
	expect_bad(&g, "ELF class 1, want 64-bit");
	build(&g, ET_EXEC);
	g.buf[EI_DATA] = ELFDATA2MSB;
	expect_bad(&g, "data encoding 2, want little endian");
	build(&g, ET_EXEC);
	g.buf[EI_VERSION] = 7;
	expect_bad(&g, "ELF version 7");
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_machine = EM_386;
	expect_bad(&g, "machine 3, want x86-64");
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_machine = EM_AARCH64;
	expect_bad(&g, "machine 183, want x86-64");
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_type = ET_REL;
	expect_bad(&g, "relocatable object (ET_REL)");
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_type = ET_CORE;
	expect_bad(&g, "ELF type 4, want an executable");
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_version = 2;
	expect_bad(&g, "e_version 2");
}

static void test_elf_truncated(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_EXEC);
	g.len = 0;
	expect_bad(&g, "truncated: 0 bytes, shorter than an ELF header");
	g.len = 3;
	expect_bad(&g, "truncated: 3 bytes");
	g.len = 40;
	expect_bad(&g, "truncated: 40 bytes");
	g.len = sizeof(Elf64_Ehdr) + 10;	/* program headers cut */
	expect_bad(&g, "program header");
	g.len = EG_DATA_OFF + 0x10;
	expect_bad(&g, "segment 1: file bytes 0x2000+0x1000 beyond the end of the file (0x2010 bytes)");

	/* every prefix of a good file fails cleanly (the full file has its
	 * section headers last, so only the whole file is accepted) */
	build(&g, ET_DYN);
	size_t full = g.len;
	for (size_t n = 0; n < full; n++) {
		struct elf_image img;
		struct err e = { 0 };
		int r = elf_image_load_mem(g.buf, n, NAME, DYN_BASE, &img, &e);
		if (r != -ENOEXEC)
			fail_msg("prefix of %zu bytes: %d %s", n, r, e.msg);
		assert_memory_equal(e.msg, NAME ": ", strlen(NAME ": "));
		assert_null(img.mem);
	}
}

static void test_elf_segments(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_EXEC);
	eg_phdr(&g, 0)->p_type = PT_NOTE;
	eg_phdr(&g, 1)->p_type = PT_NULL;
	expect_bad(&g, "no PT_LOAD segment");

	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_phnum = 0;
	expect_bad(&g, "no program headers");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_filesz = 0x4000;
	expect_bad(&g, "segment 1: p_filesz 0x4000 > p_memsz 0x3000");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_offset = 0x100000;
	expect_bad(&g, "segment 1: file bytes 0x100000+0x1000 beyond the end of the file");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_offset = UINT64_MAX - 0x10;	/* offset + size wraps */
	expect_bad(&g, "segment 1: file bytes 0xffffffffffffffef+0x1000 beyond the end");

	build(&g, ET_EXEC);
	eg_phdr(&g, 0)->p_memsz = 0;
	eg_phdr(&g, 0)->p_filesz = 0;
	expect_bad(&g, "segment 0: empty");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_vaddr -= 0x800;	/* into the text segment */
	eg_phdr(&g, 1)->p_offset -= 0x800;
	expect_bad(&g, "segments 0 and 1 overlap (0x401000+0x1000 and 0x401800+0x3000)");

	build(&g, ET_EXEC);
	eg_phdr(&g, 0)->p_memsz = 0x800;	/* no byte overlap, but one page */
	eg_phdr(&g, 0)->p_filesz = 0x800;
	eg_phdr(&g, 1)->p_vaddr = 0x401800;
	eg_phdr(&g, 1)->p_offset = 0x1800;
	expect_bad(&g, "segments 0 and 1 share page 0x401000 with different permissions");

	build(&g, ET_EXEC);	/* PT_LOADs out of address order */
	Elf64_Phdr tmp = *eg_phdr(&g, 0);
	*eg_phdr(&g, 0) = *eg_phdr(&g, 1);
	*eg_phdr(&g, 1) = tmp;
	expect_bad(&g, "segment 1: PT_LOAD at 0x401000 comes after one at 0x402000 (want ascending p_vaddr)");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_align = 0x3000;
	expect_bad(&g, "segment 1: p_align 0x3000 is not a power of two");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_vaddr += 0x10;
	expect_bad(&g, "segment 1: p_vaddr 0x402010 and p_offset 0x2000 differ modulo p_align 0x1000");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_memsz = 0x40000000;	/* 1 GiB of bss: span too large */
	expect_bad(&g, "segments span 0x40001000 bytes (0x401000..0x40402000), more than the limit 0x40000000");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_vaddr = ELF_ADDR_LIMIT - 0x1000;
	eg_phdr(&g, 1)->p_offset = EG_DATA_OFF;
	expect_bad(&g, "segment 1: 0x7ffffffff000+0x3000 extends beyond the canonical address limit");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_vaddr = UINT64_MAX & ~0xfffull;
	expect_bad(&g, "canonical address limit");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_type = PT_INTERP;
	expect_bad(&g, "asks for an interpreter (PT_INTERP)");

	build(&g, ET_EXEC);
	eg_phdr(&g, 1)->p_type = PT_TLS;
	expect_bad(&g, "thread-local storage (PT_TLS)");

	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_phoff = EG_SIZE - 8;	/* table outside the file */
	expect_bad(&g, "program header");
}

static void test_elf_entry(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_entry = 0x402000;	/* data: not executable */
	expect_bad(&g, "entry point 0x402000 is not inside an executable segment");
	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_entry = 0x402000 - 1;	/* last byte of text is fine */
	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(load(&g, &img, &e), 0);
	assert_int_equal(img.entry, 0x401fff);
	elf_image_free(&img);
	build(&g, ET_DYN);
	eg_ehdr(&g)->e_entry = 0;		/* below the lowest segment */
	expect_bad(&g, "entry point 0x0 is not inside an executable segment");
}

static void test_elf_relocations(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_DYN);
	eg_rela(&g, 2)->r_info = ELF64_R_INFO(1, R_X86_64_64);
	expect_bad(&g, "DT_RELA: relocation 2 at offset 0x20b0: unsupported type 1 (only R_X86_64_RELATIVE)");

	build(&g, ET_DYN);
	eg_rela(&g, 0)->r_info = ELF64_R_INFO(0, R_X86_64_IRELATIVE);
	expect_bad(&g, "unsupported type 37");

	build(&g, ET_DYN);	/* R_X86_64_NONE is skipped */
	eg_rela(&g, 3 + EG_NPTRS - 1)->r_info = ELF64_R_INFO(0, R_X86_64_NONE);
	struct elf_image img;
	struct err e = { 0 };
	assert_int_equal(load(&g, &img, &e), 0);
	assert_int_equal(img.nrelocs, 3 + EG_NPTRS - 1);
	elf_image_free(&img);

	build(&g, ET_DYN);
	eg_rela(&g, 1)->r_offset = 0x4ffc;	/* 8 bytes cross the end of the image */
	expect_bad(&g, "DT_RELA: relocation 1: offset 0x4ffc: 8 bytes not inside a segment");
	build(&g, ET_DYN);
	eg_rela(&g, 1)->r_offset = 0x10;	/* below the image */
	expect_bad(&g, "relocation 1: offset 0x10: 8 bytes not inside a segment");
	build(&g, ET_DYN);
	eg_rela(&g, 1)->r_offset = UINT64_MAX - 3;
	expect_bad(&g, "8 bytes not inside a segment");

	build(&g, ET_DYN);
	eg_dyn(&g, 0)->d_un.d_ptr = 0x4f80;	/* table runs off the image */
	expect_bad(&g, "DT_RELA: table 0x4f80+0xa8 lies outside the image");
	build(&g, ET_DYN);
	eg_dyn(&g, 1)->d_un.d_val = 25;
	expect_bad(&g, "DT_RELA: size 0x19 is not a multiple of 24");
	build(&g, ET_DYN);
	eg_dyn(&g, 2)->d_un.d_val = 16;
	expect_bad(&g, "DT_RELAENT 16, want 24");
	build(&g, ET_DYN);
	eg_dyn(&g, 2)->d_tag = DT_NEEDED;
	expect_bad(&g, "needs a shared library (DT_NEEDED)");
	build(&g, ET_DYN);
	eg_dyn(&g, 2)->d_tag = DT_REL;
	expect_bad(&g, "DT_REL relocations are not supported");
	build(&g, ET_DYN);
	eg_dyn(&g, 2)->d_tag = 36;	/* DT_RELR */
	expect_bad(&g, "DT_RELR (packed) relocations are not supported");
	build(&g, ET_DYN);
	eg_dyn(&g, 0)->d_tag = DT_DEBUG;	/* size without a table */
	expect_bad(&g, "DT_RELASZ without DT_RELA");
	build(&g, ET_DYN);
	eg_phdr(&g, 2)->p_offset = 0x100000;
	expect_bad(&g, "PT_DYNAMIC: file bytes 0x100000+0x40 beyond the end of the file");

	/* PLT relocations go through the same checks */
	build(&g, ET_DYN);
	eg_dyn(&g, 0)->d_tag = DT_JMPREL;
	eg_dyn(&g, 1)->d_tag = DT_PLTRELSZ;
	eg_dyn(&g, 3)->d_tag = DT_PLTREL;
	eg_dyn(&g, 3)->d_un.d_val = DT_RELA;
	eg_rela(&g, 0)->r_info = ELF64_R_INFO(1, R_X86_64_JUMP_SLOT);
	expect_bad(&g, "DT_JMPREL: relocation 0 at offset 0x2030: unsupported type 7");

	/* without relocations a PIE's export fn stays 0: not in code */
	build(&g, ET_DYN);
	eg_dyn(&g, 1)->d_un.d_val = 0;
	expect_bad(&g, "export \"echo\": fn 0x0 is not inside an executable segment");

	/* Nothing that depends on the load address but what relocations
	 * set: a PIE's fn stored as an address, right at this base only... */
	build(&g, ET_DYN);
	eg_rela(&g, 0)->r_info = ELF64_R_INFO(0, R_X86_64_NONE);
	eg_export(&g, 0)->fn = eg_func(&g, 0) + DYN_BASE - 0x1000;
	expect_bad(&g, "has no R_X86_64_RELATIVE relocation, which a position-independent file needs");
	/* ... a relocation changing a later one, or an export's name */
	build(&g, ET_DYN);
	eg_rela(&g, 1)->r_offset = EG_RELA_OFF + 3 * sizeof(Elf64_Rela) + 16;
	expect_bad(&g, "DT_RELA: relocation 1: offset 0x2858: writes into a relocation table");
	build(&g, ET_DYN);
	eg_rela(&g, 1)->r_offset = EG_EXPORTS_OFF + 64 + 8;
	expect_bad(&g, "DT_RELA: relocation 1: offset 0x2048: writes into an export's name or flags");
	build(&g, ET_DYN);
	eg_rela(&g, 1)->r_offset = EG_EXPORTS_OFF + 64 + 48 + 4;	/* half of fn, half of flags */
	expect_bad(&g, "offset 0x2074: writes into an export's name or flags");
}

static void test_elf_exports(void **state)
{
	(void)state;
	struct eg_elf g;
	build(&g, ET_EXEC);
	memset(eg_export(&g, 1)->name, 'a', SNAPVM_NAME_MAX);
	expect_bad(&g, ".snapvm_exports: export 1: name not NUL-terminated within 48 bytes");

	build(&g, ET_EXEC);
	eg_export(&g, 2)->name[0] = 0;
	expect_bad(&g, "export 2: empty name");

	static const char *const badchars[] = { "a b", "x/y", "t\n", "\xc3\xa9t\xc3\xa9", "a\x7f" };
	static const unsigned badbyte[] = { 0x20, 0x2f, 0x0a, 0xc3, 0x7f };
	static const unsigned badpos[] = { 1, 1, 1, 0, 1 };
	for (size_t i = 0; i < 5; i++) {
		const char *names[] = { "ok", badchars[i] };
		eg_build(&g, ET_EXEC, names, 2);
		char want[128];
		snprintf(want, sizeof(want), "export 1: name has byte 0x%02x at %u, outside [A-Za-z0-9_.-]",
			 badbyte[i], badpos[i]);
		expect_bad(&g, want);
	}

	static const char *const dup[] = { "a", "b", "c", "b" };
	eg_build(&g, ET_DYN, dup, 4);
	expect_bad(&g, ".snapvm_exports: export \"b\" appears twice (entries 1 and 3)");

	build(&g, ET_EXEC);
	eg_export(&g, 0)->flags = 4;
	expect_bad(&g, "export \"echo\": flags 0x4, want 0");

	build(&g, ET_EXEC);
	eg_export(&g, 1)->fn = 0x402000;
	expect_bad(&g, "export \"add\": fn 0x402000 is not inside an executable segment");

	build(&g, ET_EXEC);
	eg_shdr(&g, 3)->sh_size = 100;
	expect_bad(&g, "section .snapvm_exports: size 0x64 is not a multiple of 64");

	build(&g, ET_EXEC);
	eg_shdr(&g, 3)->sh_addr = 0x404fc0;	/* 3 entries run past the image */
	expect_bad(&g, "section .snapvm_exports: 0x404fc0+0xc0 is not inside one segment");

	build(&g, ET_EXEC);
	eg_shdr(&g, 3)->sh_flags = 0;
	expect_bad(&g, "section .snapvm_exports is not allocated");

	build(&g, ET_EXEC);
	eg_shdr(&g, 3)->sh_type = SHT_NOBITS;
	expect_bad(&g, "section .snapvm_exports: type 8, want SHT_PROGBITS");

	build(&g, ET_EXEC);
	eg_shdr(&g, 2)->sh_name = eg_shdr(&g, 3)->sh_name;
	expect_bad(&g, "more than one .snapvm_exports section");

	build(&g, ET_EXEC);
	eg_ehdr(&g)->e_shstrndx = 40;
	expect_bad(&g, "section");
}

/* Flip bytes of good files at random (fixed seed): never a crash. */
static void test_elf_random_damage(void **state)
{
	(void)state;
	unsigned seed = 12345, ok = 0, bad = 0;
	for (int round = 0; round < 4000; round++) {
		struct eg_elf g;
		build(&g, round & 1 ? ET_DYN : ET_EXEC);
		int flips = 1 + rand_r(&seed) % 4;
		for (int f = 0; f < flips; f++) {
			/* mostly the headers, where damage matters */
			size_t at = (size_t)rand_r(&seed) % (rand_r(&seed) % 3 ? 0x100 : g.len);
			if (rand_r(&seed) % 4 == 0 && at >= 0x3000)
				at = EG_RELA_OFF + rand_r(&seed) % 0x100;
			g.buf[at] = (uint8_t)rand_r(&seed);
		}
		struct elf_image img;
		struct err e = { 0 };
		int r = load(&g, &img, &e);
		if (r == 0) {
			ok++;
			assert_true(img.hi > img.lo && img.hi - img.lo <= ELF_SPAN_MAX);
			assert_non_null(elf_image_segment_at(&img, img.entry));
			for (size_t i = 0; i < img.nexports; i++)
				assert_true(elf_image_segment_at(&img, img.exports[i].fn)->prot & PROT_EXEC);
		} else {
			bad++;
			assert_memory_equal(e.msg, NAME ": ", strlen(NAME ": "));
			assert_null(img.mem);
		}
		elf_image_free(&img);
	}
	assert_true(ok > 0 && bad > 0);
}

/* Guests built by this project, if the build has them, load and export. */
static void test_elf_project_guests(void **state)
{
	(void)state;
	const char *root = getenv("SNAPFS_BUILD_ROOT");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/guest", root ? root : ".");
	DIR *d = opendir(dir);
	if (!d)
		skip();
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 4, ".elf") != 0)
			continue;
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct elf_image img;
		struct err e = { 0 };
		int r = elf_image_load(path, DYN_BASE, &img, &e);
		if (r != 0)
			fail_msg("%s", e.msg);
		assert_true(img.nexports > 0);
		elf_image_free(&img);
		n++;
	}
	closedir(d);
	if (n == 0)
		skip();
}

/*
 * Each allocation of loading a good file (ET_EXEC, and ET_DYN with its
 * relocations) fails in turn, alone and with every one after it
 * (failalloc.h): the load fails with ENOMEM naming the file and leaves
 * the image empty, and nothing leaks (under the address sanitizer).
 */
static void test_elf_allocations_fail(void **state)
{
	(void)state;
	static const int types[] = { ET_EXEC, ET_DYN };
	for (size_t t = 0; t < 2; t++) {
		struct eg_elf g;
		build(&g, types[t]);
		struct elf_image img;
		struct err e = { 0 };
		failalloc_arm(0, false);
		assert_int_equal(load(&g, &img, &e), 0);
		uint64_t total = failalloc_disarm();
		elf_image_free(&img);
		assert_true(total >= 3);	/* image, segments, exports at least */
		printf("# type %d: %lu allocations, each failed alone and with all after it\n",
		       types[t], (unsigned long)total);
		for (int on = 0; on < 2; on++)
			for (uint64_t n = 1; n <= total; n++) {
				memset(&e, 0, sizeof(e));
				failalloc_arm(n, on);
				int r = load(&g, &img, &e);
				failalloc_disarm();
				assert_true(failalloc_failed() >= 1);
				if (r != -ENOMEM || strncmp(e.msg, NAME ": ", strlen(NAME ": ")))
					fail_msg("type %d, allocation %lu%s failing: %d \"%s\"",
						 types[t], (unsigned long)n, on ? " and on" : "", r,
						 e.msg);
				assert_null(img.mem);
				assert_null(img.segs);
				assert_null(img.exports);
				elf_image_free(&img);
			}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elf_good_exec),
		cmocka_unit_test(test_elf_good_dyn_relocated),
		cmocka_unit_test(test_elf_dyn_bad_base),
		cmocka_unit_test(test_elf_no_sections_no_exports),
		cmocka_unit_test(test_elf_from_file),
		cmocka_unit_test(test_elf_bad_ident),
		cmocka_unit_test(test_elf_truncated),
		cmocka_unit_test(test_elf_segments),
		cmocka_unit_test(test_elf_entry),
		cmocka_unit_test(test_elf_relocations),
		cmocka_unit_test(test_elf_exports),
		cmocka_unit_test(test_elf_random_damage),
		cmocka_unit_test(test_elf_project_guests),
		cmocka_unit_test(test_elf_allocations_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
