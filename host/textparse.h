/*
 * host/textparse.h: the line and field rules shared by the snapshot's text
 * files (manifest, cpu).
 *
 * Both files are read by strict parsers and written by formatters that
 * produce exactly what the parsers accept.  The common lexical rules:
 *   - the file is UTF-8/ASCII text of at most a given size;
 *   - every line, the last one included, ends in '\n' (a missing final
 *     newline is taken as a truncated file and refused);
 *   - no NUL byte, no carriage return, no control character except tab;
 *   - a line holds at most TEXT_LINE_MAX bytes;
 *   - empty lines and lines whose first byte is '#' are skipped;
 *   - fields are separated by runs of spaces or tabs; a line may not start
 *     or end with whitespace.
 * Errors read "FILE:LINE: reason" and come with -EINVAL.
 */
#ifndef SNAPVM_TEXTPARSE_H
#define SNAPVM_TEXTPARSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

#define TEXT_LINE_MAX 8192	/* bytes in a line, without its newline */
#define TEXT_FIELDS_MAX 16	/* fields in a line */

struct text_line {
	unsigned no;			/* 1-based line number */
	size_t nfields;
	char *field[TEXT_FIELDS_MAX];	/* NUL-terminated, point into buf */
	char buf[TEXT_LINE_MAX + 1];
};

struct text_reader {
	const char *path;		/* for messages */
	const char *p, *end;		/* what is left to read */
	unsigned no;			/* number of the last line read */
};

/* Start reading len bytes at text; path names the file in messages. */
void text_reader_init(struct text_reader *r, const char *text, size_t len, const char *path);

/*
 * The next line that is neither empty nor a comment, split into fields.
 * Returns 1 with *line filled, 0 at the end of the text, or -EINVAL with e
 * set ("FILE:LINE: NUL byte", "... line longer than 8192 bytes", ...).
 */
int text_next(struct text_reader *r, struct text_line *line, struct err *e);

/* The next raw line, fields not split (first line of a file). Same returns. */
int text_next_raw(struct text_reader *r, struct text_line *line, struct err *e);

/* Set e to "PATH:LINE: message" (or "PATH: message" for line 0); returns -EINVAL. */
int text_fail(struct err *e, const char *path, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Parse an unsigned number: "0x" followed by 1 to 16 hex digits, or decimal
 * digits without a leading zero (other than "0" itself).  No sign, no
 * spaces.  Returns 0, -EINVAL for bad syntax, -ERANGE above max.
 */
int text_u64(const char *s, uint64_t max, uint64_t *v);

/* Exactly 2 * n hex digits (either case) into n bytes. Returns 0 or -EINVAL. */
int text_hex(const char *s, uint8_t *out, size_t n);

/* Write n bytes as 2 * n lowercase hex digits and a NUL into out. */
void text_hex_format(const uint8_t *in, size_t n, char *out);

/*
 * Read the file at path (a regular file of at most max bytes, else
 * -EINVAL) and hand its text to parse, which fills obj.  Returns what
 * parse returns, or -errno with e set if the file cannot be read.
 */
int text_load(const char *path, size_t max,
	      int (*parse)(const char *text, size_t len, const char *path, void *obj,
			   struct err *e),
	      void *obj, struct err *e);

/* A text being formatted into memory: fprintf to f between text_out_open
 * and text_out_close.  what names the file kind in messages. */
struct text_out {
	FILE *f;
	char *buf;
	size_t size;
};
int text_out_open(struct text_out *o, const char *what, struct err *e);
/* Finish: *text (malloc'd, NUL-terminated) and *len on success. */
int text_out_close(struct text_out *o, char **text, size_t *len, const char *what, struct err *e);

#endif
