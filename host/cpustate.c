/*
 * host/cpustate.c: parse, check and write the snapshot's cpu file (format in
 * cpustate.h).
 *
 * A table of keys drives both directions: each names a field of struct
 * cpustate and how it is written.  The parser counts every key it has
 * seen, so duplicates and omissions are reported with line numbers.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpustate.h"
#include "textparse.h"

typedef unsigned long long ull;

#define XSAVE_LINES (CPUSTATE_XSAVE_SIZE / CPUSTATE_XSAVE_LINE)
#define NBITMAP (sizeof(((struct kvm_sregs *)0)->interrupt_bitmap) / sizeof(uint64_t))

enum kind { K_U64, K_SEG, K_DT, K_BITMAP, K_XCR, K_MSR, K_XSAVE };

struct key {
	const char *name;
	enum kind kind;
	size_t off;	/* of the field in struct cpustate */
	uint64_t max;	/* K_U64: largest value (0: any) */
	int since;	/* format version that added the key (0: the first) */
};

#define REG(r) { #r, K_U64, offsetof(struct cpustate, regs.r), 0, 0 }
#define SREG(r, k) { #r, k, offsetof(struct cpustate, sregs.r), 0, 0 }
/* Debug registers, version 2 on; DR6 and DR7 are 32 bits wide to KVM. */
#define DR(name, f, m) { name, K_U64, offsetof(struct cpustate, debugregs.f), m, 2 }

