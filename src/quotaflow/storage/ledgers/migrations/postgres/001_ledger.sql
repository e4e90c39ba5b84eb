-- The ledger: one row per attempt (or reported use). The source of truth for usage.
-- Same columns as the embedded SQLite ledger, plus ``replica``: which gateway process
-- journaled the row (only that replica, or anyone after a timeout, may settle it as crashed).
CREATE SEQUENCE IF NOT EXISTS ledger_ids INCREMENT BY 64;  -- each replica takes 64 ids at once
CREATE TABLE IF NOT EXISTS ledger (
    id                BIGINT  PRIMARY KEY,
    request_id        TEXT    NOT NULL,
    attempt           INTEGER NOT NULL,
    ts                DOUBLE PRECISION NOT NULL,
    agent             TEXT    NOT NULL DEFAULT 'default',
    route             TEXT    NOT NULL DEFAULT '',
    provider          TEXT    NOT NULL DEFAULT '',
    key_id            TEXT    NOT NULL DEFAULT '',
    model             TEXT    NOT NULL DEFAULT '',
    prompt_tokens     BIGINT  NOT NULL DEFAULT 0,
    completion_tokens BIGINT  NOT NULL DEFAULT 0,
    cached_tokens     BIGINT  NOT NULL DEFAULT 0,
    total_tokens      BIGINT  NOT NULL DEFAULT 0,
    requests          INTEGER NOT NULL DEFAULT 0,
    cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
    latency_ms        DOUBLE PRECISION,
    ttfb_ms           DOUBLE PRECISION,
    status            TEXT    NOT NULL,
    error_kind        TEXT,
    http_status       INTEGER,
    estimated         BOOLEAN NOT NULL DEFAULT FALSE,
    stream            BOOLEAN NOT NULL DEFAULT FALSE,
    reserved_tokens   BIGINT  NOT NULL DEFAULT 0,
    reserved_cost     DOUBLE PRECISION NOT NULL DEFAULT 0,
    source            TEXT    NOT NULL DEFAULT 'proxy',
    detail            TEXT,
    replica           TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_id, ts);
CREATE INDEX IF NOT EXISTS ledger_agent_ts ON ledger (agent, ts);
CREATE INDEX IF NOT EXISTS ledger_provider_ts ON ledger (provider, ts);
CREATE INDEX IF NOT EXISTS ledger_pending ON ledger (replica, ts) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS ledger_request ON ledger (request_id);

-- A reset of a limit scope (seed 000's reset_quota): usage before it no longer counts.
CREATE TABLE IF NOT EXISTS resets (
    scope TEXT NOT NULL,
    at    DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS resets_scope ON resets (scope, at);
