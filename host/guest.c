/*
 * host/guest.c: guest templates, from an ELF file or from parts.
 *
 * An ELF guest's image is copied once into an anonymous mapping that is
 * then made PROT_READ: every sandbox maps the non-writable regions (and,
 * with GUEST_SHARED, all of them) from it, and nothing — not KVM, not the
 * host — can write it afterwards.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "elf.h"
#include "guest.h"

#define PAGE SNAPVM_PAGE_SIZE

static uint64_t page_down(uint64_t a) { return a & ~(PAGE - 1); }
static uint64_t page_up(uint64_t a) { return (a + PAGE - 1) & ~(PAGE - 1); }

static const char *prot_name(int prot)
{
	switch (prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) {
	case PROT_READ | PROT_EXEC: return "text";
	case PROT_READ: return "rodata";
	case PROT_READ | PROT_WRITE: return "data";
	default: return "segment";
	}
}

static int check_regions(const char *name, const struct guest_region *r, size_t n,
			 struct err *e)
{
	if (n == 0 || n > GUEST_REGIONS_MAX)
		return err_set(e, -EINVAL, "%s: %zu regions (1 to %d allowed)", name, n,
			       GUEST_REGIONS_MAX);
	for (size_t i = 0; i < n; i++) {
		const struct guest_region *a = &r[i];
		if (strnlen(a->name, GUEST_REGION_NAME_MAX) == GUEST_REGION_NAME_MAX || !a->name[0])
			return err_set(e, -EINVAL, "%s: region %zu has no usable name", name, i);
		if ((a->gpa | a->size) % PAGE || a->size == 0 || !a->mem)
			return err_set(e, -EINVAL, "%s: region \"%s\" is not page aligned or empty",
				       name, a->name);
		int in_image = a->gpa >= SNAPVM_IMAGE_MIN && a->gpa < SNAPVM_HEAP_GPA &&
			       a->size <= SNAPVM_HEAP_GPA - a->gpa;
		int in_heap = a->gpa >= SNAPVM_HEAP_GPA && a->gpa < SNAPVM_HEAP_GPA + SNAPVM_HEAP_MAX &&
			      a->size <= SNAPVM_HEAP_GPA + SNAPVM_HEAP_MAX - a->gpa;
		if (!in_image && !in_heap)
			return err_set(e, -EINVAL, "%s: region \"%s\" at 0x%llx+0x%llx is outside the "
				       "image (0x%llx-0x%llx) and heap (0x%llx-0x%llx) ranges", name,
				       a->name, (unsigned long long)a->gpa, (unsigned long long)a->size,
				       SNAPVM_IMAGE_MIN, SNAPVM_HEAP_GPA, SNAPVM_HEAP_GPA,
				       SNAPVM_HEAP_GPA + SNAPVM_HEAP_MAX);
		if (!a->shared && !(a->prot & PROT_WRITE))
			return err_set(e, -EINVAL, "%s: region \"%s\" is read-only but not shared",
				       name, a->name);
		for (size_t j = 0; j < i; j++) {
			const struct guest_region *b = &r[j];
			if (a->gpa < b->gpa + b->size && b->gpa < a->gpa + a->size)
				return err_set(e, -EINVAL, "%s: region \"%s\" overlaps \"%s\"", name,
					       a->name, b->name);
			if (strcmp(a->name, b->name) == 0)
				return err_set(e, -EINVAL, "%s: two regions named \"%s\"", name, a->name);
		}
	}
	return 0;
}

static int page_is_zero(const uint8_t *p)
{
	return p[0] == 0 && memcmp(p, p + 1, PAGE - 1) == 0;
}

/* Find the runs of non-zero pages of g's scratch image. */
static int find_image_runs(struct guest *g)
{
	const uint8_t *img = g->scratch_image;
	size_t pages = g->scratch_image_len / PAGE, n = 0;
	g->image_runs = calloc(pages / 2 + 1, sizeof(*g->image_runs));	/* runs are separated */
	if (!g->image_runs)
		return -ENOMEM;
	for (size_t i = 0; i < pages; i++) {
		if (page_is_zero(img + i * PAGE))
			continue;
		if (n && g->image_runs[n - 1].off + g->image_runs[n - 1].len == i * PAGE)
			g->image_runs[n - 1].len += PAGE;
		else
			g->image_runs[n++] = (struct guest_run){ i * PAGE, PAGE };
	}
	g->nimage_runs = n;
	return 0;
}

