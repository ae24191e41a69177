/*
 * fsd/store_attr.c: what the namespace says about an inode beyond its
 * entries: setattr, sealing a subtree and lifting a seal, extended
 * attributes, and statfs.  Like store_ns.c, each change is one transaction
 * on the main connection (under db_lock).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "store_i.h"

/* ---- attributes ------------------------------------------------------------------ */

int store_setattr(struct store *st, uint64_t ino, const struct store_attr *in, unsigned mask,
		  struct store_attr *out)
{
	if (st->rdonly)
		return -EROFS;
	int r = 0;
	if (mask & STORE_SET_SIZE) {
		struct store_attr a;
		r = store_getattr(st, ino, &a);
		if (!r && (a.flags & STORE_INODE_SEALED))
			r = -EPERM;
		if (!r && S_ISDIR(a.mode))
			r = -EISDIR;
		if (!r && !S_ISREG(a.mode))
			r = -EINVAL;
		if (!r)
			r = store_truncate(st, ino, in->size);
		if (r)
			return r;
	}
	unsigned rest = mask & ~(unsigned)STORE_SET_SIZE;
	if (!rest)
		return out ? store_getattr(st, ino, out) : 0;
	r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr a;
	r = ns_attr_get_changeable(st, ino, &a);
	int64_t ctime = rest & STORE_SET_CTIME ? store_ns_of(in->ctime) : store_now_ns();
	int64_t mtime = store_ns_of(in->mtime);
	/* One statement for every attribute: those left unbound (NULL)
	 * keep their value. */
	sqlite3_stmt *s = r ? NULL
			    : store_stmt(st, st->db,
					 "UPDATE inode SET mode = IFNULL(?1, mode), uid = IFNULL(?2, uid),"
					 " gid = IFNULL(?3, gid), atime_ns = IFNULL(?4, atime_ns),"
					 " mtime_ns = IFNULL(?5, mtime_ns), ctime_ns = ?6 WHERE ino = ?7");
	if (!r && !s)
		r = -EIO;
	if (!r) {
		if (rest & STORE_SET_MODE)
			sqlite3_bind_int64(s, 1, (a.mode & S_IFMT) | (in->mode & 07777));
		if (rest & STORE_SET_UID)
			sqlite3_bind_int64(s, 2, in->uid);
		if (rest & STORE_SET_GID)
			sqlite3_bind_int64(s, 3, in->gid);
		if (rest & STORE_SET_ATIME)
			sqlite3_bind_int64(s, 4, store_ns_of(in->atime));
		if (rest & STORE_SET_MTIME)
			sqlite3_bind_int64(s, 5, mtime);
		sqlite3_bind_int64(s, 6, ctime);
		sqlite3_bind_int64(s, 7, (int64_t)ino);
		r = ns_step(s);
	}
	/* The result read in the same transaction: no second read of a
	 * page the change has just made stale on the read connection. */
	if (!r && out)
		r = ns_attr_get(st, st->db, ino, out);
	if (!r)
		store_cached_times(st, ino, rest & STORE_SET_MTIME ? &mtime : NULL, &ctime);
	r = ns_tx_end(st, r);
	if (!r && out)
		store_overlay_attr(st, out);
	return r;
}

int store_set_atime(struct store *st, uint64_t ino, struct timespec atime)
{
	int r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr a;
	r = ns_attr_get_changeable(st, ino, &a);
	sqlite3_stmt *s =
		r ? NULL : store_stmt(st, st->db, "UPDATE inode SET atime_ns = ?1 WHERE ino = ?2");
	if (!r && !s)
		r = -EIO;
	if (!r) {
		sqlite3_bind_int64(s, 1, store_ns_of(atime));
		sqlite3_bind_int64(s, 2, (int64_t)ino);
		r = ns_step(s);
	}
	return ns_tx_end(st, r);
}

#define SUBTREE "WITH RECURSIVE sub(ino) AS (SELECT ?1 UNION" \
		" SELECT d.ino FROM dentry d JOIN sub ON d.parent = sub.ino)"

/* Does busy say yes for ino or anything below it?  (transaction open;
 * 1, 0 or -errno) */
