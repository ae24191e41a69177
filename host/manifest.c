/*
 * host/manifest.c: parse, check and write the snapshot manifest (format in
 * manifest.h and doc/snapshot-format.md).
 *
 * One set of checks serves both directions: the parser converts each line
 * into struct fields and runs the same field checks that manifest_check()
 * runs on a struct built in memory, only with "FILE:LINE" in front of the
 * message instead of "manifest".  So whatever the formatter agrees to write,
 * the parser agrees to read.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "file.h"
#include "manifest.h"
#include "textparse.h"

typedef unsigned long long ull;

/* Where a message points: "PATH:LINE" while parsing, "manifest" otherwise. */
struct where {
	const char *path;
	unsigned line;
	struct err *e;
};

#define FAIL(w, ...) text_fail((w)->e, (w)->path, (w)->line, __VA_ARGS__)

static const char *const kind_names[] = {
	[MANIFEST_KIND_IMAGE] = "image",
	[MANIFEST_KIND_HEAP] = "heap",
	[MANIFEST_KIND_SCRATCH] = "scratch",
};

const char *manifest_kind_name(enum manifest_kind kind)
{
	if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
		return NULL;
	return kind_names[kind];
}

/* ---- field checks, shared by the parser and manifest_check() ---- */

static int name_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n == 0 || n == max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* One field of free text: no whitespace, no control characters. */
static int token_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n == 0 || n == max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

static int check_region(const struct where *w, const struct manifest_region *r)
{
	if (!name_ok(r->name, sizeof(r->name)))
		return FAIL(w, "bad region name \"%.63s\" (1 to %d bytes of [A-Za-z0-9_.-])", r->name,
			    MANIFEST_NAME_MAX - 1);
	const char *n = r->name;
	if (r->gpa % MANIFEST_PAGE)
		return FAIL(w, "region \"%s\": address 0x%llx is not 4 KiB aligned", n, (ull)r->gpa);
	if (r->size == 0)
		return FAIL(w, "region \"%s\": size 0", n);
	if (r->size % MANIFEST_PAGE)
		return FAIL(w, "region \"%s\": size 0x%llx is not a multiple of 4 KiB", n, (ull)r->size);
	if (r->size > MANIFEST_SIZE_MAX)
		return FAIL(w, "region \"%s\": size 0x%llx is larger than the limit 0x%llx", n,
			    (ull)r->size, MANIFEST_SIZE_MAX);
	if (r->gpa >= MANIFEST_GPA_LIMIT || r->size > MANIFEST_GPA_LIMIT - r->gpa)
		return FAIL(w, "region \"%s\": 0x%llx+0x%llx ends beyond the guest-physical limit 0x%llx",
			    n, (ull)r->gpa, (ull)r->size, MANIFEST_GPA_LIMIT);
	if (!(r->prot & PROT_READ) || (r->prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return FAIL(w, "region \"%s\": permissions must include r", n);
	if (!manifest_kind_name(r->kind))
		return FAIL(w, "region \"%s\": unknown kind %d", n, (int)r->kind);
	if (!name_ok(r->file, sizeof(r->file)))
		return FAIL(w, "region \"%s\": unsafe file name \"%.63s\" (1 to %d bytes of [A-Za-z0-9_.-])",
			    n, r->file, MANIFEST_NAME_MAX - 1);
	if (!strcmp(r->file, ".") || !strcmp(r->file, "..") || !strcmp(r->file, "manifest") ||
	    !strcmp(r->file, "cpu"))
		return FAIL(w, "region \"%s\": file name \"%s\" is reserved", n, r->file);
	return 0;
}

/* Region i against regions 0..i-1. */
static int check_region_others(const struct where *w, const struct manifest *m, size_t i)
{
	const struct manifest_region *r = &m->regions[i];
	for (size_t k = 0; k < i; k++) {
		const struct manifest_region *o = &m->regions[k];
		if (!strcmp(o->name, r->name))
			return FAIL(w, "region name \"%s\" used twice", r->name);
		if (!strcmp(o->file, r->file))
			return FAIL(w, "region \"%s\": file \"%s\" is already used by region \"%s\"",
				    r->name, r->file, o->name);
		if (r->gpa < o->gpa + o->size && o->gpa < r->gpa + r->size)
			return FAIL(w, "region \"%s\" (0x%llx+0x%llx) overlaps region \"%s\" (0x%llx+0x%llx)",
				    r->name, (ull)r->gpa, (ull)r->size, o->name, (ull)o->gpa, (ull)o->size);
		if (r->kind == MANIFEST_KIND_SCRATCH && o->kind == MANIFEST_KIND_SCRATCH)
			return FAIL(w, "region \"%s\": a second scratch region (first \"%s\")", r->name,
				    o->name);
	}
	return 0;
}

static int check_parent(const struct where *w, const char *parent)
{
	if (parent[0] == 0)
		return 0;
	if (!token_ok(parent, MANIFEST_PARENT_MAX))
		return FAIL(w, "bad parent \"%.64s\" (\"-\" or a path without whitespace, control characters, up to %d bytes)",
			    parent, MANIFEST_PARENT_MAX - 1);
	if (!strcmp(parent, "-"))
		return FAIL(w, "parent \"-\" is written for no parent; use \"\" in memory");
	return 0;
}

static int check_guest(const struct where *w, const char *guest)
{
	if (!token_ok(guest, MANIFEST_GUEST_MAX))
		return FAIL(w, "bad guest file name \"%.64s\" (no whitespace or control characters, 1 to %d bytes)",
			    guest, MANIFEST_GUEST_MAX - 1);
	return 0;
}

/* created: from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z */
#define CREATED_MAX 253402300799ll

static int check_created(const struct where *w, int64_t t)
{
	if (t < 0 || t > CREATED_MAX)
		return FAIL(w, "creation time %" PRId64 " outside years 1970 to 9999", t);
	return 0;
}

/* The rules that hold for the whole manifest once every line is read. */
static int check_complete(const struct where *w, const struct manifest *m)
{
	if (m->nregions == 0)
		return FAIL(w, "no region");
	bool scratch = false, entry = false;
	for (size_t i = 0; i < m->nregions; i++) {
		const struct manifest_region *r = &m->regions[i];
		scratch |= r->kind == MANIFEST_KIND_SCRATCH;
		entry |= (r->prot & PROT_EXEC) && m->entry - r->gpa < r->size;
	}
	if (!scratch)
		return FAIL(w, "no scratch region");
	if (!entry)
		return FAIL(w, "entry 0x%llx is not inside an executable region", (ull)m->entry);
	return 0;
}

int manifest_check(const struct manifest *m, struct err *e)
{
	struct where w = { .path = "manifest", .line = 0, .e = e };
	int r;
	if (m->version != MANIFEST_VERSION)
		return FAIL(&w, "version %u, this program writes %d", m->version, MANIFEST_VERSION);
	if ((r = check_parent(&w, m->parent)) || (r = check_created(&w, m->created)) ||
	    (r = check_guest(&w, m->guest)))
		return r;
	if (m->nregions > MANIFEST_REGIONS_MAX)
		return FAIL(&w, "%zu regions, more than %d", m->nregions, MANIFEST_REGIONS_MAX);
	for (size_t i = 0; i < m->nregions; i++)
		if ((r = check_region(&w, &m->regions[i])) || (r = check_region_others(&w, m, i)))
			return r;
	return check_complete(&w, m);
}

/* ---- parser ---- */

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), no libc time zone. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		*v = *v * 10 + (unsigned)(s[i] - '0');
	}
	return 1;
}

