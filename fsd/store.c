/*
 * fsd/store.c: opening and closing a store: the folder, the writer's lock,
 * the SQLite connections, orphan reclaim, and making commits durable
 * (store_sync); the schema is created or migrated by store_migrate.c.
 *
 * Set-up order in store_open, undone in reverse by store_free:
 * folder -> lock file -> pack backend -> main connection (schema) ->
 * read connection -> orphans -> the thread loading the prefix set of known
 * pages (which changes of file data wait for; reads do not) -> committer
 * thread -> hashing helper thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "store_i.h"
#include "store_schema.h"

int64_t store_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return store_ns_of(ts);
}

int64_t store_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return store_ns_of(ts);
}

int64_t store_ns_of(struct timespec ts)
{
	const int64_t g = 1000000000;
	int64_t sec = (int64_t)ts.tv_sec, nsec = ts.tv_nsec, ns;
	if (sec < 0) {		/* so that the product can reach INT64_MIN */
		sec += 1;
		nsec -= g;
	}
	if (__builtin_mul_overflow(sec, g, &ns) || __builtin_add_overflow(ns, nsec, &ns))
		return ts.tv_sec < 0 ? INT64_MIN : INT64_MAX;
	return ns;
}

struct timespec store_ts_of(int64_t ns)
{
	const int64_t g = 1000000000;
	int64_t sec = ns / g, nsec = ns % g;
	if (nsec < 0) {
		nsec += g;
		sec -= 1;
	}
	return (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = (long)nsec };
}

int store_schema_version(void)
{
	return store_schema_version_current;
}

const char *const store_entries[] = { "index.db", "index.db-wal", "index.db-shm", "lock", "packs",
				      NULL };

const char *store_dir(const struct store *st)
{
	return st->dir;
}

void store_thread_background(void)
{
	/* On Linux the nice value is the calling thread's own (PRIO_PROCESS
	 * with its thread id), not the whole process's. */
	id_t tid = (id_t)gettid();
	errno = 0;
	int cur = getpriority(PRIO_PROCESS, tid);
	if (cur == -1 && errno)
		return;
	int want = cur + STORE_BACKGROUND_NICE;
	setpriority(PRIO_PROCESS, tid, want < 19 ? want : 19);
}

/* The -errno of an SQLite result code: what a caller of a failed change
 * is told (a full disk is ENOSPC, not an I/O error). */
int store_sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	default:
		return -EIO;
	}
}

/* Map an SQLite result to -errno and describe it.  SQLite cannot open
 * index.db in a folder it may not write, even to read: a WAL database
 * needs its index.db-shm beside it.  Its message does not say so. */
int store_sql_err_at(const char *dir, sqlite3 *db, int rc, struct err *e, const char *what)
{
	char why[160] = "";
	bool cannot = (rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_READONLY;
	if (cannot && dir && access(dir, W_OK) != 0 && (errno == EROFS || errno == EACCES))
		snprintf(why, sizeof(why), " (the store's folder is %s, and SQLite must make"
			 " index.db-shm beside index.db even to read it)",
			 errno == EROFS ? "on a read-only filesystem" : "not writable by this user");
	return err_set(e, store_sql_errno(rc), "store %s: %s: %s%s", dir ? dir : "?", what,
		       db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), why);
}

int store_sql_err(struct store *st, sqlite3 *db, int rc, struct err *e, const char *what)
{
	return store_sql_err_at(st ? st->dir : NULL, db, rc, e, what);
}

sqlite3_stmt *store_stmt(struct store *st, sqlite3 *db, const char *sql)
{
	struct stmt_cache *c = db == st->db ? &st->dbc : &st->rdbc;
	for (unsigned i = 0; i < c->n; i++)
		if (c->sql[i] == sql) {
			sqlite3_reset(c->stmt[i]);
			sqlite3_clear_bindings(c->stmt[i]);
			return c->stmt[i];
		}
	sqlite3_stmt *s;
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
		return NULL;
	if (c->n < STORE_STMTS) {
		c->sql[c->n] = sql;
		c->stmt[c->n++] = s;
	} else {
		/* Full (more distinct statements than expected): replace the
		 * last slot, which stays correct, only slower. */
		sqlite3_finalize(c->stmt[STORE_STMTS - 1]);
		c->sql[STORE_STMTS - 1] = sql;
		c->stmt[STORE_STMTS - 1] = s;
	}
	return s;
}