int guest_new(const struct guest_spec *spec, struct guest **out, struct err *e)
{
	*out = NULL;
	const char *name = spec->name ? spec->name : "guest";
	int r = check_regions(name, spec->regions, spec->nregions, e);
	if (r < 0)
		return r;
	if (spec->scratch_image) {
		if (!spec->cpu || spec->scratch_size % PAGE || spec->scratch_size > SNAPVM_SCRATCH_MAX ||
		    spec->scratch_image_len < PAGE || spec->scratch_image_len > spec->scratch_size)
			return err_set(e, -EINVAL, "%s: scratch image of %zu bytes does not fit a scratch "
				       "of %llu bytes (or no cpu state)", name, spec->scratch_image_len,
				       (unsigned long long)spec->scratch_size);
		if ((r = cpustate_check(spec->cpu, e)) < 0) {
			err_prefix(e, "%s", name);
			return r;
		}
	}
	for (size_t i = 0; i < spec->nexports; i++)
		if (strnlen(spec->exports[i], SNAPVM_NAME_MAX) == SNAPVM_NAME_MAX)
			return err_set(e, -EINVAL, "%s: export %zu has no terminating NUL", name, i);

	struct guest *g = calloc(1, sizeof(*g));
	if (!g)
		return err_set(e, -ENOMEM, "%s: out of memory", name);
	g->name = strdup(name);
	if (spec->nexports)
		g->exports = calloc(spec->nexports, SNAPVM_NAME_MAX);
	if (spec->scratch_image)
		g->scratch_image = malloc(spec->scratch_image_len);
	if (!g->name || (spec->nexports && !g->exports) || (spec->scratch_image && !g->scratch_image)) {
		guest_close(g);
		return err_set(e, -ENOMEM, "%s: out of memory", name);
	}
	g->entry = spec->entry;
	memcpy(g->regions, spec->regions, spec->nregions * sizeof(*spec->regions));
	g->nregions = spec->nregions;
	if (spec->nexports)
		memcpy(g->exports, spec->exports, spec->nexports * SNAPVM_NAME_MAX);
	g->nexports = spec->nexports;
	if (spec->scratch_image) {
		memcpy(g->scratch_image, spec->scratch_image, spec->scratch_image_len);
		g->scratch_image_len = spec->scratch_image_len;
		g->scratch_size = spec->scratch_size;
		g->cpu = *spec->cpu;
		if (find_image_runs(g) < 0) {
			guest_close(g);
			return err_set(e, -ENOMEM, "%s: out of memory", name);
		}
	}
	g->release = spec->release;
	g->release_ctx = spec->release_ctx;
	*out = g;
	return 0;
}

void guest_close(struct guest *g)
{
	if (!g)
		return;
	if (g->release)
		g->release(g->release_ctx);
	if (g->heap_map)
		munmap(g->heap_map, g->heap_map_size);
	if (g->image_map)
		munmap(g->image_map, g->image_map_size);
	free(g->image_runs);
	free(g->scratch_image);
	free(g->exports);
	free(g->name);
	free(g);
}

long guest_find_export(const struct guest *g, const char *name)
{
	for (size_t i = 0; i < g->nexports; i++)
		if (strcmp(g->exports[i], name) == 0)
			return (long)i;
	return -1;
}

