-- Issue 10: the semantic cache ([modules.semantic_cache]).

-- One row per exact-cache entry the semantic cache can find: the unit
-- vector of the request's conversation (f32 little endian, `dims` of them)
-- and its partition (BLAKE3 of everything but the conversation; docs/CACHE.md).
-- Written by the writer with the exact entry; deleted with it (evicted,
-- expired, purged) by the foreign key. Loaded into the in-memory index at start.
CREATE TABLE semantic_entries (
    cache_key     BLOB PRIMARY KEY CHECK (length(cache_key) = 32)
                  REFERENCES cache_entries (key) ON DELETE CASCADE,
    partition     BLOB NOT NULL CHECK (length(partition) = 32),
    dims          INTEGER NOT NULL CHECK (dims > 0),
    vector        BLOB NOT NULL CHECK (length(vector) = 4 * dims),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX semantic_entries_created ON semantic_entries (created_at_ms);

-- A semantic hit is traced as cache_status = 'semantic_hit'. SQLite cannot
-- alter a CHECK constraint; widening one (no stored row can violate it) is
-- the documented writable_schema edit, and the schema is reloaded at once.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, '''skip'', ''refresh'')', '''skip'', ''refresh'', ''semantic_hit'')')
 WHERE type = 'table' AND name = 'traces';
PRAGMA writable_schema = RESET;
PRAGMA writable_schema = OFF;
