/*
 * host/elf.c: the guest ELF loader (contract in elf.h).
 *
 * libelf parses the headers; everything it hands back is still untrusted,
 * so each value is range-checked here before it is used as an offset or a
 * size.  The file is first copied into a private buffer (libelf's
 * elf_memory() wants writable memory and a file that shrinks under an
 * mmap would raise SIGBUS), then the segments are copied into the image
 * buffer, and from then on relocations and the export table are read from
 * that image, the way the guest itself will see them.
 */
#include <endian.h>
#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "elf.h"
#include "file.h"

#ifndef DT_RELR
#define DT_RELR 36
#endif

#define ELF_FILE_MAX (2ull << 30)	/* refuse to read larger files */

#define PAGE_DOWN(x) ((x) & ~(ELF_PAGE_SIZE - 1))
#define PAGE_UP(x) (((x) + ELF_PAGE_SIZE - 1) & ~(ELF_PAGE_SIZE - 1))

typedef unsigned long long ull;

/* Everything one load needs while it runs. */
struct loader {
	const char *name;
	const uint8_t *buf;
	size_t len;
	Elf *elf;
	struct elf_image *img;
	struct err *e;
	uint64_t lo_file;		/* img->lo before bias */
	size_t phdr_index[ELF_SEGMENTS_MAX];	/* program header index of each segment */
	/* The relocation tables, by file vaddr and size (0: none). */
	struct {
		uint64_t addr, size;
	} tables[2];
	/* The export section's header (have_exp), or why it cannot be read
	 * (exp_err, 0 if there is none), found once by find_exports; the
	 * range the relocations check against (0 if none); which entries'
	 * fn a relocation sets (a bit each). */
	GElf_Shdr exp_sh;
	bool have_exp;
	int exp_err;
	uint64_t exp_addr, exp_size;
	uint8_t exp_relocated[ELF_EXPORTS_MAX / 8];
};

