/*
 * fsd/store_admin.c: whole-store work: gc (drop unreferenced pages, compact
 * packs), fsck (re-hash every page, resolve every reference, recount every
 * reference count and link count) and stats.
 *
 * gc runs in the process that has the store open for writing (the lock
 * keeps every other process out) and excludes changes of file data (not
 * reads) through change_lock while it forgets dead pages, commits while
 * it points the index at pages it moved, all other calls through gc_lock
 * only while it frees pages, and nothing while it copies them (see
 * store_gc).  Its steps are ordered for crashes: moved pages are synced
 * before the transaction that points the index and page maps at them
 * commits, and old packs are deleted only after that.
 * fsck, which may run in another process on a read-only open, would read
 * moved or deleted packs under gc; the two keep out of each other with a
 * flock on STORE/gc.lock (admin_lock).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_i.h"

/* A page of the index by location (tables made with HTAB_LOC): for fsck
 * its hash and counted references; for gc where it moved to. */
struct fpage {
	uint64_t loc;
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t moved_to;
	int64_t refs, seen;
	int bad;		/* 0, FPAGE_MISMATCH, or -errno: unreadable */
};

#define FPAGE_MISMATCH 1	/* the bytes do not match the hash */

/* Why the page cannot be used, for a problem's text. */
static const char *fpage_why(int bad)
{
	switch (bad) {
	case FPAGE_MISMATCH:
		return "its bytes do not match its hash";
	case -ENOENT:
		return "unreadable: its pack file is missing";
	case -EIO:
		return "unreadable: past the end of its pack, or a read error";
	default:
		return "unreadable";
	}
}

/* ---- gc and fsck apart -------------------------------------------------------- */

/*
 * Take STORE/gc.lock: exclusive for gc, shared for fsck, so that no fsck
 * reads packs a gc is moving, in whatever processes they run.  *fd is -1
 * if there was nothing to lock: a read-only open in a folder it may not
 * write and where gc never ran, since gc leaves the file behind.  -EBUSY
 * with a message if the other one runs.
 */
