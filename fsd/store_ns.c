/*
 * fsd/store_ns.c: the namespace: inodes, directory entries, symlinks,
 * lookup, readdir, create, link, unlink, rename.  All of it lives in
 * SQLite; every change is one transaction on the main connection (under
 * db_lock), and reads go through the read connection so they never wait
 * for a commit of file data.  Size, times and page counts of files with
 * pending writes are overlaid from the data cache (store_cache.c).
 * Attributes, sealing and xattrs are in store_attr.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_i.h"

#define ATTR_COLS "ino, mode, nlink, uid, gid, size, rdev, pages, atime_ns, mtime_ns, ctime_ns, flags"
#define MAX_LINKS 65000

/* Columns ATTR_COLS starting at column c into a. */
static void attr_from(sqlite3_stmt *s, int c, struct store_attr *a)
{
	a->ino = (uint64_t)sqlite3_column_int64(s, c + 0);
	a->mode = (uint32_t)sqlite3_column_int64(s, c + 1);
	a->nlink = (uint32_t)sqlite3_column_int64(s, c + 2);
	a->uid = (uint32_t)sqlite3_column_int64(s, c + 3);
	a->gid = (uint32_t)sqlite3_column_int64(s, c + 4);
	a->size = (uint64_t)sqlite3_column_int64(s, c + 5);
	a->rdev = (uint64_t)sqlite3_column_int64(s, c + 6);
	a->pages = (uint64_t)sqlite3_column_int64(s, c + 7);
	a->atime = store_ts_of(sqlite3_column_int64(s, c + 8));
	a->mtime = store_ts_of(sqlite3_column_int64(s, c + 9));
	a->ctime = store_ts_of(sqlite3_column_int64(s, c + 10));
	a->flags = (uint32_t)sqlite3_column_int64(s, c + 11);
}

