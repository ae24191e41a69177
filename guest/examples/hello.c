/*
 * guest/examples/hello.c: the smallest useful guest.
 *
 *   echo     returns its argument
 *   add      "A B" (decimal) -> "A+B"
 *   counter  returns how many times it has been called in this sandbox,
 *            kept in a static variable: state that persists across calls
 *   greet    logs a line through the host and returns "hello, ARG"
 *   now      the host's monotonic clock in ns, as decimal text
 */
#include "snapvm.h"

static long echo(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	if (in_len > out_cap)
		return -1;
	memcpy(out, in, in_len);
	return (long)in_len;
}
SNAPVM_EXPORT(echo);

static long add(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	const char *p = in, *lim = p + in_len;
	long a = snapvm_strtol(p, lim, &p);
	long b = snapvm_strtol(p, lim, &p);
	return (long)snapvm_snprintf(out, out_cap, "%ld", a + b);
}
SNAPVM_EXPORT(add);

static uint64_t calls;

static long counter(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	(void)in;
	(void)in_len;
	calls++;
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)calls);
}
SNAPVM_EXPORT(counter);

static long greet(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	snapvm_printf("greeting %u bytes of name\n", (unsigned)in_len);
	size_t n = snapvm_snprintf(out, out_cap, "hello, ");
	if (n + in_len > out_cap)
		return -1;
	memcpy((char *)out + n, in, in_len);
	return (long)(n + in_len);
}
SNAPVM_EXPORT(greet);

static long now(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	(void)in;
	(void)in_len;
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)snapvm_time_ns());
}
SNAPVM_EXPORT(now);