/*
 * A damaged index.db (SQLite reports it only when a statement reaches the
 * damaged page) fails the call that met it with EIO or EUCLEAN, and the
 * mount goes on serving the rest.  Nothing but this line says why: it
 * names the store, SQLite's reason and the statement with its values
 * (which inode, which name), once per open of the store, since every
 * call that reaches the same page fails the same way.
 */
int store_step(struct store *st, sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);
	bool damaged = store_sql_errno(rc) == -EUCLEAN;
	if ((!damaged && (rc & 0xff) != SQLITE_IOERR) || !st->log ||
	    __atomic_exchange_n(&st->index_fail_logged, true, __ATOMIC_RELAXED))
		return rc;
	char *sql = sqlite3_expanded_sql(s);
	char msg[2800];
	snprintf(msg, sizeof(msg),
		 "store %.2048s: index.db %s: %s (in: %.300s); calls that need that part of it"
		 " fail; run snapfs-admin fsck",
		 st->dir, damaged ? "is damaged" : "cannot be read",
		 sqlite3_errmsg(sqlite3_db_handle(s)), sql ? sql : sqlite3_sql(s));
	sqlite3_free(sql);
	st->log(st->log_arg, msg);
	return rc;
}

/* The log hears of a page-map row whose checksum does not match, once
 * per open of the store as store_step's damage (the same flag). */
void store_map_damaged(struct store *st, uint64_t ino, uint64_t idx)
{
	if (!st->log || __atomic_exchange_n(&st->index_fail_logged, true, __ATOMIC_RELAXED))
		return;
	char msg[2400];
	uint64_t first = idx << (CHUNK_SHIFT + STORE_PAGE_SHIFT);
	snprintf(msg, sizeof(msg),
		 "store %.2048s: index.db is damaged: the page map of inode %llu for bytes %llu to"
		 " %llu does not match its checksum; calls that need it fail; run snapfs-admin fsck",
		 st->dir, (unsigned long long)ino, (unsigned long long)first,
		 (unsigned long long)(first + ((uint64_t)CHUNK_PAGES << STORE_PAGE_SHIFT) - 1));
	st->log(st->log_arg, msg);
}

int store_map_sum(struct store *st, uint64_t ino, uint64_t idx, const void *locs, size_t nlocs,
		  const void *hashes, size_t nhashes, int64_t *out)
{
	struct store_hasher *h = store_hasher_get(st);
	uint8_t key[16], d[STORE_HASH_SIZE];
	put_le64(key, ino);
	put_le64(key + 8, idx);
	int r = h ? store_hash_begin(h) : -ENOMEM;
	if (!r)
		r = store_hash_add(h, key, sizeof(key));
	if (!r && nlocs)
		r = store_hash_add(h, locs, nlocs);
	if (!r && nhashes)
		r = store_hash_add(h, hashes, nhashes);
	if (!r)
		r = store_hash_end(h, d);
	store_hasher_put(st, h);
	*out = r ? 0 : (int64_t)get_le64(d);
	return r;
}

int store_map_check(struct store *st, uint64_t ino, uint64_t idx, const void *locs, size_t nlocs,
		    const void *hashes, size_t nhashes, int64_t want)
{
	int64_t sum;
	int r = store_map_sum(st, ino, idx, locs, nlocs, hashes, nhashes, &sum);
	return r ? r : sum == want ? 0 : -EUCLEAN;
}

/* snapfs_map_sum(ino, idx, locs, hashes) in SQL: store_map_sum, for the
 * migration that adds the checksums and for gc's rewrite of locs. */