static int admin_lock(struct store *st, bool gc, int *fd, struct err *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/gc.lock", st->dir);
	*fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
	if (*fd < 0 && !gc && (errno == EACCES || errno == EROFS))
		*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		if (!gc && (errno == ENOENT || errno == EACCES || errno == EROFS))
			return 0;
		return err_set(e, -errno, "store %s: %s: %s", st->dir, path, strerror(errno));
	}
	if (flock(*fd, (gc ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
		return 0;
	int r = -errno;
	close(*fd);
	*fd = -1;
	if (r != -EWOULDBLOCK)
		return err_set(e, r, "store %s: %s: %s", st->dir, path, strerror(-r));
	return err_set(e, -EBUSY,
		       gc ? "store %s: an fsck is checking it; gc would move pages under it (run gc "
			    "once the fsck has finished)"
			  : "store %s: gc is moving its pages (run fsck once gc has finished)",
		       st->dir);
}

static void admin_unlock(int fd)
{
	if (fd >= 0)
		close(fd);	/* and with it the flock */
}

/* ---- fsck ------------------------------------------------------------------- */

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
	 * and page maps of missing inodes it gives a file again. */
	struct page_count *counts;
	size_t ncounts, capcounts;
	/* Page-map rows failing their checksum that store_fsck_repair
	 * rewrites as rebuilt, and every page's location by its hash (made
	 * for the first such row). */
	struct row_fix *rows;
	size_t nrows, caprows;
	struct htab by_hash;
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

static void vproblem(struct fsck *f, uint64_t ino, int64_t page, const uint8_t *hash,
		     const char *fmt, va_list ap)
{
	f->res->problems++;
	if (!f->report)
		return;
	char what[512], path[4096];
	vsnprintf(what, sizeof(what), fmt, ap);
	path[0] = 0;
	if (ino)
		store_path_of(f->st->db, ino, path, sizeof(path));
	struct store_fsck_problem p = { .path = path[0] ? path : NULL, .ino = ino, .page = page,
					.hash = hash, .what = what };
	f->report(f->arg, &p);
}

static void problem(struct fsck *f, uint64_t ino, int64_t page, const uint8_t *hash,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void problem(struct fsck *f, uint64_t ino, int64_t page, const uint8_t *hash,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vproblem(f, ino, page, hash, fmt, ap);
	va_end(ap);
}

/* A problem after which the references cannot be counted for sure. */
static void map_problem(struct fsck *f, uint64_t ino, int64_t page, const uint8_t *hash,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void map_problem(struct fsck *f, uint64_t ino, int64_t page, const uint8_t *hash,
			const char *fmt, ...)
{
	f->uncounted++;
	va_list ap;
	va_start(ap, fmt);
	vproblem(f, ino, page, hash, fmt, ap);
	va_end(ap);
}

static int64_t count_of(struct store *st, const char *sql)
{
	sqlite3_stmt *s;
	int64_t n = -1;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return n;
}

/* Where the page at loc lives, for a problem's text. */
static const char *fsck_where(struct fsck *f, uint64_t loc, char *buf, size_t size)
{
	struct store_backend *be = f->st->be;
	if (be->ops->where)
		be->ops->where(be, loc, buf, size);
	else
		snprintf(buf, size, "location %llx", (unsigned long long)loc);
	return buf;
}

/* Every indexed page: readable, and its bytes hash to its name. */
static int fsck_pages(struct fsck *f, struct htab *t)
{
	struct store *st = f->st;
	char at[64];
	int64_t total = count_of(st, "SELECT count(*) FROM page");
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "SELECT hash, loc, refs FROM page ORDER BY loc", -1, &s, NULL) !=
	    SQLITE_OK)
		return -EIO;
	struct store_hasher *h = store_hasher_get(st);
	uint8_t *page = malloc(STORE_PAGE_SIZE);
	int r = h && page ? 0 : -ENOMEM;
	int rc = SQLITE_DONE;
	uint64_t done = 0;
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const uint8_t *hash = sqlite3_column_blob(s, 0);
		uint64_t loc = (uint64_t)sqlite3_column_int64(s, 1);
		int64_t refs = sqlite3_column_int64(s, 2);
		if (sqlite3_column_bytes(s, 0) != STORE_HASH_SIZE) {
			map_problem(f, 0, -1, NULL, "page index entry with a %d-byte hash",
				sqlite3_column_bytes(s, 0));
			continue;
		}
		struct fpage *fp = htab_get(t, &loc);
		if (!fp) {
			r = -ENOMEM;
			break;
		}
		memcpy(fp->hash, hash, STORE_HASH_SIZE);
		fp->refs = refs;
		if (refs < 0)
			problem(f, 0, -1, hash, "page has a negative reference count %lld",
				(long long)refs);
		int g = st->be->ops->get(st->be, hash, loc, page);
		uint8_t got[STORE_HASH_SIZE];
		if (g)
			fp->bad = g;
		else if (!(r = store_hash(h, page, STORE_PAGE_SIZE, got)) &&
			 memcmp(got, hash, STORE_HASH_SIZE))
			fp->bad = FPAGE_MISMATCH;
		if (fp->bad && refs == 0)
			problem(f, 0, -1, hash, "unreferenced page at %s: %s",
				fsck_where(f, loc, at, sizeof(at)), fpage_why(fp->bad));
		f->res->pages_checked++;
		if (f->progress && (++done % 4096 == 0 || done == (uint64_t)total))
			f->progress(f->arg, "checking pages", done, (uint64_t)total);
	}
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(s);
	store_hasher_put(st, h);
	free(page);
	return r;
}

/* index.db itself: SQLite's own check of its pages, tables and indexes
 * (gc deletes what an index says is dead, so a damaged index is damage
 * fsck must name, not skip). */
static int fsck_index(struct fsck *f)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(f->st->db, "PRAGMA integrity_check(100)", -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *what = (const char *)sqlite3_column_text(s, 0);
		if (!what || !strcmp(what, "ok"))
			continue;
		/* A row may hold several lines, the first of them a header
		 * ("*** in database main ***"): one problem per line. */
		for (const char *l = what, *end; *l; l = *end ? end + 1 : end) {
			end = strchrnul(l, '\n');
			if (end > l && strncmp(l, "*** ", 4)) {
				map_problem(f, 0, -1, NULL, "index.db: %.*s", (int)(end - l), l);
				f->index_bad = true;
			}
		}
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Row idx of ino's page map fails its checksum (and is not rebuilt). */
static void map_sum_problem(struct fsck *f, uint64_t ino, int64_t idx)
{
	map_problem(f, ino, idx * CHUNK_PAGES, NULL, "page-map row %lld does not match its checksum",
		    (long long)idx);
}

/* Row idx of ino's page map against the checksum it is stored with
 * (want): a problem if it fails.  0, or -errno if the sum cannot be
 * worked out. */
static int fsck_map_sum(struct fsck *f, uint64_t ino, int64_t idx, const void *locs,
			size_t nlocs, const void *hashes, size_t nhashes, int64_t want)
{
	int r = store_map_check(f->st, ino, (uint64_t)idx, locs, nlocs, hashes, nhashes, want);
	if (r != -EUCLEAN)
		return r;
	map_sum_problem(f, ino, idx);
	return 0;
}

/* Each page's location by its hash, from fsck_pages' table t. */
static int index_by_hash(struct fsck *f, const struct htab *t)
{
	for (size_t i = 0; i < t->cap; i++) {
		const struct fpage *fp = htab_at(t, i);
		if (!fp)
			continue;
		struct ptab_ent *pe = htab_get(&f->by_hash, fp->hash);
		if (!pe)
			return -ENOMEM;
		if (!pe->loc)
			pe->loc = fp->loc;
	}
	return 0;
}

/* Row x, the next of f->rows, is rebuilt: its part damaged from the
 * other, from, and *lb, *hb point at it. */
static int row_rebuilt(struct fsck *f, const struct row_fix *x, const uint8_t **lb,
		       const uint8_t **hb, const char *damaged, const char *from)
{
	problem(f, x->ino, x->idx * CHUNK_PAGES, NULL,
		"page-map row %lld does not match its checksum: its %s are damaged"
		" (rebuilt from its %s)", (long long)x->idx, damaged, from);
	*lb = x->locs;
	*hb = x->hashes[0];
	f->nrows++;
	return 1;
}

/*
 * Row idx of ino's page map (*lb: nl locations, *hb: nh hashes; -1: not
 * a whole number of them) fails its checksum, sum.  If its hashes looked
 * up by its locations, or its locations by its hashes, give the checksum
 * back, the damage was in the other part: the row so rebuilt is kept for
 * the repair (f->rows), *lb and *hb point at it, to be checked and
 * counted instead, and 1 is returned; else 0.  (A row that is whole but
 * not this one's, say another row's copy, gets nothing back: its
 * checksum is of another ino and idx.)
 */
static int fsck_rebuild_row(struct fsck *f, const struct htab *t, uint64_t ino, int64_t idx,
			    const uint8_t **lb, const uint8_t **hb, int nl, int nh, int64_t sum)
{
	int r = store_grow((void **)&f->rows, &f->caprows, f->nrows, sizeof(*f->rows));
	if (r)
		return r;
	struct row_fix *x = &f->rows[f->nrows];
	*x = (struct row_fix){ .ino = ino, .idx = idx, .n = nl };
	bool ok = nl >= 0;
	for (int k = 0; k < nl && ok; k++) {
		uint64_t loc = get_le64(*lb + 8 * k);
		const struct fpage *fp = loc ? htab_find(t, &loc) : NULL;
		if (fp)
			memcpy(x->hashes[k], fp->hash, STORE_HASH_SIZE);
		ok = fp || !loc;
	}
	if (ok && !store_map_check(f->st, ino, (uint64_t)idx, *lb, (size_t)nl * 8, x->hashes,
				   (size_t)nl * STORE_HASH_SIZE, sum)) {
		memcpy(x->locs, *lb, (size_t)nl * 8);
		return row_rebuilt(f, x, lb, hb, "hashes", "locations");
	}
	if (nh < 0)
		return 0;
	if (!f->by_hash.n && (r = index_by_hash(f, t)))
		return r;
	x->n = nh;
	ok = true;
	for (int k = 0; k < nh && ok; k++) {
		const uint8_t *hash = *hb + k * STORE_HASH_SIZE;
		const struct ptab_ent *pe = store_hash_is_hole(hash) ? NULL : htab_find(&f->by_hash, hash);
		put_le64(x->locs + 8 * k, pe ? pe->loc : 0);
		ok = pe || store_hash_is_hole(hash);
	}
	if (ok && !store_map_check(f->st, ino, (uint64_t)idx, x->locs, (size_t)nh * 8, *hb,
				   (size_t)nh * STORE_HASH_SIZE, sum)) {
		memcpy(x->hashes, *hb, (size_t)nh * STORE_HASH_SIZE);
		return row_rebuilt(f, x, lb, hb, "locations", "hashes");
	}
	return 0;
}

/* The map fsck_maps counted for c->ino is done: its page count against
 * the inode's (want), and what the repair would set, if the count is
 * sure (every row read). */
static int map_counted(struct fsck *f, const struct page_count *c, uint64_t want, bool sure)
{
	if (c->missing) {
		problem(f, c->ino, -1, NULL, "page map of missing inode %llu (%llu stored pages)",
			(unsigned long long)c->ino, (unsigned long long)c->pages);
	} else if (c->stray) {
		problem(f, c->ino, -1, NULL,
			"page map of inode %llu, which is not a file (%llu stored pages)",
			(unsigned long long)c->ino, (unsigned long long)c->pages);
	} else if (c->pages != want) {
		problem(f, c->ino, -1, NULL, "inode records %llu stored pages, its map has %llu",
			(unsigned long long)want, (unsigned long long)c->pages);
	} else {
		return 0;
	}
	if (!sure)
		return 0;
	int r = store_grow((void **)&f->counts, &f->capcounts, f->ncounts, sizeof(*f->counts));
	if (!r)
		f->counts[f->ncounts++] = *c;
	return r;
}

/* Every page-map slot: resolves, at the indexed location, to a good page.
 * The map of a missing inode, or of one that is not a file, is checked
 * and counted like any other: its references hold its pages, and the
 * repair makes it a file (again). */
static int fsck_maps(struct fsck *f, struct htab *t)
{
	struct store *st = f->st;
	char at[64];
	int64_t total = count_of(st, "SELECT count(*) FROM chunk");
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT c.ino, c.idx, c.hashes, c.locs, i.mode, i.size, i.pages, c.sum"
			       " FROM chunk c LEFT JOIN inode i ON i.ino = c.ino ORDER BY c.ino, c.idx",
			       -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	int rc, r = 0;
	uint64_t done = 0, want = 0;
	struct page_count cur = { 0 };
	bool have = false, sure = false;	/* sure: every row of cur read */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t ino = (uint64_t)sqlite3_column_int64(s, 0);
		int64_t idx = sqlite3_column_int64(s, 1);
		const uint8_t *hb = sqlite3_column_blob(s, 2), *lb = sqlite3_column_blob(s, 3);
		int hn = sqlite3_column_bytes(s, 2), ln = sqlite3_column_bytes(s, 3);
		bool missing = sqlite3_column_type(s, 4) == SQLITE_NULL;
		uint32_t mode = (uint32_t)sqlite3_column_int64(s, 4);
		uint64_t size = (uint64_t)sqlite3_column_int64(s, 5);
		if (have && ino != cur.ino && (r = map_counted(f, &cur, want, sure)))
			break;
		if (!have || ino != cur.ino) {
			cur = (struct page_count){ .ino = ino, .missing = missing,
						   .stray = !missing && !S_ISREG(mode) };
			want = (uint64_t)sqlite3_column_int64(s, 6);
			have = sure = true;
			f->res->files_checked++;
		}
		/* A row failing its checksum, or not a whole number of
		 * slots, is named; its slots (as rebuilt, if they can be) are
		 * still checked: they say what the damage did. */
		int nh = hn % STORE_HASH_SIZE || hn > (int)(CHUNK_PAGES * STORE_HASH_SIZE)
				 ? -1 : hn / (int)STORE_HASH_SIZE;
		int nl = ln % 8 || ln > (int)(CHUNK_PAGES * 8) ? -1 : ln / 8;
		int64_t sum = sqlite3_column_int64(s, 7);
		bool whole = nh >= 0 && nh == nl;
		r = whole ? store_map_check(st, ino, (uint64_t)idx, lb, (size_t)ln, hb, (size_t)hn, sum)
			  : -EUCLEAN;
		if (r == -EUCLEAN) {
			r = fsck_rebuild_row(f, t, ino, idx, &lb, &hb, nl, nh, sum);
			if (r < 0)
				break;
			if (r) {
				hn = f->rows[f->nrows - 1].n * (int)STORE_HASH_SIZE;
				ln = f->rows[f->nrows - 1].n * 8;
			} else if (whole) {
				map_sum_problem(f, ino, idx);
				sure = false;
			} else {
				map_problem(f, ino, idx * CHUNK_PAGES, NULL,
					"damaged page-map row %lld (%d hash bytes, %d location bytes)",
					(long long)idx, hn, ln);
				sure = false;
				r = 0;
				continue;
			}
			r = 0;
		} else if (r) {
			break;
		}
		cur.end = (uint64_t)(idx * CHUNK_PAGES + hn / (int)STORE_HASH_SIZE) * STORE_PAGE_SIZE;
		for (int k = 0; k < hn / (int)STORE_HASH_SIZE; k++) {
			const uint8_t *hash = hb + k * STORE_HASH_SIZE;
			uint64_t loc = get_le64(lb + 8 * k);
			int64_t pg = idx * CHUNK_PAGES + k;
			if (store_hash_is_hole(hash)) {
				if (loc)
					problem(f, ino, pg, NULL, "hole with a location");
				continue;
			}
			cur.pages++;
			if (!missing && !cur.stray && (uint64_t)pg * STORE_PAGE_SIZE >= size)
				problem(f, ino, pg, hash, "page beyond the end of the file (size %llu)",
					(unsigned long long)size);
			struct fpage *fp = htab_find(t, &loc);
			if (!fp) {
				map_problem(f, ino, pg, hash,
					"dangling reference: no page in the index at %s",
					fsck_where(f, loc, at, sizeof(at)));
				continue;
			}
			fp->seen++;
			if (memcmp(fp->hash, hash, STORE_HASH_SIZE))
				map_problem(f, ino, pg, hash,
					"page map and index disagree on the hash of the page at %s",
					fsck_where(f, loc, at, sizeof(at)));
			else if (fp->bad)
				problem(f, ino, pg, hash, "page damaged at %s: %s",
					fsck_where(f, loc, at, sizeof(at)), fpage_why(fp->bad));
		}
		if (f->progress && (++done % 256 == 0 || done == (uint64_t)total))
			f->progress(f->arg, "checking page maps", done, (uint64_t)total);
	}
	if (!r && have)
		r = map_counted(f, &cur, want, sure);
	sqlite3_finalize(s);
	if (r)
		return r;
	if (rc != SQLITE_DONE)
		return -EIO;

	for (size_t i = 0; i < t->cap; i++) {
		struct fpage *fp = htab_at(t, i);
		if (fp && fp->seen != fp->refs)
			problem(f, 0, -1, fp->hash, "reference count %lld, but %lld references",
				(long long)fp->refs, (long long)fp->seen);
	}
	return 0;
}

/* Conditions each check below shares with its repair, so that they
 * cannot drift apart.  The number of subdirectories of the directory
 * whose inode is the SQL expression of (its link count is 2 more): */
#define SUBDIRS_OF(of)                                                 \
	"(SELECT count(*) FROM dentry d JOIN inode c ON c.ino = d.ino" \
	" WHERE d.parent = " of " AND (c.mode & 61440) = 16384)"
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

/* Link counts, entries to missing inodes, directories' parents.  The
 * checks name the root inode :root and the largest file size :max_size. */
static int fsck_tree(struct fsck *f)
{
	static const char *const checks[] = {
		/* entries naming missing inodes */
		"SELECT d.parent, -1, 'entry \"' || d.name || '\" names missing inode ' || d.ino"
		" FROM dentry d LEFT JOIN inode i ON i.ino = d.ino WHERE i.ino IS NULL",
		/* inodes counted as unlinked that an entry still names (a
		 * mount would reclaim them as orphans, were it not for that
		 * entry) */
		"SELECT i.ino, -1, 'link count 0, but ' || count(d.id) || ' names'"
		" FROM inode i JOIN dentry d ON d.ino = i.ino WHERE i.nlink = 0 GROUP BY i.ino",
		/* files that record stored pages but have no page map left */
		"SELECT i.ino, -1, 'inode records ' || i.pages || ' stored pages, its map has 0'"
		" FROM inode i WHERE " PAGES_WITHOUT_MAP("i"),
		/* link counts of non-directories */
		"SELECT i.ino, -1, 'link count ' || i.nlink || ', but ' || count(d.id) || ' names'"
		" FROM inode i LEFT JOIN dentry d ON d.ino = i.ino"
		" WHERE (i.mode & 61440) != 16384 AND i.nlink > 0"
		" GROUP BY i.ino HAVING count(d.id) != i.nlink",
		/* link counts of directories: 2 + subdirectories */
		"SELECT i.ino, -1, 'directory link count ' || i.nlink || ', expected ' ||"
		" (2 + " SUBDIRS_OF("i.ino") ")"
		" FROM inode i WHERE (i.mode & 61440) = 16384 AND i.nlink > 0 AND i.nlink !="
		" 2 + " SUBDIRS_OF("i.ino"),
		/* symlinks without targets */
		"SELECT i.ino, -1, 'symlink without a target' FROM inode i"
		" LEFT JOIN symlink s ON s.ino = i.ino WHERE (i.mode & 61440) = 40960 AND s.ino IS NULL",
		/* sizes no file can have (the daemon would refuse to stat it) */
		"SELECT ino, -1, 'size ' || size || ' is not a file size' FROM inode"
		" WHERE size < 0 OR size > :max_size",
		/* entries in something that is not a directory */
		"SELECT d.ino, -1, 'its entry \"' || d.name || '\" is in inode ' || d.parent ||"
		" CASE WHEN p.ino IS NULL THEN ', which is missing' ELSE ', not a directory' END"
		" FROM dentry d LEFT JOIN inode p ON p.ino = d.parent"
		" WHERE p.ino IS NULL OR (p.mode & 61440) != 16384",
		/* directories whose parent column disagrees with their entry */
		"SELECT i.ino, -1, 'directory records parent ' || i.parent || ', its entry is in '"
		" || d.parent FROM inode i JOIN dentry d ON d.ino = i.ino"
		" WHERE (i.mode & 61440) = 16384 AND i.parent IS NOT d.parent",
		/* directories that no path from the root reaches (a cycle, or a
		 * tree cut off) */
		UNREACHED_DIRS(":root", "i.ino, -1, 'directory not reachable from the root'"),
	};
	for (size_t c = 0; c < sizeof(checks) / sizeof(checks[0]); c++) {
		sqlite3_stmt *s;
		if (sqlite3_prepare_v2(f->st->db, checks[c], -1, &s, NULL) != SQLITE_OK)
			return -EIO;
		int root = sqlite3_bind_parameter_index(s, ":root");
		int max_size = sqlite3_bind_parameter_index(s, ":max_size");
		if (root)
			sqlite3_bind_int64(s, root, STORE_ROOT_INO);
		if (max_size)
			sqlite3_bind_int64(s, max_size, (int64_t)STORE_MAX_FILE_SIZE);
		int rc;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			problem(f, (uint64_t)sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), NULL,
				"%s", (const char *)sqlite3_column_text(s, 2));
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	return 0;
}

/* ---- fsck after damage to index.db ------------------------------------------- */

/* Symlink ino's target can be read. */
static void fsck_hit_symlink(struct fsck *f, uint64_t ino)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(f->st->db, "SELECT target FROM symlink WHERE ino = ?", -1, &s,
			       NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		problem(f, ino, -1, NULL, "its target cannot be read: %s", sqlite3_errmsg(f->st->db));
	sqlite3_finalize(s);
}

/* File ino's page map: every row read, each matching its checksum. */
static void fsck_hit_file(struct fsck *f, uint64_t ino)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(f->st->db, "SELECT idx, locs, hashes, sum FROM chunk WHERE ino = ?",
			       -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const void *lb = sqlite3_column_blob(s, 1), *hb = sqlite3_column_blob(s, 2);
		size_t ln = (size_t)sqlite3_column_bytes(s, 1), hn = (size_t)sqlite3_column_bytes(s, 2);
		fsck_map_sum(f, ino, sqlite3_column_int64(s, 0), lb, ln, hb, hn,
			     sqlite3_column_int64(s, 3));
	}
	if (rc != SQLITE_DONE)
		problem(f, ino, -1, NULL, "its page map cannot be read: %s",
			sqlite3_errmsg(f->st->db));
	sqlite3_finalize(s);
}

