/*
 * fsd/fs_inode.c: the table of inodes the kernel holds (see fs_inode.h).
 *
 * A chained hash table under one mutex: requests touch it a few times
 * each, far less often than they touch the store, so one lock is enough.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "fs_inode.h"

static size_t fs_inode_hash(const struct fs_inode_table *t, uint64_t ino)
{
	ino *= 0x9e3779b97f4a7c15ull;
	return (size_t)(ino >> 32) & (t->nbucket - 1);
}

int fs_inode_table_init(struct fs_inode_table *t)
{
	t->nbucket = 1024;
	t->count = 0;
	t->bucket = calloc(t->nbucket, sizeof(*t->bucket));
	if (!t->bucket)
		return -ENOMEM;
	t->writer_releases = 0;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->released, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void fs_inode_table_destroy(struct fs_inode_table *t, void (*fn)(uint64_t ino, void *arg), void *arg)
{
	if (!t->bucket)
		return;
	for (size_t i = 0; i < t->nbucket; i++) {
		struct fs_inode *n = t->bucket[i];
		while (n) {
			struct fs_inode *next = n->next;
			if (fn)
				fn(n->ino, arg);
			free(n);
			n = next;
		}
	}
	free(t->bucket);
	t->bucket = NULL;
	pthread_cond_destroy(&t->released);
	pthread_mutex_destroy(&t->lock);
}

/* Grow the table when chains get long; called with the lock held. */
static void fs_inode_grow(struct fs_inode_table *t)
{
	size_t old = t->nbucket;
	struct fs_inode **nb = calloc(old * 2, sizeof(*nb));
	if (!nb)
		return;	/* longer chains, still correct */
	struct fs_inode **ob = t->bucket;
	t->bucket = nb;
	t->nbucket = old * 2;
	for (size_t i = 0; i < old; i++) {
		struct fs_inode *n = ob[i];
		while (n) {
			struct fs_inode *next = n->next;
			size_t h = fs_inode_hash(t, n->ino);
			n->next = nb[h];
			nb[h] = n;
			n = next;
		}
	}
	free(ob);
}

struct fs_inode *fs_inode_spare(void)
{
	return calloc(1, sizeof(struct fs_inode));
}

/* Find ino's link in its chain; with create, add it, from *spare if the
 * caller has one (taking it).  Lock held. */
static struct fs_inode **fs_inode_slot(struct fs_inode_table *t, uint64_t ino, bool create,
				       struct fs_inode **spare)
{
	struct fs_inode **p = &t->bucket[fs_inode_hash(t, ino)];
	for (; *p; p = &(*p)->next)
		if ((*p)->ino == ino)
			return p;
	if (!create)
		return NULL;
	struct fs_inode *n = spare && *spare ? *spare : calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	if (spare)
		*spare = NULL;
	n->ino = ino;
	n->changed = false;
	*p = n;
	if (++t->count > t->nbucket * 2) {
		fs_inode_grow(t);
		return fs_inode_slot(t, ino, false, NULL);
	}
	return p;
}

int fs_inode_lookup(struct fs_inode_table *t, uint64_t ino, uint64_t n, struct fs_inode **spare)
{
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, true, spare);
	if (p)
		(*p)->nlookup += n;
	pthread_mutex_unlock(&t->lock);
	return p ? 0 : -ENOMEM;
}

int fs_inode_open(struct fs_inode_table *t, uint64_t ino, bool writer, struct fs_inode **spare)
{
	int writers = -ENOMEM;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, true, spare);
	if (p) {
		(*p)->opens++;
		if (writer)
			(*p)->writers++;
		writers = (int)(*p)->writers;
	}
	pthread_mutex_unlock(&t->lock);
	return writers;
}

/* Unlink and free *p if nothing holds it; lock held.  True if freed. */
static bool fs_inode_drop_if_unused(struct fs_inode_table *t, struct fs_inode **p)
{
	struct fs_inode *n = *p;
	if (n->nlookup || n->opens)
		return false;
	*p = n->next;
	free(n);
	t->count--;
	return true;
}

bool fs_inode_forget(struct fs_inode_table *t, uint64_t ino, uint64_t n)
{
	bool gone = false;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p) {
		(*p)->nlookup = (*p)->nlookup > n ? (*p)->nlookup - n : 0;
		gone = fs_inode_drop_if_unused(t, p);
	}
	pthread_mutex_unlock(&t->lock);
	return gone;
}

bool fs_inode_release(struct fs_inode_table *t, uint64_t ino, bool writer)
{
	bool gone = false;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p) {
		if ((*p)->opens)
			(*p)->opens--;
		if (writer && (*p)->writers) {
			(*p)->writers--;
			t->writer_releases++;
			pthread_cond_broadcast(&t->released);
		}
		gone = fs_inode_drop_if_unused(t, p);
	}
	pthread_mutex_unlock(&t->lock);
	return gone;
}

uint64_t fs_inode_writer_releases(struct fs_inode_table *t)
{
	pthread_mutex_lock(&t->lock);
	uint64_t n = t->writer_releases;
	pthread_mutex_unlock(&t->lock);
	return n;
}

bool fs_inode_wait_writer_release(struct fs_inode_table *t, uint64_t seen,
				  const struct timespec *deadline)
{
	pthread_mutex_lock(&t->lock);
	while (t->writer_releases == seen &&
	       pthread_cond_timedwait(&t->released, &t->lock, deadline) != ETIMEDOUT)
		;
	bool more = t->writer_releases != seen;
	pthread_mutex_unlock(&t->lock);
	return more;
}

uint32_t fs_inode_writers(struct fs_inode_table *t, uint64_t ino)
{
	uint32_t w = 0;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p)
		w = (*p)->writers;
	pthread_mutex_unlock(&t->lock);
	return w;
}

void fs_inode_mark_changed(struct fs_inode_table *t, uint64_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p)
		(*p)->changed = true;
	pthread_mutex_unlock(&t->lock);
}

bool fs_inode_take_keep_cache(struct fs_inode_table *t, uint64_t ino)
{
	bool keep = true;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p) {
		keep = !(*p)->changed;
		(*p)->changed = false;
	}
	pthread_mutex_unlock(&t->lock);
	return keep;
}

void fs_inode_note_mode(struct fs_inode_table *t, uint64_t ino, uint32_t mode)
{
	bool setid = fs_mode_setid_cleared(mode) != mode;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p)
		(*p)->setid = setid;
	pthread_mutex_unlock(&t->lock);
}

bool fs_inode_setid(struct fs_inode_table *t, uint64_t ino)
{
	bool setid = false;
	pthread_mutex_lock(&t->lock);
	struct fs_inode **p = fs_inode_slot(t, ino, false, NULL);
	if (p)
		setid = (*p)->setid;
	pthread_mutex_unlock(&t->lock);
	return setid;
}
