/*
 * fsd/store_htab.c: tables keyed by a page's hash, for the pending pages
 * (store_cache.c), the reference deltas of a commit (store_commit.c), and
 * fsck's and gc's page lists (store_admin.c).  Open addressing with linear
 * probing from the hash's first 8 bytes (SHA-256 output is uniform, so no
 * further mixing is needed), kept at most half full.  Entries only ever
 * get added; a table is dropped whole.
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

void *htab_find(const struct htab *t, const uint8_t *hash)
{
	if (!t->n)
		return NULL;
	for (size_t i = store_hash_slot(hash, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (!t->used[i])
			return NULL;
		if (!memcmp(slot(t, i), hash, STORE_HASH_SIZE))
			return slot(t, i);
	}
}

static int grow(struct htab *t)
{
	size_t cap = t->cap ? 2 * t->cap : HTAB_MIN;
	uint8_t *ents = calloc(cap, t->esz);
	bool *used = calloc(cap, sizeof(*used));
	if (!ents || !used) {
		free(ents);
		free(used);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->used[i])
			continue;
		size_t j = store_hash_slot(slot(t, i), cap);
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

void *htab_get(struct htab *t, const uint8_t *hash)
{
	assert(t->esz >= STORE_HASH_SIZE);
	void *e = htab_find(t, hash);
	if (e)
		return e;
	if (2 * (t->n + 1) > t->cap && grow(t))
		return NULL;
	size_t i = store_hash_slot(hash, t->cap);
	while (t->used[i])
		i = (i + 1) & (t->cap - 1);
	t->used[i] = true;
	t->n++;
	memcpy(slot(t, i), hash, STORE_HASH_SIZE);
	return slot(t, i);
}

void *htab_at(const struct htab *t, size_t i)
{
	return t->used[i] ? slot(t, i) : NULL;
}

void htab_free(struct htab *t)
{
	free(t->ents);
	free(t->used);
	*t = (struct htab){ .esz = t->esz };
}