/*
 * Once SQLite has met damage to index.db's pages, the scans of whole
 * tables stop there, and what is left to know is which files it hits.
 * Walk the tree from dir by key lookups, which go around damage where
 * they can, naming each directory that cannot be listed and each entry
 * whose inode, page map or symlink target cannot be read.  depth bounds
 * a walk that damaged entries would send round in a loop.
 */
static void fsck_hit_walk(struct fsck *f, uint64_t dir, unsigned depth)
{
	sqlite3 *db = f->st->db;
	sqlite3_stmt *s;
	if (depth > 1024 ||
	    sqlite3_prepare_v2(db, "SELECT ino FROM dentry WHERE parent = ?", -1, &s, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(s, 1, (int64_t)dir);
	uint64_t *inos = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (store_grow((void **)&inos, &cap, n, sizeof(*inos)))
			break;
		inos[n++] = (uint64_t)sqlite3_column_int64(s, 0);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		problem(f, dir, -1, NULL, "its entries cannot all be listed: %s", sqlite3_errmsg(db));
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(db, "SELECT mode FROM inode WHERE ino = ?", -1, &s, NULL) != SQLITE_OK)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, (int64_t)inos[i]);
		rc = sqlite3_step(s);
		uint32_t mode = rc == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(s, 0) : 0;
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			problem(f, inos[i], -1, NULL, "its inode cannot be read: %s", sqlite3_errmsg(db));
		else if (S_ISDIR(mode) && inos[i] != dir)
			fsck_hit_walk(f, inos[i], depth + 1);
		else if (S_ISREG(mode))
			fsck_hit_file(f, inos[i]);
		else if (S_ISLNK(mode))
			fsck_hit_symlink(f, inos[i]);
	}
	sqlite3_finalize(s);
	free(inos);
}

/* Set each page's reference count to the references fsck_maps counted,
 * unless a problem left them uncounted for sure (res->refs_left). */
static int fsck_repair_refs(struct fsck *f, struct htab *t)
{
	if (f->uncounted) {
		f->res->refs_left = true;
		return 0;
	}
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(f->st->db, "UPDATE page SET refs = ?1 WHERE loc = ?2", -1, &s,
			       NULL) != SQLITE_OK)
		return -EIO;
	int r = 0;
	for (size_t i = 0; i < t->cap && !r; i++) {
		struct fpage *fp = htab_at(t, i);
		if (!fp || fp->seen == fp->refs)
			continue;
		sqlite3_bind_int64(s, 1, fp->seen);
		sqlite3_bind_int64(s, 2, (int64_t)fp->loc);
		if (sqlite3_step(s) == SQLITE_DONE)
			f->res->refs_repaired++;
		else
			r = -EIO;
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	return r;
}

