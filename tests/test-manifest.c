/*
 * tests/test-manifest.c: the snapshot manifest parser, checker and
 * formatter (host/manifest.h), and region file verification.
 *
 * A good manifest is parsed field by field and written back byte for byte;
 * then each malformed case changes one line of it and must be refused with
 * "manifest:LINE: reason".
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "host/manifest.h"

#define D1 "1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "2222222222222222222222222222222222222222222222222222222222222222"
#define GD "3f7a00000000000000000000000000000000000000000000000000000000abcd"


/* malloc that stops the test program instead of returning NULL */
static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		abort();
	return p;
}

static const char *const good[] = {
	"snapfs-snapshot 1",
	"parent -",
	"created 2026-11-25T08:30:00Z",
	"guest " GD " hello.elf",
	"entry 0x0000000001000000",
	"region text 0x0000000001000000 0x0000000000002000 r-x image text.mem " D1,
	"region data 0x0000000001002000 0x0000000000001000 rw- image data.mem " D2,
	"region heap 0x0000000040000000 0x0000000004000000 rw- heap heap.mem " D1,
	"region scratch 0x00000000c0000000 0x0000000000100000 rw- scratch scratch.img " D2,
};
#define NGOOD (sizeof(good) / sizeof(good[0]))

/* The good manifest with line `at` (0-based) replaced by `with` (NULL
 * deletes it), or with `with` inserted before line `at` when insert is set. */
static char *edit(size_t at, const char *with, int insert)
{
	size_t cap = 1 << 16, n = 0;
	char *s = xmalloc(cap);
	assert_non_null(s);
	for (size_t i = 0; i <= NGOOD; i++) {
		const char *line = i < NGOOD ? good[i] : NULL;
		if (i == at && with) {
			n += (size_t)snprintf(s + n, cap - n, "%s\n", with);
			if (!insert)
				continue;
		} else if (i == at && !insert) {
			continue;
		}
		if (line)
			n += (size_t)snprintf(s + n, cap - n, "%s\n", line);
	}
	assert_true(n < cap);
	return s;
}

static char *good_text(void)
{
	return edit(NGOOD, NULL, 0);
}

static void expect_bad_text(const char *text, size_t len, const char *want)
{
	struct manifest *m = xmalloc(sizeof(*m));
	struct err e = { 0 };
	int r = manifest_parse(text, len, "manifest", m, &e);
	if (r != -EINVAL || !strstr(e.msg, want))
		fail_msg("want \"%s\", got %d \"%s\"", want, r, e.msg);
	assert_int_equal(e.code, -EINVAL);
	assert_memory_equal(e.msg, "manifest:", 9);
	free(m);
}

/* Replace line at (0-based) and expect want. */
static void bad_line(size_t at, const char *with, const char *want)
{
	char *s = edit(at, with, 0);
	expect_bad_text(s, strlen(s), want);
	free(s);
}

static void bad_insert(size_t at, const char *with, const char *want)
{
	char *s = edit(at, with, 1);
	expect_bad_text(s, strlen(s), want);
	free(s);
}

static void test_manifest_parse_good(void **state)
{
	(void)state;
	char *s = good_text();
	struct manifest *m = xmalloc(sizeof(*m));
	struct err e = { 0 };
	assert_int_equal(manifest_parse(s, strlen(s), "manifest", m, &e), 0);
	assert_int_equal(m->version, 1);
	assert_string_equal(m->parent, "");
	assert_int_equal(m->created, 1795595400);
	assert_int_equal(m->guest_digest[0], 0x3f);
	assert_int_equal(m->guest_digest[1], 0x7a);
	assert_int_equal(m->guest_digest[31], 0xcd);
	assert_string_equal(m->guest, "hello.elf");
	assert_int_equal(m->entry, 0x1000000);
	assert_int_equal(m->nregions, 4);
	const struct manifest_region *r = &m->regions[0];
	assert_string_equal(r->name, "text");
	assert_int_equal(r->gpa, 0x1000000);
	assert_int_equal(r->size, 0x2000);
	assert_int_equal(r->prot, PROT_READ | PROT_EXEC);
	assert_int_equal(r->kind, MANIFEST_KIND_IMAGE);
	assert_string_equal(r->file, "text.mem");
	assert_int_equal(r->digest[0], 0x11);
	assert_int_equal(m->regions[1].prot, PROT_READ | PROT_WRITE);
	assert_int_equal(m->regions[2].kind, MANIFEST_KIND_HEAP);
	assert_int_equal(m->regions[3].kind, MANIFEST_KIND_SCRATCH);
	assert_int_equal(m->regions[3].size, 0x100000);
	assert_ptr_equal(manifest_region_find(m, "heap"), &m->regions[2]);
	assert_null(manifest_region_find(m, "nope"));
	assert_string_equal(manifest_kind_name(MANIFEST_KIND_SCRATCH), "scratch");
	assert_null(manifest_kind_name((enum manifest_kind)0));
	assert_null(manifest_kind_name((enum manifest_kind)99));

	/* written back byte for byte */
	char *out;
	size_t len;
	assert_int_equal(manifest_format(m, &out, &len, &e), 0);
	assert_int_equal(len, strlen(s));
	assert_string_equal(out, s);
	free(out);
	free(m);
	free(s);
}