static int parse_created(const struct where *w, const char *s, int64_t *t)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned Y, M, D, h, mi, sec;
	if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != 'Z' || !digits(s, 4, &Y) || !digits(s + 5, 2, &M) ||
	    !digits(s + 8, 2, &D) || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) ||
	    !digits(s + 17, 2, &sec))
		return FAIL(w, "bad creation time \"%.32s\" (want YYYY-MM-DDTHH:MM:SSZ, UTC)", s);
	int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
	if (Y < 1970 || M < 1 || M > 12 || D < 1 || D > mdays[M - 1] + (M == 2 && leap) ||
	    h > 23 || mi > 59 || sec > 59)
		return FAIL(w, "creation time \"%s\" is not a valid date and time from 1970 on", s);
	*t = days_from_civil(Y, (int)M, (int)D) * 86400 + (int64_t)(h * 3600 + mi * 60 + sec);
	return 0;
}

static int parse_number(const struct where *w, const char *what, const char *s, uint64_t *v)
{
	int r = text_u64(s, UINT64_MAX, v);
	if (r == -ERANGE)
		return FAIL(w, "%s \"%.32s\" does not fit in 64 bits", what, s);
	if (r < 0)
		return FAIL(w, "bad %s \"%.32s\" (want 0x-prefixed hex or decimal)", what, s);
	return 0;
}

