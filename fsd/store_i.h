/*
 * fsd/store_i.h: the page store's private state, shared by store.c (open,
 * sync), store_ns.c (namespace), the file-data modules store_cache.c
 * (pending pages, inode cache, page maps), store_pset.c (the prefix
 * set of stored pages), store_write.c (writing),
 * store_data.c (reads, truncate, clone, seek, figures) and store_commit.c
 * (commit, deleting files), and the whole-store work of store_gc.c,
 * store_fsck.c and store_repair.c, with store_admin.c (their lock,
 * stats) and store_admin_i.h.
 *
 * Locks, always taken in this order:
 *   gc_lock   rwlock.  Every data call holds it shared for its duration (and
 *             store_map until store_map_done); store_gc holds it exclusive
 *             while it frees pages, so locations handed out stay valid.
 *   change_lock  rwlock.  Data calls that change files hold it shared as
 *             well; store_gc holds it exclusive while it forgets dead
 *             pages, so that no change takes a page being forgotten, and
 *             while it points cached page maps and the prefix set at the
 *             pages it moved, so that no change is between taking an old
 *             location and putting it in a map.  Reads go on: the bytes
 *             they may use stay until the pages are freed.
 *   db_lock   the main SQLite connection (db): namespace changes, commits.
 *   si->wlock per cached inode: one data change to a file at a time.
 *   mem_lock  the in-memory data state: inode cache, page maps, pending
 *             and committing page tables, the prefix set, counters.
 *   rdb_lock  the second SQLite connection (rdb), used for reads that must
 *             not wait for a commit: page-map loads, page lookups,
 *             getattr/lookup/readdir/xattr reads.
 * A commit holds db_lock throughout but mem_lock only while it copies the
 * pending state out, so readers and writers go on during the slow part
 * (fdatasync, SQLite transaction).
 * store_may_block (the owner's hint that a call is about to wait) may be
 * called with any of these held: store_db_lock, store_wlock and
 * store_rdlock call it when the lock is taken.
 */
#ifndef SNAPFS_STORE_I_H
#define SNAPFS_STORE_I_H

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "store.h"
#include "store_backend.h"
#include "store_hash.h"

#define CHUNK_SHIFT 7
#define CHUNK_PAGES (1u << CHUNK_SHIFT)	/* pages per page-map row */

/* Prepared statements, kept per connection (under that connection's lock). */
#define STORE_STMTS 48u
struct stmt_cache {
	sqlite3 *db;
	const char *sql[STORE_STMTS];	/* compared by pointer: string literals */
	sqlite3_stmt *stmt[STORE_STMTS];
	unsigned n;
};

/* Pending pages after which a write commits on its own. */
#define STORE_COMMIT_PAGES 16384u
#define STORE_HASHERS 8u

/* The slots of a chunk as committed: what its row holds. */
struct chunk_base {
	uint8_t hash[CHUNK_PAGES][STORE_HASH_SIZE];
	uint64_t loc[CHUNK_PAGES];
};

/* Part of a file's page map in memory: CHUNK_PAGES slots. */
struct chunk {
	uint8_t hash[CHUNK_PAGES][STORE_HASH_SIZE];	/* all zero: hole */
	uint64_t loc[CHUNK_PAGES];			/* 0: hole */
	/* While the chunk has uncommitted changes: its slots as committed;
	 * NULL when clean. */
	struct chunk_base *base;
	bool in_db;			/* a chunk row exists */
};

/* A cached regular file: its attributes, and of its page map the chunks
 * read so far.  Opening a file reads no chunk; each is read from its row
 * when a call first needs one of its slots (chunk_read), so that opening
 * a region file of many GiB costs what opening a small one does. */
