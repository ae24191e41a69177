/*
 * lib/file.c: bounded whole-file reads (see file.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

int file_open_read(int dirfd, const char *path, int flags)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);
	if (fd < 0)
		return -1;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

int file_raise_open_limit(void)
{
	struct rlimit l;
	if (getrlimit(RLIMIT_NOFILE, &l) < 0)
		return -errno;
	if (l.rlim_cur == l.rlim_max)
		return 0;
	l.rlim_cur = l.rlim_max;
	return setrlimit(RLIMIT_NOFILE, &l) < 0 ? -errno : 0;
}

int file_read_all(const char *path, size_t max, int notreg, char **buf, size_t *len,
		  struct err *e)
{
	*buf = NULL;
	*len = 0;
	int fd = file_open_read(AT_FDCWD, path, 0);
	if (fd < 0)
		return err_set(e, -errno, "%s: open: %s", path, strerror(errno));
	struct stat st;
	int r = 0;
	char *data = NULL;
	if (fstat(fd, &st) != 0) {
		r = err_set(e, -errno, "%s: stat: %s", path, strerror(errno));
		goto close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		r = err_set(e, notreg, "%s: not a regular file", path);
		goto close_fd;
	}
	if ((unsigned long long)st.st_size > max) {
		r = err_set(e, -EFBIG, "%s: %lld bytes, more than the limit %zu", path,
			    (long long)st.st_size, max);
		goto close_fd;
	}
	/* room for what stat said plus one byte, so growth shows; grow up to
	 * max + 1 bytes if the file does (+1 more for the NUL) */
	size_t cap = (size_t)st.st_size + 1, got = 0;
	data = malloc(cap + 1);
	if (!data) {
		r = err_set(e, -ENOMEM, "%s: out of memory for %zu bytes", path, cap);
		goto close_fd;
	}
	for (;;) {
		if (got == cap) {
			if (cap > max)
				break;
			size_t ncap = cap > (max + 1) / 2 ? max + 1 : 2 * cap;
			char *n = realloc(data, ncap + 1);
			if (!n) {
				r = err_set(e, -ENOMEM, "%s: out of memory for %zu bytes", path, ncap);
				goto free_data;
			}
			data = n;
			cap = ncap;
		}
		ssize_t n = read(fd, data + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(e, -errno, "%s: read: %s", path, strerror(errno));
			goto free_data;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > max) {
		r = err_set(e, -EFBIG, "%s: more than the limit of %zu bytes", path, max);
		goto free_data;
	}
	data[got] = 0;
	*buf = data;
	*len = got;
	data = NULL;
free_data:
	free(data);
close_fd:
	close(fd);
	return r;
}

bool file_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