/* Attributes of ino as the given connection sees them (its lock held). */
int ns_attr_get(struct store *st, sqlite3 *db, uint64_t ino, struct store_attr *a)
{
	sqlite3_stmt *s = store_stmt(st, db, "SELECT " ATTR_COLS " FROM inode WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	if (rc == SQLITE_ROW)
		attr_from(s, 0, a);
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int ns_attr_get_changeable(struct store *st, uint64_t ino, struct store_attr *a)
{
	int r = ns_attr_get(st, st->db, ino, a);
	return !r && (a->flags & STORE_INODE_SEALED) ? -EPERM : r;
}

/* The inode name refers to in parent, or -ENOENT (its lock held). */
static int entry_get(struct store *st, sqlite3 *db, uint64_t parent, const char *name,
		     uint64_t *ino, int64_t *id)
{
	sqlite3_stmt *s = store_stmt(st, db, "SELECT ino, id FROM dentry WHERE parent = ? AND name = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	int rc = store_step(st, s);
	if (rc == SQLITE_ROW) {
		*ino = (uint64_t)sqlite3_column_int64(s, 0);
		if (id)
			*id = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

static int check_name(const char *name)
{
	if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	return strlen(name) > STORE_NAME_MAX ? -ENAMETOOLONG : 0;
}

/* Run one prepared change with up to four integer arguments. */
int ns_exec4(struct store *st, const char *sql, int n, int64_t a, int64_t b, int64_t c,
		 int64_t d)
{
	sqlite3_stmt *s = store_stmt(st, st->db, sql);
	if (!s)
		return -EIO;
	int64_t v[4] = { a, b, c, d };
	for (int i = 0; i < n; i++)
		sqlite3_bind_int64(s, i + 1, v[i]);
	return ns_step(s);
}

/* Step a prepared change once: 0 when done, else its -errno. */
int ns_step(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_sql_errno(rc);
}

/* Start a change: db_lock and a write transaction. */
int ns_tx_begin(struct store *st)
{
	if (st->rdonly)
		return -EROFS;
	if (__atomic_load_n(&st->failed, __ATOMIC_RELAXED) && store_recover(st))
		return -EIO;
	return ns_tx_open(st);
}

/* ns_tx_begin on a store whose failure, if any, is not recovered here. */
int ns_tx_open(struct store *st)
{
	if (st->rdonly)
		return -EROFS;
	store_db_lock(st);
	if (__atomic_load_n(&st->failed, __ATOMIC_RELAXED)) {
		pthread_mutex_unlock(&st->db_lock);
		return -EIO;
	}
	int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		pthread_mutex_unlock(&st->db_lock);
		return store_sql_errno(rc);
	}
	st->ns_changes = sqlite3_total_changes64(st->db);
	return 0;
}

/* Finish a change: commit if r == 0, else roll back; returns r or the
 * commit's failure.  A change the database could not take (a full disk,
 * say) is logged, once until a change succeeds again: the caller only
 * sees an errno, the log says which store and why.  What was committed
 * before is untouched, as the transaction is rolled back whole. */
int ns_tx_end(struct store *st, int r)
{
	const char *why = NULL;
	if (!r) {
		int rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			r = store_sql_errno(rc);
			why = sqlite3_errstr(rc);
		}
	} else if (r == -ENOSPC) {	/* a statement found the disk full */
		why = strerror(ENOSPC);
	}
	char msg[2560] = "";
	if (why && !st->ns_fail_logged) {
		snprintf(msg, sizeof(msg),
			 "store %.2048s: a change could not be written to index.db (%.255s); it was"
			 " rolled back, nothing committed is lost",
			 st->dir, why);
		st->ns_fail_logged = true;
	}
	if (r)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	else if (sqlite3_total_changes64(st->db) != st->ns_changes)
		st->ns_fail_logged = false;	/* a change was written again */
	pthread_mutex_unlock(&st->db_lock);
	if (msg[0] && st->log)
		st->log(st->log_arg, msg);
	return r;
}

/* A directory that may be changed (inside a transaction). */
static int dir_for_change(struct store *st, uint64_t ino, struct store_attr *a)
{
	int r = ns_attr_get(st, st->db, ino, a);
	if (r)
		return r;
	if (!S_ISDIR(a->mode))
		return -ENOTDIR;
	if (a->nlink == 0)
		return -ENOENT;	/* removed directories take no new names */
	return a->flags & STORE_INODE_SEALED ? -EPERM : 0;
}

static int touch_dir(struct store *st, uint64_t ino, int nlink_delta)
{
	int64_t now = store_now_ns();
	return ns_exec4(st, "UPDATE inode SET nlink = nlink + ?, mtime_ns = ?, ctime_ns = ? WHERE ino = ?", 4,
		     nlink_delta, now, now, (int64_t)ino);
}

static int insert_entry(struct store *st, uint64_t parent, const char *name, uint64_t ino)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "INSERT INTO dentry(parent, name, ino) VALUES(?, ?, ?)");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)parent);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)ino);
	return ns_step(s);
}

/* ---- reading -------------------------------------------------------------- */

/*
 * A connection for a short read, locked: the writer's when it is idle,
 * else the read connection.  SQLite drops a connection's whole page cache
 * when another one has committed since its last read, so the read
 * connection, after every change, reads each page again; the writer's
 * cache survives its own commits.  The read connection never waits for a
 * commit in progress.
 */
static sqlite3 *ns_read_begin(struct store *st)
{
	if (pthread_mutex_trylock(&st->db_lock) == 0)
		return st->db;
	pthread_mutex_lock(&st->rdb_lock);
	return st->rdb;
}

static void ns_read_end(struct store *st, sqlite3 *db)
{
	pthread_mutex_unlock(db == st->db ? &st->db_lock : &st->rdb_lock);
}

int store_getattr(struct store *st, uint64_t ino, struct store_attr *out)
{
	sqlite3 *db = ns_read_begin(st);
	int r = ns_attr_get(st, db, ino, out);
	ns_read_end(st, db);
	if (!r)
		store_overlay_attr(st, out);
	return r;
}

/* The directory holding directory ino (the root holds itself): -ENOENT
 * if there is no such inode, -ENOTDIR if it is not a directory (only
 * directories record a parent). */
