/*
 * fsd/store_migrate.c: a store's schema: creating it in a new store, and
 * bringing an older store's up to date in one transaction, with reports
 * of how far a long migration has got (the SQL is embedded from schema/,
 * see store_schema.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_i.h"
#include "store_schema.h"

static int user_version(struct store *st, sqlite3 *db, int *out, struct err *e)
{
	int64_t v = 0;
	int r = store_pragma_int(st, db, "user_version", &v, "reading the schema version", e);
	*out = (int)v;
	return r;
}

void store_schema_rows_sql(char *buf, size_t size, bool keep)
{
	const char *insert = keep ? "INSERT OR IGNORE" : "INSERT";
	long long now = (long long)store_now_ns();
	snprintf(buf, size,
		 "PRAGMA user_version = %d;"
		 "%s INTO meta(key, value) VALUES('page_size', %u), ('created_ns', %lld);"
		 "%s INTO inode(ino, mode, nlink, uid, gid, atime_ns, mtime_ns, ctime_ns, parent)"
		 " VALUES(%u, %u, 2, %u, %u, %lld, %lld, %lld, %u);",
		 store_schema_version_current, insert, STORE_PAGE_SIZE, now, insert, STORE_ROOT_INO,
		 (unsigned)(S_IFDIR | 0755), (unsigned)getuid(), (unsigned)getgid(), now, now, now,
		 STORE_ROOT_INO);
}

/* A new store: the whole schema, its version and the root directory, in
 * one transaction so a crash leaves either nothing or a complete store. */
static int create_schema(struct store *st, struct err *e)
{
	int r = store_exec_sql(st, st->db, "BEGIN IMMEDIATE", e, "creating the schema");
	if (r)
		return r;
	r = store_exec_sql(st, st->db, store_schema_sql, e, "creating the schema");
	if (!r) {
		char sql[STORE_SCHEMA_ROWS_SQL];
		store_schema_rows_sql(sql, sizeof(sql), false);
		r = store_exec_sql(st, st->db, sql, e, "creating the schema");
	}
	if (!r)
		r = store_exec_sql(st, st->db, "COMMIT", e, "creating the schema");
	if (r)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

/* Bytes in the store's file name (0 if there is none). */
static uint64_t store_file_bytes(const struct store *st, const char *name)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", st->dir, name);
	struct stat sb;
	return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static void migrate_log(struct store *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A line to the log, with room for the store's whole path in it. */
static void migrate_log(struct store *st, const char *fmt, ...)
{
	if (!st->log)
		return;
	char msg[4096 + 512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->log(st->log_arg, msg);
}

int64_t store_migrate_report_ns = 10 * (int64_t)1000000000;

/* What a migration is doing, for the thread that reports it. */
enum migrate_phase { MIGRATE_RUN, MIGRATE_COMMIT, MIGRATE_CHECKPOINT, MIGRATE_DONE };

struct migrate_watch {
	struct store *st;
	bool watched;		/* the reporter runs: the rest below is set up */
	pthread_t reporter;
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* on CLOCK_MONOTONIC */
	enum migrate_phase phase;	/* lock */
	uint64_t pages_read;	/* atomic: the connection's cache misses */
	int64_t page_size;
	int64_t start;		/* mono_ns */
	double index_mib;	/* index.db's size when it began */
	double wal_mib;		/* the WAL's when the checkpoint began (lock) */
	pid_t tid;		/* the migrating thread */
	uint64_t wchar0;	/* its bytes written when the checkpoint began (lock) */
	bool wchar_ok;		/* (lock) and could be read */
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return store_ns_of(ts);
}

/*
 * SQLite's progress handler while the migration's SQL runs: note how many
 * pages of the index the connection has read (it began with none of them
 * cached).  A rewrite of the page maps reads them once, in order, and
 * they are most of index.db, so that says how far it has got.  Never
 * interrupts.
 */
static int migrate_progress(void *arg)
{
	struct migrate_watch *w = arg;
	int pages = 0, unused;
	sqlite3_db_status(w->st->db, SQLITE_DBSTATUS_CACHE_MISS, &pages, &unused, 0);
	__atomic_store_n(&w->pages_read, (uint64_t)pages, __ATOMIC_RELAXED);
	STORE_TEST_HOOK("migrate-run", w->st, (uint64_t)pages);
	return 0;
}

/*
 * The bytes thread tid of this process has handed to write calls so far
 * (wchar in /proc/self/task/TID/io), or -errno.  A checkpoint calls no
 * handler, but the migrating thread writes nothing else meanwhile, so
 * this counts what it has copied into index.db.
 */
static int thread_wchar(pid_t tid, uint64_t *wchar)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/io", (int)tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[128];
	int r = -ENODATA;
	while (r && fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "wchar: %llu", &v) == 1) {
			*wchar = v;
			r = 0;
		}
	}
	fclose(f);
	return r;
}

