/*
 * fsd/store_admin.c: the lock that keeps gc and fsck apart, and stats.
 *
 * fsck, which may run in another process on a read-only open, would read
 * moved or deleted packs under gc; the two keep out of each other with a
 * flock on STORE/gc.lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "store_admin_i.h"

int admin_lock(struct store *st, bool gc, int *fd, struct err *e)
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

void admin_unlock(int fd)
{
	if (fd >= 0)
		close(fd);	/* and with it the flock */
}

int64_t admin_count(struct store *st, const char *sql)
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
