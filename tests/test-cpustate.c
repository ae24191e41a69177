/*
 * tests/test-cpustate.c: the cpu state file (host/cpustate.h).
 *
 * A state with a distinct value in every field is written, read back and
 * compared; the text must survive a second round byte for byte.  Each
 * malformed case changes one line of the canonical text and must be
 * refused with "cpu:LINE: reason".
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
#include <unistd.h>
#include <cmocka.h>

#include "host/cpustate.h"


/* malloc that stops the test program instead of returning NULL */
static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		abort();
	return p;
}

static void make_state(struct cpustate *cs)
{
	memset(cs, 0, sizeof(*cs));
	uint64_t *r = (uint64_t *)&cs->regs;
	for (size_t i = 0; i < sizeof(cs->regs) / 8; i++)
		r[i] = 0x1111111111111111ull * (i % 15 + 1) + i;
	struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 11,
				    .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1 };
	struct kvm_segment data = { .base = 0x1234, .limit = 0xfffff, .selector = 0x10, .type = 3,
				    .present = 1, .dpl = 3, .db = 1, .s = 1, .g = 1, .avl = 1 };
	cs->sregs.cs = code;
	cs->sregs.ds = data;
	cs->sregs.es = data;
	cs->sregs.fs = data;
	cs->sregs.fs.base = 0x7f0000001000ull;
	cs->sregs.gs = data;
	cs->sregs.gs.base = 0xffff800000000000ull;
	cs->sregs.ss = data;
	cs->sregs.tr = (struct kvm_segment){ .base = 0xc0002000, .limit = 0x67, .selector = 0x18,
					     .type = 11, .present = 1 };
	cs->sregs.ldt = (struct kvm_segment){ .unusable = 1 };
	cs->sregs.gdt = (struct kvm_dtable){ .base = 0xc0001000, .limit = 0x2f };
	cs->sregs.idt = (struct kvm_dtable){ .base = 0xc0003000, .limit = 0xfff };
	cs->sregs.cr0 = 0x80050033;
	cs->sregs.cr2 = 0xdeadbeef000;
	cs->sregs.cr3 = 0xc0010000;
	cs->sregs.cr4 = 0x3406a0;
	cs->sregs.cr8 = 0xf;
	cs->sregs.efer = 0xd01;
	cs->sregs.apic_base = 0xfee00900;
	cs->sregs.interrupt_bitmap[1] = 1ull << 32;
	cs->sregs.interrupt_bitmap[3] = ~0ull;
	cs->xcrs.nr_xcrs = 1;
	cs->xcrs.xcrs[0] = (struct kvm_xcr){ .xcr = 0, .value = 7 };
	for (int i = 0; i < 4; i++)
		cs->debugregs.db[i] = 0xffffffff81000000ull + 0x10 * (unsigned)i;
	cs->debugregs.dr6 = 0xffff4ff1;
	cs->debugregs.dr7 = 0x000d0402;
	static const uint32_t msrs[] = { 0xc0000080, 0xc0000081, 0xc0000082, 0x277, 0x10 };
	for (size_t i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++)
		cs->msrs[cs->nmsrs++] = (struct kvm_msr_entry){ .index = msrs[i], .data = i * 0x1001 + 1 };
	uint8_t *x = (uint8_t *)cs->xsave.region;
	for (size_t i = 0; i < CPUSTATE_XSAVE_SIZE; i++)
		x[i] = (uint8_t)(i * 13 + (i >> 8));
}

static char *format_ok(const struct cpustate *cs, size_t *len)
{
	char *text;
	struct err e = { 0 };
	if (cpustate_format(cs, &text, len, &e) != 0)
		fail_msg("%s", e.msg);
	return text;
}

/* The canonical text with the line starting with "key " replaced by with
 * (NULL deletes it), or with inserted after it. */
static char *edit(const char *key, const char *with, int insert)
{
	struct cpustate *cs = xmalloc(sizeof(*cs));
	make_state(cs);
	size_t len;
	char *text = format_ok(cs, &len);
	free(cs);
	char *out = xmalloc(len + 2 * (with ? strlen(with) : 0) + 16);
	size_t klen = strlen(key), n = 0;
	int done = 0;
	for (char *p = text; *p;) {
		char *nl = strchr(p, '\n');
		size_t ll = (size_t)(nl - p) + 1;
		if (!done && !strncmp(p, key, klen) && p[klen] == ' ') {
			done = 1;
			if (insert) {
				memcpy(out + n, p, ll);
				n += ll;
			}
			if (with)
				n += (size_t)sprintf(out + n, "%s\n", with);
		} else {
			memcpy(out + n, p, ll);
			n += ll;
		}
		p += ll;
	}
	out[n] = 0;
	assert_true(done);
	free(text);
	return out;
}

