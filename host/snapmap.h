/*
 * host/snapmap.h: one read-only mapping per snapshot region file, shared
 * by every guest and sandbox of the process.
 *
 * Many sandboxes started from one snapshot must not map its region files
 * once each: the mappings would be identical (PROT_READ, MAP_SHARED) and
 * only cost address space and page-table set-up.  This cache keys each
 * mapping by the file's identity as fstat() sees it — device, inode, size
 * and modification time — and hands out counted references.  A file that
 * was replaced or rewritten has another identity and gets a new mapping;
 * sandboxes still running on the old one keep it until they let go.
 *
 * Threads: every function may be called from any thread (one process-wide
 * mutex guards the table).
 */
#ifndef SNAPVM_SNAPMAP_H
#define SNAPVM_SNAPMAP_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct snapmap;

/*
 * Map size bytes of the regular file open at fd (O_RDONLY is enough), or
 * take another reference to the mapping already made of the same file.
 * The file must be exactly size bytes long (a shorter file would turn guest
 * reads into faults).  name is used in messages.  On success *addr is the
 * PROT_READ MAP_SHARED mapping and *ref the reference to give back with
 * snapmap_put(); fd may be closed at once.  Returns 0, -EINVAL (not a
 * regular file, wrong size, size 0) or the -errno of fstat/mmap.
 */
int snapmap_get(int fd, const char *name, uint64_t size, const void **addr,
		struct snapmap **ref, struct err *e);

/* Drop a reference; the last one unmaps the file.  NULL is fine. */
void snapmap_put(struct snapmap *ref);

/* Number of distinct files mapped right now (for tests and figures). */
size_t snapmap_count(void);

#endif
