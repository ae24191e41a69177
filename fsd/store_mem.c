/*
 * fsd/store_mem.c: a page backend that keeps pages in memory.  It exists
 * so that tests can check the backend contract and the store's logic
 * without files; it has no file descriptors (fd_of is NULL), so splicing
 * callers fall back to copying.  Location = slot number + 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"

struct mem_be {
	struct store_backend be;
	pthread_mutex_t lock;
	void **pages;		/* slot -> page copy, NULL once released */
	size_t n, cap;
	size_t gc_n;		/* slots gc may release (those at gc_mark) */
};

static struct mem_be *mb_of(struct store_backend *be)
{
	return (struct mem_be *)be;
}

static int mb_put(struct store_backend *be, const uint8_t *hash, const void *page, uint64_t *loc)
{
	(void)hash;
	struct mem_be *mb = mb_of(be);
	void *copy = malloc(STORE_PAGE_SIZE);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, page, STORE_PAGE_SIZE);
	pthread_mutex_lock(&mb->lock);
	if (mb->n == mb->cap) {
		size_t cap = mb->cap ? 2 * mb->cap : 64;
		void **p = realloc(mb->pages, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&mb->lock);
			free(copy);
			return -ENOMEM;
		}
		mb->pages = p;
		mb->cap = cap;
	}
	mb->pages[mb->n++] = copy;
	*loc = mb->n;
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

static int mb_get(struct store_backend *be, const uint8_t *hash, uint64_t loc, void *page)
{
	(void)hash;
	struct mem_be *mb = mb_of(be);
	int r = -ENOENT;
	pthread_mutex_lock(&mb->lock);
	if (loc >= 1 && loc <= mb->n && mb->pages[loc - 1]) {
		memcpy(page, mb->pages[loc - 1], STORE_PAGE_SIZE);
		r = 0;
	}
	pthread_mutex_unlock(&mb->lock);
	return r;
}

static int mb_sync(struct store_backend *be, struct err *e)
{
	(void)be;
	(void)e;
	return 0;
}

/* Pages put since the last sync stay, unreferenced: gc frees them. */
static int mb_recover(struct store_backend *be, struct err *e)
{
	(void)be;
	(void)e;
	return 0;
}

static void mb_gc_mark(struct store_backend *be,
		       uint64_t (*live_in)(void *arg, uint64_t lo, uint64_t hi), void *arg)
{
	(void)live_in;
	(void)arg;
	struct mem_be *mb = mb_of(be);
	pthread_mutex_lock(&mb->lock);
	mb->gc_n = mb->n;
	pthread_mutex_unlock(&mb->lock);
}

static int mb_compact(struct store_backend *be, struct store_live_page *live, size_t n,
		      store_progress_fn progress, void *arg, struct err *e)
{
	/* Nothing to move: released pages free their memory directly. */
	(void)be;
	(void)live;
	(void)n;
	(void)progress;
	(void)arg;
	(void)e;
	return 0;
}

static int mb_release(struct store_backend *be, const struct store_live_page *live, size_t n,
		      struct err *e)
{
	(void)e;
	struct mem_be *mb = mb_of(be);
	pthread_mutex_lock(&mb->lock);
	size_t k = 0;
	for (size_t slot = 0; slot < mb->gc_n; slot++) {
		while (k < n && live[k].loc < slot + 1)
			k++;
		if (k < n && live[k].loc == slot + 1)
			continue;
		free(mb->pages[slot]);
		mb->pages[slot] = NULL;
	}
	mb->gc_n = 0;
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

static int mb_usage(struct store_backend *be, uint64_t *bytes, uint64_t *containers)
{
	struct mem_be *mb = mb_of(be);
	uint64_t count = 0;
	pthread_mutex_lock(&mb->lock);
	for (size_t i = 0; i < mb->n; i++)
		count += mb->pages[i] != NULL;
	pthread_mutex_unlock(&mb->lock);
	*bytes = count * STORE_PAGE_SIZE;
	*containers = 1;
	return 0;
}

static void mb_close(struct store_backend *be)
{
	struct mem_be *mb = mb_of(be);
	for (size_t i = 0; i < mb->n; i++)
		free(mb->pages[i]);
	free(mb->pages);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
}

static const struct store_backend_ops mem_ops = {
	.name = "memory",
	.put = mb_put,
	.put_many = NULL,
	.get = mb_get,
	.fd_of = NULL,
	.sync = mb_sync,
	.recover = mb_recover,
	.gc_mark = mb_gc_mark,
	.compact = mb_compact,
	.release = mb_release,
	.usage = mb_usage,
	.close = mb_close,
};

int store_mem_open(struct store_backend **out)
{
	struct mem_be *mb = calloc(1, sizeof(*mb));
	if (!mb)
		return -ENOMEM;
	mb->be.ops = &mem_ops;
	pthread_mutex_init(&mb->lock, NULL);
	*out = &mb->be;
	return 0;
}