static const struct key keys[] = {
	REG(rax), REG(rbx), REG(rcx), REG(rdx), REG(rsi), REG(rdi), REG(rsp), REG(rbp),
	REG(r8), REG(r9), REG(r10), REG(r11), REG(r12), REG(r13), REG(r14), REG(r15),
	REG(rip), REG(rflags),
	SREG(cs, K_SEG), SREG(ds, K_SEG), SREG(es, K_SEG), SREG(fs, K_SEG),
	SREG(gs, K_SEG), SREG(ss, K_SEG), SREG(tr, K_SEG), SREG(ldt, K_SEG),
	SREG(gdt, K_DT), SREG(idt, K_DT),
	SREG(cr0, K_U64), SREG(cr2, K_U64), SREG(cr3, K_U64), SREG(cr4, K_U64),
	SREG(cr8, K_U64), SREG(efer, K_U64), SREG(apic_base, K_U64),
	SREG(interrupt_bitmap, K_BITMAP),
	DR("dr0", db[0], 0), DR("dr1", db[1], 0), DR("dr2", db[2], 0), DR("dr3", db[3], 0),
	DR("dr6", dr6, UINT32_MAX), DR("dr7", dr7, UINT32_MAX),
	{ "xcr", K_XCR, 0, 0, 0 },
	{ "msr", K_MSR, 0, 0, 0 },
	{ "xsave", K_XSAVE, 0, 0, 0 },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Segment fields in the order they are written, with their limits. */
static const struct {
	const char *name;
	uint64_t max;
} seg_fields[] = {
	{ "base", UINT64_MAX }, { "limit", UINT32_MAX }, { "selector", UINT16_MAX },
	{ "type", 15 }, { "present", 1 }, { "dpl", 3 }, { "db", 1 }, { "s", 1 },
	{ "l", 1 }, { "g", 1 }, { "avl", 1 }, { "unusable", 1 },
};
#define NSEG_FIELDS (sizeof(seg_fields) / sizeof(seg_fields[0]))

static void seg_get(const struct kvm_segment *s, uint64_t v[NSEG_FIELDS])
{
	const uint64_t x[NSEG_FIELDS] = { s->base, s->limit, s->selector, s->type, s->present,
					  s->dpl, s->db, s->s, s->l, s->g, s->avl, s->unusable };
	memcpy(v, x, sizeof(x));
}

static void seg_set(struct kvm_segment *s, const uint64_t v[NSEG_FIELDS])
{
	*s = (struct kvm_segment){
		.base = v[0], .limit = (uint32_t)v[1], .selector = (uint16_t)v[2],
		.type = (uint8_t)v[3], .present = (uint8_t)v[4], .dpl = (uint8_t)v[5],
		.db = (uint8_t)v[6], .s = (uint8_t)v[7], .l = (uint8_t)v[8], .g = (uint8_t)v[9],
		.avl = (uint8_t)v[10], .unusable = (uint8_t)v[11],
	};
}

/* ---- checks of a struct built in memory ---- */

int cpustate_check(const struct cpustate *cs, struct err *e)
{
	for (size_t k = 0; k < NKEYS; k++) {
		const void *field = (const char *)cs + keys[k].off;
		if (keys[k].kind == K_U64 && keys[k].max) {
			uint64_t v;
			memcpy(&v, field, sizeof(v));
			if (v > keys[k].max)
				return text_fail(e, "cpu", 0, "%s 0x%llx, more than 0x%llx", keys[k].name,
						 (ull)v, (ull)keys[k].max);
		}
		if (keys[k].kind == K_SEG) {
			uint64_t v[NSEG_FIELDS];
			seg_get(field, v);
			for (size_t i = 0; i < NSEG_FIELDS; i++)
				if (v[i] > seg_fields[i].max)
					return text_fail(e, "cpu", 0, "%s: %s %llu, more than %llu", keys[k].name,
							 seg_fields[i].name, (ull)v[i], (ull)seg_fields[i].max);
		}
	}
	if (cs->nmsrs > CPUSTATE_MSRS_MAX)
		return text_fail(e, "cpu", 0, "%u MSRs, more than %d", cs->nmsrs, CPUSTATE_MSRS_MAX);
	if (cs->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return text_fail(e, "cpu", 0, "%u XCRs, more than %d", cs->xcrs.nr_xcrs, KVM_MAX_XCRS);
	for (uint32_t i = 0; i < cs->nmsrs; i++)
		for (uint32_t j = 0; j < i; j++)
			if (cs->msrs[i].index == cs->msrs[j].index)
				return text_fail(e, "cpu", 0, "msr 0x%x appears twice", cs->msrs[i].index);
	for (uint32_t i = 0; i < cs->xcrs.nr_xcrs; i++)
		for (uint32_t j = 0; j < i; j++)
			if (cs->xcrs.xcrs[i].xcr == cs->xcrs.xcrs[j].xcr)
				return text_fail(e, "cpu", 0, "xcr 0x%x appears twice", cs->xcrs.xcrs[i].xcr);
	return 0;
}

/* ---- parser ---- */

struct parse {
	const char *path;
	struct err *e;
	struct text_line *l;
	struct cpustate *cs;
	int version;			/* of the file, from its first line */
	unsigned seen[NKEYS];		/* line of each single key */
	unsigned xsave_seen[XSAVE_LINES];
};

#define FAIL(p, ...) text_fail((p)->e, (p)->path, (p)->l->no, __VA_ARGS__)

static int value(struct parse *p, const char *what, const char *s, uint64_t max, uint64_t *v)
{
	int r = text_u64(s, max, v);
	if (r == -ERANGE)
		return FAIL(p, "%s: value \"%.32s\" larger than 0x%llx", what, s, (ull)max);
	if (r < 0)
		return FAIL(p, "%s: bad value \"%.32s\" (want 0x-prefixed hex or decimal)", what, s);
	return 0;
}

static int want_fields(struct parse *p, const char *key, size_t n, const char *usage)
{
	if (p->l->nfields != n + 1)
		return FAIL(p, "%s: %zu values, want %zu: \"%s\"", key, p->l->nfields - 1, n, usage);
	return 0;
}

static int parse_seg(struct parse *p, const char *key, struct kvm_segment *seg)
{
	int r = want_fields(p, key, NSEG_FIELDS,
			    "base=.. limit=.. selector=.. type=.. present=.. dpl=.. db=.. s=.. l=.. g=.. avl=.. unusable=..");
	if (r)
		return r;
	uint64_t v[NSEG_FIELDS];
	for (size_t i = 0; i < NSEG_FIELDS; i++) {
		const char *f = p->l->field[i + 1];
		size_t n = strlen(seg_fields[i].name);
		if (strncmp(f, seg_fields[i].name, n) != 0 || f[n] != '=')
			return FAIL(p, "%s: field %zu is \"%.32s\", want %s=VALUE", key, i + 1, f,
				    seg_fields[i].name);
		char what[32];
		snprintf(what, sizeof(what), "%s %s", key, seg_fields[i].name);
		if ((r = value(p, what, f + n + 1, seg_fields[i].max, &v[i])))
			return r;
	}
	seg_set(seg, v);
	return 0;
}

static int parse_dt(struct parse *p, const char *key, struct kvm_dtable *dt)
{
	int r = want_fields(p, key, 2, "base=.. limit=..");
	if (r)
		return r;
	const char *b = p->l->field[1], *l = p->l->field[2];
	if (strncmp(b, "base=", 5) != 0)
		return FAIL(p, "%s: field 1 is \"%.32s\", want base=VALUE", key, b);
	if (strncmp(l, "limit=", 6) != 0)
		return FAIL(p, "%s: field 2 is \"%.32s\", want limit=VALUE", key, l);
	uint64_t base, limit;
	char what[32];
	snprintf(what, sizeof(what), "%s base", key);
	if ((r = value(p, what, b + 5, UINT64_MAX, &base)))
		return r;
	snprintf(what, sizeof(what), "%s limit", key);
	if ((r = value(p, what, l + 6, UINT16_MAX, &limit)))
		return r;
	*dt = (struct kvm_dtable){ .base = base, .limit = (uint16_t)limit };
	return 0;
}

static int parse_xcr(struct parse *p)
{
	struct kvm_xcrs *x = &p->cs->xcrs;
	int r = want_fields(p, "xcr", 2, "xcr INDEX VALUE");
	if (r)
		return r;
	if (x->nr_xcrs == KVM_MAX_XCRS)
		return FAIL(p, "more than %d xcr lines", KVM_MAX_XCRS);
	uint64_t index, v;
	if ((r = value(p, "xcr index", p->l->field[1], UINT32_MAX, &index)) ||
	    (r = value(p, "xcr value", p->l->field[2], UINT64_MAX, &v)))
		return r;
	for (uint32_t i = 0; i < x->nr_xcrs; i++)
		if (x->xcrs[i].xcr == index)
			return FAIL(p, "xcr 0x%llx appears twice", (ull)index);
	x->xcrs[x->nr_xcrs++] = (struct kvm_xcr){ .xcr = (uint32_t)index, .value = v };
	return 0;
}

static int parse_msr(struct parse *p)
{
	struct cpustate *cs = p->cs;
	int r = want_fields(p, "msr", 2, "msr INDEX VALUE");
	if (r)
		return r;
	if (cs->nmsrs == CPUSTATE_MSRS_MAX)
		return FAIL(p, "more than %d msr lines", CPUSTATE_MSRS_MAX);
	uint64_t index, v;
	if ((r = value(p, "msr index", p->l->field[1], UINT32_MAX, &index)) ||
	    (r = value(p, "msr value", p->l->field[2], UINT64_MAX, &v)))
		return r;
	for (uint32_t i = 0; i < cs->nmsrs; i++)
		if (cs->msrs[i].index == index)
			return FAIL(p, "msr 0x%llx appears twice", (ull)index);
	cs->msrs[cs->nmsrs++] = (struct kvm_msr_entry){ .index = (uint32_t)index, .data = v };
	return 0;
}

static int parse_xsave(struct parse *p)
{
	int r = want_fields(p, "xsave", 2, "xsave OFFSET HEX");
	if (r)
		return r;
	uint64_t off;
	if ((r = value(p, "xsave offset", p->l->field[1], CPUSTATE_XSAVE_SIZE - 1, &off)))
		return r;
	if (off % CPUSTATE_XSAVE_LINE)
		return FAIL(p, "xsave offset 0x%llx is not a multiple of %d", (ull)off, CPUSTATE_XSAVE_LINE);
	unsigned i = (unsigned)(off / CPUSTATE_XSAVE_LINE);
	if (p->xsave_seen[i])
		return FAIL(p, "duplicate \"xsave 0x%04llx\" (first on line %u)", (ull)off, p->xsave_seen[i]);
	const char *hex = p->l->field[2];
	size_t n = strlen(hex);
	if (n != 2 * CPUSTATE_XSAVE_LINE)
		return FAIL(p, "xsave 0x%04llx: %zu hex digits, want %d", (ull)off, n, 2 * CPUSTATE_XSAVE_LINE);
	if (text_hex(hex, (uint8_t *)p->cs->xsave.region + off, CPUSTATE_XSAVE_LINE) < 0)
		return FAIL(p, "xsave 0x%04llx: bad hex digit", (ull)off);
	p->xsave_seen[i] = p->l->no;
	return 0;
}

static int parse_line(struct parse *p)
{
	const char *name = p->l->field[0];
	size_t k;
	for (k = 0; k < NKEYS; k++)
		if (!strcmp(name, keys[k].name))
			break;
	if (k == NKEYS)
		return FAIL(p, "unknown key \"%.32s\"", name);
	const struct key *key = &keys[k];
	if (key->since > p->version)
		return FAIL(p, "key \"%s\" is not part of version %d (it came in version %d)", name,
			    p->version, key->since);
	if (key->kind < K_XCR) {
		if (p->seen[k])
			return FAIL(p, "duplicate \"%s\" (first on line %u)", name, p->seen[k]);
		p->seen[k] = p->l->no;
	}
	void *field = (char *)p->cs + key->off;
	int r;
	switch (key->kind) {
	case K_U64: {
		uint64_t v;
		if ((r = want_fields(p, name, 1, "VALUE")) ||
		    (r = value(p, name, p->l->field[1], key->max ? key->max : UINT64_MAX, &v)))
			return r;
		memcpy(field, &v, sizeof(v));	/* __u64 is unsigned long long */
		return 0;
	}
	case K_SEG:
		return parse_seg(p, name, field);
	case K_DT:
		return parse_dt(p, name, field);
	case K_BITMAP:
		if ((r = want_fields(p, name, NBITMAP, "four 64-bit values")))
			return r;
		for (size_t i = 0; i < NBITMAP; i++) {
			uint64_t v;
			if ((r = value(p, name, p->l->field[i + 1], UINT64_MAX, &v)))
				return r;
			memcpy((char *)field + i * sizeof(v), &v, sizeof(v));
		}
		return 0;
	case K_XCR:
		return parse_xcr(p);
	case K_MSR:
		return parse_msr(p);
	case K_XSAVE:
		return parse_xsave(p);
	}
	return FAIL(p, "internal error: key kind %d", (int)key->kind);
}

static int parse_all(struct parse *p, struct text_reader *rd)
{
	char header[32];
	snprintf(header, sizeof(header), "%s %d", CPUSTATE_MAGIC, CPUSTATE_VERSION);
	int got = text_next_raw(rd, p->l, p->e);
	if (got < 0)
		return got;
	p->l->no = 1;
	if (got == 0)
		return FAIL(p, "empty file, want \"%s\"", header);
	size_t mlen = strlen(CPUSTATE_MAGIC);
	if (strncmp(p->l->buf, CPUSTATE_MAGIC " ", mlen + 1) != 0)
		return FAIL(p, "not a cpu state file: line 1 must be \"%s\"", header);
	const char *v = p->l->buf + mlen + 1;
	p->version = 0;
	for (int n = CPUSTATE_VERSION_MIN; n <= CPUSTATE_VERSION; n++) {
		char want[16];
		snprintf(want, sizeof(want), "%d", n);
		if (!strcmp(v, want))
			p->version = n;
	}
	if (!p->version)
		return FAIL(p, "unknown format version \"%.16s\" (this program reads %d to %d)", v,
			    CPUSTATE_VERSION_MIN, CPUSTATE_VERSION);
	/* What an older version has no line for starts at its power-on value. */
	p->cs->debugregs.dr6 = CPUSTATE_DR6_INIT;
	p->cs->debugregs.dr7 = CPUSTATE_DR7_INIT;
	int r;
	while ((got = text_next(rd, p->l, p->e)) > 0)
		if ((r = parse_line(p)))
			return r;
	if (got < 0)
		return got;
	p->l->no = rd->no;
	for (size_t k = 0; k < NKEYS; k++)
		if (keys[k].kind < K_XCR && !p->seen[k] && keys[k].since <= p->version)
			return FAIL(p, "end of file: no \"%s\" line", keys[k].name);
	for (unsigned i = 0; i < XSAVE_LINES; i++)
		if (!p->xsave_seen[i])
			return FAIL(p, "end of file: no \"xsave 0x%04x\" line", i * CPUSTATE_XSAVE_LINE);
	return 0;
}

int cpustate_parse(const char *text, size_t len, const char *path, struct cpustate *cs,
		   struct err *e)
{
	memset(cs, 0, sizeof(*cs));
	if (len > CPUSTATE_FILE_MAX)
		return text_fail(e, path, 0, "%zu bytes, more than the limit %u", len, CPUSTATE_FILE_MAX);
	struct parse *p = calloc(1, sizeof(*p));
	struct text_line *l = malloc(sizeof(*l));
	int r;
	if (!p || !l) {
		r = err_set(e, -ENOMEM, "%s: out of memory", path);
	} else {
		*p = (struct parse){ .path = path, .e = e, .l = l, .cs = cs };
		struct text_reader rd;
		text_reader_init(&rd, text, len, path);
		r = parse_all(p, &rd);
	}
	free(l);
	free(p);
	return r;
}

static int cpustate_parse_into(const char *text, size_t len, const char *path, void *cs,
			       struct err *e)
{
	return cpustate_parse(text, len, path, cs, e);
}

int cpustate_load(const char *path, struct cpustate *cs, struct err *e)
{
	memset(cs, 0, sizeof(*cs));
	return text_load(path, CPUSTATE_FILE_MAX, cpustate_parse_into, cs, e);
}

/* ---- formatter ---- */

int cpustate_format(const struct cpustate *cs, char **text, size_t *len, struct err *e)
{
	*text = NULL;
	*len = 0;
	int r = cpustate_check(cs, e);
	if (r < 0)
		return r;
	struct text_out o;
	r = text_out_open(&o, "cpu", e);
	if (r < 0)
		return r;
	FILE *f = o.f;
	fprintf(f, "%s %d\n", CPUSTATE_MAGIC, CPUSTATE_VERSION);
	for (size_t k = 0; k < NKEYS; k++) {
		const struct key *key = &keys[k];
		const void *field = (const char *)cs + key->off;
		switch (key->kind) {
		case K_U64:
			fprintf(f, "%s 0x%016llx\n", key->name, *(const ull *)field);
			break;
		case K_SEG: {
			uint64_t v[NSEG_FIELDS];
			seg_get(field, v);
			fprintf(f, "%s base=0x%016llx limit=0x%08llx selector=0x%04llx", key->name,
				(ull)v[0], (ull)v[1], (ull)v[2]);
			for (size_t i = 3; i < NSEG_FIELDS; i++)
				fprintf(f, " %s=%llu", seg_fields[i].name, (ull)v[i]);
			fputc('\n', f);
			break;
		}
		case K_DT: {
			const struct kvm_dtable *dt = field;
			fprintf(f, "%s base=0x%016llx limit=0x%04x\n", key->name, (ull)dt->base, dt->limit);
			break;
		}
		case K_BITMAP:
			fputs(key->name, f);
			for (size_t i = 0; i < NBITMAP; i++)
				fprintf(f, " 0x%016llx", ((const ull *)field)[i]);
			fputc('\n', f);
			break;
		case K_XCR:
			for (uint32_t i = 0; i < cs->xcrs.nr_xcrs; i++)
				fprintf(f, "xcr 0x%x 0x%016llx\n", cs->xcrs.xcrs[i].xcr,
					(ull)cs->xcrs.xcrs[i].value);
			break;
		case K_MSR:
			for (uint32_t i = 0; i < cs->nmsrs; i++)
				fprintf(f, "msr 0x%08x 0x%016llx\n", cs->msrs[i].index, (ull)cs->msrs[i].data);
			break;
		case K_XSAVE: {
			char hex[2 * CPUSTATE_XSAVE_LINE + 1];
			const uint8_t *x = (const uint8_t *)cs->xsave.region;
			for (unsigned off = 0; off < CPUSTATE_XSAVE_SIZE; off += CPUSTATE_XSAVE_LINE) {
				text_hex_format(x + off, CPUSTATE_XSAVE_LINE, hex);
				fprintf(f, "xsave 0x%04x %s\n", off, hex);
			}
			break;
		}
		}
	}
	return text_out_close(&o, text, len, "cpu", e);
}

/* ---- comparison ---- */

/* Copy of the stored fields only, everything else zero. */
static void normalise(const struct cpustate *in, struct cpustate *out)
{
	memset(out, 0, sizeof(*out));
	out->regs = in->regs;
	out->sregs = in->sregs;
	struct kvm_segment *segs[] = { &out->sregs.cs, &out->sregs.ds, &out->sregs.es,
				       &out->sregs.fs, &out->sregs.gs, &out->sregs.ss,
				       &out->sregs.tr, &out->sregs.ldt };
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++)
		segs[i]->padding = 0;
	memset(out->sregs.gdt.padding, 0, sizeof(out->sregs.gdt.padding));
	memset(out->sregs.idt.padding, 0, sizeof(out->sregs.idt.padding));
	uint32_t nx = in->xcrs.nr_xcrs < KVM_MAX_XCRS ? in->xcrs.nr_xcrs : KVM_MAX_XCRS;
	out->xcrs.nr_xcrs = in->xcrs.nr_xcrs;
	for (uint32_t i = 0; i < nx; i++)
		out->xcrs.xcrs[i] = (struct kvm_xcr){ .xcr = in->xcrs.xcrs[i].xcr,
						      .value = in->xcrs.xcrs[i].value };
	uint32_t nm = in->nmsrs < CPUSTATE_MSRS_MAX ? in->nmsrs : CPUSTATE_MSRS_MAX;
	out->nmsrs = in->nmsrs;
	for (uint32_t i = 0; i < nm; i++)
		out->msrs[i] = (struct kvm_msr_entry){ .index = in->msrs[i].index,
						       .data = in->msrs[i].data };
	memcpy(out->debugregs.db, in->debugregs.db, sizeof(out->debugregs.db));
	out->debugregs.dr6 = in->debugregs.dr6;
	out->debugregs.dr7 = in->debugregs.dr7;
	memcpy(out->xsave.region, in->xsave.region, sizeof(out->xsave.region));
}

bool cpustate_equal(const struct cpustate *a, const struct cpustate *b)
{
	struct cpustate na, nb;	/* 6 KiB each */
	normalise(a, &na);
	normalise(b, &nb);
	return memcmp(&na, &nb, sizeof(na)) == 0;
}
