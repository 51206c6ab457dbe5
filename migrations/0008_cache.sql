-- Issue 10: the exact response cache ([modules.cache]).

-- One row per stored answer: the final message (the upstream's JSON body),
-- keyed by the BLAKE3 cache key (docs/CACHE.md). Written only by the writer:
-- a complete 2xx answer is inserted with the trace that carried it; hits
-- update `hits` / `last_hit_at_ms`; expired entries and the least recently
-- used beyond [modules.cache] max_bytes are deleted after inserts.
-- `cost_uc` is what the original answer cost (µ¢; NULL when unknown), the
-- saving each hit records.
CREATE TABLE cache_entries (
    key             BLOB PRIMARY KEY CHECK (length(key) = 32),
    namespace       TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    expires_at_ms   INTEGER NOT NULL,
    last_hit_at_ms  INTEGER NOT NULL,       -- created_at_ms until the first hit
    hits            INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL,
    body            BLOB NOT NULL,
    cost_uc         INTEGER,
    source_trace_id TEXT NOT NULL
) STRICT;
CREATE INDEX cache_entries_lru ON cache_entries (last_hit_at_ms);
CREATE INDEX cache_entries_expiry ON cache_entries (expires_at_ms);

-- Bumped by every purge (API or CLI), so a running server drops its
-- in-memory copies of purged entries (it polls this every second).
CREATE TABLE cache_purges (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    generation    INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
INSERT INTO cache_purges (id, generation, updated_at_ms) VALUES (1, 0, 0);

-- How the cache treated the request: 'hit', 'miss', 'skip' (not looked up,
-- not stored), 'refresh' (not looked up, stored); NULL when the module was
-- off (and in rows from before). Covered by the request's audit digest when
-- not NULL.
ALTER TABLE traces ADD COLUMN cache_status TEXT
    CHECK (cache_status IS NULL OR cache_status IN ('hit', 'miss', 'skip', 'refresh'));
-- For `report costs` and the cache stats (only requests the cache saw).
CREATE INDEX traces_cache_status ON traces (cache_status) WHERE cache_status IS NOT NULL;

-- A cache hit costs nothing (status no_charge, cost_uc 0); this is what the
-- stored answer cost originally (µ¢), i.e. what the hit saved. NULL unless
-- a hit (or a hit whose original cost was unknown). Covered by the request's
-- audit digest when not NULL.
ALTER TABLE costs ADD COLUMN saved_uc INTEGER;
