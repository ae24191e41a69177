/*
 * fsd/store_repair.c: the repairs fsck --repair makes for sure, after
 * its checks (store_fsck.c) and in their transaction: reference counts,
 * page maps (rows rebuilt, page counts, maps made files), and the tree
 * (entries, lost+found, cut-off directories, link counts, parents).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_admin_i.h"

/*
 * Index again the intact pages whose rows the index lost, and give back
 * their hashes to those whose rows' hashes are damaged: each new row with the
 * references fsck_maps counted, or, if a problem left references
 * uncounted, with one more, so that no gc frees a page a damaged map may
 * still name before an fsck counts its references for sure.
 */
static int fsck_reindex(struct fsck *f, struct htab *t)
{
	sqlite3_stmt *s, *h;
	if (sqlite3_prepare_v2(f->st->db, "INSERT INTO page(loc, hash, refs) VALUES (?1, ?2, ?3)",
			       -1, &s, NULL) != SQLITE_OK)
		return -EIO;
	if (sqlite3_prepare_v2(f->st->db, "UPDATE page SET hash = ?2 WHERE loc = ?1", -1, &h,
			       NULL) != SQLITE_OK) {
		sqlite3_finalize(s);
		return -EIO;
	}
	int r = 0;
	for (size_t i = 0; i < t->cap && !r; i++) {
		struct fpage *fp = htab_at(t, i);
		sqlite3_stmt *q = !fp ? NULL : fp->unindexed ? s : fp->rehashed ? h : NULL;
		if (!q)
			continue;
		sqlite3_bind_int64(q, 1, (int64_t)fp->loc);
		sqlite3_bind_blob(q, 2, fp->hash, STORE_HASH_SIZE, SQLITE_STATIC);
		if (q == s)
			sqlite3_bind_int64(s, 3, fp->seen + (f->uncounted ? 1 : 0));
		if (sqlite3_step(q) != SQLITE_DONE)
			r = -EIO;
		else if (q == s)
			f->res->pages_reindexed++;
		else
			f->res->hashes_repaired++;
		sqlite3_reset(q);
	}
	sqlite3_finalize(s);
	sqlite3_finalize(h);
	return r;
}

/* Set each page's reference count to the references fsck_maps counted,
 * unless a problem left them uncounted for sure (res->refs_left), and
 * index again the intact pages the index lost. */
int fsck_repair_refs(struct fsck *f, struct htab *t)
{
	/* Nothing goes into an index SQLite finds damaged. */
	int r = f->index_bad ? 0 : fsck_reindex(f, t);
	if (r)
		return r;
	if (f->uncounted) {
		f->res->refs_left = true;
		return 0;
	}
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(f->st->db, "UPDATE page SET refs = ?1 WHERE loc = ?2", -1, &s,
			       NULL) != SQLITE_OK)
		return -EIO;
	r = 0;
	for (size_t i = 0; i < t->cap && !r; i++) {
		struct fpage *fp = htab_at(t, i);
		if (!fp || fp->unindexed || fp->seen == fp->refs)
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
	int64_t ino = admin_count(f->st, sql);
	if (ino >= 0)
		return ino;
	snprintf(sql, sizeof(sql), "SELECT flags & %d FROM inode WHERE ino = %u",
		 STORE_INODE_SEALED, STORE_ROOT_INO);
	if (admin_count(f->st, sql) != 0)
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
	int64_t n = admin_count(f->st, "SELECT (SELECT count(*) FROM dentry WHERE" HOMELESS_ENTRIES ")"
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
	return admin_count(f->st, sql);
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
	int64_t left = admin_count(f->st, count), dir = 0;
	for (; left > 0; left--) {
		int64_t ino = reattach_point(f, admin_count(f->st, lowest), left);
		if (ino <= 0)
			return ino < 0 ? -EIO : 0;
		/* Not a directory: an entry in a missing inode, which
		 * fsck_lost_found could not move, is on the way up. */
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM inode WHERE ino = %lld AND (mode & 61440) = 16384",
			 (long long)ino);
		int64_t is_dir = admin_count(f->st, sql);
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

/* Insert the file page map c is made into (see fsck_repair_maps): inode
 * ino, or a new one if ino is 0 (SQLite numbers a NULL key).  The rows
 * inserted: 0 if there is no root to take the owner from; or -EIO. */
static int insert_map_file(sqlite3 *db, const struct page_count *c, uint64_t ino, int64_t now)
{
	char sql[512], key[24] = "NULL";
	if (ino)
		snprintf(key, sizeof(key), "%llu", (unsigned long long)ino);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO inode(ino, mode, nlink, uid, gid, size, pages, atime_ns, mtime_ns,"
		 " ctime_ns) SELECT %s, %u, 1, uid, gid, %llu, %llu, %lld, %lld, %lld"
		 " FROM inode WHERE ino = %u",
		 key, (unsigned)(S_IFREG | 0600), (unsigned long long)c->end,
		 (unsigned long long)c->pages, (long long)now, (long long)now, (long long)now,
		 STORE_ROOT_INO);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	return sqlite3_changes(db);
}

/* The page map c of an inode that is not a file moved to a new file
 * (res->maps_moved), as fsck_repair_maps says. */
static int fsck_move_map(struct fsck *f, const struct page_count *c, int64_t now)
{
	sqlite3 *db = f->st->db;
	int r = insert_map_file(db, c, 0, now);
	if (r <= 0)
		return r;	/* 0: no root, left as it is */
	long long to = (long long)sqlite3_last_insert_rowid(db);
	char sql[256];
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
	char sql[128];
	for (size_t i = 0; i < f->ncounts && !r; i++) {
		const struct page_count *c = &f->counts[i];
		if (c->stray) {
			r = fsck_move_map(f, c, now);
		} else if (c->missing) {
			int n = insert_map_file(db, c, c->ino, now);
			if (n < 0)
				r = n;
			else
				res->files_rebuilt += (uint64_t)n;
		} else {
			snprintf(sql, sizeof(sql), "UPDATE inode SET pages = %llu WHERE ino = %llu",
				 (unsigned long long)c->pages, (unsigned long long)c->ino);
			if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
				r = -EIO;
			else
				res->pages_repaired += (uint64_t)sqlite3_changes(db);
		}
	}
	return r;
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
int fsck_repair_tree(struct fsck *f)
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
	/* A symlink whose target is lost points nowhere: it goes, with its
	 * names (below). */
	if (sqlite3_exec(f->st->db,
			 "DELETE FROM xattr WHERE ino IN (SELECT ino FROM inode WHERE " TARGETLESS ");"
			 "DELETE FROM inode WHERE " TARGETLESS, NULL, NULL, NULL) != SQLITE_OK)
		return -EIO;
	res->symlinks_removed += (uint64_t)sqlite3_changes(f->st->db);
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