/* What no path reaches for want of a directory: entries in a missing
 * inode or in one that is not a directory, and files with a link count
 * but no entry. */
#define HOMELESS_ENTRIES \
	" parent NOT IN (SELECT ino FROM inode WHERE (mode & 61440) = 16384)"
#define HOMELESS_FILES                                                    \
	" FROM inode i WHERE (i.mode & 61440) != 16384 AND i.nlink > 0" \
	" AND NOT EXISTS (SELECT 1 FROM dentry d WHERE d.ino = i.ino)"

/* The directory lost+found in the root, made if missing (as the root's
 * owner, mode 0700): its inode, 0 if there is none to use (a sealed
 * root, or a lost+found that is not a directory or is sealed), or
 * -errno. */
static int64_t lost_found_dir(struct fsck *f)
{
	sqlite3 *db = f->st->db;
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "SELECT CASE WHEN (i.mode & 61440) = 16384 AND (i.flags & %d) = 0 THEN i.ino"
		 " ELSE 0 END FROM dentry d JOIN inode i ON i.ino = d.ino"
		 " WHERE d.parent = %u AND d.name = 'lost+found'",
		 STORE_INODE_SEALED, STORE_ROOT_INO);
	int64_t ino = count_of(f->st, sql);
	if (ino >= 0)
		return ino;
	snprintf(sql, sizeof(sql), "SELECT flags & %d FROM inode WHERE ino = %u",
		 STORE_INODE_SEALED, STORE_ROOT_INO);
	if (count_of(f->st, sql) != 0)
		return 0;
	int64_t now = store_now_ns();
	snprintf(sql, sizeof(sql),
		 "INSERT INTO inode(mode, nlink, uid, gid, atime_ns, mtime_ns, ctime_ns, parent)"
		 " SELECT %u, 2, uid, gid, %lld, %lld, %lld, ino FROM inode WHERE ino = %u",
		 (unsigned)(S_IFDIR | 0700), (long long)now, (long long)now, (long long)now,
		 STORE_ROOT_INO);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	ino = sqlite3_last_insert_rowid(db);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO dentry(parent, name, ino) VALUES (%u, 'lost+found', %lld);"
		 "UPDATE inode SET mtime_ns = %lld, ctime_ns = %lld WHERE ino = %u",
		 STORE_ROOT_INO, (long long)ino, (long long)now, (long long)now, STORE_ROOT_INO);
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? ino : -EIO;
}

/* Give what no path reaches for want of a directory a name in
 * lost+found: #INODE (res->lost_found).  An entry whose new name is
 * taken stays where it is. */
static int fsck_lost_found(struct fsck *f)
{
	int64_t n = count_of(f->st, "SELECT (SELECT count(*) FROM dentry WHERE" HOMELESS_ENTRIES ")"
				    " + (SELECT count(*)" HOMELESS_FILES ")");
	if (n <= 0)
		return n < 0 ? -EIO : 0;
	int64_t dir = lost_found_dir(f);
	if (dir <= 0)
		return (int)dir;
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "UPDATE OR IGNORE dentry SET parent = %lld, name = '#' || ino WHERE"
		 HOMELESS_ENTRIES,
		 (long long)dir);
	if (sqlite3_exec(f->st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	f->res->lost_found += (uint64_t)sqlite3_changes(f->st->db);
	snprintf(sql, sizeof(sql),
		 "INSERT OR IGNORE INTO dentry(parent, name, ino) SELECT %lld, '#' || i.ino, i.ino"
		 HOMELESS_FILES, (long long)dir);
	if (sqlite3_exec(f->st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	f->res->lost_found += (uint64_t)sqlite3_changes(f->st->db);
	return 0;
}
#undef HOMELESS_ENTRIES
#undef HOMELESS_FILES

/* The directory holding directory ino: 0 if no entry names it. */
static int64_t holder_of(struct fsck *f, int64_t ino)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT coalesce((SELECT parent FROM dentry WHERE ino = %lld), 0)",
		 (long long)ino);
	return count_of(f->st, sql);
}

/* Where the cut-off tree holding directory ino opens (one of n
 * directories no path reaches): up through the directories holding it,
 * n steps at most, which ends at a directory without an entry, or in a
 * cycle, whose lowest-numbered directory is then the one. */
static int64_t reattach_point(struct fsck *f, int64_t ino, int64_t n)
{
	int64_t k = 0, up = ino;
	for (; k < n && up > 0; k++) {
		ino = up;
		up = holder_of(f, ino);
	}
	if (up <= 0)
		return up < 0 ? up : ino;
	/* n steps taken: ino is in a cycle (unless the way up left the
	 * directories, for an entry in a missing inode: fsck_reattach
	 * checks what it gets). */
	int64_t low = ino;
	for (k = 0, up = holder_of(f, ino); k < n && up > 0 && up != ino; k++) {
		if (up < low)
			low = up;
		up = holder_of(f, up);
	}
	return up < 0 ? up : low;
}

/* Directories with a link count that no path from the root reaches (a
 * cycle of directories cut off from the tree, or one without an entry)
 * get their tree back, one cut-off tree at a time: where the tree of
 * the lowest-numbered one opens (reattach_point) is named #INODE in
 * lost+found (res->lost_found), and what hangs below comes back with
 * it. */
static int fsck_reattach(struct fsck *f)
{
	char sql[512], count[512], lowest[512];
	snprintf(count, sizeof(count), UNREACHED_DIRS("%u", "count(*)"), STORE_ROOT_INO);
	snprintf(lowest, sizeof(lowest), UNREACHED_DIRS("%u", "min(i.ino)"), STORE_ROOT_INO);
	int64_t left = count_of(f->st, count), dir = 0;
	for (; left > 0; left--) {
		int64_t ino = reattach_point(f, count_of(f->st, lowest), left);
		if (ino <= 0)
			return ino < 0 ? -EIO : 0;
		/* Not a directory: an entry in a missing inode, which
		 * fsck_lost_found could not move, is on the way up. */
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM inode WHERE ino = %lld AND (mode & 61440) = 16384",
			 (long long)ino);
		int64_t is_dir = count_of(f->st, sql);
		if (is_dir <= 0)
			return is_dir < 0 ? -EIO : 0;
		if (!dir && (dir = lost_found_dir(f)) <= 0)
			return (int)dir;
		snprintf(sql, sizeof(sql),
			 "UPDATE OR IGNORE dentry SET parent = %lld, name = '#' || ino WHERE ino = %lld;"
			 "INSERT OR IGNORE INTO dentry(parent, name, ino) SELECT %lld, '#%lld', %lld"
			 " WHERE NOT EXISTS (SELECT 1 FROM dentry WHERE ino = %lld)",
			 (long long)dir, (long long)ino, (long long)dir, (long long)ino,
			 (long long)ino, (long long)ino);
		int before = sqlite3_total_changes(f->st->db);
		if (sqlite3_exec(f->st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return -EIO;
		if (sqlite3_total_changes(f->st->db) == before)
			return 0;	/* its name in lost+found is taken: left as it is */
		f->res->lost_found++;
	}
	return left < 0 ? -EIO : 0;
}

/* The page map c of an inode that is not a file moved to a new file
 * (res->maps_moved), as fsck_repair_maps says. */
static int fsck_move_map(struct fsck *f, const struct page_count *c, int64_t now)
{
	sqlite3 *db = f->st->db;
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO inode(mode, nlink, uid, gid, size, pages, atime_ns, mtime_ns, ctime_ns)"
		 " SELECT %u, 1, uid, gid, %llu, %llu, %lld, %lld, %lld FROM inode WHERE ino = %u",
		 (unsigned)(S_IFREG | 0600), (unsigned long long)c->end,
		 (unsigned long long)c->pages, (long long)now, (long long)now, (long long)now,
		 STORE_ROOT_INO);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_changes(db) == 0)
		return 0;	/* no root to take the owner from: left as it is */
	long long to = (long long)sqlite3_last_insert_rowid(db);
	snprintf(sql, sizeof(sql),
		 "UPDATE chunk SET ino = %lld, sum = snapfs_map_sum(%lld, idx, locs, hashes)"
		 " WHERE ino = %llu; UPDATE inode SET pages = 0 WHERE ino = %llu",
		 to, to, (unsigned long long)c->ino, (unsigned long long)c->ino);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	f->res->maps_moved++;
	return 0;
}

/* The page-map rows fsck_maps rebuilt written (res->rows_rebuilt), the
 * page counts it found wrong set right (res->pages_repaired), and each
 * page map of a missing inode given a file again, its size the end of
 * its last row (res->files_rebuilt): a file with a link count but no
 * name, for fsck_lost_found to name.  It is owned like the root, mode
 * 0600.  The map of an inode that is not a file moves to such a file
 * of its own, a new inode (res->maps_moved; its rows' checksums, which
 * cover the inode number, made anew: the rows were checked whole). */
