/*
 * tests/failalloc.c: allocations that fail on purpose (failalloc.h).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"

static bool armed;
static uint64_t fail_at;	/* 0: none */
static bool fail_on;
static uint64_t counted;
static uint64_t failed;
static bool hooked_at[FAILALLOC_RECORD_MAX];
static bool (*filter)(void);

void failalloc_arm(uint64_t at, bool on)
{
	__atomic_store_n(&counted, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&failed, 0, __ATOMIC_RELAXED);
	fail_at = at;
	fail_on = on;
	if (!at)
		memset(hooked_at, 0, sizeof(hooked_at));
	__atomic_store_n(&armed, true, __ATOMIC_RELEASE);
}

void failalloc_filter(bool (*counts)(void))
{
	__atomic_store_n(&filter, counts, __ATOMIC_RELEASE);
}

uint64_t failalloc_disarm(void)
{
	__atomic_store_n(&armed, false, __ATOMIC_RELEASE);
	return __atomic_load_n(&counted, __ATOMIC_RELAXED);
}

uint64_t failalloc_failed(void)
{
	return __atomic_load_n(&failed, __ATOMIC_RELAXED);
}

bool failalloc_was_hooked(uint64_t i)
{
	return i >= 1 && i <= FAILALLOC_RECORD_MAX && hooked_at[i - 1];
}

bool failalloc_fails(bool hooked)
{
	if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE))
		return false;
	bool (*counts)(void) = __atomic_load_n(&filter, __ATOMIC_ACQUIRE);
	if (counts && !counts())
		return false;
	uint64_t n = __atomic_add_fetch(&counted, 1, __ATOMIC_RELAXED);
	if (!fail_at) {
		if (n <= FAILALLOC_RECORD_MAX)
			hooked_at[n - 1] = hooked;
		return false;
	}
	if (n < fail_at || (n > fail_at && !fail_on))
		return false;
	__atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
	errno = ENOMEM;
	return true;
}

size_t failalloc_pick(uint64_t total, uint64_t hooked_runs, uint64_t *pick)
{
	const char *all = getenv("SNAPFS_OOM_ALL");
	size_t n = 0;
	uint64_t hooked = 0;
	for (uint64_t i = 1; i <= total; i++)
		hooked += failalloc_was_hooked(i);
	uint64_t step = all && !strcmp(all, "1") ? 1 : hooked > hooked_runs ? hooked / hooked_runs : 1;
	uint64_t nth = 0;
	for (uint64_t i = 1; i <= total; i++)
		if (!failalloc_was_hooked(i) || nth++ % step == 0)
			pick[n++] = i;
	return n;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
char *__wrap_strdup(const char *s);

void *__wrap_malloc(size_t n)
{
	return failalloc_fails(false) ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return failalloc_fails(false) ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return failalloc_fails(false) ? NULL : __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
	return failalloc_fails(false) ? NULL : __real_aligned_alloc(align, n);
}

char *__wrap_strdup(const char *s)
{
	return failalloc_fails(false) ? NULL : __real_strdup(s);
}