static int subtree_busy(struct store *st, uint64_t ino, bool (*busy)(void *arg, uint64_t ino),
			void *arg)
{
	sqlite3_stmt *s = store_stmt(st, st->db, SUBTREE " SELECT ino FROM sub");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc, r = 0;
	while (!r && (rc = store_step(st, s)) == SQLITE_ROW)
		r = busy(arg, (uint64_t)sqlite3_column_int64(s, 0));
	if (!r && rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_reset(s);
	return r;
}

/*
 * Set (sealed) or clear STORE_INODE_SEALED on ino and everything below
 * it, keeping the cached flags in step.  A file below ino that also has a
 * name in another sealed tree stays sealed when this one is unsealed.
 * (transaction open; 0 or -errno)
 */
static int subtree_set_sealed(struct store *st, uint64_t ino, bool sealed)
{
	sqlite3_stmt *s = store_stmt(st, st->db,
				     SUBTREE " UPDATE inode SET flags = (flags & ~?2) | ?3"
				     " WHERE ino IN sub AND (?3 OR NOT EXISTS ("
				     "  SELECT 1 FROM dentry d JOIN inode p ON p.ino = d.parent"
				     "  WHERE d.ino = inode.ino AND p.flags & ?2"
				     "  AND d.parent NOT IN sub))"
				     " RETURNING ino, flags");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_int64(s, 2, STORE_INODE_SEALED);
	sqlite3_bind_int64(s, 3, sealed ? STORE_INODE_SEALED : 0);
	int rc, r = 0;
	while ((rc = store_step(st, s)) == SQLITE_ROW)
		store_cached_flags(st, (uint64_t)sqlite3_column_int64(s, 0),
				   (uint32_t)sqlite3_column_int64(s, 1));
	if (rc != SQLITE_DONE)
		r = -EIO;
	sqlite3_reset(s);
	return r;
}

int store_seal(struct store *st, uint64_t ino, bool (*busy)(void *arg, uint64_t ino), void *arg)
{
	if (st->rdonly)
		return -EROFS;
	int r = store_commit(st, NULL);
	if (r)
		return r;
	if (__atomic_load_n(&st->failed, __ATOMIC_RELAXED) && store_recover(st))
		return -EIO;
	/*
	 * A data change checks the flag (data_enter) and makes the change
	 * under change_lock: with it held exclusive, each change comes
	 * whole before the seal or finds the file sealed.  gc_lock first,
	 * as they take it.  No commit under change_lock: a commit may wait
	 * for gc to point memory at relocated pages, which takes it.
	 */
	pthread_rwlock_rdlock(&st->gc_lock);
	pthread_rwlock_wrlock(&st->change_lock);
	r = ns_tx_open(st);
	if (!r) {
		struct store_attr a;
		r = ns_attr_get(st, st->db, ino, &a);
		if (!r && !S_ISDIR(a.mode))
			r = -ENOTDIR;
		if (!r && busy) {
			int b = subtree_busy(st, ino, busy, arg);
			r = b < 0 ? b : b ? -EBUSY : 0;
		}
		if (!r)
			r = subtree_set_sealed(st, ino, true);
		r = ns_tx_end(st, r);
	}
	pthread_rwlock_unlock(&st->change_lock);
	pthread_rwlock_unlock(&st->gc_lock);
	return r;
}

/* Is directory ino the top of a sealed subtree: its parent (through the
 * inode's parent column) not sealed?  The root is always a top.
 * (transaction open; 1, 0 or -errno) */
static int is_seal_top(struct store *st, uint64_t ino)
{
	if (ino == STORE_ROOT_INO)
		return 1;
	sqlite3_stmt *s = store_stmt(st, st->db,
				     "SELECT p.flags FROM inode i JOIN inode p ON p.ino = i.parent"
				     " WHERE i.ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	int r;
	if (rc == SQLITE_ROW)
		r = !(sqlite3_column_int64(s, 0) & STORE_INODE_SEALED);
	else
		r = rc == SQLITE_DONE ? 1 : -EIO;	/* no parent recorded */
	sqlite3_reset(s);
	return r;
}

int store_unseal(struct store *st, uint64_t ino)
{
	if (st->rdonly)
		return -EROFS;
	int r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr a;
	r = ns_attr_get(st, st->db, ino, &a);
	if (!r && !S_ISDIR(a.mode))
		r = -ENOTDIR;
	if (!r && !(a.flags & STORE_INODE_SEALED))
		r = -EINVAL;
	if (!r) {
		int top = is_seal_top(st, ino);
		r = top < 0 ? top : top ? 0 : -EINVAL;
	}
	if (!r)
		r = subtree_set_sealed(st, ino, false);
	return ns_tx_end(st, r);
}

/* ---- extended attributes --------------------------------------------------------- */

/* A read of ino's xattrs (rdb_lock held): -ENOENT if ino is gone, else
 * the statement sql with ino bound as its first parameter. */
static int xattr_query(struct store *st, uint64_t ino, const char *sql, sqlite3_stmt **out)
{
	struct store_attr a;
	int r = ns_attr_get(st, st->rdb, ino, &a);
	*out = r ? NULL : store_stmt(st, st->rdb, sql);
	if (!r && !*out)
		r = -EIO;
	if (!r)
		sqlite3_bind_int64(*out, 1, (int64_t)ino);
	return r;
}

int store_xattr_get(struct store *st, uint64_t ino, const char *name, void *buf, size_t size)
{
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_stmt *s;
	int r = xattr_query(st, ino, "SELECT value FROM xattr WHERE ino = ? AND name = ?", &s);
	if (!r) {
		sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
		int rc = store_step(st, s);
		if (rc == SQLITE_ROW) {
			int n = sqlite3_column_bytes(s, 0);
			if (size && (size_t)n > size)
				r = -ERANGE;
			else {
				if (size && n)
					memcpy(buf, sqlite3_column_blob(s, 0), (size_t)n);
				r = n;
			}
		} else {
			r = rc == SQLITE_DONE ? -ENODATA : -EIO;
		}
		sqlite3_reset(s);
	}
	pthread_mutex_unlock(&st->rdb_lock);
	return r;
}

/* May ino's xattrs be changed (transaction open)?  0, -EPERM if sealed,
 * or -ENOENT. */
static int xattr_changeable(struct store *st, uint64_t ino)
{
	struct store_attr a;
	int r = ns_attr_get(st, st->db, ino, &a);
	return !r && (a.flags & STORE_INODE_SEALED) ? -EPERM : r;
}

/* Finish an xattr change that came to r: a change is one of ino's, so
 * its ctime moves with it. */
static int xattr_change_end(struct store *st, uint64_t ino, int r)
{
	int64_t now = store_now_ns();
	if (!r)
		r = ns_exec4(st, "UPDATE inode SET ctime_ns = ? WHERE ino = ?", 2, now, (int64_t)ino, 0, 0);
	if (!r)
		store_cached_times(st, ino, NULL, &now);
	return ns_tx_end(st, r);
}

/* 0 if ino's list of xattr names has room for n more bytes (db_lock
 * held), -ENOSPC if not: ext4 too refuses a name it has no room for. */
static int xattr_list_room(struct store *st, uint64_t ino, size_t n)
{
	sqlite3_stmt *s = store_stmt(st, st->db,
				     "SELECT coalesce(sum(length(CAST(name AS BLOB)) + 1), 0)"
				     " FROM xattr WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	int64_t used = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_reset(s);
	if (used < 0)
		return -EIO;
	return (uint64_t)used + n > STORE_XATTR_LIST_MAX ? -ENOSPC : 0;
}

int ns_xattr_put(struct store *st, uint64_t ino, const char *name, const void *value, size_t size,
		 int flags)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT 1 FROM xattr WHERE ino = ? AND name = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	int rc = store_step(st, s);
	sqlite3_reset(s);
	int r = 0;
	if (rc == SQLITE_ROW && (flags & XATTR_CREATE))
		r = -EEXIST;
	else if (rc == SQLITE_DONE && (flags & XATTR_REPLACE))
		r = -ENODATA;
	else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = -EIO;
	else if (rc == SQLITE_DONE)
		r = xattr_list_room(st, ino, strlen(name) + 1);
	if (r)
		return r;
	s = store_stmt(st, st->db, "INSERT OR REPLACE INTO xattr(ino, name, value) VALUES(?, ?, ?)");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, size ? value : "", (int)size, SQLITE_STATIC);
	return ns_step(s);
}

/* Remove name from ino (transaction open, ino changeable): -ENODATA if
 * absent. */
static int xattr_delete(struct store *st, uint64_t ino, const char *name)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "DELETE FROM xattr WHERE ino = ? AND name = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	int r = ns_step(s);
	return !r && sqlite3_changes(st->db) == 0 ? -ENODATA : r;
}