/* 1-based number of the line that starts with "key " in the canonical text. */
static unsigned line_of(const char *key)
{
	char *t = edit(key, NULL, 1);
	unsigned no = 1;
	size_t klen = strlen(key);
	for (char *p = t; *p; p = strchr(p, '\n') + 1, no++)
		if (!strncmp(p, key, klen) && p[klen] == ' ')
			break;
	free(t);
	return no;
}

static void expect_bad_text(const char *text, size_t len, const char *want)
{
	struct cpustate *cs = xmalloc(sizeof(*cs));
	struct err e = { 0 };
	int r = cpustate_parse(text, len, "cpu", cs, &e);
	if (r != -EINVAL || !strstr(e.msg, want))
		fail_msg("want \"%s\", got %d \"%s\"", want, r, e.msg);
	assert_memory_equal(e.msg, "cpu:", 4);
	free(cs);
}

/* Replace the line of key and expect "cpu:LINE: want". */
static void bad(const char *key, const char *with, const char *want)
{
	char *t = edit(key, with, 0);
	char full[600];
	snprintf(full, sizeof(full), "cpu:%u: %s", line_of(key), want);
	expect_bad_text(t, strlen(t), full);
	free(t);
}

static void test_cpustate_round_trip(void **state)
{
	(void)state;
	struct cpustate *a = xmalloc(sizeof(*a)), *b = xmalloc(sizeof(*b));
	make_state(a);
	size_t len, len2;
	char *text = format_ok(a, &len);
	assert_int_equal(strlen(text), len);
	struct err e = { 0 };
	assert_int_equal(cpustate_parse(text, len, "cpu", b, &e), 0);
	assert_true(cpustate_equal(a, b));
	assert_memory_equal(&a->regs, &b->regs, sizeof(a->regs));
	assert_memory_equal(&a->sregs, &b->sregs, sizeof(a->sregs));
	assert_memory_equal(a->xsave.region, b->xsave.region, CPUSTATE_XSAVE_SIZE);
	assert_int_equal(b->nmsrs, 5);
	assert_int_equal(b->msrs[3].index, 0x277);
	assert_int_equal(b->msrs[3].data, 3 * 0x1001 + 1);
	assert_int_equal(b->xcrs.nr_xcrs, 1);
	assert_int_equal(b->xcrs.xcrs[0].value, 7);
	assert_memory_equal(a->debugregs.db, b->debugregs.db, sizeof(a->debugregs.db));
	assert_int_equal(b->debugregs.dr6, 0xffff4ff1);
	assert_int_equal(b->debugregs.dr7, 0x000d0402);
	char *text2 = format_ok(b, &len2);
	assert_string_equal(text, text2);

	/* what a person reads */
	assert_non_null(strstr(text, "snapvm-cpu 2\nrax 0x1111111111111111\nrbx 0x2222222222222223\n"));
	assert_non_null(strstr(text, "\ncs base=0x0000000000000000 limit=0xffffffff selector=0x0008 type=11 "
				     "present=1 dpl=0 db=0 s=1 l=1 g=1 avl=0 unusable=0\n"));
	assert_non_null(strstr(text, "\ngdt base=0x00000000c0001000 limit=0x002f\n"));
	assert_non_null(strstr(text, "\nefer 0x0000000000000d01\n"));
	assert_non_null(strstr(text, "\nmsr 0xc0000080 0x0000000000000001\n"));
	assert_non_null(strstr(text, "\nxcr 0x0 0x0000000000000007\n"));
	assert_non_null(strstr(text, "\ndr3 0xffffffff81000030\ndr6 0x00000000ffff4ff1\n"
				     "dr7 0x00000000000d0402\n"));
	assert_non_null(strstr(text, "\nxsave 0x0000 000d1a27"));
	assert_non_null(strstr(text, "\nxsave 0x0fc0 "));
	free(text);
	free(text2);

	/* one changed field is seen */
	b->sregs.ldt.avl = 1;
	assert_false(cpustate_equal(a, b));
	b->sregs.ldt.avl = 0;
	((uint8_t *)b->xsave.region)[4095] ^= 0x80;
	assert_false(cpustate_equal(a, b));
	((uint8_t *)b->xsave.region)[4095] ^= 0x80;
	b->debugregs.dr7 ^= 1;
	assert_false(cpustate_equal(a, b));
	b->debugregs.dr7 ^= 1;
	b->debugregs.db[2]++;
	assert_false(cpustate_equal(a, b));
	free(a);
	free(b);
}

