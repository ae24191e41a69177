/*
 * fsd/store_admin_i.h: what the store's whole-store work shares: gc
 * (store_gc.c), fsck (store_fsck.c) and its repairs (store_repair.c), and
 * the lock that keeps gc and fsck apart (store_admin.c, with stats).
 */
#ifndef SNAPFS_STORE_ADMIN_I_H
#define SNAPFS_STORE_ADMIN_I_H

#include <stdbool.h>
#include <stdint.h>

#include "store_i.h"

/* A page of the index by location (tables made with HTAB_LOC): for fsck
 * its hash and counted references; for gc where it moved to. */
struct fpage {
	uint64_t loc;
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t moved_to;
	int64_t refs, seen;
	int bad;		/* 0, FPAGE_MISMATCH, or -errno: unreadable */
	bool unindexed;		/* intact in its pack, but its index row is lost */
	bool rehashed;		/* intact in its pack, but its index row's hash
				 * is damaged: hash holds the right one */
};

#define FPAGE_MISMATCH 1	/* the bytes do not match the hash */

/*
 * Take STORE/gc.lock: exclusive for gc, shared for fsck, so that no fsck
 * reads packs a gc is moving, in whatever processes they run.  *fd is -1
 * if there was nothing to lock: a read-only open in a folder it may not
 * write and where gc never ran, since gc leaves the file behind.  -EBUSY
 * with a message if the other one runs.  admin_unlock(*fd) lets go.
 */
int admin_lock(struct store *st, bool gc, int *fd, struct err *e);
void admin_unlock(int fd);

/* The integer the SQL query gives on st->db (its first column), or -1. */
int64_t admin_count(struct store *st, const char *sql);

/* ---- fsck and its repairs ------------------------------------------------------ */

struct fsck {
	struct store *st;
	store_fsck_fn report;
	store_progress_fn progress;
	void *arg;
	struct store_fsck_result *res;
	/* Problems that leave the references uncounted for sure: damage to
	 * index.db or to a page map (see store_fsck_repair). */
	uint64_t uncounted;
	bool index_bad;		/* SQLite's integrity check failed */
	/* Files whose recorded page count store_fsck_repair sets right,
	 * and page maps of missing inodes or of non-files it makes files. */
	struct page_count *counts;
	size_t ncounts, capcounts;
	/* Page-map rows failing their checksum that store_fsck_repair
	 * rewrites as rebuilt, and every page's location by its hash (made
	 * for the first such row). */
	struct row_fix *rows;
	size_t nrows, caprows;
	struct htab by_hash;
	/* For reading pages to hash them (fsck_scratch, made for the
	 * first). */
	struct store_hasher *hasher;
	uint8_t *page;
};

/* Row idx of ino's page map as rebuilt: n slots. */
struct row_fix {
	uint64_t ino;
	int64_t idx;
	int n;
	uint8_t locs[CHUNK_PAGES * 8];
	uint8_t hashes[CHUNK_PAGES][STORE_HASH_SIZE];
};

/* What fsck_maps counted in the page map of inode ino: its stored pages,
 * and where its last row ends.  missing: no inode has the map. */
struct page_count {
	uint64_t ino, pages, end;
	bool missing;
	bool stray;	/* the inode is there, but not a file */
};

/* Conditions a check (store_fsck.c) shares with its repair
 * (store_repair.c), so that they cannot drift apart.  The number of
 * subdirectories of the directory whose inode is the SQL expression of
 * (its link count is 2 more): */
#define SUBDIRS_OF(of)                                                 \
	"(SELECT count(*) FROM dentry d JOIN inode c ON c.ino = d.ino" \
	" WHERE d.parent = " of " AND (c.mode & 61440) = 16384)"
/* ... a symlink (of table inode) has no target: */
#define TARGETLESS "(mode & 61440) = 40960 AND ino NOT IN (SELECT ino FROM symlink)"
/* ... inode i records stored pages (table or alias i) but has no page
 * map left: */
#define PAGES_WITHOUT_MAP(i) \
	"(" i ".pages != 0 AND NOT EXISTS (SELECT 1 FROM chunk c WHERE c.ino = " i ".ino))"
/* ... and what to select from the directories, inode i, with a link
 * count that no path from the root (the SQL expression root) reaches: */
#define UNREACHED_DIRS(root, what)                                              \
	"WITH RECURSIVE reach(ino) AS (SELECT " root " UNION"                   \
	" SELECT d.ino FROM dentry d JOIN reach r ON d.parent = r.ino)"         \
	" SELECT " what " FROM inode i WHERE (i.mode & 61440) = 16384 AND i.nlink > 0" \
	" AND i.ino NOT IN reach"

/* The repairs (store_repair.c), in the transaction fsck_run opened, once
 * the checks ran.  Each page's reference count set to the references
 * counted in t: */
int fsck_repair_refs(struct fsck *f, struct htab *t);
/* the page maps and the tree (see store_fsck_repair in store.h): */
int fsck_repair_tree(struct fsck *f);

#endif