static int fsck_repair_maps(struct fsck *f)
{
	sqlite3 *db = f->st->db;
	struct store_fsck_result *res = f->res;
	if (sqlite3_exec(db, "UPDATE inode SET pages = 0 WHERE " PAGES_WITHOUT_MAP("inode"), NULL,
			 NULL, NULL) != SQLITE_OK)
		return -EIO;
	res->pages_repaired += (uint64_t)sqlite3_changes(db);
	sqlite3_stmt *w;
	if (sqlite3_prepare_v2(db, "UPDATE chunk SET locs = ?, hashes = ? WHERE ino = ? AND idx = ?",
			       -1, &w, NULL) != SQLITE_OK)
		return -EIO;
	int r = 0;
	for (size_t i = 0; i < f->nrows && !r; i++) {
		const struct row_fix *x = &f->rows[i];
		sqlite3_bind_blob(w, 1, x->locs, x->n * 8, SQLITE_STATIC);
		sqlite3_bind_blob(w, 2, x->hashes, x->n * (int)STORE_HASH_SIZE, SQLITE_STATIC);
		sqlite3_bind_int64(w, 3, (int64_t)x->ino);
		sqlite3_bind_int64(w, 4, x->idx);
		r = sqlite3_step(w) == SQLITE_DONE ? 0 : -EIO;
		res->rows_rebuilt += (uint64_t)sqlite3_changes(db);
		sqlite3_reset(w);
	}
	sqlite3_finalize(w);
	if (r)
		return r;
	int64_t now = store_now_ns();
	char sql[512];
	for (size_t i = 0; i < f->ncounts; i++) {
		const struct page_count *c = &f->counts[i];
		if (c->stray) {
			int r = fsck_move_map(f, c, now);
			if (r)
				return r;
			continue;
		}
		if (c->missing)
			snprintf(sql, sizeof(sql),
				 "INSERT INTO inode(ino, mode, nlink, uid, gid, size, pages, atime_ns,"
				 " mtime_ns, ctime_ns) SELECT %llu, %u, 1, uid, gid, %llu, %llu,"
				 " %lld, %lld, %lld FROM inode WHERE ino = %u",
				 (unsigned long long)c->ino, (unsigned)(S_IFREG | 0600),
				 (unsigned long long)c->end, (unsigned long long)c->pages,
				 (long long)now, (long long)now, (long long)now, STORE_ROOT_INO);
		else
			snprintf(sql, sizeof(sql), "UPDATE inode SET pages = %llu WHERE ino = %llu",
				 (unsigned long long)c->pages, (unsigned long long)c->ino);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			return -EIO;
		*(c->missing ? &res->files_rebuilt : &res->pages_repaired) +=
			(uint64_t)sqlite3_changes(db);
	}
	return 0;
}

/*
 * Make the inodes agree with the names the directories hold, which are
 * what a mount shows (res->names_removed, lost_found, links_repaired,
 * parents_repaired), unless SQLite found index.db itself damaged.  An
 * entry naming a missing inode goes; what no path reaches for want of a
 * directory gets a name in lost+found (fsck_lost_found).  A file's link
 * count then becomes its number of names, also when it was 0 (as if the
 * file had been deleted); one still without a name (lost+found could
 * not be used) keeps its count, as 0 would have its pages freed.  A
 * directory's link count becomes 2 plus its subdirectories (but for a
 * removed one no entry names), and the parent it records the one its
 * entry is in.
 */
static int fsck_repair_tree(struct fsck *f)
{
#define NAMES "(SELECT count(*) FROM dentry d WHERE d.ino = inode.ino)"
#define SUBDIRS SUBDIRS_OF("inode.ino")
#define ENTRY_IN "(SELECT d.parent FROM dentry d WHERE d.ino = inode.ino)"
	struct store_fsck_result *res = f->res;
	const struct {
		uint64_t *count;	/* of the rows it changed */
		const char *sql;
	} fixes[] = {
		{ &res->links_repaired,
		  "UPDATE inode SET nlink = " NAMES " WHERE (mode & 61440) != 16384"
		  " AND " NAMES " > 0 AND nlink != " NAMES },
		{ &res->links_repaired,
		  "UPDATE inode SET nlink = 2 + " SUBDIRS " WHERE (mode & 61440) = 16384"
		  " AND (nlink > 0 OR " ENTRY_IN " IS NOT NULL) AND nlink != 2 + " SUBDIRS },
		{ &res->parents_repaired,
		  "UPDATE inode SET parent = " ENTRY_IN " WHERE (mode & 61440) = 16384"
		  " AND " ENTRY_IN " IS NOT NULL AND parent IS NOT " ENTRY_IN },
	};
#undef NAMES
#undef SUBDIRS
#undef ENTRY_IN
	if (f->index_bad)
		return 0;
	/* Files first, so that an entry naming a rebuilt one keeps it. */
	int r = fsck_repair_maps(f);
	if (r)
		return r;
	if (sqlite3_exec(f->st->db, "DELETE FROM dentry WHERE ino NOT IN (SELECT ino FROM inode)",
			 NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	res->names_removed += (uint64_t)sqlite3_changes(f->st->db);
	/* Homes next: the counts below follow the entries. */
	r = fsck_lost_found(f);
	if (!r)
		r = fsck_reattach(f);
	if (r)
		return r;
	for (size_t i = 0; i < sizeof(fixes) / sizeof(fixes[0]); i++) {
		if (sqlite3_exec(f->st->db, fixes[i].sql, NULL, NULL, NULL) != SQLITE_OK)
			return -EIO;
		*fixes[i].count += (uint64_t)sqlite3_changes(f->st->db);
	}
	return 0;
}
#undef SUBDIRS_OF
#undef PAGES_WITHOUT_MAP
#undef UNREACHED_DIRS

static int fsck_run(struct store *st, bool repair, store_fsck_fn report,
		    store_progress_fn progress, void *arg, struct store_fsck_result *res,
		    struct err *e)
{
	struct store_fsck_result dummy;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (repair && st->rdonly)
		return err_set(e, -EROFS, "store %s: fsck cannot repair a store opened read-only",
			       st->dir);
	int lock;
	int r = admin_lock(st, false, &lock, e);
	if (r)
		return r;
	r = store_commit(st, e);
	if (r) {
		admin_unlock(lock);
		return r;
	}
	struct fsck f = { .st = st, .report = report, .progress = progress, .arg = arg, .res = res,
			  .by_hash = HTAB(struct ptab_ent) };
	struct htab t = HTAB_LOC(struct fpage);
	/* gc.lock keeps gc out, and gc_lock, as for any read, space from
	 * being freed under it; one read transaction gives a consistent
	 * picture even beside a live writer. */
	pthread_rwlock_rdlock(&st->gc_lock);
	pthread_mutex_lock(&st->db_lock);
	sqlite3_exec(st->db, repair ? "BEGIN IMMEDIATE" : "BEGIN", NULL, NULL, NULL);
	r = fsck_index(&f);
	if (!r)
		r = fsck_pages(&f, &t);
	if (!r)
		r = fsck_maps(&f, &t);
	if (!r)
		r = fsck_tree(&f);
	if (!r && repair)
		r = fsck_repair_refs(&f, &t);
	if (!r && repair)
		r = fsck_repair_tree(&f);
	/* SQLite's word on a failure, before the COMMIT (or another
	 * thread, once db_lock goes) replaces it; -EIO without one is a
	 * page that could not be hashed. */
	char why[256];
	int rc = sqlite3_errcode(st->db);
	snprintf(why, sizeof(why), "%s",
		 r == -EIO && rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE
			 ? sqlite3_errmsg(st->db)
			 : strerror(-r));
	if (r == -EIO && store_sql_errno(rc) == -EUCLEAN)
		fsck_hit_walk(&f, STORE_ROOT_INO, 0);
	if (!repair) {
		sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);	/* of a read */
	} else if (!r && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(why, sizeof(why), "committing the repair: %s", sqlite3_errmsg(st->db));
		r = -EIO;
	}
	if (r && repair) {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		/* Nothing was repaired: only what the check found stays. */
		*res = (struct store_fsck_result){ .problems = res->problems,
						   .pages_checked = res->pages_checked,
						   .files_checked = res->files_checked,
						   .refs_left = res->refs_left };
	}
	pthread_mutex_unlock(&st->db_lock);
	pthread_rwlock_unlock(&st->gc_lock);
	admin_unlock(lock);
	htab_free(&t);
	free(f.counts);
	free(f.rows);
	htab_free(&f.by_hash);
	if (r)
		return err_set(e, r, "store %s: fsck could not run: %s", st->dir, why);
	return 0;
}

int store_fsck(struct store *st, store_fsck_fn report, store_progress_fn progress, void *arg,
	       struct store_fsck_result *res, struct err *e)
{
	return fsck_run(st, false, report, progress, arg, res, e);
}

int store_fsck_repair(struct store *st, store_fsck_fn report, store_progress_fn progress,
		      void *arg, struct store_fsck_result *res, struct err *e)
{
	return fsck_run(st, true, report, progress, arg, res, e);
}

/* ---- gc ------------------------------------------------------------------------- */

static int live_cmp(const void *a, const void *b)
{
	const struct store_live_page *x = a, *y = b;
	return x->loc < y->loc ? -1 : x->loc > y->loc;
}

/* Append the pages the index holds at locations [lo, hi) to (*out, *n),
 * by loc; *cap is the room there.  (Locations are index keys, below
 * 2^63.) */
static int pages_in(sqlite3 *db, uint64_t lo, uint64_t hi, struct store_live_page **out,
		    size_t *n, size_t *cap)
{
	if (lo >= hi || lo > INT64_MAX)
		return 0;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT hash, loc FROM page WHERE loc BETWEEN ?1 AND ?2 ORDER BY loc",
			       -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)lo);
	sqlite3_bind_int64(s, 2, (int64_t)(hi - 1 < INT64_MAX ? hi - 1 : INT64_MAX));
	int rc, r = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = store_grow((void **)out, cap, *n, sizeof(**out))))
			break;
		struct store_live_page *lp = &(*out)[(*n)++];
		memset(lp->hash, 0, sizeof(lp->hash));
		if (sqlite3_column_bytes(s, 0) == STORE_HASH_SIZE)
			memcpy(lp->hash, sqlite3_column_blob(s, 0), STORE_HASH_SIZE);
		lp->loc = (uint64_t)sqlite3_column_int64(s, 1);
	}
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(s);
	return r;
}