static void sql_map_sum(sqlite3_context *cx, int argc, sqlite3_value **v)
{
	(void)argc;
	const void *locs = sqlite3_value_blob(v[2]);
	size_t nlocs = (size_t)sqlite3_value_bytes(v[2]);
	const void *hashes = sqlite3_value_blob(v[3]);
	size_t nhashes = (size_t)sqlite3_value_bytes(v[3]);
	int64_t sum;
	int r = store_map_sum(sqlite3_user_data(cx), (uint64_t)sqlite3_value_int64(v[0]),
			      (uint64_t)sqlite3_value_int64(v[1]), locs, nlocs, hashes, nhashes, &sum);
	if (r == -ENOMEM)
		sqlite3_result_error_nomem(cx);
	else if (r)
		sqlite3_result_error(cx, "snapfs_map_sum: SHA-256 failed", -1);
	else
		sqlite3_result_int64(cx, sum);
}

static void stmt_cache_free(struct stmt_cache *c)
{
	for (unsigned i = 0; i < c->n; i++)
		sqlite3_finalize(c->stmt[i]);
	c->n = 0;
}

struct store_hasher *store_hasher_get(struct store *st)
{
	struct store_hasher *h = NULL;
	pthread_mutex_lock(&st->hasher_lock);
	if (st->nhashers)
		h = st->hashers[--st->nhashers];
	pthread_mutex_unlock(&st->hasher_lock);
	return h ? h : store_hasher_new();
}

void store_hasher_put(struct store *st, struct store_hasher *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&st->hasher_lock);
	if (st->nhashers < STORE_HASHERS) {
		st->hashers[st->nhashers++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&st->hasher_lock);
	store_hasher_free(h);
}

int store_exec_sql(struct store *st, sqlite3 *db, const char *sql, struct err *e,
		   const char *what)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : store_sql_err(st, db, rc, e, what);
}

int store_pragma_int(struct store *st, sqlite3 *db, const char *name, int64_t *out,
		     const char *what, struct err *e)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA %s", name);
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(st, db, rc, e, what);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : store_sql_err(st, db, rc, e, what);
}


/*
 * After a commit on the main connection: checkpoint once the WAL holds
 * WAL_CHECKPOINT_PAGES, as SQLite's automatic checkpoint would (which
 * this hook replaces), but saying first that the call waits: copying
 * the pages back and syncing the database takes a disk a while, and the
 * commit may be a short change's.  A commit of new pages dirties a
 * leaf of the page index per page or so; checkpointing at SQLite's
 * default 1000-page WAL copied most of the index back each time, and a
 * WAL of up to 64 MiB lets several commits share one checkpoint.
 * store_sync fsyncs the WAL itself.
 *
 * A reader that keeps an old snapshot (gc, the page-index loader, an
 * admin command) stops a checkpoint short and the WAL from starting
 * over; trying again at every commit would make each one wait.  So a
 * checkpoint is tried again only after another eighth of the limit has
 * been written, until the WAL starts over: the first commit after that
 * leaves fewer frames than the last one did (without a restart the
 * count only grows), whatever its own size.
 */
#ifndef WAL_CHECKPOINT_PAGES
#define WAL_CHECKPOINT_PAGES 16384
#endif

static int wal_committed(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct store *st = arg;
	if (pages <= st->wal_last)
		st->wal_retry_at = 0;	/* the WAL started over */
	st->wal_last = pages;
	if (pages < WAL_CHECKPOINT_PAGES || pages < st->wal_retry_at)
		return SQLITE_OK;
	store_may_block(st);
	sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	st->wal_retry_at = pages + WAL_CHECKPOINT_PAGES / 8;
	return SQLITE_OK;
}

/* How long a connection waits for a lock that another connection holds
 * (an admin command's transaction, a checkpoint) before it fails. */
#define BUSY_WAIT_MS 10000

/* SQLite's busy handler: tell store_may_block at the first retry, then
 * retry after 1, 2, ... and at most 50 ms until BUSY_WAIT_MS have passed. */
