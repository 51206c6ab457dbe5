-- One row per proxied request. Times are Unix epoch milliseconds (UTC);
-- durations are microseconds. Token counts are exactly what the upstream
-- reported (NULL when it reported nothing).
CREATE TABLE traces (
    id                          TEXT PRIMARY KEY,      -- UUIDv7, also sent to the client as x-tollgate-request-id
    started_at_ms               INTEGER NOT NULL,
    endpoint                    TEXT NOT NULL,         -- e.g. /v1/chat/completions
    provider                    TEXT,
    model_requested             TEXT,
    model_resolved              TEXT,
    stream                      INTEGER NOT NULL CHECK (stream IN (0, 1)),
    status                      INTEGER NOT NULL,      -- HTTP status sent to the client
    upstream_status             INTEGER,               -- HTTP status the upstream answered (NULL: no answer)
    error_kind                  TEXT,                  -- NULL on success
    error_message               TEXT,
    finish_reason               TEXT,
    upstream_request_id         TEXT,
    total_us                    INTEGER NOT NULL,      -- request received -> response finished
    ttfb_us                     INTEGER,               -- request received -> first body byte to client
    upstream_ttfb_us            INTEGER,               -- upstream request sent -> first upstream body byte
    upstream_us                 INTEGER,               -- upstream request sent -> upstream body finished
    input_tokens                INTEGER,
    output_tokens               INTEGER,
    cached_input_tokens         INTEGER,
    cache_creation_input_tokens INTEGER,
    reasoning_tokens            INTEGER,
    request_bytes               INTEGER NOT NULL,
    response_bytes              INTEGER NOT NULL,
    client_key_id               TEXT,
    request_body                BLOB,                  -- only with traces.store_bodies = true
    response_body               BLOB
) STRICT;

CREATE INDEX traces_started_at ON traces (started_at_ms);