/* Comments, blank lines, tabs, runs of spaces, decimal numbers, upper-case
 * hex and any key order parse to the same manifest as the canonical text. */
static void test_manifest_parse_liberal_layout(void **state)
{
	(void)state;
	const char *text =
		"snapfs-snapshot 1\n"
		"# a comment\n"
		"\n"
		"entry 16777216\n"
		"region text\t0x1000000   0x2000 r-x image text.mem " D1 "\n"
		"guest 3F7A00000000000000000000000000000000000000000000000000000000ABCD hello.elf\n"
		"region data 16785408 4096 rw- image data.mem " D2 "\n"
		"created 2026-11-25T08:30:00Z\n"
		"region heap 0x40000000 0x4000000 rw- heap heap.mem " D1 "\n"
		"parent -\n"
		"region scratch 0xC0000000 0x100000 rw- scratch scratch.img " D2 "\n"
		"#\n";
	struct manifest *a = xmalloc(sizeof(*a)), *b = xmalloc(sizeof(*b));
	struct err e = { 0 };
	char *s = good_text();
	assert_int_equal(manifest_parse(text, strlen(text), "manifest", a, &e), 0);
	assert_int_equal(manifest_parse(s, strlen(s), "manifest", b, &e), 0);
	assert_true(manifest_equal(a, b));
	b->regions[3].digest[5] ^= 1;
	assert_false(manifest_equal(a, b));
	free(s);
	free(a);
	free(b);
}

static void test_manifest_header(void **state)
{
	(void)state;
	bad_line(0, "snapfs-snapshot 2", "manifest:1: unknown format version 2 (this program reads 1)");
	bad_line(0, "snapfs-snapshot 99999999999999999999999", "manifest:1: bad format version");
	bad_line(0, "snapfs-snapshot x", "manifest:1: bad format version \"x\"");
	bad_line(0, "snapfs-snapshot 01", "manifest:1: bad format version \"01\"");
	bad_line(0, "snapfs-snapshot 1 ", "manifest:1: bad format version");
	bad_line(0, "snapshot 1", "manifest:1: not a snapshot manifest: line 1 must be \"snapfs-snapshot 1\"");
	bad_line(0, "# comment first", "manifest:1: not a snapshot manifest");
	bad_line(0, NULL, "manifest:1: not a snapshot manifest");
	expect_bad_text("", 0, "manifest:1: empty file, want \"snapfs-snapshot 1\"");
}

static void test_manifest_keys(void **state)
{
	(void)state;
	bad_line(1, "colour blue", "manifest:2: unknown keyword \"colour\"");
	bad_insert(5, "parent ../base", "manifest:6: duplicate \"parent\" (first on line 2)");
	bad_insert(8, "entry 0x1", "manifest:9: duplicate \"entry\" (first on line 5)");
	bad_line(1, NULL, "manifest:8: end of file: no \"parent\" line");
	bad_line(2, NULL, "manifest:8: end of file: no \"created\" line");
	bad_line(3, NULL, "end of file: no \"guest\" line");
	bad_line(4, NULL, "end of file: no \"entry\" line");
	bad_line(4, "entry", "manifest:5: entry: 0 fields, want 1: \"entry ADDRESS\"");
	bad_line(4, "entry 0x1 0x2", "manifest:5: entry: 2 fields, want 1");
	bad_line(5, "region text 0x1000000 0x2000 r-x image text.mem",
		 "manifest:6: region: 6 fields, want 7: \"region NAME GPA SIZE PERM KIND FILE SHA256\"");
	bad_line(3, "guest " GD, "manifest:4: guest: 1 fields, want 2");
}