static int busy_wait(void *arg, int n)
{
	if (n == 0)
		store_may_block(arg);
	int64_t waited = n <= 50 ? (int64_t)n * (n + 1) / 2 : 1275 + (int64_t)(n - 50) * 50;
	if (waited >= BUSY_WAIT_MS)
		return 0;
	sqlite3_sleep(n < 50 ? n + 1 : 50);
	return 1;
}

int store_db_open(struct store *st, bool rdonly, sqlite3 **out, struct err *e)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/index.db", st->dir);
	int fl = SQLITE_OPEN_NOMUTEX | (rdonly ? SQLITE_OPEN_READONLY
					       : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, fl, NULL);
	if (rc != SQLITE_OK) {
		int r = store_sql_err(st, db, rc, e, "opening index.db");
		sqlite3_close(db);
		return r;
	}
	sqlite3_busy_handler(db, busy_wait, st);
	/* Page maps and the page index are large B-trees: give them room. */
	sqlite3_exec(db, "PRAGMA cache_size = -65536", NULL, NULL, NULL);
	sqlite3_extended_result_codes(db, 1);
	*out = db;
	return 0;
}

/*
 * Bytes in the files of dir/packs (0 if there is no such folder).  Pages
 * reach a pack only after the store's index was created, so a creation cut
 * short leaves none: bytes there mean a store whose index is gone.
 */
static uint64_t pack_bytes(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/packs", dir);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	uint64_t total = 0;
	struct stat sb;
	for (struct dirent *de; (de = readdir(d));)
		if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
			total += (uint64_t)sb.st_size;
	closedir(d);
	return total;
}

int store_refuse_lost_index(const char *dir, const char *what, struct err *e)
{
	uint64_t n = pack_bytes(dir);
	if (!n)
		return 0;
	return err_set(e, -EUCLEAN, "store %s: index.db %s, but packs/ holds %llu bytes of pages:"
		       " not starting an empty store over them (put the store's index.db back,"
		       " or move packs/ away)", dir, what, (unsigned long long)n);
}

/* What is at dir: 1 a store, 0 empty or missing, or -errno with message. */
static int probe_dir(const char *dir, bool create, struct err *e)
{
	struct stat sb;
	if (stat(dir, &sb) < 0) {
		if (errno != ENOENT)
			return err_set(e, -errno, "store %s: %s", dir, strerror(errno));
		if (!create)
			return err_set(e, -ENOENT, "store %s: no such folder", dir);
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return err_set(e, -errno, "store %s: cannot create: %s", dir, strerror(errno));
		return 0;
	}
	if (!S_ISDIR(sb.st_mode))
		return err_set(e, -ENOTDIR, "store %s: not a folder", dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s/index.db", dir);
	if (access(path, F_OK) == 0)
		return 1;
	DIR *d = opendir(dir);
	if (!d)
		return err_set(e, -errno, "store %s: %s", dir, strerror(errno));
	bool empty = true;
	/* The lock file and packs folder of a creation cut short count as
	 * empty. */
	for (struct dirent *de; (de = readdir(d));)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "lock") && strcmp(de->d_name, "packs"))
			empty = false;
	closedir(d);
	if (!empty)
		return err_set(e, -ENOTEMPTY,
			       "store %s: folder is not empty and holds no index.db: not a store", dir);
	int r = store_refuse_lost_index(dir, "is missing", e);
	if (r)
		return r;
	if (!create)
		return err_set(e, -ENOENT, "store %s: empty folder, not a store", dir);
	return 0;
}

/*
 * The process holding an flock on the file open as fd, from /proc/locks:
 * its pid, and its name in comm[16], for the message that the store is in
 * use.  0 if it cannot be told (no /proc, or a holder in another pid
 * namespace, which /proc/locks shows as pid 0).
 */
