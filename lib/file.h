/*
 * lib/file.h: reading a whole file with a size bound, and small helpers
 * about files.
 *
 * Guest ELF files, manifests and cpu files are read whole before they are
 * parsed; all of them come from places a user or another process controls,
 * so the size is bounded and a file that changes while it is read is judged
 * by what was read, never by what stat() said.
 */
#ifndef SNAPFS_FILE_H
#define SNAPFS_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/*
 * Read the regular file at path, at most max bytes, into a malloc'd buffer
 * (*buf, with a NUL after the data; *len excludes it).  Returns 0, or
 * -errno with e set ("PATH: ..."): notreg (e.g. -EINVAL) if path is not a
 * regular file, -EFBIG if it holds more than max bytes, open/read errors.
 */
int file_read_all(const char *path, size_t max, int notreg, char **buf, size_t *len,
		  struct err *e);

/*
 * openat(dirfd, path, O_RDONLY | O_CLOEXEC | flags) without waiting: a FIFO
 * in a file's place would hold a plain open until some writer came, so the
 * open is O_NONBLOCK, cleared again once it returns.  The caller checks the
 * file's type.  Returns the fd, or -1 with errno set.
 */
int file_open_read(int dirfd, const char *path, int flags);

/* Whether path is a folder (or a symlink to one). */
bool file_is_dir(const char *path);

/* Raise this process's soft limit of open files to the hard one (packs,
 * sandboxes: each holds files open).  0 or -errno. */
int file_raise_open_limit(void);

#endif