static void test_manifest_values(void **state)
{
	(void)state;
	bad_line(4, "entry 0xZZ", "manifest:5: bad entry \"0xZZ\" (want 0x-prefixed hex or decimal)");
	bad_line(4, "entry 0x", "manifest:5: bad entry \"0x\"");
	bad_line(4, "entry -1", "bad entry \"-1\"");
	bad_line(4, "entry +1", "bad entry \"+1\"");
	bad_line(4, "entry 010", "bad entry \"010\"");
	bad_line(4, "entry 0x10000000000000000", "bad entry");
	bad_line(4, "entry 18446744073709551616", "manifest:5: entry \"18446744073709551616\" does not fit in 64 bits");
	bad_line(3, "guest 3f7a hello.elf", "manifest:4: bad guest digest \"3f7a\" (want 64 hex digits)");
	bad_line(3, "guest " D1 "1 hello.elf", "bad guest digest");
	bad_line(3, "guest g" D1 " hello.elf", "bad guest digest");
	bad_line(2, "created 2026-11-25T08:30:00", "manifest:3: bad creation time \"2026-11-25T08:30:00\"");
	bad_line(2, "created 2026-11-25t08:30:00Z", "bad creation time");
	bad_line(2, "created 2026-13-01T00:00:00Z", "manifest:3: creation time \"2026-13-01T00:00:00Z\" is not a valid date");
	bad_line(2, "created 2025-02-29T00:00:00Z", "is not a valid date");
	bad_line(2, "created 2026-04-31T00:00:00Z", "is not a valid date");
	bad_line(2, "created 2026-11-25T24:00:00Z", "is not a valid date");
	bad_line(2, "created 2026-11-25T23:60:00Z", "is not a valid date");
	bad_line(2, "created 2026-11-25T23:59:60Z", "is not a valid date");
	bad_line(2, "created 1969-12-31T23:59:59Z", "is not a valid date");
	bad_line(2, "created 2026-1a-25T23:59:59Z", "bad creation time");
}