struct sinode {
	uint64_t ino;
	struct sinode *next;		/* hash-bucket chain */
	unsigned users;			/* calls in progress (pins it) */
	unsigned opens;			/* store_file_open handles */
	bool released;			/* store_inode_release was called */
	int lost;			/* -errno: a recovery dropped uncommitted
					 * changes while it was open; the next
					 * store_flush reports it */
	bool dirty;			/* size, times or chunks pending */
	/* On the store's list of changed inodes (dirty or holding a tail,
	 * or both, or neither any more until the next commit looks). */
	bool listed;
	struct sinode *chg_prev, *chg_next;
	uint32_t flags;			/* enum store_inode_flags */
	uint64_t size;
	int64_t mtime_ns, ctime_ns;
	uint64_t pages;			/* non-hole slots */
	struct chunk **chunks;		/* NULL entry: all holes, or unread */
	uint64_t *unread;		/* bit i: chunk i may have a row not
					 * read yet (NULL entries only) */
	uint64_t *present;		/* bit i: chunks[i] is not NULL, so walks
					 * skip 64 holes a word without touching
					 * the (lazily zeroed) array */
	size_t nchunks;
	/* Every chunk with uncommitted changes (base set) lies in chunks
	 * [dirty_lo, dirty_hi), so that a commit looks at those, not at each
	 * chunk of a file whose map reaches far (8 million at 4 TiB). */
	size_t dirty_lo, dirty_hi;
	/* The file's last page, partial, as a write that reached the end of
	 * the file left it: held here instead of stored, so that a writer
	 * appending in pieces that are not whole pages (tar writes 10 KiB)
	 * stores each page once, whole, not once per piece.  The page map
	 * keeps the slot as it was; anything but a write into this page
	 * stores it first (tail_flush), and so does every commit.  Changed
	 * under wlock and mem_lock.  NULL: none. */
	uint8_t *tail;
	uint64_t tail_pg;
	uint64_t map_size;		/* with a tail: the size the map covers */
	pthread_mutex_t wlock;
};

/* A table keyed by page hash or by page location (store_htab.c): entries
 * of esz bytes, each starting with its key, ksz bytes: a 32-byte hash, or
 * a uint64_t location.  Initialise with HTAB(entry type) or
 * HTAB_LOC(entry type). */
struct htab {
	uint8_t *ents;
	bool *used;			/* per slot */
	size_t esz, ksz, cap, n;
};
#define HTAB(type) ((struct htab){ .esz = sizeof(type), .ksz = STORE_HASH_SIZE })
#define HTAB_LOC(type) ((struct htab){ .esz = sizeof(type), .ksz = sizeof(uint64_t) })
/* The entry of key (a hash, or a pointer to a uint64_t location), or NULL. */
void *htab_find(const struct htab *t, const void *key);
/* The entry of key, added if missing (all zero but for the key); NULL if
 * out of memory.  Entries may move when one is added. */
void *htab_get(struct htab *t, const void *key);
/* Slot i (< t->cap) if it holds an entry, else NULL: for walking a table. */
void *htab_at(const struct htab *t, size_t i);
/* Empty the table, keeping its slots for the entries to come if it has
 * no more than keep of them (else as htab_free). */
void htab_clear(struct htab *t, size_t keep);
/* Free the entries; the table stays usable (and empty). */
void htab_free(struct htab *t);

/* hash -> location of pages put to the backend but not yet committed. */
struct ptab_ent {
	uint8_t hash[STORE_HASH_SIZE];
	uint64_t loc;
};

/* The 64-bit hash prefix and the location of every page in the index or
 * put since the store was opened: how a writer finds a page by its
 * content, as the index is keyed by location.  A prefix with no entry
 * proves a page new; otherwise each location with that prefix is a
 * candidate, used only once the same bytes are found there (lookup_pages):
 * two pages may share a prefix, and a recovery may have cut a page off its
 * pack. */
struct pset {
	uint64_t *slots;		/* 0: free */
	uint64_t *locs;			/* per slot */
	size_t cap, n;
};

struct store {
	char *dir;
	bool rdonly;
	bool verify;		/* STORE_VERIFY */
	int lock_fd;
	struct store_backend *be;

	pthread_rwlock_t gc_lock;
	pthread_rwlock_t change_lock;
	pthread_mutex_t db_lock;
	pthread_mutex_t mem_lock;
	pthread_mutex_t rdb_lock;
	pthread_mutex_t hasher_lock;

	sqlite3 *db;			/* under db_lock */
	int wal_last, wal_retry_at;	/* under db_lock: see wal_committed */
	sqlite3 *rdb;			/* under rdb_lock */
	struct stmt_cache dbc, rdbc;
	/* Under db_lock: while a gc looks for the page-map rows that name
	 * pages it moved, commits list the rows they write here, so that it
	 * need not read every row again while changes wait. */
	bool gc_track, gc_track_lost;	/* lost: out of memory, list incomplete */
	struct chunk_key {
		int64_t ino, idx;
	} *gc_rows;
	size_t gc_nrows, gc_caprows;
	/* Under db_lock: the index names pages gc moved at their new places
	 * and memory may still name them at the old ones: commits wait on
	 * reloc_cond until gc has pointed memory at the new places too. */
	bool gc_relocating;
	pthread_cond_t reloc_cond;

