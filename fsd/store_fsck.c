/*
 * fsd/store_fsck.c: fsck: re-hash every page, resolve every reference,
 * recount every reference count and link count, in one read transaction
 * (a consistent picture even beside a live writer), and with --repair
 * the repairs of store_repair.c in the same transaction.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_admin_i.h"

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

/* f's hasher and page buffer, made for the first page read (0, or
 * -ENOMEM). */
static int fsck_scratch(struct fsck *f)
{
	if (!f->hasher)
		f->hasher = store_hasher_get(f->st);
	if (!f->page)
		f->page = malloc(STORE_PAGE_SIZE);
	return f->hasher && f->page ? 0 : -ENOMEM;
}

/* Every indexed page: readable, and its bytes hash to its name. */
static int fsck_pages(struct fsck *f, struct htab *t)
{
	struct store *st = f->st;
	char at[64];
	int64_t total = admin_count(st, "SELECT count(*) FROM page");
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "SELECT hash, loc, refs FROM page ORDER BY loc", -1, &s, NULL) !=
	    SQLITE_OK)
		return -EIO;
	int r = fsck_scratch(f);
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
		int g = st->be->ops->get(st->be, hash, loc, f->page);
		uint8_t got[STORE_HASH_SIZE];
		if (g)
			fp->bad = g;
		else if (!(r = store_hash(f->hasher, f->page, STORE_PAGE_SIZE, got)) &&
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

/* 1 if the page at loc is intact as hash (its bytes hash to it), 0 if
 * not (or unreadable), or -errno. */
static int fsck_page_is(struct fsck *f, uint64_t loc, const uint8_t *hash)
{
	if (!loc)
		return 0;
	int r = fsck_scratch(f);
	if (r)
		return r;
	uint8_t got[STORE_HASH_SIZE];
	struct store_backend *be = f->st->be;
	return !be->ops->get(be, hash, loc, f->page) &&
	       !store_hash(f->hasher, f->page, STORE_PAGE_SIZE, got) &&
	       !memcmp(got, hash, STORE_HASH_SIZE);
}

/*
 * A page-map slot names loc with hash, and the index has no page there:
 * if the page at loc is intact as hash, the index lost its row, and *fp
 * is a new entry of t for it (refs 0, unindexed), which the repair
 * inserts; 1 then, else 0 (*fp NULL), or -errno.
 */
static int fsck_unindexed(struct fsck *f, struct htab *t, uint64_t loc, const uint8_t *hash,
			  struct fpage **fp)
{
	*fp = NULL;
	int r = fsck_page_is(f, loc, hash);
	if (r <= 0)
		return r;
	*fp = htab_get(t, &loc);
	if (!*fp)
		return -ENOMEM;
	memcpy((*fp)->hash, hash, STORE_HASH_SIZE);
	(*fp)->unindexed = true;
	return 1;
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
	int64_t total = admin_count(st, "SELECT count(*) FROM chunk");
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
			int found = fp ? 0 : fsck_unindexed(f, t, loc, hash, &fp);
			if ((r = found < 0 ? found : 0))
				break;
			if (!fp) {
				map_problem(f, ino, pg, hash,
					"dangling reference: no page in the index at %s",
					fsck_where(f, loc, at, sizeof(at)));
				continue;
			}
			if (found)
				problem(f, ino, pg, hash,
					"no page in the index at %s, but the page there is intact"
					" (--repair indexes it again)",
					fsck_where(f, loc, at, sizeof(at)));
			fp->seen++;
			/* The index's hash damaged, the map's proven by
			 * the page's bytes: the repair rewrites the index's. */
			bool differ = memcmp(fp->hash, hash, STORE_HASH_SIZE) != 0;
			int proven = differ && fp->bad == FPAGE_MISMATCH ? fsck_page_is(f, loc, hash) : 0;
			if ((r = proven < 0 ? proven : 0))
				break;
			if (proven) {
				memcpy(fp->hash, hash, STORE_HASH_SIZE);
				fp->bad = 0;
				fp->rehashed = true;
				problem(f, ino, pg, hash,
					"the index's hash of the page at %s is damaged; the page's"
					" bytes match the page map's (--repair rewrites it)",
					fsck_where(f, loc, at, sizeof(at)));
			} else if (differ)
				map_problem(f, ino, pg, hash,
					"page map and index disagree on the hash of the page at %s",
					fsck_where(f, loc, at, sizeof(at)));
			else if (fp->bad)
				problem(f, ino, pg, hash, "page damaged at %s: %s",
					fsck_where(f, loc, at, sizeof(at)), fpage_why(fp->bad));
		}
		if (r)
			break;
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
		if (fp && !fp->unindexed && fp->seen != fp->refs)
			problem(f, 0, -1, fp->hash, "reference count %lld, but %lld references",
				(long long)fp->refs, (long long)fp->seen);
	}
	return 0;
}


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
		"SELECT ino, -1, 'symlink without a target' FROM inode WHERE " TARGETLESS,
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
	if (r == -EIO && store_sql_errno(rc) == -EUCLEAN) {
		fsck_hit_walk(&f, STORE_ROOT_INO, 0);
		r = -EUCLEAN;
	}
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
	if (f.hasher)
		store_hasher_put(st, f.hasher);
	free(f.page);
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
