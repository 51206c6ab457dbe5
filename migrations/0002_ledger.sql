-- The books: one cost row per trace, daily rollups kept by the writer, and
-- the hash-chained audit ledger (format: docs/AUDIT.md).

-- Money is integer micro-cents (1 µ¢ = 10^-8 USD); prices are µ¢ per
-- 1,000,000 tokens, as in force when the cost was computed.
CREATE TABLE costs (
    trace_id                 TEXT PRIMARY KEY REFERENCES traces (id),
    day                      TEXT NOT NULL,        -- UTC date of the request, YYYY-MM-DD
    provider                 TEXT NOT NULL,        -- '' when the request was never routed
    model                    TEXT NOT NULL,        -- resolved model, '' when none
    client_key_id            TEXT NOT NULL,        -- '' when none
    status                   TEXT NOT NULL CHECK (status IN ('priced', 'no_charge', 'unknown_price', 'unknown_usage')),
    cost_uc                  INTEGER,              -- NULL when unknown_price / unknown_usage
    price_source             TEXT,                 -- 'builtin' or 'config'; NULL when no price applied
    price_input              INTEGER,
    price_output             INTEGER,
    price_cached_input       INTEGER,
    price_cache_write        INTEGER
) STRICT;

CREATE TABLE cost_daily (
    day                         TEXT NOT NULL,
    provider                    TEXT NOT NULL,
    model                       TEXT NOT NULL,
    client_key_id               TEXT NOT NULL,
    requests                    INTEGER NOT NULL,
    errors                      INTEGER NOT NULL,
    input_tokens                INTEGER NOT NULL,
    output_tokens               INTEGER NOT NULL,
    cached_input_tokens         INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    reasoning_tokens            INTEGER NOT NULL,
    cost_uc                     INTEGER NOT NULL,  -- sum of known costs
    unknown_cost_requests       INTEGER NOT NULL,  -- requests whose cost is unknown (NULL)
    PRIMARY KEY (day, provider, model, client_key_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_log (
    seq     INTEGER PRIMARY KEY,   -- 1, 2, 3, ... without gaps
    ts_ms   INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    digest  BLOB NOT NULL,         -- BLAKE3 of the record covered (32 bytes)
    hash    BLOB NOT NULL,         -- chain hash (32 bytes)
    detail  TEXT                   -- administrative entries: the change, as JSON
) STRICT;

-- key_id: identifies the audit key the chain is keyed with (absent: unkeyed).
CREATE TABLE audit_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