static void test_manifest_regions(void **state)
{
	(void)state;
	bad_line(6, "region data 0x1002800 0x1000 rw- image data.mem " D2,
		 "manifest:7: region \"data\": address 0x1002800 is not 4 KiB aligned");
	bad_line(6, "region data 0x1002000 0 rw- image data.mem " D2, "manifest:7: region \"data\": size 0");
	bad_line(6, "region data 0x1002000 0x1800 rw- image data.mem " D2,
		 "region \"data\": size 0x1800 is not a multiple of 4 KiB");
	bad_line(7, "region heap 0x40000000 0x2000000000 rw- heap heap.mem " D1,
		 "manifest:8: region \"heap\": size 0x2000000000 is larger than the limit 0x1000000000");
	bad_line(7, "region heap 0xfffffffffffff000 0x2000 rw- heap heap.mem " D1,
		 "region \"heap\": 0xfffffffffffff000+0x2000 ends beyond the guest-physical limit 0x1000000000000");
	bad_line(7, "region heap 0xffffffffff000 0x2000 rw- heap heap.mem " D1,
		 "ends beyond the guest-physical limit");
	bad_line(6, "region data 0x1001000 0x1000 rw- image data.mem " D2,
		 "manifest:7: region \"data\" (0x1001000+0x1000) overlaps region \"text\" (0x1000000+0x2000)");
	bad_line(8, "region scratch 0x3ffff000 0x10000000 rw- scratch scratch.img " D2,
		 "manifest:9: region \"scratch\" (0x3ffff000+0x10000000) overlaps region \"heap\"");
	bad_line(6, "region text 0x1002000 0x1000 rw- image data.mem " D2,
		 "manifest:7: region name \"text\" used twice");
	bad_line(6, "region data 0x1002000 0x1000 rw- image text.mem " D2,
		 "manifest:7: region \"data\": file \"text.mem\" is already used by region \"text\"");
	bad_line(6, "region data 0x1002000 0x1000 rwx- image data.mem " D2,
		 "manifest:7: region \"data\": bad permissions \"rwx-\" (want r, w or -, x or -: e.g. r-x)");
	bad_line(6, "region data 0x1002000 0x1000 -w- image data.mem " D2, "bad permissions \"-w-\"");
	bad_line(6, "region data 0x1002000 0x1000 rw image data.mem " D2, "bad permissions \"rw\"");
	bad_line(6, "region data 0x1002000 0x1000 RW- image data.mem " D2, "bad permissions");
	bad_line(6, "region data 0x1002000 0x1000 rw- stack data.mem " D2,
		 "manifest:7: region \"data\": unknown kind \"stack\" (image, heap or scratch)");
	bad_line(6, "region data 0x1002000 0x1000 rw- image data.mem 12",
		 "manifest:7: bad region digest \"12\" (want 64 hex digits)");
	bad_line(6, "region da/ta 0x1002000 0x1000 rw- image data.mem " D2,
		 "manifest:7: bad region name \"da/ta\"");
	bad_line(6, "region " "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 " 0x1002000 0x1000 rw- image data.mem " D2, "manifest:7: region name \"aaaa");

	static const char *const unsafe[] = { "../x", "a/b", "/etc/passwd", "x\xc3\xa9", "x*" };
	for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
		char line[256], want[128];
		snprintf(line, sizeof(line), "region data 0x1002000 0x1000 rw- image %s " D2, unsafe[i]);
		snprintf(want, sizeof(want), "manifest:7: region \"data\": unsafe file name \"%s\"", unsafe[i]);
		bad_line(6, line, want);
	}
	static const char *const reserved[] = { ".", "..", "manifest", "cpu" };
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		char line[256], want[128];
		snprintf(line, sizeof(line), "region data 0x1002000 0x1000 rw- image %s " D2, reserved[i]);
		snprintf(want, sizeof(want), "manifest:7: region \"data\": file name \"%s\" is reserved",
			 reserved[i]);
		bad_line(6, line, want);
	}
	bad_insert(NGOOD, "region scratch2 0x80000000 0x1000 rw- scratch s2.img " D2,
		   "manifest:10: region \"scratch2\": a second scratch region (first \"scratch\")");
	bad_line(8, NULL, "manifest:8: no scratch region");
	bad_line(4, "entry 0x1002000", "manifest:9: entry 0x1002000 is not inside an executable region");
	bad_line(4, "entry 0xfff000", "manifest:9: entry 0xfff000 is not inside an executable region");
	bad_line(7, "region heap 0x40000000 0x4000000 rw- heap heap.mem " D1 " extra",
		 "region: 8 fields, want 7");
}

static void test_manifest_too_many_regions(void **state)
{
	(void)state;
	size_t cap = 1 << 16, n = 0;
	char *s = xmalloc(cap);
	n += (size_t)snprintf(s, cap, "snapfs-snapshot 1\nparent -\ncreated 2026-11-25T08:30:00Z\n"
				      "guest " GD " hello.elf\nentry 0x1000\n");
	for (int i = 0; i < MANIFEST_REGIONS_MAX; i++)
		n += (size_t)snprintf(s + n, cap - n, "region r%d 0x%x 0x1000 r-x %s f%d " D1 "\n", i,
				      0x1000 * (i + 1), i ? "image" : "scratch", i);
	struct manifest *m = xmalloc(sizeof(*m));
	struct err e = { 0 };
	assert_int_equal(manifest_parse(s, n, "manifest", m, &e), 0);
	assert_int_equal(m->nregions, MANIFEST_REGIONS_MAX);
	snprintf(s + n, cap - n, "region r64 0x100000 0x1000 r-x image f64 " D1 "\n");
	expect_bad_text(s, strlen(s), "manifest:70: more than 64 regions");
	free(m);
	free(s);
}