static int parse_digest(const struct where *w, const char *what, const char *s, uint8_t *d)
{
	if (text_hex(s, d, MANIFEST_DIGEST_LEN) < 0)
		return FAIL(w, "bad %s digest \"%.70s\" (want %d hex digits)", what, s,
			    2 * MANIFEST_DIGEST_LEN);
	return 0;
}

/* Copy a field into a fixed buffer; 0 if it does not fit. */
static int copy_field(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		return 0;
	memcpy(dst, src, n + 1);
	return 1;
}

static int parse_region(const struct where *w, struct text_line *l, struct manifest_region *r)
{
	char **f = l->field;
	memset(r, 0, sizeof(*r));
	if (!copy_field(r->name, sizeof(r->name), f[1]))
		return FAIL(w, "region name \"%.32s...\" longer than %d bytes", f[1], MANIFEST_NAME_MAX - 1);
	int k;
	if ((k = parse_number(w, "address", f[2], &r->gpa)) || (k = parse_number(w, "size", f[3], &r->size)))
		return k;
	const char *p = f[4];
	if (strlen(p) != 3 || p[0] != 'r' || (p[1] != 'w' && p[1] != '-') || (p[2] != 'x' && p[2] != '-'))
		return FAIL(w, "region \"%s\": bad permissions \"%.8s\" (want r, w or -, x or -: e.g. r-x)",
			    r->name, p);
	r->prot = PROT_READ | (p[1] == 'w' ? PROT_WRITE : 0) | (p[2] == 'x' ? PROT_EXEC : 0);
	for (int i = 1; i < (int)(sizeof(kind_names) / sizeof(kind_names[0])); i++)
		if (kind_names[i] && !strcmp(f[5], kind_names[i]))
			r->kind = (enum manifest_kind)i;
	if (!r->kind)
		return FAIL(w, "region \"%s\": unknown kind \"%.32s\" (image, heap or scratch)", r->name, f[5]);
	if (!copy_field(r->file, sizeof(r->file), f[6]))
		return FAIL(w, "region \"%s\": file name longer than %d bytes", r->name, MANIFEST_NAME_MAX - 1);
	return parse_digest(w, "region", f[7], r->digest);
}

enum key { K_PARENT, K_CREATED, K_GUEST, K_ENTRY, K_REGION, K_COUNT };

static const struct {
	const char *name;
	size_t nfields;		/* including the keyword */
	const char *usage;
} keys[K_COUNT] = {
	[K_PARENT] = { "parent", 2, "parent -|PATH" },
	[K_CREATED] = { "created", 2, "created YYYY-MM-DDTHH:MM:SSZ" },
	[K_GUEST] = { "guest", 3, "guest SHA256 FILE" },
	[K_ENTRY] = { "entry", 2, "entry ADDRESS" },
	[K_REGION] = { "region", 8, "region NAME GPA SIZE PERM KIND FILE SHA256" },
};

static int parse_lines(struct text_reader *rd, struct text_line *l, struct manifest *m,
		       struct err *e)
{
	struct where w = { .path = rd->path, .e = e };
	unsigned seen[K_COUNT] = { 0 };
	int got, r;

	/* line 1 says what the file is, exactly */
	got = text_next_raw(rd, l, e);
	if (got < 0)
		return got;
	w.line = 1;
	char header[32];
	snprintf(header, sizeof(header), "%s %d", MANIFEST_MAGIC, MANIFEST_VERSION);
	if (got == 0)
		return FAIL(&w, "empty file, want \"%s\"", header);
	unsigned long version;
	char *end;
	if (strncmp(l->buf, MANIFEST_MAGIC " ", strlen(MANIFEST_MAGIC) + 1) != 0)
		return FAIL(&w, "not a snapshot manifest: line 1 must be \"%s\"", header);
	const char *v = l->buf + strlen(MANIFEST_MAGIC) + 1;
	errno = 0;
	version = strtoul(v, &end, 10);
	if (*v < '1' || *v > '9' || *end || errno)
		return FAIL(&w, "bad format version \"%.16s\", want \"%s\"", v, header);
	if (version != MANIFEST_VERSION)
		return FAIL(&w, "unknown format version %lu (this program reads %d)", version,
			    MANIFEST_VERSION);
	m->version = MANIFEST_VERSION;