/* Padding and reserved fields are not part of the state. */
static void test_cpustate_padding_ignored(void **state)
{
	(void)state;
	struct cpustate *a = xmalloc(sizeof(*a)), *b = xmalloc(sizeof(*b));
	make_state(a);
	make_state(b);
	b->sregs.cs.padding = 0x55;
	b->sregs.gdt.padding[1] = 9;
	b->msrs[0].reserved = 3;
	b->xcrs.xcrs[0].reserved = 4;
	b->xcrs.padding[3] = 5;
	b->debugregs.flags = 1;
	b->debugregs.reserved[8] = 6;
	b->msrs[40].data = 77;	/* beyond nmsrs */
	assert_true(cpustate_equal(a, b));
	size_t la, lb;
	char *ta = format_ok(a, &la), *tb = format_ok(b, &lb);
	assert_string_equal(ta, tb);
	free(ta);
	free(tb);
	free(a);
	free(b);
}

static void test_cpustate_header(void **state)
{
	(void)state;
	bad("snapvm-cpu", "snapvm-cpu 3", "unknown format version \"3\" (this program reads 1 to 2)");
	bad("snapvm-cpu", "snapvm-cpu 0", "unknown format version \"0\"");
	bad("snapvm-cpu", "snapvm-cpu 02", "unknown format version \"02\"");
	bad("snapvm-cpu", "snapfs-snapshot 1", "not a cpu state file: line 1 must be \"snapvm-cpu 2\"");
	expect_bad_text("", 0, "cpu:1: empty file, want \"snapvm-cpu 2\"");
	expect_bad_text("snapvm-cpu 2", 12, "cpu:1: no newline at the end of the file");
	expect_bad_text("snapvm-cpu 2\n", 13, "cpu:1: end of file: no \"rax\" line");
}

/* The canonical text without its dr lines, as version 1 wrote it. */
static char *version_1_text(void)
{
	static const char *const drs[] = { "dr0", "dr1", "dr2", "dr3", "dr6", "dr7" };
	char *t = edit("snapvm-cpu", "snapvm-cpu 1", 0);
	for (size_t i = 0; i < sizeof(drs) / sizeof(drs[0]); i++) {
		char *line = strstr(t, drs[i]);
		assert_non_null(line);
		assert_true(line[-1] == '\n' && line[3] == ' ');
		char *next = strchr(line, '\n') + 1;
		memmove(line, next, strlen(next) + 1);
	}
	return t;
}

/*
 * Version 1 files (from before the debug registers were kept) are read,
 * their debug registers at power-on values; a dr line in one is refused;
 * version 2 needs every dr line.
 */
static void test_cpustate_version_1(void **state)
{
	(void)state;
	char *t = version_1_text();
	struct cpustate *cs = xmalloc(sizeof(*cs)), *want = xmalloc(sizeof(*want));
	memset(cs->debugregs.db, 0x5a, sizeof(cs->debugregs.db));
	struct err e = { 0 };
	if (cpustate_parse(t, strlen(t), "cpu", cs, &e) != 0)
		fail_msg("%s", e.msg);
	make_state(want);
	for (int i = 0; i < 4; i++)
		assert_int_equal(cs->debugregs.db[i], 0);
	assert_int_equal(cs->debugregs.dr6, CPUSTATE_DR6_INIT);
	assert_int_equal(cs->debugregs.dr7, CPUSTATE_DR7_INIT);
	memset(&want->debugregs, 0, sizeof(want->debugregs));
	want->debugregs.dr6 = CPUSTATE_DR6_INIT;
	want->debugregs.dr7 = CPUSTATE_DR7_INIT;
	assert_true(cpustate_equal(cs, want));
	/* written again, it is version 2 with the dr lines */
	size_t len;
	char *text = format_ok(cs, &len);
	assert_non_null(strstr(text, "snapvm-cpu 2\n"));
	assert_non_null(strstr(text, "\ndr6 0x00000000ffff0ff0\ndr7 0x0000000000000400\n"));
	free(text);

	/* a dr line added at the end of the version 1 text */
	unsigned lines = 0;
	for (const char *p = t; *p; p++)
		lines += *p == '\n';
	char *more = xmalloc(strlen(t) + 32);
	sprintf(more, "%sdr7 0x401\n", t);
	char msg[120];
	snprintf(msg, sizeof(msg), "cpu:%u: key \"dr7\" is not part of version 1 (it came in version 2)",
		 lines + 1);
	expect_bad_text(more, strlen(more), msg);
	free(more);
	free(t);

	t = edit("dr6", NULL, 0);
	expect_bad_text(t, strlen(t), "end of file: no \"dr6\" line");
	free(t);
	free(cs);
	free(want);
}

