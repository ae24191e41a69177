/*
 * lib/err.h: error messages that travel with -errno codes.
 *
 * Library functions return 0 or -errno and never print.  Where the caller
 * needs to know *what* went wrong and *where* ("snapshot /mnt/s/web: manifest
 * line 7: region \"heap\" overlaps \"image\""), they also take a struct err
 * and fill it with err_set(), which formats the message and returns the code,
 * so the failing line reads:
 *
 *	return err_set(e, -EINVAL, "%s: line %u: bad address", path, line);
 *
 * A NULL struct err is allowed everywhere and means "caller doesn't care".
 * err_prefix() puts context in front of a message set deeper down.
 */
#ifndef SNAPFS_ERR_H
#define SNAPFS_ERR_H

#define ERR_MSG_MAX 512

struct err {
	int code;		/* the negative errno last set, 0 if none */
	char msg[ERR_MSG_MAX];	/* human-readable, no trailing newline */
};

/* Format fmt into e->msg, set e->code = code; returns code (expected < 0). */
int err_set(struct err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "PREFIX: " to e->msg (keeps e->code); returns e ? e->code : 0. */
int err_prefix(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* e->msg if set, else strerror(-code). Never NULL. */
const char *err_str(const struct err *e, int code);

#endif
