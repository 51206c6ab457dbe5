-- Issue 9: alias target lists, the attempts behind each request, and the
-- circuit breakers' state.

-- An alias with several targets keeps them all here (a JSON array of
-- "provider/model", in the order they are tried); `target` stays the first.
-- NULL: the alias has the one target in `target` (rows from before).
ALTER TABLE aliases ADD COLUMN targets TEXT;

-- How many upstream attempts the request made (retries and fallbacks
-- included; NULL: none, or written before this migration), and the log of
-- every attempt when there was more than one or a target was skipped: a
-- JSON array of {"n", "provider", "model", "status" | "error",
-- "duration_us", "outcome"} (outcome: "answered", "failed", "skipped").
-- The trace's provider and model are the answering attempt's; only that one
-- is costed. Covered by the request's audit digest when not NULL.
ALTER TABLE traces ADD COLUMN attempts INTEGER;
ALTER TABLE traces ADD COLUMN attempt_log TEXT;

-- One row per target whose breaker has changed state; written by the writer
-- with the audit entry of the change (breaker.open / half_open / close).
CREATE TABLE breaker_state (
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('closed', 'half_open', 'open')),
    failures      INTEGER NOT NULL,
    opened_at_ms  INTEGER,                   -- the cooldown runs from here
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, model)
) STRICT;
