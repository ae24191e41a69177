-- schema/migrate-5.sql: version 5 -> 6.  Each page-map row gets its
-- checksum, in a column before hashes (see store.sql), so the table is
-- made again.
CREATE TABLE chunk_v6 (
	ino    INTEGER NOT NULL,
	idx    INTEGER NOT NULL,
	locs   BLOB NOT NULL,
	sum    INTEGER NOT NULL,
	hashes BLOB NOT NULL,
	PRIMARY KEY (ino, idx)
);
INSERT INTO chunk_v6(ino, idx, locs, sum, hashes)
	SELECT ino, idx, locs, snapfs_map_sum(ino, idx, locs, hashes), hashes FROM chunk
	ORDER BY ino, idx;
DROP TABLE chunk;
ALTER TABLE chunk_v6 RENAME TO chunk;
