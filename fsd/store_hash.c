/*
 * fsd/store_hash.c: SHA-256 of pages through a reused OpenSSL EVP context,
 * and the zero-page test that lets holes skip hashing altogether.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store_hash.h"

struct store_hasher {
	EVP_MD *md;
	EVP_MD_CTX *ctx;
};

struct store_hasher *store_hasher_new(void)
{
	struct store_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	/* Fetch the implementation once: EVP_sha256() would look it up on
	 * every init. */
	h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	h->ctx = EVP_MD_CTX_new();
	if (!h->md || !h->ctx) {
		store_hasher_free(h);
		return NULL;
	}
	return h;
}

void store_hasher_free(struct store_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	EVP_MD_free(h->md);
	free(h);
}

int store_hash_begin(struct store_hasher *h)
{
	return EVP_DigestInit_ex2(h->ctx, h->md, NULL) == 1 ? 0 : -EIO;
}

int store_hash_add(struct store_hasher *h, const void *data, size_t len)
{
	return EVP_DigestUpdate(h->ctx, data, len) == 1 ? 0 : -EIO;
}

int store_hash_end(struct store_hasher *h, uint8_t out[STORE_HASH_SIZE])
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != STORE_HASH_SIZE)
		return -EIO;
	return 0;
}

int store_hash(struct store_hasher *h, const void *data, size_t len, uint8_t out[STORE_HASH_SIZE])
{
	int r = store_hash_begin(h);
	if (!r)
		r = store_hash_add(h, data, len);
	if (!r)
		r = store_hash_end(h, out);
	return r;
}

bool store_page_is_zero(const void *page)
{
	/* OR 64 bytes at a time (loads through memcpy: the buffer may be
	 * unaligned); the compiler vectorises this, and a page of data
	 * usually shows a non-zero word in its first line. */
	const unsigned char *p = page;
	for (size_t i = 0; i < STORE_PAGE_SIZE; i += 64) {
		uint64_t w[8];
		memcpy(w, p + i, sizeof(w));
		if (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7])
			return false;
	}
	return true;
}

bool store_hash_is_hole(const uint8_t *hash)
{
	static const uint8_t zero[STORE_HASH_SIZE];
	return memcmp(hash, zero, STORE_HASH_SIZE) == 0;
}

char *store_hash_hex(const uint8_t *hash, char out[2 * STORE_HASH_SIZE + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < STORE_HASH_SIZE; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[2 * STORE_HASH_SIZE] = 0;
	return out;
}
