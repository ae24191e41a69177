-- schema/migrate-4.sql: version 4 -> 5.  The page map becomes a rowid
-- table with an index of its key (see store.sql for why).
CREATE TABLE chunk_v5 (
	ino    INTEGER NOT NULL,
	idx    INTEGER NOT NULL,
	locs   BLOB NOT NULL,
	hashes BLOB NOT NULL,
	PRIMARY KEY (ino, idx)
);
INSERT INTO chunk_v5(ino, idx, locs, hashes) SELECT ino, idx, locs, hashes FROM chunk ORDER BY ino, idx;
DROP TABLE chunk;
ALTER TABLE chunk_v5 RENAME TO chunk;