static int bad(struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set "NAME: message" with -ENOEXEC. */
static int bad(struct loader *l, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(l->e, -ENOEXEC, "%s: %s", l->name, msg);
}

static int prot_of(uint32_t p_flags)
{
	return (p_flags & PF_R ? PROT_READ : 0) | (p_flags & PF_W ? PROT_WRITE : 0) |
	       (p_flags & PF_X ? PROT_EXEC : 0);
}

const struct elf_segment *elf_image_segment_at(const struct elf_image *img, uint64_t addr)
{
	for (size_t i = 0; i < img->nsegs; i++) {
		const struct elf_segment *s = &img->segs[i];
		if (addr >= s->vaddr && addr - s->vaddr < s->memsz)
			return s;
	}
	return NULL;
}

static bool in_exec_segment(const struct elf_image *img, uint64_t addr)
{
	const struct elf_segment *s = elf_image_segment_at(img, addr);
	return s && (s->prot & PROT_EXEC);
}

/* Is [addr, addr + size) (biased) inside one segment? */
static bool in_one_segment(const struct elf_image *img, uint64_t addr, uint64_t size)
{
	const struct elf_segment *s = elf_image_segment_at(img, addr);
	return s && size <= s->memsz - (addr - s->vaddr);
}

/* Do the 8 bytes a relocation writes at off overlap [addr, addr + size)? */
static bool reloc_hits(uint64_t off, uint64_t addr, uint64_t size)
{
	return off < addr + size && addr < off + 8;
}

/* Identification bytes, checked before libelf sees the file. */
static int check_ident(struct loader *l)
{
	const uint8_t *id = l->buf;
	if (l->len < SELFMAG || memcmp(id, ELFMAG, SELFMAG) != 0) {
		if (l->len < SELFMAG && memcmp(id, ELFMAG, l->len) == 0)
			return bad(l, "truncated: %zu bytes, shorter than an ELF header", l->len);
		return bad(l, "not an ELF file (bad magic)");
	}
	if (l->len < EI_NIDENT)
		return bad(l, "truncated: %zu bytes, shorter than an ELF header", l->len);
	if (id[EI_CLASS] != ELFCLASS64)
		return bad(l, "ELF class %u, want 64-bit (ELFCLASS64)", id[EI_CLASS]);
	if (id[EI_DATA] != ELFDATA2LSB)
		return bad(l, "data encoding %u, want little endian (ELFDATA2LSB)", id[EI_DATA]);
	if (id[EI_VERSION] != EV_CURRENT)
		return bad(l, "ELF version %u, want %u", id[EI_VERSION], EV_CURRENT);
	if (l->len < sizeof(Elf64_Ehdr))
		return bad(l, "truncated: %zu bytes, shorter than an ELF header", l->len);
	return 0;
}

static int check_ehdr(struct loader *l, const GElf_Ehdr *eh)
{
	if (eh->e_machine != EM_X86_64)
		return bad(l, "machine %u, want x86-64 (EM_X86_64 = %u)", eh->e_machine, EM_X86_64);
	if (eh->e_type == ET_REL)
		return bad(l, "relocatable object (ET_REL), want an executable (ET_EXEC or ET_DYN)");
	if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
		return bad(l, "ELF type %u, want an executable (ET_EXEC or ET_DYN)", eh->e_type);
	if (eh->e_version != EV_CURRENT)
		return bad(l, "e_version %u, want %u", eh->e_version, EV_CURRENT);
	return 0;
}

/* Checks of one PT_LOAD on its own; ph is program header number i. */
static int check_load(struct loader *l, size_t i, const GElf_Phdr *ph)
{
	if (ph->p_memsz == 0)
		return bad(l, "segment %zu: empty (p_memsz 0)", i);
	if (ph->p_filesz > ph->p_memsz)
		return bad(l, "segment %zu: p_filesz 0x%llx > p_memsz 0x%llx", i,
			   (ull)ph->p_filesz, (ull)ph->p_memsz);
	if (ph->p_offset > l->len || ph->p_filesz > l->len - ph->p_offset)
		return bad(l, "segment %zu: file bytes 0x%llx+0x%llx beyond the end of the file (0x%zx bytes)",
			   i, (ull)ph->p_offset, (ull)ph->p_filesz, l->len);
	if (ph->p_align > 1) {
		if (ph->p_align & (ph->p_align - 1))
			return bad(l, "segment %zu: p_align 0x%llx is not a power of two", i,
				   (ull)ph->p_align);
		if ((ph->p_vaddr - ph->p_offset) & (ph->p_align - 1))
			return bad(l, "segment %zu: p_vaddr 0x%llx and p_offset 0x%llx differ modulo p_align 0x%llx",
				   i, (ull)ph->p_vaddr, (ull)ph->p_offset, (ull)ph->p_align);
	}
	if (ph->p_vaddr >= ELF_ADDR_LIMIT || ph->p_memsz > ELF_ADDR_LIMIT - ph->p_vaddr)
		return bad(l, "segment %zu: 0x%llx+0x%llx extends beyond the canonical address limit 0x%llx",
			   i, (ull)ph->p_vaddr, (ull)ph->p_memsz, ELF_ADDR_LIMIT);
	return 0;
}

static int cmp_seg_vaddr(const void *a, const void *b)
{
	const struct elf_segment *x = *(const struct elf_segment *const *)a;
	const struct elf_segment *y = *(const struct elf_segment *const *)b;
	return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

/*
 * Segments in pairs: no overlap, and no page shared by segments whose
 * permissions differ (the guest maps memory by page).  Runs on file vaddrs.
 */
static int check_layout(struct loader *l)
{
	struct elf_image *img = l->img;
	const struct elf_segment *sorted[ELF_SEGMENTS_MAX];
	for (size_t i = 0; i < img->nsegs; i++)
		sorted[i] = &img->segs[i];
	qsort(sorted, img->nsegs, sizeof(sorted[0]), cmp_seg_vaddr);
	for (size_t i = 1; i < img->nsegs; i++) {
		const struct elf_segment *a = sorted[i - 1], *b = sorted[i];
		size_t ia = l->phdr_index[a - img->segs], ib = l->phdr_index[b - img->segs];
		if (a->vaddr + a->memsz > b->vaddr)
			return bad(l, "segments %zu and %zu overlap (0x%llx+0x%llx and 0x%llx+0x%llx)",
				   ia, ib, (ull)a->vaddr, (ull)a->memsz, (ull)b->vaddr, (ull)b->memsz);
		if (PAGE_UP(a->vaddr + a->memsz) > PAGE_DOWN(b->vaddr) && a->prot != b->prot)
			return bad(l, "segments %zu and %zu share page 0x%llx with different permissions",
				   ia, ib, (ull)PAGE_DOWN(b->vaddr));
	}
	return 0;
}

/* Walk the program headers: segments, span, bias, image copy. */
static int load_segments(struct loader *l, const GElf_Ehdr *eh, uint64_t load_base, GElf_Phdr *dyn,
			 bool *have_dyn)
{
	struct elf_image *img = l->img;
	size_t phnum;
	if (elf_getphdrnum(l->elf, &phnum) != 0)
		return bad(l, "program headers: %s", elf_errmsg(-1));
	if (phnum == 0)
		return bad(l, "no program headers");
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return bad(l, "e_phentsize %u, want %zu", eh->e_phentsize, sizeof(Elf64_Phdr));
	if (eh->e_phoff > l->len || phnum > (l->len - eh->e_phoff) / sizeof(Elf64_Phdr))
		return bad(l, "program header table 0x%llx+%zu entries beyond the end of the file",
			   (ull)eh->e_phoff, phnum);
	img->segs = calloc(ELF_SEGMENTS_MAX, sizeof(*img->segs));
	if (!img->segs)
		return err_set(l->e, -ENOMEM, "%s: out of memory", l->name);

	*have_dyn = false;
	for (size_t i = 0; i < phnum; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(l->elf, (int)i, &ph))
			return bad(l, "program header %zu: %s", i, elf_errmsg(-1));
		switch (ph.p_type) {
		case PT_LOAD:
			break;
		case PT_DYNAMIC:
			if (*have_dyn)
				return bad(l, "more than one PT_DYNAMIC");
			*dyn = ph;
			*have_dyn = true;
			continue;
		case PT_INTERP:
			return bad(l, "asks for an interpreter (PT_INTERP): not a freestanding guest");
		case PT_TLS:
			return bad(l, "thread-local storage (PT_TLS) is not supported");
		default:
			continue;
		}
		int r = check_load(l, i, &ph);
		if (r < 0)
			return r;
		if (img->nsegs == ELF_SEGMENTS_MAX)
			return bad(l, "more than %d PT_LOAD segments", ELF_SEGMENTS_MAX);
		/* the ELF specification orders them; users of segs rely on it */
		if (img->nsegs && ph.p_vaddr < img->segs[img->nsegs - 1].vaddr)
			return bad(l, "segment %zu: PT_LOAD at 0x%llx comes after one at 0x%llx (want ascending p_vaddr)",
				   i, (ull)ph.p_vaddr, (ull)img->segs[img->nsegs - 1].vaddr);
		l->phdr_index[img->nsegs] = i;
		img->segs[img->nsegs++] = (struct elf_segment){
			.vaddr = ph.p_vaddr, .memsz = ph.p_memsz, .filesz = ph.p_filesz,
			.offset = ph.p_offset, .prot = prot_of(ph.p_flags),
		};
	}
	if (img->nsegs == 0)
		return bad(l, "no PT_LOAD segment");
	int r = check_layout(l);
	if (r < 0)
		return r;

	uint64_t lo = UINT64_MAX, hi = 0;
	for (size_t i = 0; i < img->nsegs; i++) {
		const struct elf_segment *s = &img->segs[i];
		if (s->vaddr < lo)
			lo = s->vaddr;
		if (s->vaddr + s->memsz > hi)
			hi = s->vaddr + s->memsz;
	}
	lo = PAGE_DOWN(lo);
	hi = PAGE_UP(hi);	/* hi <= ELF_ADDR_LIMIT: no overflow */
	if (hi - lo > ELF_SPAN_MAX)
		return bad(l, "segments span 0x%llx bytes (0x%llx..0x%llx), more than the limit 0x%llx",
			   (ull)(hi - lo), (ull)lo, (ull)hi, ELF_SPAN_MAX);

	img->type = eh->e_type;
	if (eh->e_type == ET_DYN) {
		if (load_base & (ELF_PAGE_SIZE - 1))
			return err_set(l->e, -EINVAL, "%s: load base 0x%llx is not page aligned",
				       l->name, (ull)load_base);
		if (load_base >= ELF_ADDR_LIMIT || hi - lo > ELF_ADDR_LIMIT - load_base)
			return err_set(l->e, -EINVAL,
				       "%s: 0x%llx bytes at load base 0x%llx extend beyond the canonical address limit",
				       l->name, (ull)(hi - lo), (ull)load_base);
		img->bias = load_base - lo;	/* modulo 2^64, like every biased address */
	}
	l->lo_file = lo;
	img->lo = lo + img->bias;
	img->hi = hi + img->bias;

	if (!in_exec_segment(img, eh->e_entry))
		return bad(l, "entry point 0x%llx is not inside an executable segment", (ull)eh->e_entry);
	img->entry = eh->e_entry + img->bias;

	/* anonymous pages: zeroed, page aligned (usable as a KVM memory slot as
	 * is) and untouched until written, so a big .bss costs nothing */
	void *mem = mmap(NULL, hi - lo, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return err_set(l->e, -ENOMEM, "%s: out of memory for a 0x%llx-byte image", l->name,
			       (ull)(hi - lo));
	img->mem = mem;
	for (size_t i = 0; i < img->nsegs; i++) {
		struct elf_segment *s = &img->segs[i];
		memcpy(img->mem + (s->vaddr - lo), l->buf + s->offset, s->filesz);
		s->vaddr += img->bias;
	}
	return 0;
}

/* Apply one DT_RELA-style table at file vaddr addr of size bytes. */
static int apply_relocs(struct loader *l, const char *what, uint64_t addr, uint64_t size)
{
	struct elf_image *img = l->img;
	uint64_t span = img->hi - img->lo;
	if (size % sizeof(Elf64_Rela))
		return bad(l, "%s: size 0x%llx is not a multiple of %zu", what, (ull)size,
			   sizeof(Elf64_Rela));
	if (addr < l->lo_file || addr - l->lo_file > span || size > span - (addr - l->lo_file))
		return bad(l, "%s: table 0x%llx+0x%llx lies outside the image", what, (ull)addr,
			   (ull)size);
	uint64_t n = size / sizeof(Elf64_Rela);
	if (img->nrelocs + n > ELF_RELOCS_MAX)
		return bad(l, "more than %u relocations", ELF_RELOCS_MAX);
	const uint8_t *table = img->mem + (addr - l->lo_file);
	for (uint64_t i = 0; i < n; i++) {
		Elf64_Rela rela;
		memcpy(&rela, table + i * sizeof(rela), sizeof(rela));
		uint64_t off = le64toh(rela.r_offset), info = le64toh(rela.r_info);
		uint64_t addend = le64toh(rela.r_addend);
		uint32_t type = ELF64_R_TYPE(info);
		if (type == R_X86_64_NONE)
			continue;
		if (type != R_X86_64_RELATIVE)
			return bad(l, "%s: relocation %llu at offset 0x%llx: unsupported type %u (only R_X86_64_RELATIVE)",
				   what, (ull)i, (ull)off, type);
		uint64_t target = off + img->bias;
		if (!in_one_segment(img, target, 8))
			return bad(l, "%s: relocation %llu: offset 0x%llx: 8 bytes not inside a segment",
				   what, (ull)i, (ull)off);
		/* The tables are read from the image as it is relocated: a
		 * relocation writing into one would change later ones by the
		 * load address, so the same file would load differently at
		 * different bases.  No linker makes such a file. */
		for (size_t t = 0; t < sizeof(l->tables) / sizeof(l->tables[0]); t++)
			if (reloc_hits(off, l->tables[t].addr, l->tables[t].size))
				return bad(l, "%s: relocation %llu: offset 0x%llx: writes into a relocation table",
					   what, (ull)i, (ull)off);
		/* Into the export table only an fn, whole: a name or flags
		 * would depend on the load address too. */
		if (reloc_hits(off, l->exp_addr, l->exp_size)) {
			uint64_t in = off - l->exp_addr;
			if (off < l->exp_addr || in % sizeof(struct snapvm_export) !=
							 offsetof(struct snapvm_export, fn))
				return bad(l, "%s: relocation %llu: offset 0x%llx: writes into an export's name or flags",
					   what, (ull)i, (ull)off);
			uint64_t k = in / sizeof(struct snapvm_export);
			if (k < ELF_EXPORTS_MAX)
				l->exp_relocated[k / 8] |= (uint8_t)(1u << (k % 8));
		}
		uint64_t value = htole64(addend + img->bias);
		memcpy(img->mem + (target - img->lo), &value, sizeof(value));
		img->nrelocs++;
	}
	return 0;
}

/* Read PT_DYNAMIC from the file and apply the relocation tables it names. */
static int load_dynamic(struct loader *l, const GElf_Phdr *dyn)
{
	if (dyn->p_offset > l->len || dyn->p_filesz > l->len - dyn->p_offset)
		return bad(l, "PT_DYNAMIC: file bytes 0x%llx+0x%llx beyond the end of the file",
			   (ull)dyn->p_offset, (ull)dyn->p_filesz);
	size_t n = dyn->p_filesz / sizeof(Elf64_Dyn);
	if (n == 0)
		return 0;
	Elf_Data *data = elf_getdata_rawchunk(l->elf, (int64_t)dyn->p_offset, n * sizeof(Elf64_Dyn),
					      ELF_T_DYN);
	if (!data)
		return bad(l, "PT_DYNAMIC: %s", elf_errmsg(-1));

	uint64_t rela = 0, relasz = 0, relaent = sizeof(Elf64_Rela), jmprel = 0, pltrelsz = 0;
	uint64_t pltrel = DT_RELA;
	bool have_rela = false, have_jmprel = false;
	for (size_t i = 0; i < n; i++) {
		GElf_Dyn d;
		if (!gelf_getdyn(data, (int)i, &d))
			return bad(l, "PT_DYNAMIC entry %zu: %s", i, elf_errmsg(-1));
		switch (d.d_tag) {
		case DT_NULL:
			i = n;
			break;
		case DT_NEEDED:
			return bad(l, "needs a shared library (DT_NEEDED): not a freestanding guest");
		case DT_RELA:
			rela = d.d_un.d_ptr;
			have_rela = true;
			break;
		case DT_RELASZ:
			relasz = d.d_un.d_val;
			break;
		case DT_RELAENT:
			relaent = d.d_un.d_val;
			break;
		case DT_JMPREL:
			jmprel = d.d_un.d_ptr;
			have_jmprel = true;
			break;
		case DT_PLTRELSZ:
			pltrelsz = d.d_un.d_val;
			break;
		case DT_PLTREL:
			pltrel = d.d_un.d_val;
			break;
		case DT_REL:
		case DT_RELSZ:
			return bad(l, "DT_REL relocations are not supported (x86-64 uses DT_RELA)");
		case DT_RELR:
			return bad(l, "DT_RELR (packed) relocations are not supported");
		default:
			break;
		}
	}
	if (relaent != sizeof(Elf64_Rela))
		return bad(l, "DT_RELAENT %llu, want %zu", (ull)relaent, sizeof(Elf64_Rela));
	if (relasz && !have_rela)
		return bad(l, "DT_RELASZ without DT_RELA");
	if (pltrelsz && !have_jmprel)
		return bad(l, "DT_PLTRELSZ without DT_JMPREL");
	if (have_rela)
		l->tables[0].addr = rela, l->tables[0].size = relasz;
	if (have_jmprel)
		l->tables[1].addr = jmprel, l->tables[1].size = pltrelsz;
	int r = 0;
	if (have_rela && relasz)
		r = apply_relocs(l, "DT_RELA", rela, relasz);
	if (r == 0 && have_jmprel && pltrelsz) {
		if (pltrel != DT_RELA)
			return bad(l, "DT_PLTREL %llu, want DT_RELA", (ull)pltrel);
		r = apply_relocs(l, "DT_JMPREL", jmprel, pltrelsz);
	}
	return r;
}

/* The section called SNAPVM_EXPORT_SECTION, or NULL; *r < 0 on a bad file. */
static Elf_Scn *find_export_section(struct loader *l, const GElf_Ehdr *eh, GElf_Shdr *sh, int *r)
{
	*r = 0;
	size_t shnum, shstrndx;
	if (eh->e_shoff == 0 && eh->e_shnum == 0)
		return NULL;	/* no section headers at all: no exports */
	/* libelf quietly drops a table that does not fit: say so instead */
	uint64_t want = eh->e_shnum ? eh->e_shnum : 1;
	if (eh->e_shoff > l->len || want > (l->len - eh->e_shoff) / sizeof(Elf64_Shdr)) {
		*r = bad(l, "section header table 0x%llx+%llu entries beyond the end of the file",
			 (ull)eh->e_shoff, (ull)want);
		return NULL;
	}
	if (elf_getshdrnum(l->elf, &shnum) != 0) {
		*r = bad(l, "section headers: %s", elf_errmsg(-1));
		return NULL;
	}
	if (eh->e_shnum && shnum != eh->e_shnum) {
		*r = bad(l, "section headers: libelf reads %zu, e_shnum says %u", shnum, eh->e_shnum);
		return NULL;
	}
	if (shnum == 0)
		return NULL;
	if (eh->e_shentsize != sizeof(Elf64_Shdr)) {
		*r = bad(l, "e_shentsize %u, want %zu", eh->e_shentsize, sizeof(Elf64_Shdr));
		return NULL;
	}
	if (eh->e_shoff > l->len || shnum > (l->len - eh->e_shoff) / sizeof(Elf64_Shdr)) {
		*r = bad(l, "section header table 0x%llx+%zu entries beyond the end of the file",
			 (ull)eh->e_shoff, shnum);
		return NULL;
	}
	if (elf_getshdrstrndx(l->elf, &shstrndx) != 0) {
		*r = bad(l, "section name table: %s", elf_errmsg(-1));
		return NULL;
	}
	Elf_Scn *found = NULL, *scn = NULL;
	while ((scn = elf_nextscn(l->elf, scn))) {
		GElf_Shdr s;
		if (!gelf_getshdr(scn, &s)) {
			*r = bad(l, "section %zu: %s", elf_ndxscn(scn), elf_errmsg(-1));
			return NULL;
		}
		const char *name = elf_strptr(l->elf, shstrndx, s.sh_name);
		if (!name) {
			*r = bad(l, "section %zu: name: %s", elf_ndxscn(scn), elf_errmsg(-1));
			return NULL;
		}
		if (strcmp(name, SNAPVM_EXPORT_SECTION) != 0)
			continue;
		if (found) {
			*r = bad(l, "more than one %s section", SNAPVM_EXPORT_SECTION);
			return NULL;
		}
		found = scn;
		*sh = s;
	}
	return found;
}

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static int cmp_export_name(const void *a, const void *b)
{
	const struct elf_export *x = *(const struct elf_export *const *)a;
	const struct elf_export *y = *(const struct elf_export *const *)b;
	return strcmp(x->name, y->name);
}

static int check_unique_exports(struct loader *l)
{
	struct elf_image *img = l->img;
	if (img->nexports < 2)
		return 0;
	const struct elf_export **sorted = malloc(img->nexports * sizeof(*sorted));
	if (!sorted)
		return err_set(l->e, -ENOMEM, "%s: out of memory", l->name);
	for (size_t i = 0; i < img->nexports; i++)
		sorted[i] = &img->exports[i];
	qsort(sorted, img->nexports, sizeof(*sorted), cmp_export_name);
	int r = 0;
	for (size_t i = 1; i < img->nexports && r == 0; i++)
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
			size_t a = sorted[i - 1] - img->exports, b = sorted[i] - img->exports;
			r = bad(l, "%s: export \"%s\" appears twice (entries %zu and %zu)",
				SNAPVM_EXPORT_SECTION, sorted[i]->name, a < b ? a : b, a < b ? b : a);
		}
	free(sorted);
	return r;
}

/* Find the export section once, before the relocations, which check
 * against where it is (l->exp_addr, exp_size); a section that cannot be
 * read is left for load_exports to refuse, after the relocations. */
static void find_exports(struct loader *l, const GElf_Ehdr *eh)
{
	l->have_exp = find_export_section(l, eh, &l->exp_sh, &l->exp_err) != NULL;
	if (l->have_exp && l->exp_sh.sh_size <= UINT64_MAX - l->exp_sh.sh_addr) {
		l->exp_addr = l->exp_sh.sh_addr;
		l->exp_size = l->exp_sh.sh_size;
	}
}

/* The export table, read from the relocated image. */
static int load_exports(struct loader *l)
{
	struct elf_image *img = l->img;
	if (!l->have_exp)
		return l->exp_err;
	const GElf_Shdr sh = l->exp_sh;
	const char *sec = SNAPVM_EXPORT_SECTION;
	if (!(sh.sh_flags & SHF_ALLOC))
		return bad(l, "section %s is not allocated (SHF_ALLOC): not part of the image", sec);
	if (sh.sh_type != SHT_PROGBITS)
		return bad(l, "section %s: type %u, want SHT_PROGBITS", sec, sh.sh_type);
	if (sh.sh_size % sizeof(struct snapvm_export))
		return bad(l, "section %s: size 0x%llx is not a multiple of %zu", sec,
			   (ull)sh.sh_size, sizeof(struct snapvm_export));
	size_t n = sh.sh_size / sizeof(struct snapvm_export);
	if (n == 0)
		return 0;
	if (n > ELF_EXPORTS_MAX)
		return bad(l, "section %s: %zu entries, more than %d", sec, n, ELF_EXPORTS_MAX);
	uint64_t addr = sh.sh_addr + img->bias;
	if (!in_one_segment(img, addr, sh.sh_size))
		return bad(l, "section %s: 0x%llx+0x%llx is not inside one segment", sec,
			   (ull)sh.sh_addr, (ull)sh.sh_size);
	img->exports = calloc(n, sizeof(*img->exports));
	if (!img->exports)
		return err_set(l->e, -ENOMEM, "%s: out of memory", l->name);

	for (size_t i = 0; i < n; i++) {
		struct snapvm_export ex;
		memcpy(&ex, img->mem + (addr - img->lo) + i * sizeof(ex), sizeof(ex));
		size_t len = strnlen(ex.name, sizeof(ex.name));
		if (len == sizeof(ex.name))
			return bad(l, "%s: export %zu: name not NUL-terminated within %d bytes", sec, i,
				   SNAPVM_NAME_MAX);
		if (len == 0)
			return bad(l, "%s: export %zu: empty name", sec, i);
		for (size_t k = 0; k < len; k++)
			if (!name_char_ok(ex.name[k]))
				return bad(l, "%s: export %zu: name has byte 0x%02x at %zu, outside [A-Za-z0-9_.-]",
					   sec, i, (unsigned char)ex.name[k], k);
		uint64_t fn = le64toh(ex.fn), flags = le64toh(ex.flags);
		if (flags != 0)
			return bad(l, "%s: export \"%s\": flags 0x%llx, want 0", sec, ex.name, (ull)flags);
		if (!in_exec_segment(img, fn))
			return bad(l, "%s: export \"%s\": fn 0x%llx is not inside an executable segment",
				   sec, ex.name, (ull)fn);
		/* A PIE's fn that no relocation sets would be right at one
		 * load address only. */
		if (img->type == ET_DYN && !(l->exp_relocated[i / 8] & (1u << (i % 8))))
			return bad(l, "%s: export \"%s\": fn 0x%llx has no R_X86_64_RELATIVE relocation,"
				   " which a position-independent file needs", sec, ex.name, (ull)fn);
		memcpy(img->exports[i].name, ex.name, sizeof(ex.name));
		img->exports[i].fn = fn;
		img->nexports = i + 1;
	}
	return check_unique_exports(l);
}

/* Load from a private, writable copy of the file (libelf may use it in place). */
static int load_private(uint8_t *buf, size_t len, const char *name, uint64_t load_base,
			struct elf_image *img, struct err *e)
{
	struct loader l = { .name = name, .buf = buf, .len = len, .img = img, .e = e };
	int r = check_ident(&l);
	if (r < 0)
		return r;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return err_set(e, -ENOEXEC, "%s: libelf: %s", name, elf_errmsg(-1));
	l.elf = elf_memory((char *)buf, len);
	if (!l.elf)
		return bad(&l, "%s", elf_errmsg(-1));
	GElf_Ehdr eh;
	GElf_Phdr dyn = { 0 };
	bool have_dyn = false;
	if (elf_kind(l.elf) != ELF_K_ELF)
		r = bad(&l, "not an ELF file");
	else if (!gelf_getehdr(l.elf, &eh))
		r = bad(&l, "ELF header: %s", elf_errmsg(-1));
	else if ((r = check_ehdr(&l, &eh)) == 0 &&
		 (r = load_segments(&l, &eh, load_base, &dyn, &have_dyn)) == 0) {
		find_exports(&l, &eh);
		if (!have_dyn || (r = load_dynamic(&l, &dyn)) == 0)
			r = load_exports(&l);
	}
	elf_end(l.elf);
	return r;
}

int elf_image_load_mem(const void *buf, size_t len, const char *name, uint64_t load_base,
		       struct elf_image *img, struct err *e)
{
	memset(img, 0, sizeof(*img));
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return err_set(e, -ENOMEM, "%s: out of memory for a %zu-byte copy", name, len);
	memcpy(copy, buf, len);
	int r = load_private(copy, len, name, load_base, img, e);
	free(copy);
	if (r < 0)
		elf_image_free(img);
	return r;
}

int elf_image_load(const char *path, uint64_t load_base, struct elf_image *img, struct err *e)
{
	memset(img, 0, sizeof(*img));
	char *buf;
	size_t len;
	int r = file_read_all(path, ELF_FILE_MAX, -ENOEXEC, &buf, &len, e);
	if (r < 0)
		return r;
	r = load_private((uint8_t *)buf, len, path, load_base, img, e);
	if (r < 0)
		elf_image_free(img);
	free(buf);
	return r;
}

void elf_image_free(struct elf_image *img)
{
	if (!img)
		return;
	if (img->mem)
		munmap(img->mem, img->hi - img->lo);
	free(img->segs);
	free(img->exports);
	memset(img, 0, sizeof(*img));
}

const struct elf_export *elf_image_export(const struct elf_image *img, const char *name)
{
	for (size_t i = 0; i < img->nexports; i++)
		if (strcmp(img->exports[i].name, name) == 0)
			return &img->exports[i];
	return NULL;
}