static void test_manifest_lexical(void **state)
{
	(void)state;
	char *s = good_text();
	size_t len = strlen(s);
	/* missing final newline: taken as truncation */
	expect_bad_text(s, len - 1, "manifest:9: no newline at the end of the file (truncated?)");
	/* NUL byte */
	char *t = strdup(s);
	t[strlen(good[0]) + 1 + 3] = 0;
	expect_bad_text(t, len, "manifest:2: NUL byte at column 4");
	free(t);
	bad_line(4, "entry 0x1000000\r", "manifest:5: carriage return at column 16");
	bad_line(4, "entry\x01 0x1000000", "manifest:5: control character 0x01 at column 6");
	bad_line(4, "entry 0x1000000\x7f", "manifest:5: control character 0x7f");
	bad_line(4, "entry 0x1000000 ", "manifest:5: trailing whitespace");
	bad_line(4, "entry 0x1000000\t", "manifest:5: trailing whitespace");
	bad_line(4, " entry 0x1000000", "manifest:5: line starts with whitespace");
	bad_line(4, "entry 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", "manifest:5: more than 16 fields");

	char *longline = xmalloc(9000);
	memcpy(longline, "parent ", 7);
	memset(longline + 7, 'p', 9000 - 8);
	longline[8999] = 0;
	bad_line(1, longline, "manifest:2: line longer than 8192 bytes");
	longline[5000] = 0;
	bad_line(1, longline, "manifest:2: parent longer than 4095 bytes");
	free(longline);

	/* every proper prefix of a good file is refused */
	for (size_t n = 0; n < len; n++) {
		struct manifest *m = xmalloc(sizeof(*m));
		struct err e = { 0 };
		if (manifest_parse(s, n, "manifest", m, &e) != -EINVAL)
			fail_msg("prefix of %zu bytes accepted", n);
		free(m);
	}

	/* over the size limit */
	expect_bad_text(s, MANIFEST_FILE_MAX + 1, "manifest: 1048577 bytes, more than the limit 1048576");
	free(s);
}

static void test_manifest_parent(void **state)
{
	(void)state;
	char *s = edit(1, "parent ../snaps/web-warm\xc3\xa9", 0);
	struct manifest *m = xmalloc(sizeof(*m));
	struct err e = { 0 };
	assert_int_equal(manifest_parse(s, strlen(s), "manifest", m, &e), 0);
	assert_string_equal(m->parent, "../snaps/web-warm\xc3\xa9");
	char *out;
	size_t len;
	assert_int_equal(manifest_format(m, &out, &len, &e), 0);
	assert_string_equal(out, s);
	free(out);
	free(s);
	free(m);
}

static void build_good(struct manifest *m)
{
	char *s = good_text();
	struct err e = { 0 };
	assert_int_equal(manifest_parse(s, strlen(s), "manifest", m, &e), 0);
	free(s);
}

/* What manifest_check refuses, manifest_format refuses too. */
static void expect_bad_struct(const struct manifest *m, const char *want)
{
	struct err e = { 0 };
	char *out = (char *)1;
	size_t len = 1;
	int r = manifest_check(m, &e);
	if (r != -EINVAL || !strstr(e.msg, want))
		fail_msg("want \"%s\", got %d \"%s\"", want, r, e.msg);
	assert_memory_equal(e.msg, "manifest: ", 10);
	assert_int_equal(manifest_format(m, &out, &len, &e), -EINVAL);
	assert_null(out);
	assert_int_equal(len, 0);
}