/* Dead pages forgotten per hold of step 1 (about 0.02-0.03 s of deletes;
 * tests build it smaller). */
#ifndef GC_FORGET_BATCH
#define GC_FORGET_BATCH 16384
#endif

/* A page gc forgot: where it was, and its hash's first bytes, which is
 * all the prefix set keys on. */
struct freed_page {
	uint64_t loc;
	uint8_t prefix[8];
};

/* What a gc carries from one step to the next. */
struct gc_run {
	struct freed_page *freed;	/* the pages step 1 forgot */
	size_t nfreed, capfreed;
	struct htab moved;		/* of struct fpage: pages compact moved */
	/* A read connection holding the index as step 1 left it, so that
	 * listing its pages waits until other calls go on. */
	sqlite3 *snap;
	int snap_err;			/* a count on it failed */
	/* The page-map rows naming moved pages, found beside other calls;
	 * rows_found: the list is complete (with st->gc_rows). */
	struct chunk_key *rows;
	size_t nrows, caprows;
	bool rows_found;
	struct store_live_page *live;	/* the index's pages, moved by compact */
	struct store_live_page *before;	/* ... and where they were */
	size_t n;
};

/* The moved pages in the n slots of locs (8 bytes each, little-endian)
 * take their new locations; true if any did. */
static bool follow_moved(const struct htab *moved, uint8_t *locs, int n)
{
	bool changed = false;
	for (int k = 0; k < n; k++) {
		uint64_t loc = get_le64(locs + 8 * k);
		const struct fpage *fp = loc ? htab_find(moved, &loc) : NULL;
		if (fp) {
			put_le64(locs + 8 * k, fp->moved_to);
			changed = true;
		}
	}
	return changed;
}

/* Give page-map row (ino, idx) the n locations locs and the checksum
 * that goes with them (transaction open).  A row that fails its checksum
 * is left as it is: fsck names it. */
static int write_row_locs(struct store *st, int64_t ino, int64_t idx, const uint8_t *locs, int n)
{
	sqlite3_stmt *w = store_stmt(st, st->db,
				     "UPDATE chunk SET locs = ?1, sum = snapfs_map_sum(ino, idx, ?1, hashes)"
				     " WHERE ino = ?2 AND idx = ?3"
				     " AND sum = snapfs_map_sum(ino, idx, locs, hashes)");
	if (!w)
		return -EIO;
	sqlite3_bind_blob(w, 1, locs, n * 8, SQLITE_TRANSIENT);
	sqlite3_bind_int64(w, 2, ino);
	sqlite3_bind_int64(w, 3, idx);
	int rc = sqlite3_step(w);
	sqlite3_reset(w);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Rewrite page-map row (ino, idx) if it names moved pages (transaction
 * open); a row gone since is fine. */
static int relocate_row(struct store *st, const struct htab *moved, int64_t ino, int64_t idx)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT locs FROM chunk WHERE ino = ? AND idx = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, ino);
	sqlite3_bind_int64(s, 2, idx);
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
	uint8_t locs[CHUNK_PAGES * 8];
	int n = rc == SQLITE_ROW ? sqlite3_column_bytes(s, 0) / 8 : 0;
	bool changed = false;
	if (n > 0 && n <= (int)CHUNK_PAGES) {	/* else damaged: fsck reports it */
		memcpy(locs, sqlite3_column_blob(s, 0), (size_t)n * 8);
		changed = follow_moved(moved, locs, n);
	}
	sqlite3_reset(s);
	return !r && changed ? write_row_locs(st, ino, idx, locs, n) : r;
}

/* Every page-map row of db that names moved pages: each(arg, ino, idx,
 * locs, n) with its n locations as they are once the pages are followed.
 * *rows counts the rows read.  0, -EIO, or what each returned. */
static int rows_naming_moved(sqlite3 *db, const struct htab *moved,
			     int (*each)(void *arg, int64_t ino, int64_t idx, const uint8_t *locs,
					 int n),
			     void *arg, uint64_t *rows)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT ino, idx, locs FROM chunk", -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	int rc, r = 0;
	uint8_t locs[CHUNK_PAGES * 8];
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		++*rows;
		int n = sqlite3_column_bytes(s, 2) / 8;
		if (n > (int)CHUNK_PAGES)
			continue;	/* damaged: fsck reports it */
		memcpy(locs, sqlite3_column_blob(s, 2), (size_t)n * 8);
		if (follow_moved(moved, locs, n))
			r = each(arg, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), locs, n);
	}
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_finalize(s);
	return r;
}

/* rows_naming_moved's each for relocate when it reads every row.
 * Writing the row being read is safe in SQLite when only non-key columns
 * change. */
static int rewrite_row(void *arg, int64_t ino, int64_t idx, const uint8_t *locs, int n)
{
	return write_row_locs(arg, ino, idx, locs, n);
}

/*
 * Point the index and every page map at the pages compact moved
 * (transaction open, db_lock held): from before[i] to live[i].  Each
 * index row changes its key once, in ascending order of old and of new
 * key.  The new locations are in packs compact made, which no row held
 * before, so no move meets a row still waiting to move (were the index
 * damaged so that one did, the update would fail and the transaction
 * roll back).  For 262,144 moved pages this took 0.33 s, against 1.28 s
 * for moving rows in hash order through negative stand-in keys.
 *
 * The page-map rows to rewrite are those gc_find_rows found on its
 * snapshot and those commits wrote since (st->gc_rows); without that
 * list, every row is read.
 */
static int relocate(struct store *st, const struct gc_run *g)
{
	sqlite3_stmt *up = store_stmt(st, st->db, "UPDATE page SET loc = ?2 WHERE loc = ?1");
	if (!up)
		return -EIO;
	for (size_t i = 0; i < g->n; i++) {
		if (g->live[i].loc == g->before[i].loc)
			continue;
		sqlite3_reset(up);
		sqlite3_bind_int64(up, 1, (int64_t)g->before[i].loc);
		sqlite3_bind_int64(up, 2, (int64_t)g->live[i].loc);
		if (sqlite3_step(up) != SQLITE_DONE) {
			sqlite3_reset(up);
			return -EIO;
		}
	}
	sqlite3_reset(up);
	if (!g->rows_found || st->gc_track_lost) {
		uint64_t rows = 0;
		return rows_naming_moved(st->db, &g->moved, rewrite_row, st, &rows);
	}
	int r = 0;
	const struct chunk_key *lists[] = { g->rows, st->gc_rows };
	size_t counts[] = { g->nrows, st->gc_nrows };
	for (size_t l = 0; l < 2 && !r; l++)
		for (size_t i = 0; i < counts[l] && !r; i++)
			r = relocate_row(st, &g->moved, lists[l][i].ino, lists[l][i].idx);
	return r;
}

/* Point a chunk's slots at the moved pages. */
static void relocate_locs(struct htab *moved, uint64_t *locs)
{
	for (unsigned k = 0; k < CHUNK_PAGES; k++) {
		if (!locs[k])
			continue;
		struct fpage *fp = htab_find(moved, &locs[k]);
		if (fp)
			locs[k] = fp->moved_to;
	}
}

/* Cached page maps follow the moved pages too (mem_lock held), and so do
 * the committed slots kept beside uncommitted changes, which the next
 * commit compares with the new ones. */
static void relocate_cache(struct store *st, struct htab *moved)
{
	for (size_t i = 0; i < st->itab_cap; i++)
		for (struct sinode *si = st->itab[i]; si; si = si->next)
			for (size_t c = 0; c < si->nchunks; c++) {
				struct chunk *ch = si->chunks[c];
				if (!ch)
					continue;
				relocate_locs(moved, ch->loc);
				if (ch->base)
					relocate_locs(moved, ch->base->loc);
			}
}

/* Delete up to GC_FORGET_BATCH of the index's unreferenced pages, adding
 * them to g->freed.  The partial index page_dead makes this cost what the
 * dead rows do, not the whole index. */