	while ((got = text_next(rd, l, e)) > 0) {
		w.line = l->no;
		int k;
		for (k = 0; k < K_COUNT; k++)
			if (!strcmp(l->field[0], keys[k].name))
				break;
		if (k == K_COUNT)
			return FAIL(&w, "unknown keyword \"%.32s\"", l->field[0]);
		if (l->nfields != keys[k].nfields)
			return FAIL(&w, "%s: %zu fields, want %zu: \"%s\"", keys[k].name,
				    l->nfields - 1, keys[k].nfields - 1, keys[k].usage);
		if (k != K_REGION && seen[k])
			return FAIL(&w, "duplicate \"%s\" (first on line %u)", keys[k].name, seen[k]);
		seen[k] = l->no;
		char **f = l->field;
		switch (k) {
		case K_PARENT:
			if (strcmp(f[1], "-") != 0) {
				if (!copy_field(m->parent, sizeof(m->parent), f[1]))
					return FAIL(&w, "parent longer than %d bytes", MANIFEST_PARENT_MAX - 1);
				if ((r = check_parent(&w, m->parent)))
					return r;
			}
			break;
		case K_CREATED:
			if ((r = parse_created(&w, f[1], &m->created)))
				return r;
			break;
		case K_GUEST:
			if ((r = parse_digest(&w, "guest", f[1], m->guest_digest)))
				return r;
			if (!copy_field(m->guest, sizeof(m->guest), f[2]))
				return FAIL(&w, "guest file name longer than %d bytes", MANIFEST_GUEST_MAX - 1);
			if ((r = check_guest(&w, m->guest)))
				return r;
			break;
		case K_ENTRY:
			if ((r = parse_number(&w, "entry", f[1], &m->entry)))
				return r;
			break;
		case K_REGION:
			if (m->nregions == MANIFEST_REGIONS_MAX)
				return FAIL(&w, "more than %d regions", MANIFEST_REGIONS_MAX);
			struct manifest_region *reg = &m->regions[m->nregions];
			if ((r = parse_region(&w, l, reg)) || (r = check_region(&w, reg)) ||
			    (r = check_region_others(&w, m, m->nregions)))
				return r;
			m->nregions++;
			break;
		}
	}
	if (got < 0)
		return got;
	w.line = rd->no;
	for (int k = 0; k < K_COUNT; k++)
		if (!seen[k])
			return FAIL(&w, "end of file: no \"%s\" line", keys[k].name);
	return check_complete(&w, m);
}

int manifest_parse(const char *text, size_t len, const char *path, struct manifest *m,
		   struct err *e)
{
	memset(m, 0, sizeof(*m));
	if (len > MANIFEST_FILE_MAX)
		return text_fail(e, path, 0, "%zu bytes, more than the limit %u", len, MANIFEST_FILE_MAX);
	struct text_line *l = malloc(sizeof(*l));
	if (!l)
		return err_set(e, -ENOMEM, "%s: out of memory", path);
	struct text_reader rd;
	text_reader_init(&rd, text, len, path);
	int r = parse_lines(&rd, l, m, e);
	free(l);
	return r;
}

static int manifest_parse_into(const char *text, size_t len, const char *path, void *m,
			       struct err *e)
{
	return manifest_parse(text, len, path, m, e);
}

int manifest_load(const char *path, struct manifest *m, struct err *e)
{
	memset(m, 0, sizeof(*m));
	return text_load(path, MANIFEST_FILE_MAX, manifest_parse_into, m, e);
}

/* ---- formatter ---- */

