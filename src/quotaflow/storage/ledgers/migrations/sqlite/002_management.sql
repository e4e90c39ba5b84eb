-- Management state (issue 3): keys and providers added at runtime, agents, settings, alerts.

-- A provider created at runtime from a preset (seed 000's add_key of a new provider name).
CREATE TABLE IF NOT EXISTS managed_providers (
    name       TEXT PRIMARY KEY,
    preset     TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- A key added at runtime; the secret is encrypted with the master key, never stored in clear.
CREATE TABLE IF NOT EXISTS managed_keys (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    secret_enc  BLOB NOT NULL,
    secret_hash TEXT NOT NULL,  -- sha256 of the secret: finds "the same key" without decrypting
    quota_total REAL NOT NULL,
    created_at  REAL NOT NULL
);

-- An agent created by the admin API; only the hash of its virtual key is kept.
CREATE TABLE IF NOT EXISTS agents (
    name       TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    spec_json  TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- Small persisted settings (the forced provider, …).
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT
);

-- One alert per crossing; alert_state keeps the level each subject last reached.
CREATE TABLE IF NOT EXISTS alerts (
    id      INTEGER PRIMARY KEY,
    ts      REAL NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE TABLE IF NOT EXISTS alert_state (
    subject TEXT PRIMARY KEY,
    level   REAL NOT NULL
);
