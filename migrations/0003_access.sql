-- Access: client keys, the admin credential, encrypted provider keys, and
-- the runtime-editable aliases and price overrides. No secret is stored in
-- the clear: keys are BLAKE3 hashes, provider keys AES-256-GCM ciphertexts.

CREATE TABLE client_keys (
    id            TEXT PRIMARY KEY,          -- key_<hex>, safe to show and log
    name          TEXT NOT NULL,
    prefix        TEXT NOT NULL,             -- the key's first characters, for recognising it
    hash          BLOB NOT NULL UNIQUE,      -- BLAKE3 of the whole key
    models        TEXT,                      -- JSON array of allowed models; NULL: any
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
) STRICT;

CREATE TABLE admin_credentials (
    id            TEXT PRIMARY KEY,
    prefix        TEXT NOT NULL,
    hash          BLOB NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE provider_keys (
    id              TEXT PRIMARY KEY,        -- pk_<hex>; with provider, the ciphertext's associated data
    provider        TEXT NOT NULL,
    nonce           BLOB NOT NULL,
    ciphertext      BLOB NOT NULL,
    master_key_id   TEXT NOT NULL,           -- which master key sealed it
    last4           TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    disabled_at_ms  INTEGER,                 -- set when the upstream answered 401 with it
    disabled_reason TEXT
) STRICT;

CREATE INDEX provider_keys_provider ON provider_keys (provider);

CREATE TABLE aliases (
    name          TEXT PRIMARY KEY,
    target        TEXT NOT NULL,             -- provider/model
    updated_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE price_overrides (
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    input         TEXT NOT NULL,             -- USD per 1M tokens, decimal strings
    output        TEXT NOT NULL,
    cached_input  TEXT,
    cache_write   TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, model)
) STRICT;