static int inode_parent(struct store *st, sqlite3 *db, uint64_t ino, uint64_t *parent)
{
	sqlite3_stmt *s = store_stmt(st, db, "SELECT parent FROM inode WHERE ino = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	int r = rc == SQLITE_DONE ? -ENOENT : rc != SQLITE_ROW ? -EIO
		: sqlite3_column_type(s, 0) == SQLITE_NULL ? -ENOTDIR : 0;
	if (!r)
		*parent = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return r;
}

int store_lookup(struct store *st, uint64_t parent, const char *name, struct store_attr *out)
{
	bool dot = name && (!strcmp(name, ".") || !strcmp(name, ".."));
	int r = dot ? 0 : check_name(name);
	if (r) {
		out->ino = 0;
		return r == -EINVAL ? -ENOENT : r;
	}
	sqlite3 *db = ns_read_begin(st);
	uint64_t ino = 0;
	if (dot) {
		ino = parent;
		r = name[1] == '.' ? inode_parent(st, db, parent, &ino) : 0;
	} else {
		r = entry_get(st, db, parent, name, &ino, NULL);
	}
	bool dir_attrs = false;
	if (r == -ENOENT && !dot && ns_attr_get(st, db, parent, out) == 0) {
		dir_attrs = S_ISDIR(out->mode);
		if (!dir_attrs)
			r = -ENOTDIR;
	}
	if (!r)
		r = ns_attr_get(st, db, ino, out);
	/* "." is how the kernel finds an inode it does not hold from a file
	 * handle: one without links is gone for handles (ESTALE), even while
	 * it waits to be deleted (see store_inode_forget). */
	if (!r && dot && !name[1] && out->nlink == 0)
		r = -ENOENT;
	ns_read_end(st, db);
	if (!r || dir_attrs)
		store_overlay_attr(st, out);
	else if (r == -ENOENT)
		out->ino = 0;
	return r;
}

int store_readlink(struct store *st, uint64_t ino, char *buf, size_t size)
{
	pthread_mutex_lock(&st->rdb_lock);
	int r = -EINVAL;
	sqlite3_stmt *s = store_stmt(st, st->rdb, "SELECT target FROM symlink WHERE ino = ?");
	if (!s) {
		r = -EIO;
	} else {
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		int rc = store_step(st, s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			r = store_sql_errno(rc);	/* not a symlink: EINVAL */
		if (rc == SQLITE_ROW) {
			int n = sqlite3_column_bytes(s, 0);
			const void *t = sqlite3_column_blob(s, 0);
			if (size) {
				size_t c = (size_t)n < size - 1 ? (size_t)n : size - 1;
				memcpy(buf, t, c);
				buf[c] = 0;
			}
			r = n;
		}
		sqlite3_reset(s);
	}
	pthread_mutex_unlock(&st->rdb_lock);
	return r;
}

struct dent {
	char name[STORE_NAME_MAX + 1];
	struct store_attr attr;
	uint64_t next;
};

#define READDIR_BATCH 128

int store_readdir(struct store *st, uint64_t ino, uint64_t cookie, store_readdir_fn cb, void *arg)
{
	struct dent *d = malloc(READDIR_BATCH * sizeof(*d));
	if (!d)
		return -ENOMEM;
	int r = 0;
	bool stop = false;
	while (!r && !stop) {
		/* Collect a batch under rdb_lock, then overlay and deliver
		 * without it (the overlay takes mem_lock, which comes first). */
		size_t n = 0;
		pthread_mutex_lock(&st->rdb_lock);
		struct store_attr self;
		r = ns_attr_get(st, st->rdb, ino, &self);
		if (!r && !S_ISDIR(self.mode))
			r = -ENOTDIR;
		if (!r && cookie == 0) {
			strcpy(d[n].name, ".");
			d[n].attr = self;
			d[n++].next = 1;
		}
		if (!r && cookie <= 1) {
			uint64_t parent;
			if (inode_parent(st, st->rdb, ino, &parent))
				parent = ino;
			strcpy(d[n].name, "..");
			if (ns_attr_get(st, st->rdb, parent, &d[n].attr))
				d[n].attr = self;
			d[n++].next = 2;
		}
		if (!r) {
			sqlite3_stmt *s = store_stmt(st, st->rdb,
						     "SELECT d.id, d.name, i.ino, i.mode, i.nlink, i.uid, i.gid,"
						     " i.size, i.rdev, i.pages, i.atime_ns, i.mtime_ns,"
						     " i.ctime_ns, i.flags FROM dentry d JOIN inode i ON"
						     " i.ino = d.ino WHERE d.parent = ? AND d.id > ?"
						     " ORDER BY d.id LIMIT ?");
			if (!s) {
				r = -EIO;
			} else {
				sqlite3_bind_int64(s, 1, (int64_t)ino);
				sqlite3_bind_int64(s, 2, cookie > 2 ? (int64_t)cookie - 2 : 0);
				sqlite3_bind_int64(s, 3, (int64_t)(READDIR_BATCH - n));
				int rc;
				while ((rc = store_step(st, s)) == SQLITE_ROW) {
					const char *name = (const char *)sqlite3_column_text(s, 1);
					snprintf(d[n].name, sizeof(d[n].name), "%s", name ? name : "");
					attr_from(s, 2, &d[n].attr);
					d[n++].next = (uint64_t)sqlite3_column_int64(s, 0) + 2;
				}
				if (rc != SQLITE_DONE)
					r = -EIO;
				sqlite3_reset(s);
			}
		}
		pthread_mutex_unlock(&st->rdb_lock);
		if (r)
			break;
		if (n == 0)
			break;
		for (size_t i = 0; i < n && !stop; i++) {
			if (S_ISREG(d[i].attr.mode))
				store_overlay_attr(st, &d[i].attr);
			if (cb(arg, d[i].name, &d[i].attr, d[i].next))
				stop = true;
			else
				cookie = d[i].next;
		}
		if (n < READDIR_BATCH)
			break;
	}
	free(d);
	return r;
}

/* ---- creating --------------------------------------------------------------- */

/* A new inode's extended attributes, checked as store_xattr_set checks
 * them. */
static int check_new_xattrs(const struct store_new *n)
{
	int r = 0;
	for (unsigned i = 0; !r && i < n->n_xattrs; i++)
		r = ns_xattr_check(n->xattrs[i].name, n->xattrs[i].size);
	return r;
}

/* Insert the inode n (mode as it is, a symlink if target) with its
 * extended attributes (transaction open); its number in *ino. */
static int insert_inode(struct store *st, uint64_t parent, const struct store_new *n,
			const char *target, uint64_t *ino)
{
	bool dir = S_ISDIR(n->mode);
	int64_t now = store_now_ns();
	sqlite3_stmt *s = store_stmt(st, st->db,
				     "INSERT INTO inode(mode, nlink, uid, gid, size, rdev,"
				     " atime_ns, mtime_ns, ctime_ns, parent)"
				     " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, n->mode);
	sqlite3_bind_int64(s, 2, dir ? 2 : 1);
	sqlite3_bind_int64(s, 3, n->uid);
	sqlite3_bind_int64(s, 4, n->gid);
	sqlite3_bind_int64(s, 5, target ? (int64_t)strlen(target) : 0);
	sqlite3_bind_int64(s, 6, (S_ISCHR(n->mode) || S_ISBLK(n->mode)) ? (int64_t)n->rdev : 0);
	sqlite3_bind_int64(s, 7, now);
	sqlite3_bind_int64(s, 8, now);
	sqlite3_bind_int64(s, 9, now);
	if (dir)
		sqlite3_bind_int64(s, 10, (int64_t)parent);
	int r = ns_step(s);
	if (r)
		return r;
	*ino = (uint64_t)sqlite3_last_insert_rowid(st->db);
	if (target) {
		s = store_stmt(st, st->db, "INSERT INTO symlink(ino, target) VALUES(?, ?)");
		if (!s)
			return -EIO;
		sqlite3_bind_int64(s, 1, (int64_t)*ino);
		sqlite3_bind_blob(s, 2, target, (int)strlen(target), SQLITE_STATIC);
		r = ns_step(s);
	}
	for (unsigned i = 0; !r && i < n->n_xattrs; i++)
		r = ns_xattr_put(st, *ino, n->xattrs[i].name, n->xattrs[i].value,
				 n->xattrs[i].size, 0);
	return r;
}

int ns_make(struct store *st, uint64_t parent, const char *name, const struct store_new *n,
	    const char *target, struct store_attr *out)
{
	struct store_new m = *n;
	if (!target) {
		switch (m.mode & S_IFMT) {
		case S_IFREG:
		case S_IFDIR:
		case S_IFCHR:
		case S_IFBLK:
		case S_IFIFO:
		case S_IFSOCK:
			break;
		case 0:
			m.mode |= S_IFREG;
			break;
		default:
			return -EINVAL;
		}
		m.mode &= S_IFMT | 07777;
	}
	int r = check_name(name);
	if (!r)
		r = check_new_xattrs(&m);
	if (!r)
		r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr pa;
	uint64_t old;
	r = dir_for_change(st, parent, &pa);
	if (!r) {
		r = entry_get(st, st->db, parent, name, &old, NULL);
		r = r == 0 ? -EEXIST : r == -ENOENT ? 0 : r;
	}
	bool dir = S_ISDIR(m.mode);
	if (!r && dir && pa.nlink >= MAX_LINKS)
		r = -EMLINK;
	/* A setgid directory hands down its group, and to directories its
	 * setgid bit too (the kernel leaves both to FUSE filesystems). */
	if (!r && (pa.mode & S_ISGID)) {
		m.gid = pa.gid;
		if (dir)
			m.mode |= S_ISGID;
	}
	uint64_t ino = 0;
	if (!r)
		r = insert_inode(st, parent, &m, target, &ino);
	if (!r)
		r = insert_entry(st, parent, name, ino);
	if (!r)
		r = touch_dir(st, parent, dir ? 1 : 0);
	if (!r && out)
		r = ns_attr_get(st, st->db, ino, out);
	return ns_tx_end(st, r);
}

int store_mknod(struct store *st, uint64_t parent, const char *name, uint32_t mode, uint64_t rdev,
		uint32_t uid, uint32_t gid, struct store_attr *out)
{
	struct store_new n = { .mode = mode, .rdev = rdev, .uid = uid, .gid = gid };
	return ns_make(st, parent, name, &n, NULL, out);
}

int store_mkdir(struct store *st, uint64_t parent, const char *name, uint32_t mode, uint32_t uid,
		uint32_t gid, struct store_attr *out)
{
	return store_mknod(st, parent, name, S_IFDIR | (mode & 07777), 0, uid, gid, out);
}

int store_symlink(struct store *st, uint64_t parent, const char *name, const char *target,
		  uint32_t uid, uint32_t gid, struct store_attr *out)
{
	size_t len = target ? strlen(target) : 0;
	if (len == 0)
		return -ENOENT;
	if (len > STORE_SYMLINK_MAX)
		return -ENAMETOOLONG;
	struct store_new n = { .mode = S_IFLNK | 0777, .uid = uid, .gid = gid };
	return ns_make(st, parent, name, &n, target, out);
}

int store_link(struct store *st, uint64_t ino, uint64_t newparent, const char *newname,
	       struct store_attr *out)
{
	int r = check_name(newname);
	if (r)
		return r;
	r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr a, pa;
	uint64_t old;
	r = ns_attr_get_changeable(st, ino, &a);
	if (!r && S_ISDIR(a.mode))
		r = -EPERM;
	if (!r && a.nlink == 0)
		r = -ENOENT;
	if (!r && a.nlink >= MAX_LINKS)
		r = -EMLINK;
	if (!r)
		r = dir_for_change(st, newparent, &pa);
	if (!r) {
		r = entry_get(st, st->db, newparent, newname, &old, NULL);
		r = r == 0 ? -EEXIST : r == -ENOENT ? 0 : r;
	}
	if (!r)
		r = insert_entry(st, newparent, newname, ino);
	int64_t now = store_now_ns();
	if (!r)
		r = ns_exec4(st, "UPDATE inode SET nlink = nlink + 1, ctime_ns = ? WHERE ino = ?", 2,
			  now, (int64_t)ino, 0, 0);
	if (!r)
		store_cached_times(st, ino, NULL, &now);
	if (!r)
		r = touch_dir(st, newparent, 0);
	if (!r && out)
		r = ns_attr_get(st, st->db, ino, out);
	r = ns_tx_end(st, r);
	if (!r && out)
		store_overlay_attr(st, out);
	return r;
}

/* ---- removing ----------------------------------------------------------------- */

static int dir_is_empty(struct store *st, uint64_t ino)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT 1 FROM dentry WHERE parent = ? LIMIT 1");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)ino);
	int rc = store_step(st, s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 1 : rc == SQLITE_ROW ? 0 : -EIO;
}

/* Drop one link of victim (a's attributes) named by dentry id; parent
 * loses a subdirectory if victim is one.  *gone if it was the last. */
static int drop_link(struct store *st, int64_t id, uint64_t parent, const struct store_attr *a,
		     uint64_t *gone)
{
	int r = ns_exec4(st, "DELETE FROM dentry WHERE id = ?", 1, id, 0, 0, 0);
	bool dir = S_ISDIR(a->mode);
	uint32_t nlink = dir ? 0 : a->nlink - 1;
	int64_t now = store_now_ns();
	if (!r)
		r = ns_exec4(st, "UPDATE inode SET nlink = ?, ctime_ns = ? WHERE ino = ?", 3, nlink,
			  now, (int64_t)a->ino, 0);
	if (!r)
		store_cached_times(st, a->ino, NULL, &now);
	if (!r)
		r = touch_dir(st, parent, dir ? -1 : 0);
	if (!r && gone)
		*gone = nlink == 0 ? a->ino : 0;
	return r;
}

static int remove_entry(struct store *st, uint64_t parent, const char *name, bool want_dir,
			uint64_t *gone)
{
	if (gone)
		*gone = 0;
	int r = check_name(name);
	if (r)
		return r == -EINVAL && name && !strcmp(name, ".") ? -EINVAL : r;
	r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr pa, a;
	uint64_t ino = 0;
	int64_t id = 0;
	r = dir_for_change(st, parent, &pa);
	if (!r)
		r = entry_get(st, st->db, parent, name, &ino, &id);
	if (!r)
		r = ns_attr_get(st, st->db, ino, &a);
	if (!r && want_dir && !S_ISDIR(a.mode))
		r = -ENOTDIR;
	if (!r && !want_dir && S_ISDIR(a.mode))
		r = -EISDIR;
	if (!r && ino == STORE_ROOT_INO)
		r = -EBUSY;
	if (!r && (a.flags & STORE_INODE_SEALED))
		r = -EPERM;
	if (!r && want_dir) {
		int empty = dir_is_empty(st, ino);
		r = empty < 0 ? empty : empty ? 0 : -ENOTEMPTY;
	}
	if (!r)
		r = drop_link(st, id, parent, &a, gone);
	return ns_tx_end(st, r);
}

int store_unlink(struct store *st, uint64_t parent, const char *name, uint64_t *gone)
{
	return remove_entry(st, parent, name, false, gone);
}

int store_rmdir(struct store *st, uint64_t parent, const char *name, uint64_t *gone)
{
	return remove_entry(st, parent, name, true, gone);
}

int store_inode_release(struct store *st, uint64_t ino)
{
	if (st->rdonly)
		return 0;
	store_db_lock(st);
	int r = store_delete_inode_if_unlinked(st, ino);
	pthread_mutex_unlock(&st->db_lock);
	return r;
}

/* Put ino on the list of forgotten inodes for the committer: 0, or
 * -ENOMEM (mem_lock not held). */
static int forgotten_add(struct store *st, uint64_t ino)
{
	pthread_mutex_lock(&st->mem_lock);
	int r = store_grow((void **)&st->forgotten, &st->forgotten_cap, st->nforgotten,
			   sizeof(*st->forgotten));
	if (!r) {
		if (!st->nforgotten)
			st->forgotten_since_ns = store_mono_ns();
		st->forgotten[st->nforgotten++] = ino;
		/* The first starts the committer's clock; a full batch
		 * wakes it. */
		if (st->nforgotten == 1 || st->nforgotten == FORGOTTEN_BATCH)
			pthread_cond_signal(&st->commit_cond);
	}
	pthread_mutex_unlock(&st->mem_lock);
	return r;
}

int store_inode_forget(struct store *st, uint64_t ino)
{
	if (st->rdonly)
		return 0;
	/* Checked now, not only when the list is deleted: an inode with links
	 * now may be looked up again, unlinked and still held by the kernel
	 * by then; one without links now cannot (store_lookup of "." too
	 * refuses it). */
	store_db_lock(st);
	int r = store_inode_may_go(st, ino);
	/* Without a committer, or without room on the list: now. */
	if (r > 0 && (!st->committer_running || forgotten_add(st, ino)))
		r = store_delete_inode(st, ino);
	pthread_mutex_unlock(&st->db_lock);
	return r > 0 ? 0 : r;
}

/* Is dir ino at or below directory top?  (transaction open) */
static int is_under(struct store *st, uint64_t ino, uint64_t top)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "SELECT parent FROM inode WHERE ino = ?");
	if (!s)
		return -EIO;
	for (unsigned depth = 0; depth < 100000; depth++) {
		if (ino == top)
			return 1;
		if (ino == STORE_ROOT_INO)
			return 0;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, (int64_t)ino);
		int rc = store_step(st, s);
		if (rc != SQLITE_ROW || sqlite3_column_type(s, 0) == SQLITE_NULL) {
			sqlite3_reset(s);
			return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
		}
		ino = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_reset(s);
	return -ELOOP;
}

/* Move directory entry id to (newparent, newname); a directory moving to
 * another parent takes its ".." along. */
static int move_entry(struct store *st, int64_t id, const struct store_attr *a, uint64_t parent,
		      uint64_t newparent, const char *newname)
{
	sqlite3_stmt *s = store_stmt(st, st->db, "UPDATE dentry SET parent = ?, name = ? WHERE id = ?");
	if (!s)
		return -EIO;
	sqlite3_bind_int64(s, 1, (int64_t)newparent);
	sqlite3_bind_text(s, 2, newname, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, id);
	int r = ns_step(s);
	int64_t now = store_now_ns();
	if (!r)
		r = ns_exec4(st, "UPDATE inode SET ctime_ns = ? WHERE ino = ?", 2, now, (int64_t)a->ino, 0, 0);
	bool dir = S_ISDIR(a->mode);
	if (!r && dir && parent != newparent)
		r = ns_exec4(st, "UPDATE inode SET parent = ? WHERE ino = ?", 2, (int64_t)newparent,
			  (int64_t)a->ino, 0, 0);
	if (!r)
		r = touch_dir(st, parent, dir && parent != newparent ? -1 : 0);
	if (!r && parent != newparent)
		r = touch_dir(st, newparent, dir ? 1 : 0);
	if (!r)
		store_cached_times(st, a->ino, NULL, &now);
	return r;
}

int store_rename(struct store *st, uint64_t parent, const char *name, uint64_t newparent,
		 const char *newname, unsigned flags, uint64_t *gone)
{
	if (gone)
		*gone = 0;
	if (flags & ~(unsigned)(STORE_RENAME_NOREPLACE | STORE_RENAME_EXCHANGE) ||
	    (flags & STORE_RENAME_NOREPLACE && flags & STORE_RENAME_EXCHANGE))
		return -EINVAL;
	int r = check_name(name);
	if (!r)
		r = check_name(newname);
	if (r)
		return r;
	r = ns_tx_begin(st);
	if (r)
		return r;
	struct store_attr pa, npa, a, b;
	uint64_t ino = 0, dino = 0;
	int64_t id = 0, did = 0;
	r = dir_for_change(st, parent, &pa);
	if (!r)
		r = dir_for_change(st, newparent, &npa);
	if (!r)
		r = entry_get(st, st->db, parent, name, &ino, &id);
	if (!r)
		r = ns_attr_get_changeable(st, ino, &a);
	bool exists = false;
	if (!r) {
		r = entry_get(st, st->db, newparent, newname, &dino, &did);
		exists = r == 0;
		r = r == -ENOENT ? 0 : r;
	}
	if (!r && exists)
		r = ns_attr_get(st, st->db, dino, &b);
	if (r)
		return ns_tx_end(st, r);

	if (flags & STORE_RENAME_EXCHANGE) {
		if (!exists)
			return ns_tx_end(st, -ENOENT);
		if (id == did)
			return ns_tx_end(st, 0);
		if (b.flags & STORE_INODE_SEALED)
			return ns_tx_end(st, -EPERM);
		/* Neither directory may end up inside itself. */
		if (S_ISDIR(a.mode) && parent != newparent) {
			int u = is_under(st, newparent, ino);
			if (u)
				return ns_tx_end(st, u < 0 ? u : -EINVAL);
		}
		if (S_ISDIR(b.mode) && parent != newparent) {
			int u = is_under(st, parent, dino);
			if (u)
				return ns_tx_end(st, u < 0 ? u : -EINVAL);
		}
		/* Swap which inode each entry names. */
		r = ns_exec4(st, "UPDATE dentry SET ino = ? WHERE id = ?", 2, (int64_t)dino, id, 0, 0);
		if (!r)
			r = ns_exec4(st, "UPDATE dentry SET ino = ? WHERE id = ?", 2, (int64_t)ino, did, 0, 0);
		int64_t now = store_now_ns();
		if (!r && parent != newparent) {
			int delta = S_ISDIR(a.mode) - S_ISDIR(b.mode);
			if (!r && S_ISDIR(a.mode))
				r = ns_exec4(st, "UPDATE inode SET parent = ? WHERE ino = ?", 2,
					  (int64_t)newparent, (int64_t)ino, 0, 0);
			if (!r && S_ISDIR(b.mode))
				r = ns_exec4(st, "UPDATE inode SET parent = ? WHERE ino = ?", 2,
					  (int64_t)parent, (int64_t)dino, 0, 0);
			if (!r)
				r = touch_dir(st, parent, -delta);
			if (!r)
				r = touch_dir(st, newparent, delta);
		} else if (!r) {
			r = touch_dir(st, parent, 0);
		}
		if (!r)
			r = ns_exec4(st, "UPDATE inode SET ctime_ns = ? WHERE ino IN (?, ?)", 3, now,
				  (int64_t)ino, (int64_t)dino, 0);
		if (!r) {
			store_cached_times(st, ino, NULL, &now);
			store_cached_times(st, dino, NULL, &now);
		}
		return ns_tx_end(st, r);
	}

	if (exists && dino == ino)
		return ns_tx_end(st, 0);	/* same inode: nothing to do */
	if (exists && (flags & STORE_RENAME_NOREPLACE))
		return ns_tx_end(st, -EEXIST);
	if (S_ISDIR(a.mode) && newparent != parent) {
		int u = is_under(st, newparent, ino);
		if (u)
			return ns_tx_end(st, u < 0 ? u : -EINVAL);
	}
	if (exists) {
		if (b.flags & STORE_INODE_SEALED)
			r = -EPERM;
		else if (S_ISDIR(a.mode) && !S_ISDIR(b.mode))
			r = -ENOTDIR;
		else if (!S_ISDIR(a.mode) && S_ISDIR(b.mode))
			r = -EISDIR;
		else if (S_ISDIR(b.mode)) {
			int empty = dir_is_empty(st, dino);
			r = empty < 0 ? empty : empty ? 0 : -ENOTEMPTY;
		}
		if (!r)
			r = drop_link(st, did, newparent, &b, gone);
	}
	if (!r)
		r = move_entry(st, id, &a, parent, newparent, newname);
	return ns_tx_end(st, r);
}