static pid_t lock_holder(int fd, char comm[16])
{
	struct stat st;
	FILE *f = fstat(fd, &st) == 0 ? fopen("/proc/locks", "re") : NULL;
	if (!f)
		return 0;
	char line[256];
	int pid = 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		/* "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters
		 * are listed as "1: -> FLOCK ...". */
		char kind[16];
		int p;
		unsigned maj, min;
		unsigned long ino;
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", kind, &p, &maj, &min, &ino) == 5 &&
		    !strcmp(kind, "FLOCK") && maj == major(st.st_dev) && min == minor(st.st_dev) &&
		    ino == st.st_ino)
			pid = p;
	}
	fclose(f);
	snprintf(comm, 16, "?");
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	f = pid > 0 ? fopen(path, "re") : NULL;
	if (f) {
		if (fgets(comm, 16, f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	return pid;
}

int store_take_lock(const char *dir, bool wait, int *fd, struct err *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/lock", dir);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd < 0)
		return err_set(e, -errno, "store %s: lock file: %s", dir, strerror(errno));
	int r;
	const unsigned step_ms = 20;
	for (unsigned waited = 0;; waited += step_ms) {
		r = flock(*fd, LOCK_EX | LOCK_NB);
		if (r == 0 || errno != EWOULDBLOCK || !wait || waited >= STORE_LOCK_WAIT_MS)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = step_ms * 1000000L }, NULL);
	}
	if (r < 0) {
		if (errno == EWOULDBLOCK) {
			char comm[16];
			pid_t pid = lock_holder(*fd, comm);
			if (pid > 0)
				return err_set(e, -EBUSY, "store %s is in use by another process "
					       "(pid %d, %s, has it open for writing)", dir,
					       (int)pid, comm);
			return err_set(e, -EBUSY,
				       "store %s is in use by another process (opened for writing)",
				       dir);
		}
		return err_set(e, -errno, "store %s: lock: %s", dir, strerror(errno));
	}
	return 0;
}

/*
 * Tell the backend the highest location the index names (see
 * hand_out_above in store_backend.h).  A page index that cannot be read
 * is no reason to refuse the store: its files stay readable, and no page
 * is stored while that index cannot be read (loading it fails, logged).
 */
static void hand_out_above_index(struct store *st)
{
	sqlite3_stmt *s;
	if (!st->be->ops->hand_out_above ||
	    sqlite3_prepare_v2(st->db, "SELECT max(loc) FROM page", -1, &s, NULL) != SQLITE_OK)
		return;
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0)
		st->be->ops->hand_out_above(st->be, (uint64_t)sqlite3_column_int64(s, 0));
	sqlite3_finalize(s);
}

/* Inodes left without links by a crash (or closed before release).  One
 * that an entry still names is not an orphan but a wrong link count,
 * which fsck reports: it is kept. */
static int reclaim_orphans(struct store *st, struct err *e)
{
	for (;;) {
		sqlite3_stmt *s;
		int rc = sqlite3_prepare_v2(st->db,
					    "SELECT ino FROM inode i WHERE nlink = 0 AND NOT EXISTS"
					    " (SELECT 1 FROM dentry d WHERE d.ino = i.ino) LIMIT 1",
					    -1, &s, NULL);
		if (rc != SQLITE_OK)
			return store_sql_err(st, st->db, rc, e, "finding orphans");
		rc = sqlite3_step(s);
		uint64_t ino = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
		sqlite3_finalize(s);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return store_sql_err(st, st->db, rc, e, "finding orphans");
		int r = store_delete_inode(st, ino);
		if (r)
			return err_set(e, r, "store %s: reclaiming orphan inode %llu: %s", st->dir,
				       (unsigned long long)ino, strerror(-r));
	}
}