static void test_cpustate_keys(void **state)
{
	(void)state;
	bad("rcx", "rzz 0x1", "unknown key \"rzz\"");
	char *t = edit("rbx", NULL, 0);
	expect_bad_text(t, strlen(t), "end of file: no \"rbx\" line");
	free(t);
	t = edit("cr4", NULL, 0);
	expect_bad_text(t, strlen(t), "end of file: no \"cr4\" line");
	free(t);
	t = edit("ldt", NULL, 0);
	expect_bad_text(t, strlen(t), "end of file: no \"ldt\" line");
	free(t);
	t = edit("xsave 0x0fc0", NULL, 0);
	expect_bad_text(t, strlen(t), "end of file: no \"xsave 0x0fc0\" line");
	free(t);
	t = edit("rip", "rax 0x5", 1);
	char want[64];
	snprintf(want, sizeof(want), "cpu:%u: duplicate \"rax\" (first on line 2)", line_of("rip") + 1);
	expect_bad_text(t, strlen(t), want);
	free(t);
	t = edit("efer", "cs base=0 limit=0 selector=0 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0", 1);
	expect_bad_text(t, strlen(t), "duplicate \"cs\"");
	free(t);
	/* xcr and msr lines are optional */
	t = edit("xcr", NULL, 0);
	struct cpustate *cs = xmalloc(sizeof(*cs));
	struct err e = { 0 };
	assert_int_equal(cpustate_parse(t, strlen(t), "cpu", cs, &e), 0);
	assert_int_equal(cs->xcrs.nr_xcrs, 0);
	free(t);
	free(cs);
}

static void test_cpustate_values(void **state)
{
	(void)state;
	bad("rax", "rax 0xq", "rax: bad value \"0xq\" (want 0x-prefixed hex or decimal)");
	bad("rax", "rax", "rax: 0 values, want 1");
	bad("rax", "rax 1 2", "rax: 2 values, want 1");
	bad("rip", "rip 0x10000000000000000", "rip: bad value");
	bad("rip", "rip 18446744073709551616", "rip: value \"18446744073709551616\" larger than 0xffffffffffffffff");
	bad("cs", "cs base=0 limit=0x100000000 selector=0 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0",
	    "cs limit: value \"0x100000000\" larger than 0xffffffff");
	bad("ss", "ss base=0 limit=0 selector=0x10000 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0",
	    "ss selector: value \"0x10000\" larger than 0xffff");
	bad("ds", "ds base=0 limit=0 selector=0 type=16 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0",
	    "ds type: value \"16\" larger than 0xf");
	bad("es", "es base=0 limit=0 selector=0 type=0 present=0 dpl=4 db=0 s=0 l=0 g=0 avl=0 unusable=0",
	    "es dpl: value \"4\" larger than 0x3");
	bad("fs", "fs base=0 limit=0 selector=0 type=0 present=2 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0",
	    "fs present: value \"2\" larger than 0x1");
	bad("tr", "tr limit=0 base=0 selector=0 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0",
	    "tr: field 1 is \"limit=0\", want base=VALUE");
	bad("gs", "gs base=0 limit=0 selector=0 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable",
	    "gs: field 12 is \"unusable\", want unusable=VALUE");
	bad("gs", "gs base=0 limit=0 selector=0 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0",
	    "gs: 11 values, want 12");
	bad("ldt", "ldt base=0 limit=0 selector=0 type=0 present=0 dpl=0 db=0 s=0 l=0 g=0 avl=0 unusable=0x",
	    "ldt unusable: bad value \"0x\"");
	bad("gdt", "gdt base=0 limit=0x10000", "gdt limit: value \"0x10000\" larger than 0xffff");
	bad("idt", "idt base=0", "idt: 1 values, want 2");
	bad("idt", "idt limit=0 base=0", "idt: field 1 is \"limit=0\", want base=VALUE");
	bad("idt", "idt base=0 lim=0", "idt: field 2 is \"lim=0\", want limit=VALUE");
	bad("interrupt_bitmap", "interrupt_bitmap 0 0 0", "interrupt_bitmap: 3 values, want 4");
	bad("interrupt_bitmap", "interrupt_bitmap 0 0 0 z", "interrupt_bitmap: bad value \"z\"");
	bad("dr6", "dr6 0x100000000", "dr6: value \"0x100000000\" larger than 0xffffffff");
	bad("dr7", "dr7 0x1ffffffff", "dr7: value \"0x1ffffffff\" larger than 0xffffffff");
	bad("dr0", "dr0 0x10000000000000000", "dr0: bad value");
}

