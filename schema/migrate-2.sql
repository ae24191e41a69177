-- schema/migrate-2.sql: version 2 -> 3.  gc finds unreferenced pages
-- through a partial index instead of reading the whole page index.
CREATE INDEX page_dead ON page(loc) WHERE refs = 0;