static void store_free(struct store *st)
{
	store_known_stop(st);
	store_committer_stop(st);
	store_hash_helper_stop(st);
	store_cache_free(st);
	htab_free(&st->pending);
	free(st->forgotten);
	htab_free(&st->committing);
	htab_free(&st->deltas);
	pset_free(&st->known);
	free(st->gc_rows);
	stmt_cache_free(&st->dbc);
	stmt_cache_free(&st->rdbc);
	if (st->rdb)
		sqlite3_close(st->rdb);
	if (st->db)
		sqlite3_close(st->db);
	if (st->be)
		st->be->ops->close(st->be);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	for (unsigned i = 0; i < st->nhashers; i++)
		store_hasher_free(st->hashers[i]);
	pthread_rwlock_destroy(&st->gc_lock);
	pthread_rwlock_destroy(&st->change_lock);
	pthread_cond_destroy(&st->reloc_cond);
	pthread_mutex_destroy(&st->db_lock);
	pthread_mutex_destroy(&st->mem_lock);
	pthread_mutex_destroy(&st->rdb_lock);
	pthread_mutex_destroy(&st->hasher_lock);
	free(st->dir);
	free(st);
}

int store_open(const char *dir, unsigned flags, struct store **out, struct err *e)
{
	return store_open_log(dir, flags, NULL, NULL, out, e);
}

int store_open_log(const char *dir, unsigned flags, store_log_fn log, void *log_arg,
		   struct store **out, struct err *e)
{
	*out = NULL;
	if (!dir || !*dir)
		return err_set(e, -EINVAL, "store: no folder given");
	bool rdonly = flags & STORE_RDONLY;
	bool create = (flags & STORE_CREATE) && !rdonly;

	struct store *st = calloc(1, sizeof(*st));
	if (!st || !(st->dir = strdup(dir))) {
		free(st);
		return err_set(e, -ENOMEM, "store %s: out of memory", dir);
	}
	st->rdonly = rdonly;
	st->verify = flags & STORE_VERIFY;
	st->log = log;
	st->log_arg = log_arg;
	st->pending = st->committing = HTAB(struct ptab_ent);
	st->lock_fd = -1;
	st->trim_chunks = STORE_CACHE_CHUNKS;
	st->trim_inodes = STORE_CACHE_INODES;
	pthread_rwlock_init(&st->gc_lock, NULL);
	pthread_rwlock_init(&st->change_lock, NULL);
	pthread_cond_init(&st->reloc_cond, NULL);
	pthread_mutex_init(&st->db_lock, NULL);
	pthread_mutex_init(&st->mem_lock, NULL);
	pthread_mutex_init(&st->rdb_lock, NULL);
	pthread_mutex_init(&st->hasher_lock, NULL);

	int kind = probe_dir(dir, create, e);
	int r = kind < 0 ? kind : 0;
	if (!r && !rdonly)
		r = store_take_lock(st->dir, flags & STORE_LOCK_WAIT, &st->lock_fd, e);
	/* Probe again under the lock: another creator may have won. */
	if (!r && !rdonly && kind == 0)
		kind = probe_dir(dir, create, e);
	r = kind < 0 ? kind : r;

	char packs[4096];
	snprintf(packs, sizeof(packs), "%s/packs", dir);
	if (!r)
		r = store_pack_open(packs, kind == 0, rdonly, &st->be, e);
	if (!r)
		r = store_db_open(st, rdonly, &st->db, e);
	if (!r && !rdonly)
		r = store_exec_sql(st, st->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
			     e, "setting WAL mode");
	if (!r && !rdonly) {
		/* A WAL that starts over writes from its beginning and keeps
		 * its file's size; cut a file that one large commit (a clone
		 * or delete of a file of many GiB) grew past the checkpoint
		 * size back to that size, which the WAL reaches anyway. */
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %lld",
			 (long long)WAL_CHECKPOINT_PAGES * (STORE_PAGE_SIZE + 24) + 32);
		r = store_exec_sql(st, st->db, sql, e, "setting the WAL's size limit");
		sqlite3_wal_hook(st->db, wal_committed, st);
	}
	if (!r && sqlite3_create_function(st->db, "snapfs_map_sum", 4,
					  SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, st,
					  sql_map_sum, NULL, NULL) != SQLITE_OK)
		r = store_sql_err(st, st->db, sqlite3_errcode(st->db), e, "adding snapfs_map_sum");
	if (!r)
		r = store_schema_check(st, kind == 0, e);
	if (!r)
		r = store_db_open(st, true, &st->rdb, e);
	if (!r && !rdonly)
		hand_out_above_index(st);
	if (!r && !rdonly)
		r = reclaim_orphans(st, e);
	/*
	 * A first hasher, made in this thread before the threads that hash:
	 * libcrypto's one-time setup (reading its configuration) then runs
	 * here.  Run first in the hashing helper, it left that thread's error
	 * state allocated after the thread ended (OpenSSL 3.0; LeakSanitizer
	 * found 904 bytes from ERR_set_mark in CONF_modules_load_file_ex at
	 * the exit of some daemons under test).  Failing, it is only not
	 * there.
	 */
	if (!r && !rdonly)
		store_hasher_put(st, store_hasher_new());
	if (!r && !rdonly)
		r = store_known_start(st, e);
	if (!r && !rdonly)
		r = store_committer_start(st, e);
	if (!r && !rdonly)
		r = store_hash_helper_start(st, e);
	if (r) {
		store_free(st);
		return r;
	}
	*out = st;
	return 0;
}