static int gc_forget(struct store *st, struct gc_run *g, struct err *e)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db,
				    "DELETE FROM page WHERE loc IN "
				    "(SELECT loc FROM page WHERE refs = 0 LIMIT ?1) RETURNING loc, hash",
				    -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(st, st->db, rc, e, "gc: removing unreferenced pages");
	sqlite3_bind_int64(s, 1, GC_FORGET_BATCH);
	int r = 0;
	while (!r && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (store_grow((void **)&g->freed, &g->capfreed, g->nfreed, sizeof(*g->freed))) {
			r = err_set(e, -ENOMEM, "store %s: gc: out of memory", st->dir);
			break;
		}
		struct freed_page *fp = &g->freed[g->nfreed++];
		fp->loc = (uint64_t)sqlite3_column_int64(s, 0);
		memset(fp->prefix, 0, sizeof(fp->prefix));
		if (sqlite3_column_bytes(s, 1) == STORE_HASH_SIZE)
			memcpy(fp->prefix, sqlite3_column_blob(s, 1), sizeof(fp->prefix));
	}
	if (!r && rc != SQLITE_DONE)
		r = store_sql_err(st, st->db, rc, e, "gc: removing unreferenced pages");
	sqlite3_finalize(s);
	return r;
}

static void gc_run_free(struct gc_run *g)
{
	htab_free(&g->moved);
	free(g->freed);
	free(g->rows);
	if (g->snap) {
		sqlite3_exec(g->snap, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(g->snap);
	}
	free(g->live);
	free(g->before);
}

/* Hold db's view of the index as it is now until COMMIT: a read
 * transaction's snapshot starts at its first read.  An SQLite code. */
static int snapshot_begin(sqlite3 *db)
{
	return sqlite3_exec(db, "BEGIN; SELECT count(*) FROM meta", NULL, NULL, NULL);
}

/* gc_mark's count of the index's pages at [lo, hi), on the snapshot. */
static uint64_t snap_live_in(void *arg, uint64_t lo, uint64_t hi)
{
	struct gc_run *g = arg;
	sqlite3_stmt *s;
	if (lo >= hi || lo > INT64_MAX ||
	    sqlite3_prepare_v2(g->snap, "SELECT count(*) FROM page WHERE loc BETWEEN ?1 AND ?2", -1,
			       &s, NULL) != SQLITE_OK) {
		g->snap_err = -EIO;
		return 0;
	}
	sqlite3_bind_int64(s, 1, (int64_t)lo);
	sqlite3_bind_int64(s, 2, (int64_t)(hi - 1 < INT64_MAX ? hi - 1 : INT64_MAX));
	uint64_t n = 0;
	if (sqlite3_step(s) == SQLITE_ROW)
		n = (uint64_t)sqlite3_column_int64(s, 0);
	else
		g->snap_err = -EIO;
	sqlite3_finalize(s);
	return n;
}

/* Before step 1, beside other calls: copy the WAL into the database on a
 * connection of gc's own.  Otherwise the WAL the writes before the gc
 * left (up to 64 MiB) is likely to be checkpointed by the first commit
 * of step 1, inside its hold: 0.18 s against 0.03 s, measured after
 * 2 GiB of new pages.  Failing only costs that. */
static void gc_checkpoint(struct store *st)
{
	sqlite3 *db;
	struct err le = { 0 };
	if (store_db_open(st, false, &db, &le))
		return;
	sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	sqlite3_close(db);
}

/* Hold every other call off (all: gc_lock; changes: change_lock
 * exclusive), pending changes committed (so the index is all there is),
 * db_lock.  r: the commit's result. */
static int gc_hold(struct store *st, bool all, struct err *e)
{
	pthread_rwlock_wrlock(all ? &st->gc_lock : &st->change_lock);
	int r = store_commit(st, e);
	pthread_mutex_lock(&st->db_lock);
	return r;
}

static void gc_unhold(struct store *st, bool all)
{
	pthread_mutex_unlock(&st->db_lock);
	pthread_rwlock_unlock(all ? &st->gc_lock : &st->change_lock);
}

/*
 * Step 1, changes held off (change_lock exclusive, what they changed
 * committed, db_lock) but reads going on: forget the pages nobody
 * references, take a snapshot of the index as it is then, and have the
 * backend mark what it holds now.  A read may still be using a page it
 * forgets (a file truncated or deleted while the read was under way);
 * the bytes stay in the packs until step 3b, which waits for every read.
 * The forgotten pages leave the prefix set in the same hold: once changes
 * go on, a write must not find them there and take them for stored pages.
 *
 * Pages are forgotten GC_FORGET_BATCH at a time, each batch in a hold of
 * its own (about 0.02-0.03 s), so that changes do not wait for all of them; a
 * page that gains a reference between batches is no longer dead, one that
 * loses its last is forgotten by a later batch.  The last batch, short,
 * and the snapshot share a hold.  Listing the live pages, about 0.2 s per
 * million, waits for gc_list, beside other calls.
 */
static int gc_forget_batch(struct store *st, struct gc_run *g, bool *last, struct err *e)
{
	size_t first = g->nfreed;
	int r = gc_forget(st, g, e);
	pthread_mutex_lock(&st->mem_lock);
	if (r) {
		/* The rows are gone whatever part of them was listed: the
		 * prefix set is read again rather than left naming them. */
		struct err le = { 0 };
		store_load_known(st, &le);
	} else {
		for (size_t i = first; i < g->nfreed; i++)
			pset_remove(&st->known, g->freed[i].prefix, g->freed[i].loc);
	}
	pthread_mutex_unlock(&st->mem_lock);
	*last = g->nfreed - first < GC_FORGET_BATCH;
	return r;
}

static int gc_start(struct store *st, struct gc_run *g, struct store_gc_result *res,
		    struct err *e)
{
	bool last = false;
	int r = 0;
	while (!r && !last) {
		r = gc_hold(st, false, e);
		if (!r)
			r = gc_forget_batch(st, g, &last, e);
		if (!r && last) {
			if (snapshot_begin(g->snap) != SQLITE_OK)
				r = store_sql_err(st, g->snap, sqlite3_errcode(g->snap), e,
						  "gc: reading the page index");
			else
				st->be->ops->gc_mark(st->be, snap_live_in, g);
			if (!r && g->snap_err)
				r = store_sql_err(st, g->snap, sqlite3_errcode(g->snap), e,
						  "gc: counting pages");
		}
		gc_unhold(st, false);
	}
	res->pages_freed = g->nfreed;
	return r;
}

/* Step 1, beside other calls: list the pages the index held at step 1
 * and let the backend plan from them. */
static int gc_list(struct store *st, struct gc_run *g, struct err *e)
{
	size_t cap = 0;
	int r = pages_in(g->snap, 0, UINT64_MAX, &g->live, &g->n, &cap);
	sqlite3_exec(g->snap, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(g->snap);
	g->snap = NULL;
	if (r)
		return err_set(e, r, "store %s: gc: listing pages: %s", st->dir, strerror(-r));
	g->before = g->n ? malloc(g->n * sizeof(*g->before)) : NULL;
	if (g->n && !g->before)
		return err_set(e, -ENOMEM, "store %s: gc: out of memory", st->dir);
	if (g->n)
		memcpy(g->before, g->live, g->n * sizeof(*g->before));
	if (st->be->ops->gc_plan)
		st->be->ops->gc_plan(st->be, g->live, g->n);
	return 0;
}

/*
 * What release must keep (step 3b, all held off, relocation committed):
 * every page the index holds now where release may free pages (the
 * backend's gc_scope, else everywhere), not only those step 1 listed,
 * and pages put but not committed.  Step 1's list misses pages
 * committed since: those written during step 2 into the pack then
 * taking pages, whose dead pages release punches out, and file tails a
 * commit waiting for step 1 stored before it (tails take no gc_lock).
 */
static int gc_keep_list(struct store *st, struct gc_run *g, struct err *e)
{
	free(g->live);
	g->live = NULL;
	g->n = 0;
	/* Only where release may free anything, if the backend says. */
	struct store_loc_range all = { 0, UINT64_MAX }, *ranges = NULL;
	size_t nranges = 0, cap = 0;
	int r = 0;
	if (st->be->ops->gc_scope)
		r = st->be->ops->gc_scope(st->be, &ranges, &nranges);
	const struct store_loc_range *rs = st->be->ops->gc_scope ? ranges : &all;
	size_t nr = st->be->ops->gc_scope ? nranges : 1;
	for (size_t i = 0; i < nr && !r; i++)
		r = pages_in(st->db, rs[i].lo, rs[i].hi, &g->live, &g->n, &cap);
	free(ranges);
	if (r)
		return err_set(e, r, "listing pages: %s", strerror(-r));
	pthread_mutex_lock(&st->mem_lock);
	size_t n = g->n, extra = st->pending.n + st->committing.n;
	if (extra) {
		struct store_live_page *l = realloc(g->live, (n + extra) * sizeof(*l));
		if (!l) {
			pthread_mutex_unlock(&st->mem_lock);
			return err_set(e, -ENOMEM, "out of memory");
		}
		g->live = l;
		const struct htab *tabs[] = { &st->pending, &st->committing };
		for (size_t t = 0; t < 2; t++)
			for (size_t i = 0; i < tabs[t]->cap; i++) {
				const struct ptab_ent *pe = htab_at(tabs[t], i);
				if (pe) {
					memcpy(l[n].hash, pe->hash, STORE_HASH_SIZE);
					l[n++].loc = pe->loc;
				}
			}
	}
	pthread_mutex_unlock(&st->mem_lock);
	if (n > g->n)
		qsort(g->live, n, sizeof(*g->live), live_cmp);
	g->n = n;
	return 0;
}

/* rows_naming_moved's each for gc_find_rows: note the row's key. */
static int list_row(void *arg, int64_t ino, int64_t idx, const uint8_t *locs, int n)
{
	(void)locs;
	(void)n;
	struct gc_run *g = arg;
	if (store_grow((void **)&g->rows, &g->caprows, g->nrows, sizeof(*g->rows)))
		return -ENOMEM;
	g->rows[g->nrows++] = (struct chunk_key){ ino, idx };
	return 0;
}

/*
 * Step 2, after compact, beside other calls: which pages moved, and which
 * page-map rows name them, read on a snapshot of the index.  From the
 * snapshot on, commits list the rows they write (st->gc_rows), so that
 * step 3a rewrites those and these instead of reading every row while
 * commits wait (0.1 s per million pages).  If the rows cannot be listed,
 * step 3a reads them all.
 */
static int gc_find_rows(struct store *st, struct gc_run *g, store_progress_fn progress, void *arg,
			struct err *e)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->live[i].loc != g->before[i].loc) {
			struct fpage *fp = htab_get(&g->moved, &g->before[i].loc);
			if (!fp)
				return err_set(e, -ENOMEM, "store %s: gc: out of memory", st->dir);
			memcpy(fp->hash, g->before[i].hash, STORE_HASH_SIZE);
			fp->moved_to = g->live[i].loc;
		}
	if (!g->moved.n)
		return 0;
	sqlite3 *snap;
	struct err le = { 0 };
	if (store_db_open(st, true, &snap, &le))
		return 0;
	/* No commit is under way while tracking starts and the snapshot is
	 * taken: each one is either in the snapshot or tracked. */
	pthread_mutex_lock(&st->db_lock);
	st->gc_track = true;
	st->gc_track_lost = false;
	st->gc_nrows = 0;
	int rc = snapshot_begin(snap);
	pthread_mutex_unlock(&st->db_lock);
	uint64_t done = 0;
	g->rows_found = rc == SQLITE_OK && !rows_naming_moved(snap, &g->moved, list_row, g, &done);
	if (progress)
		progress(arg, "finding page maps to update", done, done);
	sqlite3_exec(snap, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(snap);
	return 0;
}

/* Commits stop listing the rows they write (db_lock held). */
static void gc_untrack(struct store *st)
{
	st->gc_track = false;
	free(st->gc_rows);
	st->gc_rows = NULL;
	st->gc_nrows = st->gc_caprows = 0;
}

/*
 * Step 3a: one transaction points the index and every page map (written
 * since the snapshot of step 2 or not) at the moved pages, and then the
 * cached page maps and the prefix set follow.  Nothing is held off while
 * the transaction runs but commits (db_lock): reads go on, and so do
 * changes, in memory.  A read may take a page's old location or its new
 * one, from a cached map or from a row read before or after the
 * transaction: both hold the page until step 3b.  A change may take an
 * old location from the prefix set into a page map (and the committed
 * slots a changed map keeps may name old ones): so once the transaction
 * is in, commits wait (st->gc_relocating) while the changes under way
 * finish (change_lock exclusive) and memory is pointed at the new
 * places.  The transaction and what it must survive, step 1's deletions
 * included, reach the disk here: a power loss must not bring back rows
 * naming space step 3b frees.
 */
static int gc_relocate(struct store *st, struct gc_run *g, struct err *e)
{
	pthread_mutex_lock(&st->db_lock);
	int r = 0;
	if (g->moved.n) {
		int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		r = rc == SQLITE_OK ? relocate(st, g) : -EIO;
		if (!r)
			r = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
		if (r) {
			store_sql_err(st, st->db, sqlite3_errcode(st->db), e, "gc: relocating pages");
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	gc_untrack(st);
	bool follow = !r && g->moved.n;
	st->gc_relocating = follow;
	pthread_mutex_unlock(&st->db_lock);
	if (follow) {
		pthread_rwlock_wrlock(&st->change_lock);
		pthread_mutex_lock(&st->mem_lock);
		relocate_cache(st, &g->moved);
		for (size_t i = 0; i < g->moved.cap; i++) {
			const struct fpage *fp = htab_at(&g->moved, i);
			if (fp)
				pset_move(&st->known, fp->hash, fp->loc, fp->moved_to);
		}
		pthread_mutex_unlock(&st->mem_lock);
		pthread_mutex_lock(&st->db_lock);
		st->gc_relocating = false;
		pthread_cond_broadcast(&st->reloc_cond);
		pthread_mutex_unlock(&st->db_lock);
		pthread_rwlock_unlock(&st->change_lock);
	}
	return r ? r : store_sync_wal(st, e);
}

/* Step 3b, every other call held off again (no read holds an old
 * location any more): the old copies and the dead pages go. */
static int gc_release(struct store *st, struct gc_run *g, struct err *e)
{
	int r = gc_keep_list(st, g, e);
	if (!r)
		r = st->be->ops->release(st->be, g->live, g->n, e);
	if (r)
		err_prefix(e, "store %s: gc", st->dir);
	return r;
}

/*
 * Step 1 holds changes off, not reads, a batch at a time; step 3a holds
 * commits off for work that grows with what was moved, and changes only
 * while memory follows; step 3b holds every call off while the backend
 * frees space (with nothing dead or moved, a few ms).  Listing the live
 * pages, copying them out of packs with dead space (the slow part) and
 * finding the page maps that name moved pages run beside other calls, on
 * snapshots of the index where it matters.  Pages written meanwhile go
 * to packs step 1 left out; pages that lose their last reference
 * meanwhile are copied all the same and freed by the next gc; pages that
 * gain one (a write deduplicated against them) are followed to their new
 * place by step 3a, which relocates every page map naming them.
 */
int store_gc(struct store *st, store_progress_fn progress, void *arg, struct store_gc_result *res,
	     struct err *e)
{
	struct store_gc_result dummy;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (st->rdonly)
		return err_set(e, -EROFS, "store %s: gc needs the store opened for writing", st->dir);
	int r = store_known_wait(st, e);
	if (r)
		return r;
	int lock;
	r = admin_lock(st, true, &lock, e);
	if (r)
		return r;
	uint64_t packs;
	st->be->ops->usage(st->be, &res->bytes_before, &packs);
	struct gc_run g = { .moved = HTAB_LOC(struct fpage) };
	r = store_db_open(st, true, &g.snap, e);
	if (!r) {
		gc_checkpoint(st);
		r = gc_start(st, &g, res, e);
	}
	if (!r)
		r = gc_list(st, &g, e);
	if (!r) {
		r = st->be->ops->compact(st->be, g.live, g.n, progress, arg, e);
		if (r)
			err_prefix(e, "store %s: gc", st->dir);
	}
	if (!r)
		r = gc_find_rows(st, &g, progress, arg, e);
	if (!r)
		r = gc_relocate(st, &g, e);
	if (!r) {
		r = gc_hold(st, true, e);
		if (!r)
			r = gc_release(st, &g, e);
		gc_unhold(st, true);
		if (st->be->ops->reclaim)
			st->be->ops->reclaim(st->be);
	}
	st->be->ops->usage(st->be, &res->bytes_after, &packs);
	gc_run_free(&g);
	admin_unlock(lock);
	return r;
}

/* ---- stats ---------------------------------------------------------------------- */

int store_stats(struct store *st, struct store_stats *out, struct err *e)
{
	memset(out, 0, sizeof(*out));
	int r = store_commit(st, e);
	if (r)
		return r;
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(
		st->rdb,
		"SELECT"
		" (SELECT count(*) FROM inode WHERE (mode & 61440) = 32768),"
		" (SELECT count(*) FROM inode WHERE (mode & 61440) = 16384),"
		" (SELECT count(*) FROM inode),"
		" (SELECT total(size) FROM inode WHERE (mode & 61440) = 32768),"
		" (SELECT total((size + 4095) / 4096) FROM inode WHERE (mode & 61440) = 32768),"
		" (SELECT total(pages) FROM inode WHERE (mode & 61440) = 32768),"
		" (SELECT count(*) FROM page WHERE refs > 0),"
		" (SELECT count(*) FROM page WHERE refs <= 0)",
		-1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		out->files = (uint64_t)sqlite3_column_int64(s, 0);
		out->dirs = (uint64_t)sqlite3_column_int64(s, 1);
		out->inodes = (uint64_t)sqlite3_column_int64(s, 2);
		out->logical_bytes = (uint64_t)sqlite3_column_double(s, 3);
		out->logical_pages = (uint64_t)sqlite3_column_double(s, 4);
		out->referenced_pages = (uint64_t)sqlite3_column_double(s, 5);
		out->unique_pages = (uint64_t)sqlite3_column_int64(s, 6);
		out->unreferenced_pages = (uint64_t)sqlite3_column_int64(s, 7);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		r = store_sql_err(st, st->rdb, rc, e, "stats");
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->rdb_lock);
	if (r)
		return r;
	out->zero_pages = out->logical_pages - out->referenced_pages;
	out->stored_bytes = out->unique_pages * STORE_PAGE_SIZE;
	out->dedup_ratio = out->unique_pages ? (double)out->referenced_pages / out->unique_pages : 1.0;
	r = st->be->ops->usage(st->be, &out->pack_bytes, &out->packs);
	return r ? err_set(e, r, "store %s: stats: pack sizes: %s", st->dir, strerror(-r)) : 0;
}