static void test_cpustate_xsave(void **state)
{
	(void)state;
	char hex[200];
	memset(hex, '0', 128);
	hex[128] = 0;
	char line[256];
	snprintf(line, sizeof(line), "xsave 0x0040 %.126s", hex);
	bad("xsave 0x0040", line, "xsave 0x0040: 126 hex digits, want 128");
	snprintf(line, sizeof(line), "xsave 0x0040 %s0", hex);
	bad("xsave 0x0040", line, "xsave 0x0040: 129 hex digits, want 128");
	snprintf(line, sizeof(line), "xsave 0x0040 %.127sg", hex);
	bad("xsave 0x0040", line, "xsave 0x0040: bad hex digit");
	snprintf(line, sizeof(line), "xsave 0x0041 %s", hex);
	bad("xsave 0x0040", line, "xsave offset 0x41 is not a multiple of 64");
	snprintf(line, sizeof(line), "xsave 0x1000 %s", hex);
	bad("xsave 0x0040", line, "xsave offset: value \"0x1000\" larger than 0xfff");
	snprintf(line, sizeof(line), "xsave 0x0080 %s", hex);
	char *t = edit("xsave 0x0040", line, 0);
	char want[80];
	snprintf(want, sizeof(want), "cpu:%u: duplicate \"xsave 0x0080\" (first on line %u)",
		 line_of("xsave 0x0080"), line_of("xsave 0x0040"));
	expect_bad_text(t, strlen(t), want);
	free(t);
	bad("xsave 0x0040", "xsave 0x0040", "xsave: 1 values, want 2");
}

static void test_cpustate_msrs_and_xcrs(void **state)
{
	(void)state;
	char *t = edit("msr 0xc0000081", "msr 0xc0000080 0x5", 0);
	expect_bad_text(t, strlen(t), "msr 0xc0000080 appears twice");
	free(t);
	bad("msr 0x00000010", "msr 0x100000000 0", "msr index: value \"0x100000000\" larger than 0xffffffff");
	bad("msr 0x00000010", "msr 0x10", "msr: 1 values, want 2");
	bad("xcr", "xcr 0x100000000 1", "xcr index: value \"0x100000000\" larger than 0xffffffff");
	t = edit("xcr", "xcr 0x0 0x3", 1);
	expect_bad_text(t, strlen(t), "xcr 0x0 appears twice");
	free(t);

	/* limits: CPUSTATE_MSRS_MAX msr lines and KVM_MAX_XCRS xcr lines */
	struct cpustate *cs = xmalloc(sizeof(*cs)), *back = xmalloc(sizeof(*back));
	make_state(cs);
	cs->nmsrs = CPUSTATE_MSRS_MAX;
	for (uint32_t i = 0; i < CPUSTATE_MSRS_MAX; i++)
		cs->msrs[i] = (struct kvm_msr_entry){ .index = 0x1000 + i, .data = i };
	cs->xcrs.nr_xcrs = KVM_MAX_XCRS;
	for (uint32_t i = 0; i < KVM_MAX_XCRS; i++)
		cs->xcrs.xcrs[i] = (struct kvm_xcr){ .xcr = i, .value = i };
	size_t len;
	char *text = format_ok(cs, &len);
	struct err e = { 0 };
	assert_int_equal(cpustate_parse(text, len, "cpu", back, &e), 0);
	assert_true(cpustate_equal(cs, back));
	char *more = xmalloc(len + 64);
	int n = sprintf(more, "%smsr 0x5000 0x1\n", text);
	expect_bad_text(more, (size_t)n, "more than 64 msr lines");
	n = sprintf(more, "%sxcr 0x99 0x1\n", text);
	expect_bad_text(more, (size_t)n, "more than 16 xcr lines");
	free(more);
	free(text);
	free(cs);
	free(back);
}

