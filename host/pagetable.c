/*
 * host/pagetable.c: build and walk x86-64 page tables in scratch memory.
 *
 * Tables are addressed by guest-physical address; pt_table() converts one
 * into a host pointer after checking it lies inside the buffer, which is
 * the only way this file dereferences a table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pagetable.h"

#define PAGE SNAPVM_PAGE_SIZE
#define VA_LIMIT (1ull << 47)
/* non-leaf entries: present, writable, accessed (so the CPU never sets A) */
#define PT_DIR_FLAGS (SNAPVM_PTE_P | SNAPVM_PTE_RW | SNAPVM_PTE_A)

static uint64_t *pt_table(const struct pt *pt, uint64_t gpa)
{
	if (gpa & (PAGE - 1) || gpa < pt->base || gpa - pt->base >= pt->size)
		return NULL;
	return (uint64_t *)(pt->mem + (gpa - pt->base));
}

static int check_buffer(void *mem, uint64_t base, uint64_t size, struct err *e)
{
	if (!mem || size == 0 || size % PAGE || base % PAGE || base + size < base)
		return err_set(e, -EINVAL, "page tables: bad buffer (base 0x%llx, size 0x%llx)",
			       (unsigned long long)base, (unsigned long long)size);
	return 0;
}

static int alloc_table(struct pt *pt, uint64_t *gpa, struct err *e)
{
	if (pt->next >= pt->end)
		return err_set(e, -ENOSPC, "page tables: no room for another table at 0x%llx",
			       (unsigned long long)pt->next);
	*gpa = pt->next;
	pt->next += PAGE;
	memset(pt_table(pt, *gpa), 0, PAGE);
	return 0;
}

int pt_init(struct pt *pt, void *mem, uint64_t base, uint64_t size,
	    uint64_t alloc, uint64_t alloc_end, struct err *e)
{
	int r = check_buffer(mem, base, size, e);
	if (r < 0)
		return r;
	if (alloc % PAGE || alloc_end % PAGE || alloc < base || alloc_end < alloc ||
	    alloc_end > base + size)
		return err_set(e, -EINVAL, "page tables: table space 0x%llx-0x%llx outside the buffer",
			       (unsigned long long)alloc, (unsigned long long)alloc_end);
	*pt = (struct pt){ .mem = mem, .base = base, .size = size, .next = alloc, .end = alloc_end };
	return alloc_table(pt, &pt->root, e);
}

int pt_attach(struct pt *pt, void *mem, uint64_t base, uint64_t size, uint64_t root,
	      struct err *e)
{
	int r = check_buffer(mem, base, size, e);
	if (r < 0)
		return r;
	*pt = (struct pt){ .mem = mem, .base = base, .size = size, .root = root };
	if (!pt_table(pt, root))
		return err_set(e, -EINVAL, "page tables: root 0x%llx is not a page of 0x%llx-0x%llx",
			       (unsigned long long)root, (unsigned long long)base,
			       (unsigned long long)(base + size));
	return 0;
}

int pt_map(struct pt *pt, uint64_t va, uint64_t pa, uint64_t len, uint64_t flags,
	   struct err *e)
{
	if ((va | pa | len) & (PAGE - 1) || len == 0 || va >= VA_LIMIT || len > VA_LIMIT - va ||
	    pa > SNAPVM_PTE_ADDR || len - 1 > SNAPVM_PTE_ADDR - pa ||
	    (flags & SNAPVM_PTE_ADDR) || (flags & SNAPVM_PTE_PS))
		return err_set(e, -EINVAL, "page tables: cannot map 0x%llx bytes at 0x%llx -> 0x%llx",
			       (unsigned long long)len, (unsigned long long)va,
			       (unsigned long long)pa);
	for (uint64_t off = 0; off < len; off += PAGE) {
		uint64_t v = va + off;
		uint64_t *table = pt_table(pt, pt->root);
		for (int shift = 39; shift > 12; shift -= 9) {
			uint64_t *ent = &table[(v >> shift) & 511];
			if (!(*ent & SNAPVM_PTE_P)) {
				uint64_t gpa;
				int r = alloc_table(pt, &gpa, e);
				if (r < 0)
					return r;
				*ent = gpa | PT_DIR_FLAGS;
			}
			table = pt_table(pt, *ent & SNAPVM_PTE_ADDR);
			if (!table || (*ent & SNAPVM_PTE_PS))
				return err_set(e, -EINVAL, "page tables: broken table on the way to 0x%llx",
					       (unsigned long long)v);
		}
		uint64_t *leaf = &table[(v >> 12) & 511];
		if (*leaf & SNAPVM_PTE_P)
			return err_set(e, -EEXIST, "page tables: 0x%llx is already mapped",
				       (unsigned long long)v);
		*leaf = (pa + off) | flags | SNAPVM_PTE_P;
	}
	return 0;
}

