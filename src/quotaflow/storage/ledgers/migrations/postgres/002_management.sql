-- Management state: keys and providers added at runtime, agents, settings, alerts
-- (the same tables as the embedded ledger's migrations/002_management.sql).
CREATE TABLE IF NOT EXISTS managed_providers (
    name       TEXT PRIMARY KEY,
    preset     TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS managed_keys (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    secret_enc  BYTEA NOT NULL,  -- encrypted with the master key, never in clear
    secret_hash TEXT NOT NULL,
    quota_total DOUBLE PRECISION NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    name       TEXT PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    spec_json  TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name  TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    id      BIGSERIAL PRIMARY KEY,
    ts      DOUBLE PRECISION NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE TABLE IF NOT EXISTS alert_state (
    subject TEXT PRIMARY KEY,
    level   DOUBLE PRECISION NOT NULL
);