	/* under mem_lock */
	struct sinode **itab;
	size_t itab_cap, ninodes;
	/* The inodes with changes to commit (dirty or holding a tail): a
	 * commit visits these, not every cached inode. */
	struct sinode *changed;
	struct htab pending, committing;	/* of struct ptab_ent */
	struct htab deltas;		/* the last commit's, emptied (db_lock) */
	struct pset known;
	uint64_t pending_pages;		/* slots changed since the last commit */
	uint64_t cached_chunks;		/* page-map chunks in memory */
	uint64_t map_reads;		/* chunk_read's queries */
	uint64_t trim_chunks;		/* cache_trim runs past these */
	size_t trim_inodes;
	bool commit_active;		/* a commit is between copy-out and COMMIT */
	int failed;			/* a put or commit failed: the next change
					 * recovers (store_recover) */
	char fail_msg[256];		/* what failed, for the log */

	/* The prefix set is loaded by a thread at open, so that a large
	 * store is served at once; calls that may put pages (changes of file
	 * data, gc) wait for it in store_known_wait, so nothing else adds to
	 * or filters the set meanwhile.  known_state: 0 loading, 1 loaded,
	 * -errno failed (atomic; set under known_lock).  A load that ran
	 * out of memory is tried again by the next call that waits. */
	pthread_t known_thread;
	bool known_thread_running;	/* started: lock and cond are set up */
	bool known_joinable;		/* known_thread is to be joined */
	int known_state;
	bool known_stop;		/* close: stop loading (atomic) */
	bool known_fail_logged;		/* (atomic) */
	pthread_mutex_t known_lock;
	pthread_cond_t known_cond;
	char known_msg[512];		/* why loading failed (known_lock) */

	/* The committer thread: writers that pass STORE_COMMIT_PAGES wake
	 * it, so SQLite work overlaps with their hashing (flags under
	 * mem_lock). */
	pthread_t committer;
	pthread_cond_t commit_cond;
	bool committer_running, commit_wanted, committer_stop;
	/* Inodes the kernel forgot (store_inode_forget), to delete if they
	 * are unlinked: the committer deletes them in one transaction once
	 * FORGOTTEN_BATCH are waiting or the first has waited
	 * FORGOTTEN_WAIT_NS, and so does every commit and statfs (under
	 * mem_lock). */
	uint64_t *forgotten;
	size_t nforgotten, forgotten_cap;
	int64_t forgotten_since_ns;	/* when the first one came */
#define FORGOTTEN_BATCH 64u
#define FORGOTTEN_WAIT_NS 10000000

	/* The hashing helper thread: a large write shares the hashing of its
	 * pages with it (store_write.c, hash_pages).  Under hash_lock. */
	pthread_t hash_thread;
	pthread_mutex_t hash_lock;
	pthread_cond_t hash_cond;	/* a job was posted, or stop */
	pthread_cond_t hash_done;	/* the helper finished a job */
	struct hash_job *hash_job;	/* posted, not yet taken (written atomically) */
	bool hash_running, hash_stop;	/* hash_stop written atomically */
	/* Waiting for the next job by polling (see store_set_hash_spin):
	 * for up to hash_spin_ns (atomic), when the last job was posted no
	 * longer than that after the one before (hash_gap_ns; hash_post_ns:
	 * when the last was posted); hash_spin_hits counts jobs found so. */
	int64_t hash_spin_ns, hash_post_ns, hash_gap_ns;
	unsigned long hash_spin_hits;

	store_log_fn log;
	void *log_arg;
	store_block_fn block_hint;	/* see store_set_block_hint */
	/* Under db_lock: a failed change was logged (the next change that
	 * writes a row clears it); sqlite3_total_changes64 at ns_tx_begin. */
	bool ns_fail_logged;
	bool read_fail_logged;		/* read_failed said it once (atomic) */
	bool index_fail_logged;		/* store_step said it once (atomic) */
	int64_t ns_changes;

	struct store_hasher *hashers[STORE_HASHERS];	/* under hasher_lock */
	unsigned nhashers;
};

