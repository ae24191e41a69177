/*
 * fsd/store_htab.c: tables keyed by a page's hash (the pending pages,
 * store_cache.c) or by a page's location (the reference deltas of a
 * commit, store_commit.c; fsck's and gc's page lists, store_fsck.c and
 * store_gc.c).
 * Open addressing with linear probing, kept at most half full.  A hash
 * key's first 8 bytes are uniform already (SHA-256); a location is mixed
 * first, as locations of neighbouring pages differ only in their low bits
 * and those of different packs share them.  Entries only ever get added;
 * a table is emptied whole, and may keep its slots for the next use.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_i.h"

#define HTAB_MIN 1024u

static void *slot(const struct htab *t, size_t i)
{
	return t->ents + i * t->esz;
}

/* Where probing for key starts in a table of cap slots. */
static size_t key_slot(const struct htab *t, const void *key, size_t cap)
{
	uint64_t k;
	memcpy(&k, key, sizeof(k));
	if (t->ksz != STORE_HASH_SIZE) {
		k *= 0x9e3779b97f4a7c15ull;
		k ^= k >> 32;
	}
	return (size_t)k & (cap - 1);
}

void *htab_find(const struct htab *t, const void *key)
{
	if (!t->n)
		return NULL;
	for (size_t i = key_slot(t, key, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (!t->used[i])
			return NULL;
		if (!memcmp(slot(t, i), key, t->ksz))
			return slot(t, i);
	}
}

static int grow(struct htab *t)
{
	size_t cap = t->cap ? 2 * t->cap : HTAB_MIN;
	/* Entries are cleared as they are added (htab_get), not here. */
	uint8_t *ents = cap <= SIZE_MAX / t->esz ? malloc(cap * t->esz) : NULL;
	bool *used = calloc(cap, sizeof(*used));
	if (!ents || !used) {
		free(ents);
		free(used);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->used[i])
			continue;
		size_t j = key_slot(t, slot(t, i), cap);
		while (used[j])
			j = (j + 1) & (cap - 1);
		memcpy(ents + j * t->esz, slot(t, i), t->esz);
		used[j] = true;
	}
	free(t->ents);
	free(t->used);
	t->ents = ents;
	t->used = used;
	t->cap = cap;
	return 0;
}

void *htab_get(struct htab *t, const void *key)
{
	assert(t->esz >= t->ksz && t->ksz >= sizeof(uint64_t));
	void *e = htab_find(t, key);
	if (e)
		return e;
	if (2 * (t->n + 1) > t->cap && grow(t))
		return NULL;
	size_t i = key_slot(t, key, t->cap);
	while (t->used[i])
		i = (i + 1) & (t->cap - 1);
	t->used[i] = true;
	t->n++;
	memset(slot(t, i), 0, t->esz);
	memcpy(slot(t, i), key, t->ksz);
	return slot(t, i);
}

void *htab_at(const struct htab *t, size_t i)
{
	return t->used[i] ? slot(t, i) : NULL;
}

void htab_clear(struct htab *t, size_t keep)
{
	if (t->cap > keep) {
		htab_free(t);
		return;
	}
	if (t->n)
		memset(t->used, 0, t->cap * sizeof(*t->used));
	t->n = 0;
}

void htab_free(struct htab *t)
{
	free(t->ents);
	free(t->used);
	*t = (struct htab){ .esz = t->esz, .ksz = t->ksz };
}
