/*
 * tests/test-pagetable.c: the host's page-table builder and walker, on
 * plain memory (no KVM).  Builds tables, walks them back and checks every
 * translation and permission, then feeds the walker hostile tables.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "host/pagetable.h"

#define BASE 0xc0000000ull
#define SIZE (1ull << 20)
#define PAGE 4096ull

struct fixture {
	uint8_t *mem;
	struct pt pt;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->mem = aligned_alloc(PAGE, SIZE);
	memset(f->mem, 0xa5, SIZE);	/* tables must not rely on zeroed memory */
	assert_int_equal(pt_init(&f->pt, f->mem, BASE, SIZE, BASE + 0x10000, BASE + SIZE, NULL), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->mem);
	free(f);
	return 0;
}

static void test_pagetable_translate_maps(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	const uint64_t text = 0x400000, heap = 0x40000000;
	assert_int_equal(pt_map(&f->pt, text, text, 3 * PAGE, SNAPVM_PTE_A, &e), 0);
	assert_int_equal(pt_map(&f->pt, heap, heap, 600 * PAGE,
				SNAPVM_PTE_NX | SNAPVM_PTE_COW, &e), 0);
	assert_int_equal(pt_map(&f->pt, 0x7000000, BASE + 0x5000, PAGE,
				SNAPVM_PTE_RW | SNAPVM_PTE_NX, &e), 0);

	uint64_t pa, flags;
	for (uint64_t i = 0; i < 3; i++) {
		assert_int_equal(pt_translate(&f->pt, text + i * PAGE + 0x123, &pa, &flags, &e), 0);
		assert_int_equal(pa, text + i * PAGE + 0x123);
		assert_true(flags & SNAPVM_PTE_P);
		assert_false(flags & (SNAPVM_PTE_RW | SNAPVM_PTE_NX));
	}
	/* 600 pages cross a page-table boundary (512 entries) */
	for (uint64_t i = 0; i < 600; i++) {
		assert_int_equal(pt_translate(&f->pt, heap + i * PAGE, &pa, &flags, &e), 0);
		assert_int_equal(pa, heap + i * PAGE);
		assert_true(flags & SNAPVM_PTE_COW);
		assert_true(flags & SNAPVM_PTE_NX);
		assert_false(flags & SNAPVM_PTE_RW);
	}
	assert_int_equal(pt_translate(&f->pt, 0x7000010, &pa, &flags, &e), 0);
	assert_int_equal(pa, BASE + 0x5010);
	assert_true(flags & SNAPVM_PTE_RW);

	assert_int_equal(pt_translate(&f->pt, text + 3 * PAGE, &pa, &flags, &e), -ENOENT);
	assert_int_equal(pt_translate(&f->pt, 0, &pa, &flags, &e), -ENOENT);
	assert_int_equal(pt_translate(&f->pt, heap + 600 * PAGE, &pa, &flags, &e), -ENOENT);
	assert_int_equal(pt_translate(&f->pt, 1ull << 47, &pa, &flags, &e), -ENOENT);
}

struct count {
	uint64_t n, first, last;
};

static int count_leaf(void *ctx, uint64_t va, uint64_t *pte)
{
	struct count *c = ctx;
	(void)pte;
	if (c->n == 0)
		c->first = va;
	else
		assert_true(va > c->last);	/* address order */
	c->last = va;
	c->n++;
	return 0;
}

static void test_pagetable_walk_visits_every_leaf(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(pt_map(&f->pt, 0x400000, 0x400000, 5 * PAGE, 0, NULL), 0);
	assert_int_equal(pt_map(&f->pt, 0x40000000, 0x40000000, 1030 * PAGE, 0, NULL), 0);
	struct count c = { 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, NULL), 0);
	assert_int_equal(c.n, 1035);
	assert_int_equal(c.first, 0x400000);
	assert_int_equal(c.last, 0x40000000 + 1029 * PAGE);
}

static void test_pagetable_refuses_bad_maps(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	assert_int_equal(pt_map(&f->pt, 0x400000, 0x400000, PAGE, 0, &e), 0);
	assert_int_equal(pt_map(&f->pt, 0x400000, 0x500000, PAGE, 0, &e), -EEXIST);
	assert_non_null(strstr(e.msg, "already mapped"));
	assert_int_equal(pt_map(&f->pt, 0x400001, 0x400000, PAGE, 0, &e), -EINVAL);
	assert_int_equal(pt_map(&f->pt, 0x600000, 0x600000, 100, 0, &e), -EINVAL);
	assert_int_equal(pt_map(&f->pt, 0x600000, 0x600000, 0, 0, &e), -EINVAL);
	assert_int_equal(pt_map(&f->pt, (1ull << 47) - PAGE, 0, 2 * PAGE, 0, &e), -EINVAL);
	assert_int_equal(pt_map(&f->pt, 0x600000, 1ull << 52, PAGE, 0, &e), -EINVAL);
	assert_int_equal(pt_map(&f->pt, 0x600000, 0x600000, PAGE, SNAPVM_PTE_PS, &e), -EINVAL);
}

static void test_pagetable_runs_out_of_table_space(void **state)
{
	(void)state;
	uint8_t *mem = aligned_alloc(PAGE, 4 * PAGE);
	struct pt pt;
	struct err e = { 0 };
	/* root + 3 tables is exactly one path; a second far-away page needs more */
	assert_int_equal(pt_init(&pt, mem, BASE, 4 * PAGE, BASE, BASE + 4 * PAGE, &e), 0);
	assert_int_equal(pt_map(&pt, 0x400000, 0x400000, PAGE, 0, &e), 0);
	assert_int_equal(pt_map(&pt, 0x400000000, 0x400000, PAGE, 0, &e), -ENOSPC);
	assert_non_null(strstr(e.msg, "no room"));
	free(mem);
}

