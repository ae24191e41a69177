/*
 * host/snapmap.c: the process-wide cache of region file mappings (see
 * snapmap.h).  A plain linked list: a process maps a handful of files, and
 * lookups happen once per region when a snapshot is opened, never on a
 * guest's path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "snapmap.h"

struct snapmap {
	struct snapmap *next;
	dev_t dev;
	ino_t ino;
	uint64_t size;
	struct timespec mtime;
	void *addr;
	unsigned long refs;
};

static pthread_mutex_t snapmap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapmap *snapmap_list;

static int same_file(const struct snapmap *m, const struct stat *st, uint64_t size)
{
	return m->dev == st->st_dev && m->ino == st->st_ino && m->size == size &&
	       m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

int snapmap_get(int fd, const char *name, uint64_t size, const void **addr,
		struct snapmap **ref, struct err *e)
{
	struct stat st;
	*addr = NULL;
	*ref = NULL;
	if (fstat(fd, &st) != 0)
		return err_set(e, -errno, "%s: stat: %s", name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, -EINVAL, "%s: not a regular file", name);
	if (size == 0 || (uint64_t)st.st_size != size)
		return err_set(e, -EINVAL, "%s: %llu bytes, the manifest says %llu", name,
			       (unsigned long long)st.st_size, (unsigned long long)size);
	if (size > SIZE_MAX)
		return err_set(e, -EFBIG, "%s: too large to map", name);

	pthread_mutex_lock(&snapmap_lock);
	for (struct snapmap *m = snapmap_list; m; m = m->next) {
		if (same_file(m, &st, size)) {
			m->refs++;
			pthread_mutex_unlock(&snapmap_lock);
			*addr = m->addr;
			*ref = m;
			return 0;
		}
	}
	int r = 0;
	struct snapmap *m = calloc(1, sizeof(*m));
	if (!m) {
		r = err_set(e, -ENOMEM, "%s: out of memory", name);
		goto unlock;
	}
	m->addr = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m->addr == MAP_FAILED) {
		r = err_set(e, -errno, "%s: mapping %llu bytes: %s", name,
			    (unsigned long long)size, strerror(errno));
		free(m);
		goto unlock;
	}
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->size = size;
	m->mtime = st.st_mtim;
	m->refs = 1;
	m->next = snapmap_list;
	snapmap_list = m;
	*addr = m->addr;
	*ref = m;
unlock:
	pthread_mutex_unlock(&snapmap_lock);
	return r;
}

void snapmap_put(struct snapmap *ref)
{
	if (!ref)
		return;
	pthread_mutex_lock(&snapmap_lock);
	if (--ref->refs > 0) {
		pthread_mutex_unlock(&snapmap_lock);
		return;
	}
	for (struct snapmap **p = &snapmap_list; *p; p = &(*p)->next) {
		if (*p == ref) {
			*p = ref->next;
			break;
		}
	}
	pthread_mutex_unlock(&snapmap_lock);
	munmap(ref->addr, ref->size);
	free(ref);
}

size_t snapmap_count(void)
{
	size_t n = 0;
	pthread_mutex_lock(&snapmap_lock);
	for (struct snapmap *m = snapmap_list; m; m = m->next)
		n++;
	pthread_mutex_unlock(&snapmap_lock);
	return n;
}
