/*
 * host/textparse.c: line reading and field parsing for the snapshot's text
 * files (rules in textparse.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "textparse.h"

void text_reader_init(struct text_reader *r, const char *text, size_t len, const char *path)
{
	r->path = path;
	r->p = text;
	r->end = text + len;
	r->no = 0;
}

int text_fail(struct err *e, const char *path, unsigned line, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		return err_set(e, -EINVAL, "%s:%u: %s", path, line, msg);
	return err_set(e, -EINVAL, "%s: %s", path, msg);
}

int text_next_raw(struct text_reader *r, struct text_line *line, struct err *e)
{
	if (r->p >= r->end)
		return 0;
	line->no = ++r->no;
	line->nfields = 0;
	const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
	size_t n = (size_t)((nl ? nl : r->end) - r->p);
	if (n > TEXT_LINE_MAX)
		return text_fail(e, r->path, line->no, "line longer than %d bytes", TEXT_LINE_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)r->p[i];
		if (c == 0)
			return text_fail(e, r->path, line->no, "NUL byte at column %zu", i + 1);
		if (c == '\r')
			return text_fail(e, r->path, line->no, "carriage return at column %zu (lines end in \\n alone)",
					 i + 1);
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return text_fail(e, r->path, line->no, "control character 0x%02x at column %zu",
					 c, i + 1);
	}
	if (!nl)
		return text_fail(e, r->path, line->no, "no newline at the end of the file (truncated?)");
	memcpy(line->buf, r->p, n);
	line->buf[n] = 0;
	r->p = nl + 1;
	return 1;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t';
}

int text_next(struct text_reader *r, struct text_line *line, struct err *e)
{
	for (;;) {
		int got = text_next_raw(r, line, e);
		if (got <= 0)
			return got;
		char *s = line->buf;
		size_t n = strlen(s);
		if (n == 0 || s[0] == '#')
			continue;
		if (is_space(s[0]))
			return text_fail(e, r->path, line->no, "line starts with whitespace");
		if (is_space(s[n - 1]))
			return text_fail(e, r->path, line->no, "trailing whitespace");
		while (*s) {
			if (line->nfields == TEXT_FIELDS_MAX)
				return text_fail(e, r->path, line->no, "more than %d fields", TEXT_FIELDS_MAX);
			line->field[line->nfields++] = s;
			while (*s && !is_space(*s))
				s++;
			while (is_space(*s))
				*s++ = 0;
		}
		return 1;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int text_u64(const char *s, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		size_t n = strlen(s);
		if (n == 0 || n > 16)
			return -EINVAL;
		for (size_t i = 0; i < n; i++) {
			int d = hexval(s[i]);
			if (d < 0)
				return -EINVAL;
			x = x << 4 | (uint64_t)d;
		}
	} else {
		if (s[0] < '0' || s[0] > '9' || (s[0] == '0' && s[1]))
			return -EINVAL;
		for (; *s; s++) {
			if (*s < '0' || *s > '9')
				return -EINVAL;
			uint64_t d = (uint64_t)(*s - '0');
			if (x > (UINT64_MAX - d) / 10)
				return -ERANGE;
			x = x * 10 + d;
		}
	}
	if (x > max)
		return -ERANGE;
	*v = x;
	return 0;
}

int text_hex(const char *s, uint8_t *out, size_t n)
{
	if (strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void text_hex_format(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

int text_load(const char *path, size_t max,
	      int (*parse)(const char *text, size_t len, const char *path, void *obj,
			   struct err *e),
	      void *obj, struct err *e)
{
	char *text;
	size_t len;
	int r = file_read_all(path, max, -EINVAL, &text, &len, e);
	if (r < 0)
		return r;
	r = parse(text, len, path, obj, e);
	free(text);
	return r;
}

int text_out_open(struct text_out *o, const char *what, struct err *e)
{
	*o = (struct text_out){ 0 };
	o->f = open_memstream(&o->buf, &o->size);
	return o->f ? 0 : err_set(e, -ENOMEM, "%s: out of memory", what);
}

int text_out_close(struct text_out *o, char **text, size_t *len, const char *what, struct err *e)
{
	if (fclose(o->f) != 0) {
		free(o->buf);
		return err_set(e, -ENOMEM, "%s: out of memory", what);
	}
	*text = o->buf;
	*len = o->size;
	return 0;
}
