-- Issue 11: indexes for the dashboard (/ui/), so its pages never scan
-- `traces` or `audit_log`, whatever their size.
--
-- The trace list is newest first with a keyset cursor, ORDER BY
-- started_at_ms DESC, id DESC. Each filter has an index leading with its
-- column then started_at_ms: an equality on the filter walks that index
-- backwards from the cursor and stops after LIMIT rows. Rows within one
-- millisecond are put in id order by a sort of that millisecond's few rows;
-- `id` is left out of the indexes (a UUID in every entry would double them).
-- The list without filters, and with only a time range, uses
-- traces_started_at (0001).
--
-- Columns that are NULL on many rows get partial indexes: a filter
-- `col = ?` implies `col IS NOT NULL`, so SQLite uses them for it.

CREATE INDEX traces_key_time ON traces (client_key_id, started_at_ms)
    WHERE client_key_id IS NOT NULL;
CREATE INDEX traces_model_time ON traces (model_resolved, started_at_ms)
    WHERE model_resolved IS NOT NULL;
CREATE INDEX traces_provider_time ON traces (provider, started_at_ms)
    WHERE provider IS NOT NULL;
CREATE INDEX traces_error_kind_time ON traces (error_kind, started_at_ms)
    WHERE error_kind IS NOT NULL;
-- The status class (2xx … 5xx) as an expression, so one class is one
-- equality and keeps time order; the query must say exactly
-- `status / 100 = ?` to use it.
CREATE INDEX traces_status_class_time ON traces (status / 100, started_at_ms);

-- The trace page's ledger entry: a request's entry has the subject
-- 'trace:<id>'.
CREATE INDEX audit_log_subject ON audit_log (subject);

-- The overview's cache savings over a day range: only hits have saved_uc,
-- so this is small, and it covers the query (no row lookups).
CREATE INDEX costs_saved_by_day ON costs (day, saved_uc)
    WHERE saved_uc IS NOT NULL;
