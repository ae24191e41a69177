/*
 * host/manifest.h: the snapshot manifest, a small text file that says what
 * a snapshot directory holds.
 *
 * Format (version 1; doc/snapshot-format.md has the full description).
 * Lexical rules are those of textparse.h: every line ends in '\n', fields
 * are separated by spaces or tabs, empty lines and '#' comments are skipped.
 *
 *   snapfs-snapshot 1
 *   parent -
 *   created 2026-11-25T08:30:00Z
 *   guest 3f7a...64 hex digits... hello.elf
 *   entry 0x0000000001000000
 *   region text 0x0000000001000000 0x0000000000002000 r-x image text.mem 9c1e...
 *   region heap 0x0000000040000000 0x0000000004000000 rw- heap heap.mem 5d0b...
 *   region scratch 0x00000000c0000000 0x0000000000100000 rw- scratch scratch.img 77aa...
 *
 *   - line 1 is exactly "snapfs-snapshot 1";
 *   - parent, created, guest and entry appear once each, in any order;
 *     parent is "-" (none) or the parent snapshot's directory name or path,
 *     one field without whitespace; created is UTC, "YYYY-MM-DDTHH:MM:SSZ";
 *     guest is the SHA-256 of the guest ELF file and its file name;
 *   - one to MANIFEST_REGIONS_MAX region lines, kept in file order:
 *       region NAME GPA SIZE PERM KIND FILE DIGEST
 *     NAME and FILE: 1 to 63 bytes of [A-Za-z0-9_.-], each unique; FILE is
 *     not ".", "..", "manifest" or "cpu".  GPA and SIZE: numbers (0x hex or
 *     decimal), multiples of 4 KiB, SIZE > 0 and at most MANIFEST_SIZE_MAX,
 *     GPA + SIZE at most MANIFEST_GPA_LIMIT; regions do not overlap.  PERM:
 *     "r" then "w" or "-" then "x" or "-".  KIND: image, heap or scratch,
 *     exactly one scratch region.  DIGEST: SHA-256 of FILE's bytes, 64 hex
 *     digits;
 *   - the entry point lies inside a region with "x" permission.
 *
 * The parser refuses anything else with "FILE:LINE: reason" and -EINVAL;
 * manifest_format() writes the canonical form (fixed-width hex numbers,
 * lowercase digests, single spaces), which parses back to an equal struct.
 * Nothing here keeps state: safe on any thread.
 */
#ifndef SNAPVM_MANIFEST_H
#define SNAPVM_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MANIFEST_MAGIC "snapfs-snapshot"
#define MANIFEST_VERSION 1
#define MANIFEST_FILE_MAX (1u << 20)		/* bytes in a manifest file */
#define MANIFEST_REGIONS_MAX 64
#define MANIFEST_NAME_MAX 64			/* region and file names, with NUL */
#define MANIFEST_PARENT_MAX 4096		/* with NUL */
#define MANIFEST_GUEST_MAX 256			/* guest file name, with NUL */
#define MANIFEST_PAGE 4096ull
#define MANIFEST_SIZE_MAX (1ull << 36)		/* 64 GiB in one region */
#define MANIFEST_GPA_LIMIT (1ull << 48)		/* end of guest-physical space */
#define MANIFEST_DIGEST_LEN 32			/* SHA-256 */

enum manifest_kind {
	MANIFEST_KIND_IMAGE = 1,	/* pages of the guest ELF's PT_LOAD segments */
	MANIFEST_KIND_HEAP,		/* guest heap */
	MANIFEST_KIND_SCRATCH,		/* the sandbox's private scratch (used part) */
};

struct manifest_region {
	char name[MANIFEST_NAME_MAX];
	uint64_t gpa, size;		/* guest-physical address and size, bytes */
	int prot;			/* PROT_READ, with PROT_WRITE and PROT_EXEC */
	enum manifest_kind kind;
	char file[MANIFEST_NAME_MAX];	/* file name inside the snapshot directory */
	uint8_t digest[MANIFEST_DIGEST_LEN];	/* SHA-256 of the file's bytes */
};

struct manifest {
	unsigned version;			/* MANIFEST_VERSION */
	char parent[MANIFEST_PARENT_MAX];	/* "" for none */
	int64_t created;			/* seconds since 1970, UTC */
	uint8_t guest_digest[MANIFEST_DIGEST_LEN];	/* SHA-256 of the guest ELF */
	char guest[MANIFEST_GUEST_MAX];		/* guest ELF file name */
	uint64_t entry;				/* guest entry point */
	size_t nregions;
	struct manifest_region regions[MANIFEST_REGIONS_MAX];
};

/*
 * Parse len bytes of text (need not be NUL-terminated) into *m; path names
 * the file in messages.  Returns 0, or -EINVAL with e set to
 * "PATH:LINE: reason"; *m is unspecified on failure.
 */
int manifest_parse(const char *text, size_t len, const char *path, struct manifest *m,
		   struct err *e);

/* Read and parse the file at path (at most MANIFEST_FILE_MAX bytes). */
int manifest_load(const char *path, struct manifest *m, struct err *e);

/*
 * Check a manifest built in memory against every rule of the format.
 * Returns 0 or -EINVAL with e set to "manifest: reason".
 */
int manifest_check(const struct manifest *m, struct err *e);

/*
 * Write m in canonical form into a malloc'd, NUL-terminated buffer (*text,
 * *len bytes without the NUL; the caller frees it).  Refuses (-EINVAL) a
 * manifest that manifest_check() refuses; -ENOMEM.
 */
int manifest_format(const struct manifest *m, char **text, size_t *len, struct err *e);

/* Do a and b hold the same values (string bytes after the NUL ignored)? */
bool manifest_equal(const struct manifest *a, const struct manifest *b);

/* "image", "heap", "scratch"; NULL for a value outside the enum. */
const char *manifest_kind_name(enum manifest_kind kind);

/* The region called name, or NULL. */
const struct manifest_region *manifest_region_find(const struct manifest *m, const char *name);

/*
 * SHA-256 (OpenSSL EVP) of everything read from fd, from its current offset
 * to the end; *size gets the byte count if size is not NULL.  name is used
 * in messages.  Returns 0 or -errno.
 */
int manifest_digest_fd(int fd, const char *name, uint8_t digest[MANIFEST_DIGEST_LEN],
		       uint64_t *size, struct err *e);

/* SHA-256 of len bytes at buf. Returns 0 or -ENOMEM/-EIO. */
int manifest_digest_buf(const void *buf, size_t len, uint8_t digest[MANIFEST_DIGEST_LEN]);

/*
 * Check region r's file in the snapshot directory dirfd (dir names it in
 * messages): a regular file (symlinks are refused), of exactly r->size
 * bytes, or for the scratch region at most r->size bytes, whose SHA-256 is
 * r->digest.  Returns 0, -EINVAL ("DIR/FILE: digest mismatch: ..."), or the
 * -errno of opening and reading it.
 */
int manifest_verify_region(int dirfd, const char *dir, const struct manifest_region *r,
			   struct err *e);

#endif