/*
 * Tests only (a store library built with STORE_TEST_HOOKS): the hook is
 * called where a data call has let go of an inode's wlock, or not yet
 * taken it, or ("change") where a change has passed its sealed check
 * but not yet made the change, or ("create") where a new file exists but
 * is not yet open, or ("commit") where a commit has taken what changed
 * out of memory but not yet written it to the index, so that a test can
 * act in just that gap (where names the place).  A migration calls it as
 * it goes ("migrate-run", with the pages of the index read so far, then
 * "migrate-commit" and "migrate-checkpoint"), so that a test can wait
 * there for its progress lines.  The pack backend's writer thread calls
 * it ("pack-write", with no store) before it writes a staging buffer, so
 * that a test can keep pages staged.  Compiled out otherwise.
 */
#ifdef STORE_TEST_HOOKS
extern void (*store_test_hook)(const char *where, struct store *st, uint64_t ino);
/* (Tests set it with an atomic store: threads of the store call it.) */
#define STORE_TEST_HOOK(where, st, ino)                                                    \
	do {                                                                               \
		void (*hook_)(const char *, struct store *, uint64_t) =                     \
			__atomic_load_n(&store_test_hook, __ATOMIC_ACQUIRE);                \
		if (hook_)                                                                 \
			hook_(where, st, ino);                                             \
	} while (0)
#else
#define STORE_TEST_HOOK(where, st, ino) ((void)0)
#endif

/* store.c */
int64_t store_now_ns(void);
/* CLOCK_MONOTONIC in ns, for waits. */
int64_t store_mono_ns(void);
/* Run sql (statements without results) on db; what names the step for errors. */
int store_exec_sql(struct store *st, sqlite3 *db, const char *sql, struct err *e,
		   const char *what);
/* PRAGMA name's value, an integer, into out; what names the step for errors. */
int store_pragma_int(struct store *st, sqlite3 *db, const char *name, int64_t *out,
		     const char *what, struct err *e);
/* Refuse (-EUCLEAN, saying why) to start an empty index in dir beside
 * packs that hold pages; what says what is wrong with index.db. */
int store_refuse_lost_index(const char *dir, const char *what, struct err *e);

/* store_migrate.c */
/* A migration logs how far it got this often (10 s; tests change it). */
extern int64_t store_migrate_report_ns;
/*
 * Check the schema version of st's main connection (fresh: index.db was
 * just made): create the schema in a new or blank index (refusing one
 * beside packs that hold pages), migrate an older one (not on a
 * read-only open), refuse a newer one or one without a version.
 */
int store_schema_check(struct store *st, bool fresh, struct err *e);
/* Into buf (STORE_SCHEMA_ROWS_SQL bytes): the SQL that gives a new index
 * its version, its figures in meta and its root directory (owned by the
 * calling user); with keep, rows already there stay (a salvaged index's). */
#define STORE_SCHEMA_ROWS_SQL 512
void store_schema_rows_sql(char *buf, size_t size, bool keep);

/* The calling thread is about to wait or work for long (see
 * store_set_block_hint). */
static inline void store_may_block(struct store *st)
{
	store_block_fn fn = __atomic_load_n(&st->block_hint, __ATOMIC_RELAXED);
	if (fn)
		fn();
}
/* Take db_lock, telling store_may_block first if another thread holds it. */
void store_db_lock(struct store *st);
/* Take an inode's wlock, the same way (a clone holds two for its whole
 * length, a large write its file's while it hashes). */
void store_wlock(struct store *st, struct sinode *si);
/* Take lock shared, telling store_may_block first if it is held
 * exclusive. */
void store_rdlock(struct store *st, pthread_rwlock_t *lock);

/*
 * Times are kept as int64 nanoseconds since the epoch, which reach from
 * 1677 to 2262.  A time outside is clamped to that range, as the kernel
 * clamps times to what a filesystem can hold; times before 1970 keep
 * their fraction (tv_nsec stays in [0, 10^9)).
 */
int64_t store_ns_of(struct timespec ts);
struct timespec store_ts_of(int64_t ns);
/* The cached statement for sql on db (whose lock is held), reset and with
 * bindings cleared; NULL if it cannot be prepared. */
sqlite3_stmt *store_stmt(struct store *st, sqlite3 *db, const char *sql);
/* sqlite3_step(s) of a statement of the store's, saying in the log, once
 * per open of the store, when index.db is damaged or cannot be read. */