int store_close(struct store *st, struct err *e)
{
	if (!st)
		return 0;
	int r = 0;
	store_committer_stop(st);
	if (!st->rdonly) {
		r = store_sync(st, e);
		/* Fold the WAL back into index.db so the folder is tidy. */
		sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	}
	store_free(st);
	return r;
}

/* fsync the WAL: with synchronous=NORMAL SQLite leaves commits in the
 * page cache until a checkpoint; this makes them survive power loss. */
int store_sync_wal(struct store *st, struct err *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/index.db-wal", st->dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : err_set(e, -errno, "store %s: %s: %s", st->dir, path,
						     strerror(errno));
	store_may_block(st);
	int r = fsync(fd) < 0 ? err_set(e, -errno, "store %s: fsync %s: %s", st->dir, path,
					strerror(errno))
			      : 0;
	close(fd);
	return r;
}

int store_sync(struct store *st, struct err *e)
{
	if (st->rdonly)
		return 0;
	int r = store_commit(st, e);
	if (!r)
		r = store_sync_wal(st, e);
	return r;
}

int store_flush(struct store *st, uint64_t ino, bool durable, struct err *e)
{
	if (st->rdonly)
		return 0;
	store_recover(st);	/* if failed: what stays failed fails below */
	/* One commit covers every file. */
	int r = durable ? store_sync(st, e) : store_commit(st, e);
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	int lost = si ? si->lost : 0;
	if (si)
		si->lost = 0;
	pthread_mutex_unlock(&st->mem_lock);
	if (lost)
		return err_set(e, lost, "store %s: inode %llu: changes not yet committed were"
			       " dropped after a failure: %s", st->dir, (unsigned long long)ino,
			       strerror(-lost));
	return r;
}

void store_set_log(struct store *st, store_log_fn fn, void *arg)
{
	st->log = fn;
	st->log_arg = arg;
}

void store_set_block_hint(struct store *st, store_block_fn fn)
{
	/* Atomic: the store's threads run already. */
	__atomic_store_n(&st->block_hint, fn, __ATOMIC_RELAXED);
	__atomic_store_n(&st->be->may_block, fn, __ATOMIC_RELAXED);
}

void store_db_lock(struct store *st)
{
	if (pthread_mutex_trylock(&st->db_lock)) {
		store_may_block(st);
		pthread_mutex_lock(&st->db_lock);
	}
}

void store_wlock(struct store *st, struct sinode *si)
{
	if (pthread_mutex_trylock(&si->wlock)) {
		store_may_block(st);
		pthread_mutex_lock(&si->wlock);
	}
}

void store_rdlock(struct store *st, pthread_rwlock_t *lock)
{
	if (pthread_rwlock_tryrdlock(lock)) {
		store_may_block(st);
		pthread_rwlock_rdlock(lock);
	}
}
