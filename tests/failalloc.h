/*
 * tests/failalloc.h: allocations that fail on purpose.
 *
 * A test program built with failalloc.c and linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,
 * --wrap=strdup (meson: failalloc_link_args) has those calls of its own
 * code and of the static libraries it links counted while armed, and the
 * Nth (or the Nth and every one after it) fail with ENOMEM, on any thread.
 * Shared libraries keep the real ones; one with allocation hooks of its
 * own (SQLite) can send them through failalloc_fails.
 */
#ifndef SNAPFS_TEST_FAILALLOC_H
#define SNAPFS_TEST_FAILALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Count allocations from 0; the at-th fails (counting from 1; 0: none),
 * and with on every one after it too. */
void failalloc_arm(uint64_t at, bool on);

/* While set, an allocation counts (and may fail) only if counts() says so
 * on the thread that makes it; NULL: every one. */
void failalloc_filter(bool (*counts)(void));

/* Stop counting; returns how many allocations were counted. */
uint64_t failalloc_disarm(void);

/* How many allocations failed since failalloc_arm. */
uint64_t failalloc_failed(void);

/* For another allocator's hook: counts one allocation, true if it must
 * fail (errno is set).  hooked marks it as the hook's in the record. */
bool failalloc_fails(bool hooked);

/* Of the allocations counted while armed with at == 0 (up to
 * FAILALLOC_RECORD_MAX), was the i-th (from 1) made through a hook? */
#define FAILALLOC_RECORD_MAX 65536
bool failalloc_was_hooked(uint64_t i);

/*
 * Which of the total allocations a counting run recorded to fail in turn
 * (numbers from 1, into pick, which has room for total): each one made
 * through the wrappers, and about hooked_runs of the hooked ones, evenly
 * spread; or every one with SNAPFS_OOM_ALL=1 set.  Returns how many.
 */
size_t failalloc_pick(uint64_t total, uint64_t hooked_runs, uint64_t *pick);

/* Send SQLite's allocations through failalloc_fails(true); call before
 * SQLite starts (failalloc-sqlite.c). */
void failalloc_sqlite(void);

#endif
