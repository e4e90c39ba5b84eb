-- The ledger: one row per attempt (or reported use). The source of truth for usage.
CREATE TABLE IF NOT EXISTS ledger (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT    NOT NULL,
    attempt           INTEGER NOT NULL,
    ts                REAL    NOT NULL,
    agent             TEXT    NOT NULL DEFAULT 'default',
    route             TEXT    NOT NULL DEFAULT '',
    provider          TEXT    NOT NULL DEFAULT '',
    key_id            TEXT    NOT NULL DEFAULT '',
    model             TEXT    NOT NULL DEFAULT '',
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    requests          INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL    NOT NULL DEFAULT 0,
    latency_ms        REAL,
    ttfb_ms           REAL,
    status            TEXT    NOT NULL,
    error_kind        TEXT,
    http_status       INTEGER,
    estimated         INTEGER NOT NULL DEFAULT 0,
    stream            INTEGER NOT NULL DEFAULT 0,
    reserved_tokens   INTEGER NOT NULL DEFAULT 0,
    reserved_cost     REAL    NOT NULL DEFAULT 0,
    source            TEXT    NOT NULL DEFAULT 'proxy',
    detail            TEXT
);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts);
CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_id, ts);
CREATE INDEX IF NOT EXISTS ledger_agent_ts ON ledger (agent, ts);
CREATE INDEX IF NOT EXISTS ledger_request ON ledger (request_id);

-- A reset of a limit scope (seed 000's reset_quota): usage before it no longer counts.
CREATE TABLE IF NOT EXISTS resets (
    scope TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS resets_scope ON resets (scope, at);
