/*
 * guest/examples/regs.c: a guest that keeps state in the CPU rather than in
 * memory, to check that snapshots and resets carry the whole vCPU state.
 *
 *   msr    "INDEX [VALUE]" (hex): writes VALUE to the MSR if given, returns
 *          the MSR's value (rdmsr) as hex
 *   xmm    "[32 hex digits]": loads the 16 bytes (first byte first) into
 *          xmm7 if given, returns xmm7 as 32 hex digits
 *   dr     "N [VALUE]" (N one of 0 1 2 3 6 7, VALUE hex): writes VALUE to
 *          debug register N if given, returns its value as hex
 *   watch  arms a write watchpoint on a word of data (DR0 and DR7),
 *          returns DR7 as hex
 *   poke   adds 1 to that word and returns it: with the watchpoint armed
 *          the write raises a debug exception (#DB), which ends the call
 *
 * Nothing here is stored in memory between calls: what a later call reads
 * back was kept by the vCPU.  The guest is built general-registers-only,
 * so no code of the runtime or compiler touches xmm7; only the inline
 * assembly below does.
 */
#include "snapvm.h"

/* Hex digits (an optional 0x first) to a number; *ok = 0 if there are none or others. */
static uint64_t parse_hex(const char **p, const char *lim, int *ok)
{
	const char *s = *p;
	uint64_t v = 0;
	while (s < lim && *s == ' ')
		s++;
	if (lim - s > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	const char *start = s;
	for (; s < lim && *s != ' '; s++) {
		char c = *s;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0) {
			*ok = 0;
			return 0;
		}
		v = v << 4 | (uint64_t)d;
	}
	*ok = s > start && s - start <= 16;
	*p = s;
	return v;
}

/* Is there anything but spaces left? */
static int more(const char *p, const char *lim)
{
	while (p < lim && *p == ' ')
		p++;
	return p < lim;
}

static long msr(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	const char *p = in, *lim = p + in_len;
	int ok;
	uint32_t index = (uint32_t)parse_hex(&p, lim, &ok);
	if (!ok)
		return -22;
	if (more(p, lim)) {
		uint64_t v = parse_hex(&p, lim, &ok);
		if (!ok)
			return -22;
		__asm__ volatile("wrmsr" : : "c"(index), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
	}
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(index));
	return (long)snapvm_snprintf(out, out_cap, "0x%lx", (unsigned long)((uint64_t)hi << 32 | lo));
}
SNAPVM_EXPORT(msr);

static long xmm(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	uint8_t b[16];
	const char *p = in;
	if (in_len) {
		if (in_len != 32)
			return -22;
		for (int i = 0; i < 16; i++) {
			const char *q = p + 2 * i;
			int ok;
			b[i] = (uint8_t)parse_hex(&q, p + 2 * i + 2, &ok);
			if (!ok)
				return -22;
		}
		__asm__ volatile("movdqu %0, %%xmm7" : : "m"(b));
	}
	__asm__ volatile("movdqu %%xmm7, %0" : "=m"(b));
	if (out_cap < 32)
		return -105;
	static const char digits[] = "0123456789abcdef";
	char *o = out;
	for (int i = 0; i < 16; i++) {
		o[2 * i] = digits[b[i] >> 4];
		o[2 * i + 1] = digits[b[i] & 15];
	}
	return 32;
}
SNAPVM_EXPORT(xmm);

static volatile uint64_t watched;

static long watch(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	(void)in, (void)in_len;
	/* L0 (enable 0), RW0 = 01 (data writes), LEN0 = 11 (8 bytes), bit 10 set */
	uint64_t dr7 = 0x400 | 1u | 1u << 16 | 3u << 18;
	__asm__ volatile("mov %0, %%db0" : : "r"((uint64_t)(uintptr_t)&watched));
	__asm__ volatile("mov %0, %%db7" : : "r"(dr7));
	__asm__ volatile("mov %%db7, %0" : "=r"(dr7));
	return (long)snapvm_snprintf(out, out_cap, "0x%lx", (unsigned long)dr7);
}
SNAPVM_EXPORT(watch);

static long poke(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	(void)in, (void)in_len;
	watched = watched + 1;
	return (long)snapvm_snprintf(out, out_cap, "%lu", (unsigned long)watched);
}
SNAPVM_EXPORT(poke);

/* mov to and from a debug register takes its number in the instruction. */
#define DR_CASE(n)                                                              \
	case n:                                                                 \
		if (set)                                                        \
			__asm__ volatile("mov %0, %%db" #n : : "r"(v));         \
		__asm__ volatile("mov %%db" #n ", %0" : "=r"(v));               \
		break

static long dr(const void *in, uint64_t in_len, void *out, uint64_t out_cap)
{
	const char *p = in, *lim = p + in_len;
	int ok;
	uint64_t n = parse_hex(&p, lim, &ok);
	if (!ok)
		return -22;
	int set = more(p, lim);
	uint64_t v = 0;
	if (set) {
		v = parse_hex(&p, lim, &ok);
		if (!ok)
			return -22;
	}
	switch (n) {
		DR_CASE(0);
		DR_CASE(1);
		DR_CASE(2);
		DR_CASE(3);
		DR_CASE(6);
		DR_CASE(7);
	default:
		return -22;
	}
	return (long)snapvm_snprintf(out, out_cap, "0x%lx", (unsigned long)v);
}
SNAPVM_EXPORT(dr);