static void test_manifest_check_struct(void **state)
{
	(void)state;
	struct manifest *m = xmalloc(sizeof(*m));
	build_good(m);
	struct err e = { 0 };
	assert_int_equal(manifest_check(m, &e), 0);

	build_good(m);
	m->version = 2;
	expect_bad_struct(m, "version 2");
	build_good(m);
	strcpy(m->parent, "-");
	expect_bad_struct(m, "parent \"-\" is written for no parent");
	build_good(m);
	strcpy(m->parent, "a b");
	expect_bad_struct(m, "bad parent \"a b\"");
	build_good(m);
	memset(m->parent, 'x', sizeof(m->parent));	/* not terminated */
	expect_bad_struct(m, "bad parent");
	build_good(m);
	m->guest[0] = 0;
	expect_bad_struct(m, "bad guest file name \"\"");
	build_good(m);
	strcpy(m->guest, "a\nb");
	expect_bad_struct(m, "bad guest file name");
	build_good(m);
	m->created = -1;
	expect_bad_struct(m, "creation time -1 outside years 1970 to 9999");
	build_good(m);
	m->created = 253402300800;
	expect_bad_struct(m, "outside years 1970 to 9999");
	build_good(m);
	m->regions[1].prot = PROT_WRITE;
	expect_bad_struct(m, "region \"data\": permissions must include r");
	build_good(m);
	m->regions[1].prot = PROT_READ | 0x100;
	expect_bad_struct(m, "permissions must include r");
	build_good(m);
	m->regions[1].kind = (enum manifest_kind)0;
	expect_bad_struct(m, "region \"data\": unknown kind 0");
	build_good(m);
	m->regions[1].kind = (enum manifest_kind)7;
	expect_bad_struct(m, "unknown kind 7");
	build_good(m);
	m->regions[1].name[0] = 0;
	expect_bad_struct(m, "bad region name \"\"");
	build_good(m);
	strcpy(m->regions[1].file, "a b");
	expect_bad_struct(m, "unsafe file name \"a b\"");
	build_good(m);
	m->nregions = MANIFEST_REGIONS_MAX + 1;
	expect_bad_struct(m, "65 regions, more than 64");
	build_good(m);
	m->nregions = 0;
	expect_bad_struct(m, "no region");
	build_good(m);
	m->regions[3].kind = MANIFEST_KIND_HEAP;
	expect_bad_struct(m, "no scratch region");
	build_good(m);
	m->entry = 0x1002000;
	expect_bad_struct(m, "entry 0x1002000 is not inside an executable region");
	build_good(m);
	m->regions[3].gpa = 0x1001000;
	expect_bad_struct(m, "region \"scratch\" (0x1001000+0x100000) overlaps region \"text\"");
	free(m);
}

static void test_manifest_created_round_trip(void **state)
{
	(void)state;
	static const struct {
		int64_t t;
		const char *s;
	} cases[] = {
		{ 0, "1970-01-01T00:00:00Z" },
		{ 951782400, "2000-02-29T00:00:00Z" },
		{ 1709251199, "2024-02-29T23:59:59Z" },
		{ 1795595400, "2026-11-25T08:30:00Z" },
		{ 253402300799, "9999-12-31T23:59:59Z" },
	};
	struct manifest *m = xmalloc(sizeof(*m)), *m2 = xmalloc(sizeof(*m2));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[64];
		snprintf(line, sizeof(line), "created %s", cases[i].s);
		char *s = edit(2, line, 0);
		struct err e = { 0 };
		assert_int_equal(manifest_parse(s, strlen(s), "manifest", m, &e), 0);
		assert_int_equal(m->created, cases[i].t);
		char *out;
		size_t len;
		assert_int_equal(manifest_format(m, &out, &len, &e), 0);
		assert_string_equal(out, s);
		assert_int_equal(manifest_parse(out, len, "manifest", m2, &e), 0);
		assert_true(manifest_equal(m, m2));
		free(out);
		free(s);
	}
	free(m);
	free(m2);
}

static void test_manifest_digest_known_answers(void **state)
{
	(void)state;
	static const uint8_t abc[32] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
		0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	static const uint8_t empty[32] = {
		0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
		0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
	};
	uint8_t d[32];
	assert_int_equal(manifest_digest_buf("abc", 3, d), 0);
	assert_memory_equal(d, abc, 32);
	assert_int_equal(manifest_digest_buf("", 0, d), 0);
	assert_memory_equal(d, empty, 32);

	/* a file of 3 MiB + 3 bytes (more than one read chunk) */
	char path[] = "/tmp/test-manifest-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	size_t n = (3u << 20) + 3;
	uint8_t *buf = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 13));
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	uint8_t want[32];
	uint64_t size = 0;
	struct err e = { 0 };
	assert_int_equal(manifest_digest_buf(buf, n, want), 0);
	assert_int_equal(manifest_digest_fd(fd, "f", d, &size, &e), 0);
	assert_int_equal(size, n);
	assert_memory_equal(d, want, 32);
	close(fd);
	free(buf);
}

static void write_file(int dirfd, const char *name, const void *buf, size_t n)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	close(fd);
}