static void test_pagetable_make_cow(void **state)
{
	struct fixture *f = *state;
	const uint64_t data = 0x402000, heap = 0x40000000;
	uint64_t rw = SNAPVM_PTE_RW | SNAPVM_PTE_NX | SNAPVM_PTE_D;
	assert_int_equal(pt_map(&f->pt, 0x400000, 0x400000, 2 * PAGE, 0, NULL), 0);
	assert_int_equal(pt_map(&f->pt, data, data, 2 * PAGE, rw, NULL), 0);
	assert_int_equal(pt_map(&f->pt, heap, heap, 10 * PAGE, rw, NULL), 0);
	/* a page already copied into scratch stays writable */
	assert_int_equal(pt_map(&f->pt, heap + 10 * PAGE, BASE + 0x8000, PAGE, rw, NULL), 0);

	assert_int_equal(pt_make_cow(&f->pt, data, data + 2 * PAGE, NULL), 2);
	assert_int_equal(pt_make_cow(&f->pt, heap, heap + 11 * PAGE, NULL), 10);
	uint64_t pa, flags;
	assert_int_equal(pt_translate(&f->pt, data, &pa, &flags, NULL), 0);
	assert_true(flags & SNAPVM_PTE_COW);
	assert_false(flags & SNAPVM_PTE_RW);
	assert_true(flags & SNAPVM_PTE_NX);
	assert_int_equal(pt_translate(&f->pt, 0x400000, &pa, &flags, NULL), 0);
	assert_false(flags & SNAPVM_PTE_COW);	/* text was never writable */
	assert_int_equal(pt_translate(&f->pt, heap + 10 * PAGE, &pa, &flags, NULL), 0);
	assert_int_equal(pa, BASE + 0x8000);
	assert_true(flags & SNAPVM_PTE_RW);
	assert_false(flags & SNAPVM_PTE_COW);
	/* idempotent */
	assert_int_equal(pt_make_cow(&f->pt, heap, heap + 11 * PAGE, NULL), 0);
}

/* Find the table entry path of va: returns the leaf's page-table page. */
static uint64_t *entry_at(struct pt *pt, uint64_t va, int level)
{
	uint64_t *table = (uint64_t *)(pt->mem + (pt->root - pt->base));
	for (int shift = 39, l = 0; ; shift -= 9, l++) {
		uint64_t *ent = &table[(va >> shift) & 511];
		if (l == level)
			return ent;
		table = (uint64_t *)(pt->mem + ((*ent & SNAPVM_PTE_ADDR) - pt->base));
	}
}

static void test_pagetable_hostile_tables(void **state)
{
	struct fixture *f = *state;
	struct err e = { 0 };
	uint64_t pa, flags;
	struct count c = { 0 };
	assert_int_equal(pt_map(&f->pt, 0x400000, 0x400000, PAGE, 0, NULL), 0);
	assert_int_equal(pt_map(&f->pt, 0x80000000, 0x80000000, PAGE, 0, NULL), 0);

	/* a directory pointing outside the buffer */
	uint64_t *pd = entry_at(&f->pt, 0x400000, 2);
	uint64_t saved = *pd;
	*pd = 0x1000 | SNAPVM_PTE_P;
	assert_int_equal(pt_translate(&f->pt, 0x400000, &pa, &flags, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "outside scratch"));
	c = (struct count){ 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "outside scratch"));

	/* a large page */
	*pd = saved | SNAPVM_PTE_PS;
	assert_int_equal(pt_translate(&f->pt, 0x400000, &pa, &flags, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "large page"));
	c = (struct count){ 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, &e), -EINVAL);
	*pd = saved;

	/* two directories sharing one table: would multiply the walk */
	uint64_t *pdpt_a = entry_at(&f->pt, 0x400000, 1);
	uint64_t *pdpt_b = entry_at(&f->pt, 0x80000000, 1);
	uint64_t saved_b = *pdpt_b;
	*pdpt_b = *pdpt_a;
	c = (struct count){ 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "used twice"));
	*pdpt_b = saved_b;

	/* the root pointing at itself */
	uint64_t *top = entry_at(&f->pt, 0x400000, 0);
	saved = *top;
	*top = f->pt.root | SNAPVM_PTE_P;
	c = (struct count){ 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, &e), -EINVAL);
	*top = saved;

	/* an upper-half mapping */
	uint64_t *upper = (uint64_t *)(f->mem + (f->pt.root - BASE)) + 300;
	*upper = saved;
	c = (struct count){ 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "upper-half"));
	*upper = 0;

	c = (struct count){ 0 };
	assert_int_equal(pt_walk(&f->pt, count_leaf, &c, &e), 0);
	assert_int_equal(c.n, 2);

	/* attaching to a root outside the buffer */
	struct pt bad;
	assert_int_equal(pt_attach(&bad, f->mem, BASE, SIZE, BASE + SIZE, &e), -EINVAL);
	assert_int_equal(pt_attach(&bad, f->mem, BASE, SIZE, BASE + 0x10, &e), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pagetable_translate_maps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pagetable_walk_visits_every_leaf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pagetable_refuses_bad_maps, setup, teardown),
		cmocka_unit_test(test_pagetable_runs_out_of_table_space),
		cmocka_unit_test_setup_teardown(test_pagetable_make_cow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pagetable_hostile_tables, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