int store_step(struct store *st, sqlite3_stmt *s);
/*
 * The checksum each page-map row keeps (chunk.sum): the first 8 bytes of
 * SHA-256 over ino and idx (little-endian), then locs, then hashes, as a
 * signed number.  SQLite finds damage to the structure of its pages, not
 * bytes changed inside a blob, and a page map read wrong would send reads
 * to other pages or holes.  0 or -errno.
 */
int store_map_sum(struct store *st, uint64_t ino, uint64_t idx, const void *locs, size_t nlocs,
		  const void *hashes, size_t nhashes, int64_t *out);
/* Does row (ino, idx) with these blobs have the checksum want?  0 if so,
 * -EUCLEAN if not, other -errno if it cannot be worked out. */
int store_map_check(struct store *st, uint64_t ino, uint64_t idx, const void *locs, size_t nlocs,
		    const void *hashes, size_t nhashes, int64_t want);
/* Row (ino, idx) of the page map failed its checksum: say so in the log,
 * once per open of the store (as store_step does). */
void store_map_damaged(struct store *st, uint64_t ino, uint64_t idx);
int store_sql_errno(int rc);
int store_sql_err(struct store *st, sqlite3 *db, int rc, struct err *e, const char *what);
/* The same for the store in folder dir, with no struct store open. */
int store_sql_err_at(const char *dir, sqlite3 *db, int rc, struct err *e, const char *what);
/* Open a connection to the store's index as every connection of the
 * store is: waiting up to 10 s for a lock rather than failing at once,
 * with a large page cache.  An error names the store. */
int store_db_open(struct store *st, bool rdonly, sqlite3 **out, struct err *e);
/* Take dir/lock for writing, its descriptor into *fd (-1 if it could
 * not be opened), waiting up to STORE_LOCK_WAIT_MS if wait; -EBUSY naming
 * the holder if it is taken. */
int store_take_lock(const char *dir, bool wait, int *fd, struct err *e);
int store_commit(struct store *st, struct err *e);
/* fsync the WAL: make every commit so far survive power loss. */
int store_sync_wal(struct store *st, struct err *e);
struct store_hasher *store_hasher_get(struct store *st);
void store_hasher_put(struct store *st, struct store_hasher *h);

/* store_cache.c: pending table */
/* Add hash (not present) with loc != 0 to a pending table. */
int ptab_add(struct htab *t, const uint8_t *hash, uint64_t loc);

/* store_pset.c: the prefix set */
/* The locations of the pages whose hashes share hash's prefix, one per
 * call into *loc (a candidate: it may be stale or another page).  *it is
 * 0 for the first call; false when there are no more. */
bool pset_next(const struct pset *s, const uint8_t *hash, size_t *it, uint64_t *loc);
/* Add the page hash at loc.  Callers add pages just put or loaded from
 * the index, so the pair is new but for a location reused after a
 * recovery; a repeated pair only makes lookup_pages compare it twice. */
int pset_add(struct pset *s, const uint8_t *hash, uint64_t loc);
/* Remove the entry of the page hash at loc (gc: a page freed); move it
 * to loc to (gc: a page moved).  Each costs about a lookup, whatever
 * the size of the set.  False if there was no such entry. */
bool pset_remove(struct pset *s, const uint8_t *hash, uint64_t loc);
bool pset_move(struct pset *s, const uint8_t *hash, uint64_t loc, uint64_t to);
void pset_free(struct pset *s);
/* Fill the prefix set from the page index again (db_lock held). */
int store_load_known(struct store *st, struct err *e);
/* Start loading the prefix set in a thread (writable opens), and stop it
 * (at close: gives up if still loading). */
int store_known_start(struct store *st, struct err *e);
void store_known_stop(struct store *st);
/* Wait until the prefix set is loaded: 0, or -ENOMEM or -EIO if it could
 * not be (said once through the store's log, and in e unless NULL).
 * After -ENOMEM the next call loads it again. */
int store_known_wait(struct store *st, struct err *e);

/* store_cache.c: inode cache, slots */
/* Find or load the cached inode, pinned (users++).  mem_lock NOT held. */
int sinode_get(struct store *st, uint64_t ino, struct sinode **out);
/* The memory of a cached inode, taken before a file is created so that
 * its first open cannot fail after it (NULL if out of memory); then
 * sinode_open_new, or sinode_new_free if the file was not created.
 * mem_lock NOT held for any of the three. */
