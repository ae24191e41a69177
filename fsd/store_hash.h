/*
 * fsd/store_hash.h: page identity (SHA-256 through OpenSSL EVP) and
 * zero-page detection.
 *
 * A struct store_hasher holds a reusable digest context, so hashing a page
 * costs no allocation.  One hasher must not be used by two threads at once;
 * the store keeps a small pool of them (store_hasher_get/put) so writers can
 * hash in parallel without holding any store lock.
 */
#ifndef SNAPFS_STORE_HASH_H
#define SNAPFS_STORE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct store_hasher;

/* Returns NULL if OpenSSL cannot provide SHA-256 (or out of memory). */
struct store_hasher *store_hasher_new(void);
void store_hasher_free(struct store_hasher *h);

/* out = SHA-256(data[0..len)).  Returns 0 or -EIO. */
int store_hash(struct store_hasher *h, const void *data, size_t len,
	       uint8_t out[STORE_HASH_SIZE]);

/* Incremental use: begin, add any number of times, end. */
int store_hash_begin(struct store_hasher *h);
int store_hash_add(struct store_hasher *h, const void *data, size_t len);
int store_hash_end(struct store_hasher *h, uint8_t out[STORE_HASH_SIZE]);

/* True if all STORE_PAGE_SIZE bytes of page are zero. */
bool store_page_is_zero(const void *page);

/* True if the 32-byte hash is the all-zero value that marks a hole. */
bool store_hash_is_hole(const uint8_t *hash);

/* Lowercase hex of a hash into out (65 bytes incl. NUL); returns out. */
char *store_hash_hex(const uint8_t *hash, char out[2 * STORE_HASH_SIZE + 1]);

#endif