static void test_cpustate_prefixes(void **state)
{
	(void)state;
	struct cpustate *cs = xmalloc(sizeof(*cs));
	make_state(cs);
	size_t len;
	char *text = format_ok(cs, &len);
	/* every prefix that ends at a line boundary misses some line; others
	 * miss their newline */
	for (size_t n = 0; n < len; n++) {
		if (n % 5 && text[n ? n - 1 : 0] != '\n')
			continue;
		struct err e = { 0 };
		if (cpustate_parse(text, n, "cpu", cs, &e) != -EINVAL)
			fail_msg("prefix of %zu bytes accepted", n);
	}
	expect_bad_text(text, CPUSTATE_FILE_MAX + 1, "cpu: 262145 bytes, more than the limit 262144");
	free(text);
	free(cs);
}

static void expect_bad_struct(const struct cpustate *cs, const char *want)
{
	struct err e = { 0 };
	char *text = (char *)1;
	size_t len = 1;
	int r = cpustate_check(cs, &e);
	if (r != -EINVAL || !strstr(e.msg, want))
		fail_msg("want \"%s\", got %d \"%s\"", want, r, e.msg);
	assert_int_equal(cpustate_format(cs, &text, &len, &e), -EINVAL);
	assert_null(text);
}

static void test_cpustate_check_struct(void **state)
{
	(void)state;
	struct cpustate *cs = xmalloc(sizeof(*cs));
	make_state(cs);
	cs->sregs.ss.type = 16;
	expect_bad_struct(cs, "cpu: ss: type 16, more than 15");
	make_state(cs);
	cs->sregs.tr.g = 2;
	expect_bad_struct(cs, "cpu: tr: g 2, more than 1");
	make_state(cs);
	cs->nmsrs = CPUSTATE_MSRS_MAX + 1;
	expect_bad_struct(cs, "65 MSRs, more than 64");
	make_state(cs);
	cs->xcrs.nr_xcrs = KVM_MAX_XCRS + 1;
	expect_bad_struct(cs, "17 XCRs, more than 16");
	make_state(cs);
	cs->msrs[4].index = cs->msrs[1].index;
	expect_bad_struct(cs, "msr 0xc0000081 appears twice");
	make_state(cs);
	cs->xcrs.nr_xcrs = 2;
	expect_bad_struct(cs, "xcr 0x0 appears twice");
	make_state(cs);
	cs->debugregs.dr7 = 1ull << 32;
	expect_bad_struct(cs, "cpu: dr7 0x100000000, more than 0xffffffff");
	free(cs);
}

static void test_cpustate_load_file(void **state)
{
	(void)state;
	struct cpustate *cs = xmalloc(sizeof(*cs)), *back = xmalloc(sizeof(*back));
	make_state(cs);
	size_t len;
	char *text = format_ok(cs, &len);
	char path[] = "/tmp/test-cpustate-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len - 1), (ssize_t)(len - 1));	/* cut the last newline */
	close(fd);
	struct err e = { 0 };
	assert_int_equal(cpustate_load(path, back, &e), -EINVAL);
	char want[128];
	snprintf(want, sizeof(want), "%s:%u: no newline at the end of the file (truncated?)", path,
		 line_of("xsave 0x0fc0"));
	assert_string_equal(e.msg, want);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	assert_int_equal(cpustate_load(path, back, &e), 0);
	assert_true(cpustate_equal(cs, back));
	unlink(path);
	assert_int_equal(cpustate_load(path, back, &e), -ENOENT);
	free(text);
	free(cs);
	free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpustate_round_trip),
		cmocka_unit_test(test_cpustate_padding_ignored),
		cmocka_unit_test(test_cpustate_header),
		cmocka_unit_test(test_cpustate_version_1),
		cmocka_unit_test(test_cpustate_keys),
		cmocka_unit_test(test_cpustate_values),
		cmocka_unit_test(test_cpustate_xsave),
		cmocka_unit_test(test_cpustate_msrs_and_xcrs),
		cmocka_unit_test(test_cpustate_prefixes),
		cmocka_unit_test(test_cpustate_check_struct),
		cmocka_unit_test(test_cpustate_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
