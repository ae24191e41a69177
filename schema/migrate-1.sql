-- schema/migrate-1.sql: version 1 -> 2.  The page index, keyed by hash
-- until now, is keyed by location (see store.sql for why).
CREATE TABLE page_by_loc (
	loc  INTEGER PRIMARY KEY,
	hash BLOB NOT NULL,
	refs INTEGER NOT NULL
);
INSERT INTO page_by_loc(loc, hash, refs) SELECT loc, hash, refs FROM page ORDER BY loc;
DROP TABLE page;
ALTER TABLE page_by_loc RENAME TO page;
