/*
 * guest/include/snapvm.h: what a guest program sees of the snapvm runtime.
 *
 * A guest is a freestanding x86-64 program with no libc.  It exports
 * functions by name with SNAPVM_EXPORT; the host calls them with bytes in
 * and receives bytes out.  Between calls the guest keeps its memory, so
 * static variables and the heap persist for the life of the sandbox (and
 * into snapshots of it).
 *
 * Every function here is safe to call from any exported function.  None
 * returns an error through errno: there is no errno.
 */
#ifndef SNAPVM_H
#define SNAPVM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "snapvm_abi.h"

/*
 * Export fn under its own name.  Use after the definition:
 *
 *	static long add(const void *in, uint64_t in_len, void *out, uint64_t out_cap) { ... }
 *	SNAPVM_EXPORT(add);
 *
 * The entry is not const: in a position-independent guest its fn field is
 * relocated at load time, and relocated data lives in a writable segment.
 */
#define SNAPVM_EXPORT(fn_)						\
	static struct snapvm_export snapvm_export_##fn_			\
	__attribute__((used, section(SNAPVM_EXPORT_SECTION), aligned(8))) = { \
		.name = #fn_, .fn = (uint64_t)(uintptr_t)(snapvm_fn)(fn_), .flags = 0 }

/* Write n bytes (any content) to the host's log of this sandbox. */
void snapvm_print(const char *s, size_t n);

/* printf-like, into the host's log: %s %c %d %i %u %x %p with l/ll/z. */
void snapvm_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* End the sandbox with a message the host reports.  Never returns. */
__attribute__((noreturn, format(printf, 1, 2)))
void snapvm_abort(const char *fmt, ...);

/* The host's monotonic clock, in nanoseconds. */
uint64_t snapvm_time_ns(void);

/*
 * Allocate size bytes aligned to align (a power of two, 0 means 16) from
 * the heap region.  Returns NULL when the heap cannot hold it.  Memory is
 * zero when first handed out and is never given back (no free): guests
 * allocate what they keep.
 */
void *snapvm_alloc(size_t size, size_t align);

/* Bytes of heap not yet handed out. */
size_t snapvm_heap_free(void);

/*
 * Turn copy-on-write off for the page holding addr: its page-table entry
 * is made writable in place, pointing at the region page itself.  For a
 * region mapped read-only by the host this means the next write reaches the
 * host's read-only memory and ends the sandbox — a test of the host's own
 * protection, not something a well-behaved guest does.
 */
void snapvm_cow_bypass(const void *addr);

/*
 * The page-table entry that maps the 4 KiB page holding addr, or NULL if
 * none does.  Writing it (then invlpg) remaps the page: another test of the
 * host's protection, as above.
 */
uint64_t *snapvm_pte(const void *addr);

/* Formatting into a buffer: returns the length it wanted (like snprintf). */
size_t snapvm_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap);
size_t snapvm_snprintf(char *buf, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Decimal text to integer: parses an optional '-' and digits, skipping
 * leading spaces; *end (if not NULL) gets the first unparsed character. */
long snapvm_strtol(const char *s, const char *lim, const char **end);

/* The runtime's own string functions (the compiler may also call these). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#endif
