-- Issue 16: guardrails ([modules.guardrails]).

-- Which guardrail rules fired on the request and its response, and how many
-- times: a JSON object of rule name -> count, e.g. {"card":1,"email":2}
-- (rule names only; the matched text is never stored). NULL when nothing
-- fired, or the module was off (and in rows from before). Covered by the
-- request's audit digest when not NULL.
ALTER TABLE traces ADD COLUMN guardrails TEXT
    CHECK (guardrails IS NULL OR json_valid(guardrails));