/* SQLite calls migrate_progress after about this many of its steps. */
#define MIGRATE_PROGRESS_STEPS 10000

/*
 * The reporter: every store_migrate_report_ns until the migration is
 * done, a line with the time so far and what it is doing.  A thread of
 * its own, because the commit and the checkpoint, which write the new
 * index twice, call no handler while they run.
 */
static void *migrate_report(void *arg)
{
	struct migrate_watch *w = arg;
	struct store *st = w->st;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		int64_t next = mono_ns() + store_migrate_report_ns;
		struct timespec ts = { .tv_sec = next / 1000000000, .tv_nsec = next % 1000000000 };
		while (w->phase != MIGRATE_DONE && mono_ns() < next)
			if (pthread_cond_timedwait(&w->cond, &w->lock, &ts) == ETIMEDOUT)
				break;
		if (w->phase == MIGRATE_DONE)
			break;
		double secs = (double)(mono_ns() - w->start) / 1e9;
		double read = (double)__atomic_load_n(&w->pages_read, __ATOMIC_RELAXED) *
			      (double)w->page_size / (1 << 20);
		if (read > w->index_mib)
			read = w->index_mib;	/* pages of the WAL count too */
		switch (w->phase) {
		case MIGRATE_RUN:
			migrate_log(st, "store %s: migrating, %.0f s so far: %.1f of %.1f MiB of"
				    " index.db read", st->dir, secs, read, w->index_mib);
			break;
		case MIGRATE_COMMIT:
			migrate_log(st, "store %s: migrating, %.0f s so far: committing, %.1f MiB"
				    " in index.db-wal", st->dir, secs,
				    (double)store_file_bytes(st, "index.db-wal") / (1 << 20));
			break;
		default: {
			char written[48] = "";
			uint64_t wchar;
			if (w->wchar_ok && !thread_wchar(w->tid, &wchar)) {
				/* A page changed twice is copied once: at most the WAL. */
				double done = (double)(wchar - w->wchar0) / (1 << 20);
				snprintf(written, sizeof(written), ", %.1f MiB written",
					 done < w->wal_mib ? done : w->wal_mib);
			}
			migrate_log(st, "store %s: migrating, %.0f s so far: copying the %.1f MiB"
				    " of index.db-wal into index.db%s", st->dir, secs, w->wal_mib,
				    written);
			break;
		}
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Tell the reporter, if there is one, what the migration does now. */
static void migrate_phase(struct migrate_watch *w, enum migrate_phase phase)
{
	if (!w->watched)
		return;
	double wal = phase == MIGRATE_CHECKPOINT
			     ? (double)store_file_bytes(w->st, "index.db-wal") / (1 << 20)
			     : 0;
	uint64_t wchar = 0;
	bool wchar_ok = phase == MIGRATE_CHECKPOINT && !thread_wchar(w->tid, &wchar);
	pthread_mutex_lock(&w->lock);
	w->phase = phase;
	w->wal_mib = wal;
	w->wchar0 = wchar;
	w->wchar_ok = wchar_ok;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Start w's reporter (none without a log, or if it cannot start). */
static void migrate_watch_start(struct migrate_watch *w)
{
	if (!w->st->log)
		return;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&w->lock, NULL);
	w->watched = pthread_create(&w->reporter, NULL, migrate_report, w) == 0;
	if (w->watched)
		return;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

static void migrate_watch_stop(struct migrate_watch *w)
{
	if (!w->watched)
		return;
	migrate_phase(w, MIGRATE_DONE);
	pthread_join(w->reporter, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}

/*
 * Bring an index of schema version from up to date, in one transaction:
 * a failure (a full disk among others) leaves the store as it was.  A
 * migration may rewrite the page maps, which on a large store takes a
 * while and needs free space of up to twice index.db (the new table in
 * the WAL, then in index.db beside the old one's freed pages), so the
 * log hears when it starts and ends, and how far it has got in between.
 * The rewritten pages reach index.db at once, and the WAL file that held
 * them is cut back to nothing.
 */
static int migrate(struct store *st, int from, struct err *e)
{
	const int to = store_schema_version_current;
	char what[64];
	snprintf(what, sizeof(what), "migrating the schema from version %d to %d", from, to);
	struct migrate_watch w = {
		.st = st,
		.tid = gettid(),
		.start = mono_ns(),
		.index_mib = (double)store_file_bytes(st, "index.db") / (1 << 20),
	};
	migrate_log(st, "store %s: %s: index.db holds %.1f MiB; a large store takes a while and"
		    " needs free space of up to twice that", st->dir, what, w.index_mib);
	int r = store_pragma_int(st, st->db, "page_size", &w.page_size, what, e);
	if (r)
		return r;
	int pages, unused;
	sqlite3_db_status(st->db, SQLITE_DBSTATUS_CACHE_MISS, &pages, &unused, 1);
	migrate_watch_start(&w);
	if (w.watched)
		sqlite3_progress_handler(st->db, MIGRATE_PROGRESS_STEPS, migrate_progress, &w);

	r = store_exec_sql(st, st->db, "BEGIN IMMEDIATE", e, what);
	/* Each step must start where the last one ended: a store older than
	 * the oldest migration is not run through the later ones. */
	int at = from;
	for (const struct store_migration *m = store_migrations; m->sql && !r; m++) {
		if (m->from < at)
			continue;
		if (m->from != at)
			break;
		r = store_exec_sql(st, st->db, m->sql, e, what);
		at = m->from + 1;
	}
	if (!r && at != to)
		r = err_set(e, -EPROTONOSUPPORT,
			    "store %s: no migration from schema version %d to %d", st->dir, at, to);
	if (!r) {
		char sql[64];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", to);
		r = store_exec_sql(st, st->db, sql, e, what);
	}
	sqlite3_progress_handler(st->db, 0, NULL, NULL);
	if (!r) {
		migrate_phase(&w, MIGRATE_COMMIT);
		STORE_TEST_HOOK("migrate-commit", st, 0);
		r = store_exec_sql(st, st->db, "COMMIT", e, what);
	}
	if (r)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	else {
		migrate_phase(&w, MIGRATE_CHECKPOINT);
		STORE_TEST_HOOK("migrate-checkpoint", st, 0);
		/* Nothing else reads the index yet: this checkpoint completes. */
		sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	}
	migrate_watch_stop(&w);
	if (r) {
		migrate_log(st, "store %s: %s failed; the store is as it was", st->dir, what);
		return r;
	}
	migrate_log(st, "store %s: migrated to schema version %d in %.1f s", st->dir, to,
		    (double)(mono_ns() - w.start) / 1e9);
	return 0;
}

/* Does the database hold any table?  (A creation cut short holds none.) */
static bool db_is_blank(sqlite3 *db)
{
	sqlite3_stmt *s;
	bool blank = false;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, NULL) == SQLITE_OK) {
		blank = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 0;
		sqlite3_finalize(s);
	}
	return blank;
}

int store_schema_check(struct store *st, bool fresh, struct err *e)
{
	int v = 0;
	int r = user_version(st, st->db, &v, e);
	if (r)
		return r;
	if (v == 0 && (fresh || (!st->rdonly && db_is_blank(st->db)))) {
		/* A creation cut short left index.db without tables; one
		 * emptied since leaves pages behind. */
		r = fresh ? 0 : store_refuse_lost_index(st->dir, "holds no tables", e);
		return r ? r : create_schema(st, e);
	}
	if (v == 0)
		return err_set(e, -EUCLEAN, "store %s: index.db has no schema version (not a store?)",
			       st->dir);
	if (v > store_schema_version_current)
		return err_set(e, -EPROTONOSUPPORT,
			       "store %s: schema version %d is newer than this program's version %d;"
			       " use a newer snapfs",
			       st->dir, v, store_schema_version_current);
	if (v < store_schema_version_current) {
		if (st->rdonly)
			return err_set(e, -EPROTONOSUPPORT,
				       "store %s: schema version %d is older than this program's version %d;"
				       " mount it with snapfs, or run snapfs-admin gc on it, once to"
				       " migrate it",
				       st->dir, v, store_schema_version_current);
		return migrate(st, v, e);
	}
	return 0;
}