static void test_manifest_verify_region(void **state)
{
	(void)state;
	char dir[] = "/tmp/test-manifest-dir-XXXXXX";
	assert_non_null(mkdtemp(dir));
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dirfd >= 0);
	uint8_t page[8192];
	memset(page, 0x5a, sizeof(page));
	write_file(dirfd, "heap.mem", page, sizeof(page));

	struct manifest_region r = { .name = "heap", .gpa = 0x40000000, .size = sizeof(page),
				     .prot = PROT_READ | PROT_WRITE, .kind = MANIFEST_KIND_HEAP,
				     .file = "heap.mem" };
	assert_int_equal(manifest_digest_buf(page, sizeof(page), r.digest), 0);
	struct err e = { 0 };
	assert_int_equal(manifest_verify_region(dirfd, dir, &r, &e), 0);

	/* one byte changed */
	page[4100] ^= 1;
	write_file(dirfd, "heap.mem", page, sizeof(page));
	assert_int_equal(manifest_verify_region(dirfd, dir, &r, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "/heap.mem: digest mismatch: manifest says "));
	assert_memory_equal(e.msg, dir, strlen(dir));

	/* wrong size */
	write_file(dirfd, "heap.mem", page, 4096);
	assert_int_equal(manifest_verify_region(dirfd, dir, &r, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "heap.mem: 4096 bytes, region \"heap\" is 8192"));

	/* a scratch image may be shorter than its region */
	struct manifest_region s = r;
	strcpy(s.name, "scratch");
	strcpy(s.file, "scratch.img");
	s.kind = MANIFEST_KIND_SCRATCH;
	write_file(dirfd, "scratch.img", page, 4096);
	assert_int_equal(manifest_digest_buf(page, 4096, s.digest), 0);
	assert_int_equal(manifest_verify_region(dirfd, dir, &s, &e), 0);
	s.size = 0;	/* but not longer */
	assert_int_equal(manifest_verify_region(dirfd, dir, &s, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "scratch.img: 4096 bytes, region \"scratch\" is at most 0"));

	/* symlinks and missing files are refused */
	assert_int_equal(symlinkat("scratch.img", dirfd, "link.mem"), 0);
	strcpy(r.file, "link.mem");
	assert_int_equal(manifest_verify_region(dirfd, dir, &r, &e), -ELOOP);
	assert_non_null(strstr(e.msg, "link.mem: open"));
	strcpy(r.file, "gone.mem");
	assert_int_equal(manifest_verify_region(dirfd, dir, &r, &e), -ENOENT);
	assert_int_equal(mkdirat(dirfd, "d.mem", 0755), 0);
	strcpy(r.file, "d.mem");
	assert_int_equal(manifest_verify_region(dirfd, dir, &r, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "d.mem: not a regular file"));

	unlinkat(dirfd, "heap.mem", 0);
	unlinkat(dirfd, "scratch.img", 0);
	unlinkat(dirfd, "link.mem", 0);
	unlinkat(dirfd, "d.mem", AT_REMOVEDIR);
	close(dirfd);
	rmdir(dir);
}

static void test_manifest_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/test-manifest-load-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	char *s = good_text();
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	close(fd);
	struct manifest *m = xmalloc(sizeof(*m));
	struct err e = { 0 };
	assert_int_equal(manifest_load(path, m, &e), 0);
	assert_int_equal(m->nregions, 4);
	/* a message from a file names its path */
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "bogus\n", 6), 6);
	close(fd);
	assert_int_equal(manifest_load(path, m, &e), -EINVAL);
	char want[128];
	snprintf(want, sizeof(want), "%s:10: unknown keyword \"bogus\"", path);
	assert_string_equal(e.msg, want);
	unlink(path);
	assert_int_equal(manifest_load(path, m, &e), -ENOENT);
	assert_int_equal(manifest_load("/tmp", m, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "not a regular file"));
	free(s);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manifest_parse_good),
		cmocka_unit_test(test_manifest_parse_liberal_layout),
		cmocka_unit_test(test_manifest_header),
		cmocka_unit_test(test_manifest_keys),
		cmocka_unit_test(test_manifest_values),
		cmocka_unit_test(test_manifest_regions),
		cmocka_unit_test(test_manifest_too_many_regions),
		cmocka_unit_test(test_manifest_lexical),
		cmocka_unit_test(test_manifest_parent),
		cmocka_unit_test(test_manifest_check_struct),
		cmocka_unit_test(test_manifest_created_round_trip),
		cmocka_unit_test(test_manifest_digest_known_answers),
		cmocka_unit_test(test_manifest_verify_region),
		cmocka_unit_test(test_manifest_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