int pt_translate(const struct pt *pt, uint64_t va, uint64_t *pa, uint64_t *flags,
		 struct err *e)
{
	if (va >= VA_LIMIT)
		return err_set(e, -ENOENT, "0x%llx is not a canonical low address",
			       (unsigned long long)va);
	uint64_t gpa = pt->root;
	for (int shift = 39; shift >= 12; shift -= 9) {
		const uint64_t *table = pt_table(pt, gpa);
		if (!table)
			return err_set(e, -EINVAL, "page tables: table 0x%llx (for 0x%llx) is outside scratch",
				       (unsigned long long)gpa, (unsigned long long)va);
		uint64_t ent = table[(va >> shift) & 511];
		if (!(ent & SNAPVM_PTE_P))
			return err_set(e, -ENOENT, "0x%llx is not mapped", (unsigned long long)va);
		if (shift > 12 && (ent & SNAPVM_PTE_PS))
			return err_set(e, -EINVAL, "page tables: large page maps 0x%llx",
				       (unsigned long long)va);
		gpa = ent & SNAPVM_PTE_ADDR;
		if (shift == 12) {
			*pa = gpa | (va & (PAGE - 1));
			*flags = ent & ~SNAPVM_PTE_ADDR;
		}
	}
	return 0;
}

struct walk {
	const struct pt *pt;
	uint8_t *seen;		/* one byte per page of the buffer */
	pt_leaf_fn fn;
	void *ctx;
	struct err *e;
};

static int walk_table(struct walk *w, uint64_t gpa, int shift, uint64_t va_base)
{
	uint64_t *table = pt_table(w->pt, gpa);
	if (!table)
		return err_set(w->e, -EINVAL, "page tables: table 0x%llx (for 0x%llx) is outside scratch",
			       (unsigned long long)gpa, (unsigned long long)va_base);
	uint64_t idx = (gpa - w->pt->base) / PAGE;
	if (w->seen[idx])
		return err_set(w->e, -EINVAL, "page tables: table 0x%llx is used twice",
			       (unsigned long long)gpa);
	w->seen[idx] = 1;
	for (uint64_t i = 0; i < 512; i++) {
		uint64_t ent = table[i];
		uint64_t va = va_base | (i << shift);
		if (!(ent & SNAPVM_PTE_P))
			continue;
		if (shift == 39 && i >= 256)
			return err_set(w->e, -EINVAL, "page tables: upper-half entry %llu is present",
				       (unsigned long long)i);
		int r;
		if (shift == 12) {
			r = w->fn(w->ctx, va, &table[i]);
		} else if (ent & SNAPVM_PTE_PS) {
			return err_set(w->e, -EINVAL, "page tables: large page maps 0x%llx",
				       (unsigned long long)va);
		} else {
			r = walk_table(w, ent & SNAPVM_PTE_ADDR, shift - 9, va);
		}
		if (r)
			return r;
	}
	return 0;
}

int pt_walk(const struct pt *pt, pt_leaf_fn fn, void *ctx, struct err *e)
{
	struct walk w = { .pt = pt, .fn = fn, .ctx = ctx, .e = e };
	w.seen = calloc(pt->size / PAGE, 1);
	if (!w.seen)
		return err_set(e, -ENOMEM, "page tables: out of memory");
	int r = walk_table(&w, pt->root, 39, 0);
	free(w.seen);
	return r;
}

struct cow_ctx {
	uint64_t lo, hi;
	long changed;
};

static int cow_leaf(void *ctx, uint64_t va, uint64_t *pte)
{
	struct cow_ctx *c = ctx;
	uint64_t pa = *pte & SNAPVM_PTE_ADDR;
	(void)va;
	if (pa >= c->lo && pa < c->hi && (*pte & SNAPVM_PTE_RW)) {
		*pte = (*pte & ~SNAPVM_PTE_RW) | SNAPVM_PTE_COW;
		c->changed++;
	}
	return 0;
}

long pt_make_cow(const struct pt *pt, uint64_t lo, uint64_t hi, struct err *e)
{
	struct cow_ctx c = { lo, hi, 0 };
	int r = pt_walk(pt, cow_leaf, &c, e);
	return r < 0 ? r : c.changed;
}
