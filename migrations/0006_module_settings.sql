-- Issue 9: modules switched and reconfigured at runtime (admin API, CLI).
-- One row per module changed at runtime: the members set then, as a JSON
-- object; they win over the config file's [modules.NAME] table, member by
-- member. No row: the file's settings (or the defaults) are in force.

CREATE TABLE module_settings (
    name          TEXT PRIMARY KEY,
    overrides     TEXT NOT NULL CHECK (json_valid(overrides) AND json_type(overrides) = 'object'),
    updated_at_ms INTEGER NOT NULL
) STRICT;