int manifest_format(const struct manifest *m, char **text, size_t *len, struct err *e)
{
	*text = NULL;
	*len = 0;
	int r = manifest_check(m, e);
	if (r < 0)
		return r;
	struct text_out o;
	r = text_out_open(&o, "manifest", e);
	if (r < 0)
		return r;
	FILE *f = o.f;

	char hex[2 * MANIFEST_DIGEST_LEN + 1];
	time_t t = (time_t)m->created;
	struct tm tm;
	gmtime_r(&t, &tm);
	text_hex_format(m->guest_digest, sizeof(m->guest_digest), hex);
	fprintf(f, "%s %d\n", MANIFEST_MAGIC, MANIFEST_VERSION);
	fprintf(f, "parent %s\n", m->parent[0] ? m->parent : "-");
	fprintf(f, "created %04d-%02d-%02dT%02d:%02d:%02dZ\n", tm.tm_year + 1900, tm.tm_mon + 1,
		tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	fprintf(f, "guest %s %s\n", hex, m->guest);
	fprintf(f, "entry 0x%016llx\n", (ull)m->entry);
	for (size_t i = 0; i < m->nregions; i++) {
		const struct manifest_region *g = &m->regions[i];
		text_hex_format(g->digest, sizeof(g->digest), hex);
		fprintf(f, "region %s 0x%016llx 0x%016llx r%c%c %s %s %s\n", g->name, (ull)g->gpa,
			(ull)g->size, g->prot & PROT_WRITE ? 'w' : '-', g->prot & PROT_EXEC ? 'x' : '-',
			manifest_kind_name(g->kind), g->file, hex);
	}
	return text_out_close(&o, text, len, "manifest", e);
}

/* ---- comparison, lookup ---- */

static bool region_equal(const struct manifest_region *a, const struct manifest_region *b)
{
	return !strcmp(a->name, b->name) && a->gpa == b->gpa && a->size == b->size &&
	       a->prot == b->prot && a->kind == b->kind && !strcmp(a->file, b->file) &&
	       !memcmp(a->digest, b->digest, sizeof(a->digest));
}

bool manifest_equal(const struct manifest *a, const struct manifest *b)
{
	if (a->version != b->version || strcmp(a->parent, b->parent) || a->created != b->created ||
	    memcmp(a->guest_digest, b->guest_digest, sizeof(a->guest_digest)) ||
	    strcmp(a->guest, b->guest) || a->entry != b->entry || a->nregions != b->nregions)
		return false;
	for (size_t i = 0; i < a->nregions; i++)
		if (!region_equal(&a->regions[i], &b->regions[i]))
			return false;
	return true;
}

const struct manifest_region *manifest_region_find(const struct manifest *m, const char *name)
{
	for (size_t i = 0; i < m->nregions; i++)
		if (!strcmp(m->regions[i].name, name))
			return &m->regions[i];
	return NULL;
}

/* ---- digests ---- */

int manifest_digest_buf(const void *buf, size_t len, uint8_t digest[MANIFEST_DIGEST_LEN])
{
	unsigned n = 0;
	if (!EVP_Digest(buf, len, digest, &n, EVP_sha256(), NULL) || n != MANIFEST_DIGEST_LEN)
		return -EIO;
	return 0;
}

int manifest_digest_fd(int fd, const char *name, uint8_t digest[MANIFEST_DIGEST_LEN],
		       uint64_t *size, struct err *e)
{
	enum { CHUNK = 1 << 20 };
	int r = 0;
	uint64_t total = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(CHUNK);
	if (!ctx || !buf) {
		r = err_set(e, -ENOMEM, "%s: out of memory", name);
		goto out;
	}
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		r = err_set(e, -EIO, "%s: SHA-256 initialisation failed", name);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(e, -errno, "%s: read: %s", name, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (!EVP_DigestUpdate(ctx, buf, (size_t)n)) {
			r = err_set(e, -EIO, "%s: SHA-256 failed", name);
			goto out;
		}
		total += (uint64_t)n;
	}
	unsigned len = 0;
	if (!EVP_DigestFinal_ex(ctx, digest, &len) || len != MANIFEST_DIGEST_LEN) {
		r = err_set(e, -EIO, "%s: SHA-256 failed", name);
		goto out;
	}
	if (size)
		*size = total;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return r;
}

int manifest_verify_region(int dirfd, const char *dir, const struct manifest_region *r,
			   struct err *e)
{
	char name[4096 + MANIFEST_NAME_MAX];
	snprintf(name, sizeof(name), "%s/%s", dir, r->file);
	int fd = file_open_read(dirfd, r->file, O_NOFOLLOW);
	if (fd < 0)
		return err_set(e, -errno, "%s: open: %s", name, strerror(errno));
	struct stat st;
	int ret = 0;
	if (fstat(fd, &st) != 0) {
		ret = err_set(e, -errno, "%s: stat: %s", name, strerror(errno));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = err_set(e, -EINVAL, "%s: not a regular file", name);
		goto close_fd;
	}
	uint64_t size;
	uint8_t digest[MANIFEST_DIGEST_LEN];
	if ((ret = manifest_digest_fd(fd, name, digest, &size, e)) < 0)
		goto close_fd;
	if (r->kind == MANIFEST_KIND_SCRATCH ? size > r->size : size != r->size) {
		ret = err_set(e, -EINVAL, "%s: %llu bytes, region \"%s\" is %s%llu", name, (ull)size,
			      r->name, r->kind == MANIFEST_KIND_SCRATCH ? "at most " : "", (ull)r->size);
		goto close_fd;
	}
	if (memcmp(digest, r->digest, sizeof(digest))) {
		char want[2 * MANIFEST_DIGEST_LEN + 1], got[2 * MANIFEST_DIGEST_LEN + 1];
		text_hex_format(r->digest, sizeof(r->digest), want);
		text_hex_format(digest, sizeof(digest), got);
		ret = err_set(e, -EINVAL, "%s: digest mismatch: manifest says %s, file has %s", name,
			      want, got);
	}
close_fd:
	close(fd);
	return ret;
}