struct sinode *sinode_new(struct store *st);
/* Cache si as the new file a describes, empty, with one open (a number
 * the store never used before, so not cached yet). */
void sinode_open_new(struct store *st, struct sinode *si, const struct store_attr *a);
void sinode_new_free(struct store *st, struct sinode *si);
void sinode_put(struct store *st, struct sinode *si);
/* Cached inode or NULL; mem_lock held. */
struct sinode *sinode_find(struct store *st, uint64_t ino);
/* Free a page-map chunk (NULL is fine). */
void chunk_free(struct chunk *c);
/* Free chunk ci of si, which becomes a hole (mem_lock held). */
void chunk_drop(struct store *st, struct sinode *si, size_t ci);
/* The first chunk of si from ci on that is in memory, or also one not read
 * yet if unread; si->nchunks if none: the chunks before it are holes
 * (mem_lock held). */
size_t chunk_next(const struct sinode *si, size_t ci, bool unread);
/* Remove si from the cache and free it (mem_lock held, no users). */
void sinode_drop(struct store *st, struct sinode *si);
/* Free cached inodes beyond the cache's size that nobody uses and that
 * have nothing pending (mem_lock held). */
void cache_trim(struct store *st);
/* Overlay size, times and pages of a cached inode onto a (mem_lock not held). */
void store_overlay_attr(struct store *st, struct store_attr *a);
/* Keep a cached inode's copy of what setattr/seal changed. */
void store_cached_times(struct store *st, uint64_t ino, const int64_t *mtime_ns,
			const int64_t *ctime_ns);
void store_cached_flags(struct store *st, uint64_t ino, uint32_t flags);
void store_cache_free(struct store *st);
/* Read chunk ci of si's page map from the database if it has not been
 * read yet (mem_lock held, rdb_lock not: it is taken here). */
int chunk_read(struct store *st, struct sinode *si, size_t ci);
/* Slot pg of si: its hash and location, a hole (zero hash, loc 0) beyond
 * the map; its chunk is read first if need be (mem_lock held, not
 * rdb_lock).  *hash stays good while mem_lock is held. */
int slot_get(struct store *st, struct sinode *si, uint64_t pg, const uint8_t **hash,
	     uint64_t *loc);
/* Set slot pg of si to (hash, loc), a hole if loc == 0; the chunk keeps its
 * committed hashes for the commit (mem_lock held, not rdb_lock). */
int slot_set(struct store *st, struct sinode *si, uint64_t pg, const uint8_t *hash,
	     uint64_t loc);
/* The file changed: new mtime and ctime, to be committed. */
void sinode_touch(struct store *st, struct sinode *si);
/* si has changes to commit: mark it dirty and list it (mem_lock held). */
void sinode_dirty(struct store *st, struct sinode *si);
/* List si as changed without marking it dirty: it holds a tail (mem_lock
 * held). */
void sinode_list(struct store *st, struct sinode *si);
/* Take si off the changed list (mem_lock held). */
void sinode_unlist(struct store *st, struct sinode *si);
/* Has si changes not yet committed?  (mem_lock held) */
bool sinode_changed(const struct sinode *si);
/* Throw away si's page map, size and times and load them again from the
 * database (the map as unread), keeping its users, opens and lock
 * (mem_lock and rdb_lock held).  On failure si is left empty. */
int sinode_reload(struct store *st, struct sinode *si);

/* store_write.c */
int store_committer_start(struct store *st, struct err *e);
void store_committer_stop(struct store *st);
/* Start / stop the hashing helper thread (stop: safe if never started). */
int store_hash_helper_start(struct store *st, struct err *e);
void store_hash_helper_stop(struct store *st);

/* Common entry of the data calls: gc_lock shared, the inode pinned and,
 * if change, change_lock shared and its wlock held (refused on a
 * read-only, failed or sealed store or inode), its tail stored.  Returns
 * -errno with nothing held. */
int data_begin(struct store *st, uint64_t ino, bool change, struct sinode **out);
/* The same for a write, which keeps the tail. */
int data_begin_write(struct store *st, uint64_t ino, struct sinode **out);
/* Store si's tail page, if it has one (wlock held, not mem_lock). */
int tail_flush(struct store *st, struct sinode *si);
/* Store the tail of every cached file (no lock held). */
int tails_flush_all(struct store *st);
/* Undo data_begin, and commit if enough is pending. */
void data_end(struct store *st, struct sinode *si, bool change);
/* Write len bytes at off into si (si->wlock held), buf lying in lent if
 * that is not NULL (store_write_lent). */