int ns_xattr_check(const char *name, size_t size)
{
	if (!name || !*name)
		return -EINVAL;
	if (strlen(name) > STORE_XATTR_NAME_MAX || size > STORE_XATTR_SIZE_MAX)
		return -ERANGE;
	return 0;
}

int store_xattr_set(struct store *st, uint64_t ino, const char *name, const void *value, size_t size,
		    int flags)
{
	int r = ns_xattr_check(name, size);
	if (r)
		return r;
	if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	r = ns_tx_begin(st);
	if (r)
		return r;
	r = xattr_changeable(st, ino);
	if (!r)
		r = ns_xattr_put(st, ino, name, value, size, flags);
	return xattr_change_end(st, ino, r);
}

int store_xattr_any(struct store *st, const char *prefix)
{
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_stmt *s = store_stmt(st, st->rdb,
				     "SELECT 1 FROM xattr WHERE substr(name, 1, ?) = ? LIMIT 1");
	int r = -EIO;
	if (s) {
		sqlite3_bind_int64(s, 1, (int64_t)strlen(prefix));
		sqlite3_bind_text(s, 2, prefix, -1, SQLITE_STATIC);
		int rc = store_step(st, s);
		r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
		sqlite3_reset(s);
	}
	pthread_mutex_unlock(&st->rdb_lock);
	return r;
}

