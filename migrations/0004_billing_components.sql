-- Issue 14: every way the providers bill. New usage counts on traces, every
-- new rate and the tiers applied on costs, the `partial` status, a partial
-- count on the daily rollups, and full price specs on stored overrides.
-- Existing rows get NULL in the new columns, which the audit digest skips
-- (docs/AUDIT.md, "Record digests"), so they keep verifying.

ALTER TABLE traces ADD COLUMN cache_write_1h_tokens INTEGER;  -- part of cache_creation_input_tokens
ALTER TABLE traces ADD COLUMN input_audio_tokens INTEGER;     -- part of input_tokens
ALTER TABLE traces ADD COLUMN output_audio_tokens INTEGER;    -- part of output_tokens
ALTER TABLE traces ADD COLUMN input_image_tokens INTEGER;     -- part of input_tokens
ALTER TABLE traces ADD COLUMN web_search_calls INTEGER;
ALTER TABLE traces ADD COLUMN service_tier TEXT;              -- as the provider reported it served

-- The status CHECK gains 'partial'; SQLite cannot alter a CHECK, so the
-- table is rebuilt with its rows copied value for value.
CREATE TABLE costs_0004 (
    trace_id                 TEXT PRIMARY KEY REFERENCES traces (id),
    day                      TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    model                    TEXT NOT NULL,
    client_key_id            TEXT NOT NULL,
    status                   TEXT NOT NULL CHECK (status IN ('priced', 'partial', 'no_charge', 'unknown_price', 'unknown_usage')),
    cost_uc                  INTEGER,              -- NULL when unknown_price / unknown_usage; partial: the priced part
    price_source             TEXT,
    price_input              INTEGER,              -- the rates applied (long-context and service tier included)
    price_output             INTEGER,
    price_cached_input       INTEGER,              -- NULL: price_input
    price_cache_write        INTEGER,              -- 5-minute writes; NULL: price_input
    price_cache_write_1h     INTEGER,              -- NULL: 1-hour writes unpriced
    price_input_audio        INTEGER,              -- NULL: unpriced
    price_output_audio       INTEGER,              -- NULL: unpriced
    price_input_image        INTEGER,              -- NULL: price_input
    price_web_search_per_1k  INTEGER,              -- µ¢ per 1,000 calls; NULL: unpriced
    price_tier               TEXT,                 -- long-context tier applied, 'above_<tokens>'
    service_tier             TEXT,                 -- the reported tier the rates are for
    unpriced                 TEXT                  -- components left unpriced, comma-separated
) STRICT;

INSERT INTO costs_0004 (trace_id, day, provider, model, client_key_id, status, cost_uc,
        price_source, price_input, price_output, price_cached_input, price_cache_write)
    SELECT trace_id, day, provider, model, client_key_id, status, cost_uc,
        price_source, price_input, price_output, price_cached_input, price_cache_write
    FROM costs;
DROP TABLE costs;
ALTER TABLE costs_0004 RENAME TO costs;

ALTER TABLE cost_daily ADD COLUMN partial_cost_requests INTEGER NOT NULL DEFAULT 0;

-- The whole price spec as JSON (tiers, service tiers, every rate); the
-- older columns stay filled for readers that know only them.
ALTER TABLE price_overrides ADD COLUMN spec_json TEXT;