ssize_t write_locked(struct store *st, struct sinode *si, const uint8_t *buf, size_t len,
		     uint64_t off, struct store_lent *lent);
/* Patch len bytes at byte in of page pg with src (zeros if NULL), the rest
 * of the page kept (mem_lock held). */
int patch_page(struct store *st, struct sinode *si, uint64_t pg, unsigned in, const void *src,
	       size_t len);

/* store_commit.c */
/* Mark the store failed by r (the first failure wins), with what failed
 * for the log (mem_lock held or not: the fields are written atomically
 * enough for a message; st->failed is what counts). */
void store_fail(struct store *st, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* After a failure: drop uncommitted changes so that memory agrees with the
 * database again, and take changes again (see "Failures" in store.h).
 * Takes gc_lock, db_lock and mem_lock itself; 0 if the store is not (or no
 * longer) failed, else the failure, which then stays. */
int store_recover(struct store *st);
/* Drop ino from the cache and delete it with its pages from the database
 * (db_lock held, mem_lock not). */
int store_delete_inode(struct store *st, uint64_t ino);
/* Delete the unlinked ones of the inodes store_inode_forget was told of
 * (db_lock not held): 0, or the first -errno (each other one was still
 * deleted, if it could be). */
int store_reclaim_forgotten(struct store *st);
/* 1 if ino is unlinked and in no use, so that it can go; 0 if it stays
 * (unlinked but in use: marked to go at its last release), or -errno
 * (-ENOENT: no such inode) (db_lock held). */
int store_inode_may_go(struct store *st, uint64_t ino);
/* Delete ino if it has no links and nobody uses it; if in use, mark it to
 * be deleted at its last release (db_lock held). */
int store_delete_inode_if_unlinked(struct store *st, uint64_t ino);

/* store_ns.c */
/* Attributes of ino as the given connection sees them (its lock held). */
int ns_attr_get(struct store *st, sqlite3 *db, uint64_t ino, struct store_attr *a);
/* The same on the main connection (db_lock held) for a change of ino:
 * -EPERM if it is sealed. */
int ns_attr_get_changeable(struct store *st, uint64_t ino, struct store_attr *a);
/* Run one prepared change on db with up to four integer arguments; a
 * constraint failure is -EEXIST, a full disk -ENOSPC (store_sql_errno). */
int ns_exec4(struct store *st, const char *sql, int n, int64_t a, int64_t b, int64_t c,
	     int64_t d);
/* store_mknod of n, or with target a symlink (n->mode S_IFLNK | 0777). */
int ns_make(struct store *st, uint64_t parent, const char *name, const struct store_new *n,
	    const char *target, struct store_attr *out);
/* store_attr.c: an extended attribute's name and size as the store takes
 * them: 0, -EINVAL (no name) or -ERANGE (too long, too large). */
int ns_xattr_check(const char *name, size_t size);
/* store_attr.c: put name = value on ino (transaction open, ino
 * changeable), with store_xattr_set's flags. */
int ns_xattr_put(struct store *st, uint64_t ino, const char *name, const void *value, size_t size,
		 int flags);
/* Step a prepared change once and reset it: 0 when done, else -errno. */
int ns_step(sqlite3_stmt *s);
/* Start a change: db_lock and a write transaction (-EROFS, -EIO after a
 * failed commit that could not be recovered, or SQLite's -errno). */
int ns_tx_begin(struct store *st);
/* The same without the recovery (-EIO after a failed commit), for callers
 * that hold gc_lock (store_recover takes it exclusive). */
int ns_tx_open(struct store *st);
/* Finish a change: commit if r == 0, else roll back; db_lock released.
 * Returns r or the commit's failure. */
int ns_tx_end(struct store *st, int r);
/* A path of ino for messages ("/a/b"), or "" if none; db or rdb given. */
void store_path_of(sqlite3 *db, uint64_t ino, char *buf, size_t size);

/* Room in the array *p (of *cap elements of size bytes) for element n:
 * doubled when full.  0 or -ENOMEM (the array kept). */
static inline int store_grow(void **p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? 2 * *cap : 64;
	void *q = realloc(*p, c * size);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = c;
	return 0;
}

/* Little-endian 64-bit in blobs. */
static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#endif