/* Split the image into regions: one per run of pages of one permission. */
static int image_regions(const char *path, const struct elf_image *img, const uint8_t *mem,
			 int shared, struct guest_region *out, size_t *n, struct err *e)
{
	size_t k = 0;
	for (size_t i = 0; i < img->nsegs; i++) {
		const struct elf_segment *s = &img->segs[i];
		if (s->memsz == 0)
			continue;
		uint64_t lo = page_down(s->vaddr), hi = page_up(s->vaddr + s->memsz);
		int prot = s->prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
		if (k > 0 && out[k - 1].prot == prot && lo < out[k - 1].gpa + out[k - 1].size) {
			/* shares a page with the previous segment of the same permission */
			uint64_t end = out[k - 1].gpa + out[k - 1].size;
			if (hi > end)
				out[k - 1].size = hi - out[k - 1].gpa;
			continue;
		}
		if (k > 0 && lo < out[k - 1].gpa + out[k - 1].size)
			return err_set(e, -ENOEXEC, "%s: segment %zu shares a page with one of other "
				       "permissions (segments must be in address order and page aligned)",
				       path, i);
		if (k == GUEST_REGIONS_MAX - 1)
			return err_set(e, -ENOEXEC, "%s: more than %d loadable segments", path,
				       GUEST_REGIONS_MAX - 1);
		struct guest_region *r = &out[k++];
		memset(r, 0, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%s", prot_name(prot));
		for (size_t j = 0; j + 1 < k; j++)
			if (strcmp(out[j].name, r->name) == 0)
				snprintf(r->name, sizeof(r->name), "%s%u", prot_name(prot),
					 (unsigned)(k - 1) % 100);
		r->gpa = lo;
		r->size = hi - lo;
		r->prot = prot;
		r->shared = shared || !(prot & PROT_WRITE);
	}
	for (size_t i = 0; i < k; i++)
		out[i].mem = mem + (out[i].gpa - img->lo);
	*n = k;
	return 0;
}

int guest_open_elf(const char *path, const struct guest_options *opt, struct guest **out,
		   struct err *e)
{
	struct guest_options defaults = { 0 };
	if (!opt)
		opt = &defaults;
	uint64_t heap = opt->heap_size ? opt->heap_size : GUEST_HEAP_DEFAULT;
	int shared = !!(opt->flags & GUEST_SHARED);
	*out = NULL;
	if (heap % PAGE || heap > SNAPVM_HEAP_MAX)
		return err_set(e, -EINVAL, "%s: heap size %llu is not a page multiple up to %llu",
			       path, (unsigned long long)heap, SNAPVM_HEAP_MAX);

	struct elf_image img;
	int r = elf_image_load(path, SNAPVM_DYN_BASE, &img, e);
	if (r < 0)
		return r;
	void *image = MAP_FAILED, *heap_mem = MAP_FAILED;
	struct guest *g = NULL;
	char (*names)[SNAPVM_NAME_MAX] = NULL;
	uint64_t span = img.hi - img.lo;
	if (img.lo < SNAPVM_IMAGE_MIN || img.hi > SNAPVM_HEAP_GPA) {
		r = err_set(e, -ENOEXEC, "%s: image at 0x%llx-0x%llx is outside 0x%llx-0x%llx", path,
			    (unsigned long long)img.lo, (unsigned long long)img.hi,
			    SNAPVM_IMAGE_MIN, SNAPVM_HEAP_GPA);
		goto out_img;
	}
	image = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (image == MAP_FAILED) {
		r = err_set(e, -errno, "%s: mapping %llu bytes: %s", path, (unsigned long long)span,
			    strerror(errno));
		goto out_img;
	}
	memcpy(image, img.mem, span);
	mprotect(image, span, PROT_READ);
	heap_mem = mmap(NULL, heap, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (heap_mem == MAP_FAILED) {
		r = err_set(e, -errno, "%s: mapping a heap of %llu bytes: %s", path,
			    (unsigned long long)heap, strerror(errno));
		goto out_image;
	}

	struct guest_region regions[GUEST_REGIONS_MAX];
	size_t n = 0;
	r = image_regions(path, &img, image, shared, regions, &n, e);
	if (r < 0)
		goto out_heap;
	if (heap) {
		regions[n] = (struct guest_region){
			.name = "heap", .gpa = SNAPVM_HEAP_GPA, .size = heap,
			.prot = PROT_READ | PROT_WRITE, .shared = shared, .mem = heap_mem,
		};
		n++;
	}
	if (img.nexports) {
		names = calloc(img.nexports, SNAPVM_NAME_MAX);
		if (!names) {
			r = err_set(e, -ENOMEM, "%s: out of memory", path);
			goto out_heap;
		}
		for (size_t i = 0; i < img.nexports; i++)
			memcpy(names[i], img.exports[i].name, SNAPVM_NAME_MAX);
	}
	struct guest_spec spec = {
		.name = path, .entry = img.entry, .regions = regions, .nregions = n,
		.exports = (const char (*)[SNAPVM_NAME_MAX])names, .nexports = img.nexports,
	};
	r = guest_new(&spec, &g, e);
	if (r < 0)
		goto out_names;
	g->image_map = image;
	g->image_map_size = span;
	g->heap_map = heap_mem;
	g->heap_map_size = heap;
	free(names);
	elf_image_free(&img);
	*out = g;
	return 0;

out_names:
	free(names);
out_heap:
	munmap(heap_mem, heap);
out_image:
	munmap(image, span);
out_img:
	elf_image_free(&img);
	return r;
}
