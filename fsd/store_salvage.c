/*
 * fsd/store_salvage.c: a new index.db from the rows SQLite can still read
 * of one it finds damaged (store_salvage in store.h).
 *
 * Each table is copied in order of an integer key (its rowid, or for
 * xattrs the inode), with a scan that starts over past a damaged stretch:
 * when a step fails, the smallest key past the last row copied from which
 * a scan can start again is found by probing (doubling the step, then
 * halving the gap back), so only the rows of the damaged pages are lost.
 * The copy is made beside the old file and swapped in by renames; the old
 * one is kept as index.db.damaged (.2, .3... after that).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_i.h"
#include "store_schema.h"

/* The tables, each with the integer key its scan follows.  cols: what is
 * copied (a rowid that is not a column is left for SQLite to give). */
static const struct salvage_table {
	const char *name, *key, *cols;
} salvage_tables[STORE_SALVAGE_TABLES] = {
	{ "inode", "ino",
	  "ino, mode, nlink, uid, gid, size, rdev, pages, atime_ns, mtime_ns, ctime_ns, flags, parent" },
	{ "dentry", "id", "id, parent, name, ino" },
	{ "symlink", "ino", "ino, target" },
	{ "xattr", "ino", "ino, name, value" },
	{ "chunk", "rowid", "ino, idx, locs, sum, hashes" },
	{ "page", "loc", "loc, hash, refs" },
	{ "meta", "NULL", "key, value" },
};

/* An SQLite result that says the old index is damaged where it was
 * read (a page that fails SQLite's checks, or that cannot be read from
 * the disk): what a scan skips.  Anything else (out of memory) ends the
 * salvage, so that no row is dropped for a reason that is not damage. */
static bool damage(int rc)
{
	rc &= 0xff;
	return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_IOERR;
}

/* Start a scan of s from key at: its first step's result (SQLITE_ROW or
 * SQLITE_DONE if it could start). */
static int scan_start(sqlite3_stmt *s, int64_t at)
{
	sqlite3_reset(s);
	sqlite3_bind_int64(s, 1, at);
	return sqlite3_step(s);
}