int store_xattr_set_mode(struct store *st, uint64_t ino, const char *name, const void *value,
			 size_t size, uint32_t perm)
{
	int r = ns_xattr_check(name, size);
	if (r)
		return r;
	r = ns_tx_begin(st);
	if (r)
		return r;
	r = xattr_changeable(st, ino);
	if (!r && value) {
		r = ns_xattr_put(st, ino, name, value, size, 0);
	} else if (!r) {
		r = xattr_delete(st, ino, name);
		if (r == -ENODATA)	/* nothing to remove */
			r = 0;
	}
	if (!r)
		r = ns_exec4(st, "UPDATE inode SET mode = (mode & ?) | ? WHERE ino = ?", 3, S_IFMT,
			     perm & 07777, (int64_t)ino, 0);
	return xattr_change_end(st, ino, r);
}

int store_xattr_list(struct store *st, uint64_t ino, char *buf, size_t size)
{
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_stmt *s;
	int r = xattr_query(st, ino, "SELECT name FROM xattr WHERE ino = ? ORDER BY name", &s);
	if (!r) {
		size_t total = 0;
		int rc;
		while ((rc = store_step(st, s)) == SQLITE_ROW) {
			size_t n = (size_t)sqlite3_column_bytes(s, 0) + 1;
			if (size && total + n <= size)
				memcpy(buf + total, sqlite3_column_text(s, 0), n);
			total += n;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			r = -EIO;
		else if (size && total > size)
			r = -ERANGE;
		else
			r = (int)total;
	}
	pthread_mutex_unlock(&st->rdb_lock);
	return r;
}

int store_xattr_remove(struct store *st, uint64_t ino, const char *name)
{
	int r = ns_tx_begin(st);
	if (r)
		return r;
	r = xattr_changeable(st, ino);
	if (!r)
		r = xattr_delete(st, ino, name);
	return xattr_change_end(st, ino, r);
}

/* ---- figures --------------------------------------------------------------------- */

int store_statfs(struct store *st, struct store_statfs *out)
{
	memset(out, 0, sizeof(*out));
	/* Deleted files count as gone (a failure leaves orphans). */
	if (!st->rdonly)
		store_reclaim_forgotten(st);
	uint64_t packs;
	int r = st->be->ops->usage(st->be, &out->stored_bytes, &packs);
	if (r)
		return r;
	struct statvfs sv;
	if (statvfs(st->dir, &sv) < 0)
		return -errno;
	out->free_bytes = (uint64_t)sv.f_bfree * sv.f_frsize;
	/* Page data stops short of the index's reserve, so files have that
	 * much less room than the disk, as with ext4's reserved blocks. */
	out->avail_bytes = store_page_room(&sv);
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_stmt *s = store_stmt(st, st->rdb, "SELECT count(*) FROM inode");
	if (!s) {
		r = -EIO;
	} else {
		if (store_step(st, s) == SQLITE_ROW)
			out->inodes = (uint64_t)sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
	}
	pthread_mutex_unlock(&st->rdb_lock);
	return r;
}

void store_path_of(sqlite3 *db, uint64_t ino, char *buf, size_t size)
{
	char path[4096] = "";
	size_t len = 0;
	sqlite3_stmt *s;
	buf[0] = 0;
	if (sqlite3_prepare_v2(db, "SELECT parent, name FROM dentry WHERE ino = ? ORDER BY id LIMIT 1",
			       -1, &s, NULL) != SQLITE_OK)
		return;
	/* Walk up to the root, building the path from its end. */
	for (unsigned depth = 0; ino != STORE_ROOT_INO && depth < 1000; depth++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		if (sqlite3_step(s) != SQLITE_ROW)
			break;
		const char *name = (const char *)sqlite3_column_text(s, 1);
		if (!name)
			name = "";	/* out of memory: the path goes on without it */
		size_t n = strlen(name);
		if (len + n + 1 >= sizeof(path))
			break;
		memmove(path + n + 1, path, len + 1);
		path[0] = '/';
		memcpy(path + 1, name, n);
		len += n + 1;
		ino = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	snprintf(buf, size, "%s", ino == STORE_ROOT_INO ? (len ? path : "/") : "");
}
