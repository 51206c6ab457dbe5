-- Issue 9: each client key may carry its own limits and budget. NULL means
-- "use the configured default". Existing keys get NULL in every column.

ALTER TABLE client_keys ADD COLUMN rpm INTEGER CHECK (rpm > 0);                    -- requests per minute
ALTER TABLE client_keys ADD COLUMN tpm INTEGER CHECK (tpm > 0);                    -- tokens per minute
ALTER TABLE client_keys ADD COLUMN max_parallel INTEGER CHECK (max_parallel > 0);  -- requests in flight
ALTER TABLE client_keys ADD COLUMN budget_uc INTEGER CHECK (budget_uc >= 0);       -- micro-cents
ALTER TABLE client_keys ADD COLUMN budget_window TEXT
    CHECK (budget_window IS NULL
           OR (budget_window IN ('day', 'month', 'total') AND budget_uc IS NOT NULL));  -- NULL: the default window