static bool started(int rc)
{
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* The smallest key past from from which a scan of s starts, in *at
 * (INT64_MAX if none does: nothing more can be read); 0, or the SQLite
 * result that is not damage and ended the search. */
static int scan_resume(sqlite3_stmt *s, int64_t from, int64_t *at)
{
	int rc;
	int64_t bad = from, step = 1, good = INT64_MAX;
	/* Double the step until a scan starts... */
	while (bad <= INT64_MAX - step) {
		if (started(rc = scan_start(s, bad + step))) {
			good = bad + step;
			break;
		}
		if (!damage(rc))
			return rc;
		bad += step;
		if (step < INT64_MAX / 2)
			step *= 2;
	}
	/* ...then narrow (bad, good] down to the first key that starts. */
	while (good != INT64_MAX && good - bad > 1) {
		int64_t mid = bad + (good - bad) / 2;
		if (started(rc = scan_start(s, mid)))
			good = mid;
		else if (damage(rc))
			bad = mid;
		else
			return rc;
	}
	*at = good;
	return 0;
}

/* Copy table t from the old index (the connection old) into the new one
 * (db); its counts into *out. */
static int salvage_table(const char *dir, sqlite3 *old, sqlite3 *db,
			 const struct salvage_table *t, struct store_salvage_table *out,
			 struct err *e)
{
	char sql[512];
	int ncols = 1;
	for (const char *c = t->cols; *c; c++)
		ncols += *c == ',';
	/* meta, a few rows keyed by text, is read in one scan (?1 is then
	 * just true). */
	bool keyed = strcmp(t->key, "NULL") != 0;
	if (keyed)
		snprintf(sql, sizeof(sql), "SELECT %s, %s FROM %s WHERE %s >= ?1 ORDER BY %s",
			 t->key, t->cols, t->name, t->key, t->key);
	else
		snprintf(sql, sizeof(sql), "SELECT NULL, %s FROM %s WHERE ?1 ORDER BY 2", t->cols,
			 t->name);
	sqlite3_stmt *get, *put;
	int prc = sqlite3_prepare_v2(old, sql, -1, &get, NULL);
	if (prc != SQLITE_OK)
		return err_set(e, damage(prc) ? -EUCLEAN : store_sql_errno(prc),
			       "store %s: salvage: table %s of index.db cannot be read: %s", dir,
			       t->name, sqlite3_errmsg(old));
	char vals[64] = "?";
	for (int i = 1; i < ncols; i++)
		strcat(vals, ",?");
	snprintf(sql, sizeof(sql), "INSERT OR %s INTO %s(%s) VALUES(%s)",
		 keyed ? "IGNORE" : "REPLACE", t->name, t->cols, vals);
	if (sqlite3_prepare_v2(db, sql, -1, &put, NULL) != SQLITE_OK) {
		sqlite3_finalize(get);
		return store_sql_err_at(dir, db, sqlite3_errcode(db), e, "salvage: copying rows");
	}
	int r = 0, rc = scan_start(get, INT64_MIN);
	int64_t at = INT64_MIN;
	while (!r) {
		if (!started(rc)) {
			if (!damage(rc))
				break;
			/* A damaged stretch: the rest of key at (of a
			 * table where keys repeat) may be in it too. */
			out->damaged++;
			if (!keyed || at == INT64_MAX)
				break;
			if ((rc = scan_resume(get, at, &at)) != 0)
				break;
			if (at == INT64_MAX)
				break;
			rc = scan_start(get, at);
			continue;
		}
		while (rc == SQLITE_ROW) {
			int64_t key = sqlite3_column_int64(get, 0);
			if (keyed && key < at) {
				/* Out of order: a damaged page (and the scan
				 * must only go forward, to end). */
				rc = SQLITE_CORRUPT;
				break;
			}
			/* A value not bound would go in as NULL, which OR
			 * IGNORE would then drop without a word. */
			int wrc = SQLITE_OK;
			for (int i = 0; i < ncols && wrc == SQLITE_OK; i++)
				wrc = sqlite3_bind_value(put, i + 1, sqlite3_column_value(get, i + 1));
			if (wrc == SQLITE_OK && sqlite3_errcode(old) == SQLITE_NOMEM)
				wrc = SQLITE_NOMEM;
			bool bound = wrc == SQLITE_OK;
			if (bound)
				wrc = sqlite3_step(put);
			sqlite3_reset(put);
			if ((wrc & 0xff) == SQLITE_CORRUPT) {
				/* The row's bytes, read only as they are
				 * copied, are damaged: a damaged stretch. */
				at = key;
				rc = wrc;
				break;
			}
			if (wrc != SQLITE_DONE) {
				char what[96];
				snprintf(what, sizeof(what), "salvage: %s table %s of the new index",
					 bound ? "writing" : "copying a row into", t->name);
				r = store_sql_err_at(dir, bound ? db : NULL, wrc, e, what);
				break;
			}
			out->rows++;
			at = key;
			rc = sqlite3_step(get);
		}
		if (rc == SQLITE_DONE)
			break;
	}
	if (!r && !started(rc) && !damage(rc) && rc != 0) {
		char what[96];
		snprintf(what, sizeof(what), "salvage: reading table %s of index.db", t->name);
		r = store_sql_err_at(dir, old, rc, e, what);
	}
	sqlite3_finalize(get);
	sqlite3_finalize(put);
	return r;
}

/* The counter of AUTOINCREMENT table name in the old index, or 0. */
static int64_t old_sequence(sqlite3 *old, const char *name)
{
	sqlite3_stmt *s;
	int64_t seq = 0;
	if (sqlite3_prepare_v2(old, "SELECT seq FROM sqlite_sequence WHERE name = ?1", -1, &s,
			       NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		seq = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return seq;
}

/* Inode and entry numbers are never reused: the counters go on from the
 * highest the old index (where it can be read) or any salvaged row knew. */
static int salvage_sequences(const char *dir, sqlite3 *old, sqlite3 *db, struct err *e)
{
	char sql[768];
	snprintf(sql, sizeof(sql),
		 "DELETE FROM sqlite_sequence;"
		 "INSERT INTO sqlite_sequence(name, seq) SELECT 'inode', max(n) FROM ("
		 " SELECT max(ino) AS n FROM inode UNION ALL SELECT max(ino) FROM dentry"
		 " UNION ALL SELECT max(ino) FROM chunk UNION ALL SELECT max(ino) FROM xattr"
		 " UNION ALL SELECT max(ino) FROM symlink UNION ALL SELECT %lld);"
		 "INSERT INTO sqlite_sequence(name, seq) SELECT 'dentry', max(coalesce(max(id), 0),"
		 " %lld) FROM dentry;",
		 (long long)old_sequence(old, "inode"), (long long)old_sequence(old, "dentry"));
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : store_sql_err_at(dir, db, rc, e, "salvage: inode numbers");
}

/* Make the new index, db, from the old one, old. */
static int salvage_into(const char *dir, sqlite3 *old, sqlite3 *db,
			struct store_salvage_result *res, store_progress_fn progress, void *arg,
			struct err *e)
{
	sqlite3_stmt *s;
	int64_t v = -1;
	int rc = sqlite3_prepare_v2(old, "PRAGMA user_version", -1, &s, NULL);
	if (rc == SQLITE_OK) {
		if ((rc = sqlite3_step(s)) == SQLITE_ROW)
			v = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	if (rc != SQLITE_ROW)
		return err_set(e, damage(rc) || rc == SQLITE_DONE ? -EUCLEAN : store_sql_errno(rc),
			       "store %s: salvage: index.db cannot be read at all: %s", dir,
			       sqlite3_errmsg(old));
	if (v != store_schema_version_current)
		return err_set(e, -EUCLEAN,
			       "store %s: salvage: index.db is of schema version %lld, and salvage"
			       " reads only version %d", dir, (long long)v,
			       store_schema_version_current);
	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, store_schema_sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err_at(dir, db, rc, e, "salvage: creating the new index");
	int r = 0;
	for (unsigned i = 0; i < STORE_SALVAGE_TABLES && !r; i++) {
		res->tables[i].name = salvage_tables[i].name;
		r = salvage_table(dir, old, db, &salvage_tables[i], &res->tables[i], e);
		if (progress)
			progress(arg, "salvaging tables", i + 1, STORE_SALVAGE_TABLES);
	}
	/* The version, and the root directory and the store's figures in
	 * meta if their rows were lost. */
	char sql[STORE_SCHEMA_ROWS_SQL];
	store_schema_rows_sql(sql, sizeof(sql), true);
	if (!r && (rc = sqlite3_exec(db, sql, NULL, NULL, NULL)) != SQLITE_OK)
		r = store_sql_err_at(dir, db, rc, e, "salvage: the root directory");
	if (!r)
		r = salvage_sequences(dir, old, db, e);
	if (!r && (rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
		r = store_sql_err_at(dir, db, rc, e, "salvage: writing the new index");
	if (r)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

/* dir/name. */
static void salvage_path(char *buf, size_t size, const char *dir, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

static void unlink_db(const char *path)
{
	char p[4224];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-journal", path);
	unlink(p);
}

/*
 * Put the new index in place of the old, which is kept as
 * index.db.damaged, or index.db.damaged.N (N from 2) if that is taken by
 * an earlier salvage, its name in kept_name (with its WAL, if one is
 * left, beside it).  The old gets its second name first and the new one
 * replaces it in one rename, so that a crash leaves index.db, old or
 * new, there to open; the old WAL moves away before, as SQLite would
 * apply it to the new file.
 */
static int salvage_swap(const char *dir, const char *fresh, char *kept_name, size_t size,
			struct err *e)
{
	char old[4200], kept[4200], p[4224], q[4224];
	salvage_path(old, sizeof(old), dir, "index.db");
	for (unsigned n = 1;; n++) {
		if (n == 1000)
			return err_set(e, -EEXIST, "store %s: salvage: index.db.damaged and 998 more"
				       " kept by earlier salvages are there: move them away", dir);
		if (n == 1)
			snprintf(kept_name, size, "index.db.damaged");
		else
			snprintf(kept_name, size, "index.db.damaged.%u", n);
		salvage_path(kept, sizeof(kept), dir, kept_name);
		snprintf(q, sizeof(q), "%s-wal", kept);
		if (access(kept, F_OK) < 0 && access(q, F_OK) < 0)
			break;
	}
	/* A filesystem without hard links: the old is renamed instead,
	 * leaving no index.db until the new one is renamed in. */
	if (link(old, kept) < 0 && rename(old, kept) < 0)
		return err_set(e, -errno, "store %s: salvage: keeping index.db as %s: %s", dir, kept,
			       strerror(errno));
	snprintf(p, sizeof(p), "%s-wal", old);
	if (rename(p, q) < 0 && errno != ENOENT)
		return err_set(e, -errno, "store %s: salvage: keeping %s: %s", dir, p, strerror(errno));
	snprintf(p, sizeof(p), "%s-shm", old);
	unlink(p);
	if (rename(fresh, old) < 0)
		return err_set(e, -errno, "store %s: salvage: %s to index.db: %s (the old index is"
			       " %s)", dir, fresh, strerror(errno), kept);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int store_salvage(const char *dir, store_progress_fn progress, void *arg,
		  struct store_salvage_result *res, struct err *e)
{
	memset(res, 0, sizeof(*res));
	char oldpath[4200], fresh[4200];
	salvage_path(oldpath, sizeof(oldpath), dir, "index.db");
	salvage_path(fresh, sizeof(fresh), dir, "index.db.salvage");
	if (access(oldpath, F_OK) < 0)
		return err_set(e, -errno, "store %s: salvage: %s: %s", dir, oldpath, strerror(errno));
	/* The store's lock, as an open for writing takes it: no daemon or
	 * other command may use the store meanwhile. */
	int lock_fd;
	int r = store_take_lock(dir, false, &lock_fd, e);
	sqlite3 *db = NULL, *old = NULL;
	if (!r) {
		/* Read and write: SQLite replays the old index's WAL. */
		int rc = sqlite3_open_v2(oldpath, &old, SQLITE_OPEN_READWRITE, NULL);
		if (rc != SQLITE_OK)
			r = err_set(e, store_sql_errno(rc), "store %s: salvage: index.db cannot be"
				    " opened: %s", dir, old ? sqlite3_errmsg(old) : sqlite3_errstr(rc));
	}
	if (!r) {
		unlink_db(fresh);
		int rc = sqlite3_open_v2(fresh, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
		if (rc != SQLITE_OK)
			r = store_sql_err_at(dir, db, rc, e, "salvage: creating index.db.salvage");
	}
	if (!r)
		r = salvage_into(dir, old, db, res, progress, arg, e);
	if (db && sqlite3_close(db) != SQLITE_OK && !r)
		r = err_set(e, -EIO, "store %s: salvage: closing the new index", dir);
	if (old)
		sqlite3_close(old);
	if (!r)
		r = salvage_swap(dir, fresh, res->kept, sizeof(res->kept), e);
	else
		unlink_db(fresh);
	if (lock_fd >= 0)
		close(lock_fd);
	return r;
}
