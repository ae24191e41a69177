/*
 * tests/fuzz/fuzz-elf.c: fuzz the guest ELF loader (host/elf.h).
 *
 * Any input either loads or fails with a message naming the file and an
 * empty image.  A loaded image must keep every promise of elf.h: a sane
 * page-aligned span, segments and entry inside it, exports that are valid
 * names pointing into executable segments; and a PIE loaded at another base
 * must give the same image moved by the difference.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "fuzz.h"
#include "host/elf.h"

#define BASE1 0x1000000ull
#define BASE2 0x7f0000000000ull

static void check_image(const struct elf_image *img)
{
	FUZZ_CHECK(img->lo < img->hi);
	FUZZ_CHECK(img->hi - img->lo <= ELF_SPAN_MAX);
	FUZZ_CHECK(img->hi <= ELF_ADDR_LIMIT);
	FUZZ_CHECK(img->lo % ELF_PAGE_SIZE == 0 && img->hi % ELF_PAGE_SIZE == 0);
	FUZZ_CHECK(img->mem && (uintptr_t)img->mem % ELF_PAGE_SIZE == 0);
	FUZZ_CHECK(img->nsegs >= 1 && img->nsegs <= ELF_SEGMENTS_MAX);
	for (size_t i = 0; i < img->nsegs; i++) {
		const struct elf_segment *s = &img->segs[i];
		FUZZ_CHECK(s->filesz <= s->memsz && s->memsz > 0);
		FUZZ_CHECK(s->vaddr >= img->lo && s->vaddr + s->memsz <= img->hi);
		FUZZ_CHECK(i == 0 || s->vaddr >= s[-1].vaddr + s[-1].memsz);	/* ordered, apart */
	}
	const struct elf_segment *es = elf_image_segment_at(img, img->entry);
	FUZZ_CHECK(es && (es->prot & PROT_EXEC));
	FUZZ_CHECK(img->nexports <= ELF_EXPORTS_MAX);
	for (size_t i = 0; i < img->nexports; i++) {
		const struct elf_export *x = &img->exports[i];
		size_t n = strnlen(x->name, sizeof(x->name));
		FUZZ_CHECK(n > 0 && n < sizeof(x->name));
		FUZZ_CHECK(strspn(x->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n);
		const struct elf_segment *s = elf_image_segment_at(img, x->fn);
		FUZZ_CHECK(s && (s->prot & PROT_EXEC));
		FUZZ_CHECK(elf_image_export(img, x->name) == x);	/* unique */
	}
	/* the whole image is readable */
	volatile uint8_t sum = img->mem[0] ^ img->mem[img->hi - img->lo - 1];
	(void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_image a, b;
	struct err e = { 0 };
	int r = elf_image_load_mem(data, size, "fuzz.elf", BASE1, &a, &e);
	if (r < 0) {
		FUZZ_CHECK(r == -ENOEXEC || r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(e.code == r && strncmp(e.msg, "fuzz.elf: ", 10) == 0);
		FUZZ_CHECK(!a.mem && !a.segs && !a.exports && !a.nsegs && !a.nexports);
		return 0;
	}
	FUZZ_CHECK(r == 0);
	check_image(&a);

	r = elf_image_load_mem(data, size, "fuzz.elf", BASE2, &b, &e);
	FUZZ_CHECK(r == 0);
	uint64_t d = b.lo - a.lo;
	FUZZ_CHECK(a.type == b.type && (a.type == ET_DYN || d == 0));
	FUZZ_CHECK(b.entry - a.entry == d && b.hi - a.hi == d);
	FUZZ_CHECK(a.nsegs == b.nsegs && a.nexports == b.nexports && a.nrelocs == b.nrelocs);
	for (size_t i = 0; i < a.nexports; i++)
		FUZZ_CHECK(!strcmp(a.exports[i].name, b.exports[i].name) &&
			   b.exports[i].fn - a.exports[i].fn == d);
	elf_image_free(&a);
	elf_image_free(&b);
	return 0;
}
