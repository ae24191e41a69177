-- schema/store.sql: the SQLite schema of a snapfs store (index.db).
--
-- version: 6
--
-- The line above is the schema version; the build embeds this file and the
-- version into the store library, which writes it to PRAGMA user_version
-- when it creates a store.  Changing the schema means: raise the version
-- here and add schema/migrate-<old>.sql that turns version <old> into
-- <old>+1 (the library runs them in order on older stores).
--
-- Conventions: times are nanoseconds since the epoch; hashes are 32-byte
-- SHA-256 blobs; page locations are opaque 64-bit numbers handed out by the
-- page backend (0 = none).

-- Store-wide facts: 'page_size', 'created_ns'.
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value ANY
) WITHOUT ROWID;

-- One row per inode.  Inode numbers are never reused (AUTOINCREMENT).
-- parent: for directories, the directory holding it (root: itself).
-- pages: pages stored for the file (holes not counted).
-- flags: bit 0 = sealed.
CREATE TABLE inode (
	ino      INTEGER PRIMARY KEY AUTOINCREMENT,
	mode     INTEGER NOT NULL,
	nlink    INTEGER NOT NULL,
	uid      INTEGER NOT NULL,
	gid      INTEGER NOT NULL,
	size     INTEGER NOT NULL DEFAULT 0,
	rdev     INTEGER NOT NULL DEFAULT 0,
	pages    INTEGER NOT NULL DEFAULT 0,
	atime_ns INTEGER NOT NULL,
	mtime_ns INTEGER NOT NULL,
	ctime_ns INTEGER NOT NULL,
	flags    INTEGER NOT NULL DEFAULT 0,
	parent   INTEGER
);
CREATE INDEX inode_orphan ON inode(nlink) WHERE nlink = 0;

-- Directory entries.  id orders a listing and is its resume cookie.
CREATE TABLE dentry (
	id     INTEGER PRIMARY KEY AUTOINCREMENT,
	parent INTEGER NOT NULL,
	name   TEXT NOT NULL,
	ino    INTEGER NOT NULL,
	UNIQUE (parent, name)
);
CREATE INDEX dentry_ino ON dentry(ino);
-- A directory's entries in listing order, so that each batch of a
-- listing is a range of this index, not a sort of the whole directory.
CREATE INDEX dentry_list ON dentry(parent, id);

CREATE TABLE symlink (
	ino    INTEGER PRIMARY KEY,
	target BLOB NOT NULL
);

CREATE TABLE xattr (
	ino   INTEGER NOT NULL,
	name  TEXT NOT NULL,
	value BLOB NOT NULL,
	PRIMARY KEY (ino, name)
) WITHOUT ROWID;

-- A file's page map, in chunks of 128 pages (512 KiB of file): page i of
-- the file is slot i % 128 of chunk i / 128.  hashes holds 32 bytes per
-- slot (all zero = hole), locs 8 bytes little-endian per slot (the page's
-- location, a copy of page.loc kept so reads need no index lookups).  Both
-- blobs may stop early; missing slots are holes.  A chunk of holes only has
-- no row.
--
-- A row is about 5 KiB, more than a B-tree page holds, so it is a rowid
-- table found through the (small) key's own index: as a WITHOUT ROWID
-- table every step of a search through the key copied a whole row,
-- overflow pages and all, to compare keys (some 30 page reads to look up
-- one chunk of a store holding 1 GiB).  locs comes first so that gc, which
-- reads only locs, finds it on the row's first page (all of it for a full
-- chunk or one of up to about 100 slots).
--
-- sum checks the row: the first 8 bytes of SHA-256 over ino and idx
-- (little-endian 64-bit), locs and hashes, as a signed integer
-- (snapfs_map_sum() in SQL, store_map_sum in the library).  SQLite finds
-- damage to its pages' structure, not bytes changed inside a blob; a row
-- that fails its sum is not used.  It sits before hashes, on the row's
-- first page with locs.
CREATE TABLE chunk (
	ino    INTEGER NOT NULL,
	idx    INTEGER NOT NULL,
	locs   BLOB NOT NULL,
	sum    INTEGER NOT NULL,
	hashes BLOB NOT NULL,
	PRIMARY KEY (ino, idx)
);

-- The page index: every stored page, where it is, and how many page-map
-- slots refer to it.  refs = 0: garbage that gc removes.
-- Keyed by location, not by hash: new pages get ever higher locations, so
-- a commit appends their rows at the end of the B-tree instead of
-- dirtying a random leaf per page (SHA-256 keys are random), which made
-- the index write about as many bytes as the data in a large store.
-- Finding a page by content is the daemon's job: it keeps every page's
-- hash prefix and location in memory and compares the bytes.
CREATE TABLE page (
	loc  INTEGER PRIMARY KEY,
	hash BLOB NOT NULL,
	refs INTEGER NOT NULL
);
-- The unreferenced pages, so that gc finds them without reading the
-- whole index while every other call waits.
CREATE INDEX page_dead ON page(loc) WHERE refs = 0;
