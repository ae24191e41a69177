/*
 * lib/err.c: formatting of error messages (see err.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

int err_set(struct err *e, int code, const char *fmt, ...)
{
	if (!e)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->code = code;
	return code;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
	if (!e)
		return 0;
	char rest[ERR_MSG_MAX];
	memcpy(rest, e->msg, sizeof(rest));
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < sizeof(e->msg))
		snprintf(e->msg + n, sizeof(e->msg) - n, ": %.*s", (int)(sizeof(e->msg) - n), rest);
	return e->code;
}

const char *err_str(const struct err *e, int code)
{
	if (e && e->msg[0])
		return e->msg;
	return strerror(code < 0 ? -code : code);
}
