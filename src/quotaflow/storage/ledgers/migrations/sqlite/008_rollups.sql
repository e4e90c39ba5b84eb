-- Rollups (issue 21): what every usage read needs, per 15-minute slot and per UTC day × agent,
-- route, provider, key, model and status, kept by triggers in the transaction that commits
-- the rows. Reads take whole slots and days from here and only the partial slots at their
-- edges from the ledger, so a month costs the same at 100k rows as at 10M. Pending rows are
-- left out (they join when they settle); refused rows are in with their zero use (usage
-- reads leave the 'refused' status out, as they do with ledger rows).
-- Deleting ledger rows does not touch the rollups: that is what `quotaflow compact` relies on.
-- SQLite runs this file on every open: everything is IF NOT EXISTS, and the back-fill of an
-- existing ledger runs once, before the 'rollups' mark is written, in one transaction (each
-- back-fill reads the ledger behind a CROSS JOIN with a one-row gate that is empty once the
-- mark exists: SQLite keeps a CROSS JOIN's order, so later opens do not scan the ledger).
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS ledger_meta (
    name  TEXT PRIMARY KEY,
    value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_slots (
    slot              INTEGER NOT NULL,
    agent             TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    attempts          INTEGER NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    cost_usd          REAL    NOT NULL,
    estimated         INTEGER NOT NULL,  -- rows whose cost is an estimate (sql.ESTIMATED_COST)
    PRIMARY KEY (slot, agent, route, provider, key_id, model, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_days (
    day               INTEGER NOT NULL,
    agent             TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    attempts          INTEGER NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    cost_usd          REAL    NOT NULL,
    estimated         INTEGER NOT NULL,  -- rows whose cost is an estimate (sql.ESTIMATED_COST)
    PRIMARY KEY (day, agent, route, provider, key_id, model, status)
) WITHOUT ROWID;

-- Per key and slot alone: what a forecast reads for every key, and a report by day for every
-- slot (a week of slots is a few hundred rows a key here, tens of thousands in ledger_slots
-- with its other dimensions).
CREATE TABLE IF NOT EXISTS ledger_key_slots (
    key_id            TEXT    NOT NULL,
    slot              INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    cost_usd          REAL    NOT NULL,
    errors            INTEGER NOT NULL,  -- rows with status error or crashed
    estimated         INTEGER NOT NULL,  -- rows whose cost is an estimate (sql.ESTIMATED_COST)
    refused           INTEGER NOT NULL,  -- refused rows (in attempts: usage reads take them out)
    PRIMARY KEY (key_id, slot)
) WITHOUT ROWID;
-- Proxied requests by how they ended, per slot of their first attempt (what
-- SqlLedger.request_counts counts): answered when an attempt answered, else refused when one
-- was refused, else failed. An attempt settling alone (no other settled row of its request:
-- the common case, one probe of the request-id index) adds its own outcome; one joining
-- others takes its request's outcome so far back and adds the new one.
CREATE TABLE IF NOT EXISTS ledger_outcomes (
    slot     INTEGER PRIMARY KEY,
    answered INTEGER NOT NULL,
    refused  INTEGER NOT NULL,
    failed   INTEGER NOT NULL
);
INSERT INTO ledger_slots (slot, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
SELECT CAST(ts / 900 AS INTEGER) * 900 AS b, agent, route, provider, key_id, model, status, COUNT(*), SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd), SUM(CASE WHEN status NOT IN ('error','refused') AND (CAST(estimated AS INTEGER)=1 OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END)
FROM (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM ledger_meta WHERE name = 'rollups')) AS once CROSS JOIN ledger WHERE status != 'pending'
GROUP BY b, agent, route, provider, key_id, model, status;
INSERT INTO ledger_days (day, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
SELECT CAST(ts / 86400 AS INTEGER) * 86400 AS b, agent, route, provider, key_id, model, status, COUNT(*), SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd), SUM(CASE WHEN status NOT IN ('error','refused') AND (CAST(estimated AS INTEGER)=1 OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END)
FROM (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM ledger_meta WHERE name = 'rollups')) AS once CROSS JOIN ledger WHERE status != 'pending'
GROUP BY b, agent, route, provider, key_id, model, status;
INSERT INTO ledger_outcomes (slot, answered, refused, failed)
SELECT CAST(f / 900 AS INTEGER) * 900 AS s, SUM(ok > 0), SUM(ok = 0 AND ref > 0), SUM(ok = 0 AND ref = 0)
FROM (SELECT MIN(ts) AS f, SUM(status = 'ok') AS ok, SUM(status = 'refused') AS ref
      FROM (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM ledger_meta WHERE name = 'rollups')) AS once CROSS JOIN ledger
      WHERE source = 'proxy' AND status != 'pending' GROUP BY request_id)
GROUP BY s;
INSERT INTO ledger_key_slots
SELECT key_id, CAST(ts / 900 AS INTEGER) * 900 AS b, COUNT(*), SUM(requests), SUM(prompt_tokens),
       SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd), SUM((status IN ('error','crashed'))),
       SUM((CASE WHEN status NOT IN ('error','refused') AND (CAST(estimated AS INTEGER)=1 OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END)), SUM((status = 'refused'))
FROM (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM ledger_meta WHERE name = 'rollups')) AS once CROSS JOIN ledger WHERE status != 'pending'
GROUP BY key_id, b;
INSERT OR IGNORE INTO ledger_meta (name, value) VALUES ('rollups', 1);
-- Rows reach the rollups when they turn from pending to settled (an UPDATE): the ledger
-- writes a row that is settled from the start as a pending row and settles it in the same
-- transaction, so an INSERT fires no trigger at all. (A trigger costs its whole program's
-- frame, allocated and zeroed, even when its WHEN is false: three INSERT triggers that
-- did nothing for a pending row were ~40k of a request's instructions.) The request
-- outcomes' trigger and the guard that keeps settled rows final are in migration 010.
CREATE TRIGGER IF NOT EXISTS ledger_rollup_settle AFTER UPDATE ON ledger WHEN NEW.status != 'pending'
BEGIN
    INSERT INTO ledger_slots VALUES (CAST(NEW.ts / 900 AS INTEGER) * 900, NEW.agent, NEW.route, NEW.provider, NEW.key_id, NEW.model, NEW.status, 1, NEW.requests, NEW.prompt_tokens, NEW.completion_tokens, NEW.total_tokens, NEW.cost_usd, (CASE WHEN NEW.status NOT IN ('error','refused') AND (CAST(NEW.estimated AS INTEGER)=1 OR NEW.detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END))
        ON CONFLICT (slot, agent, route, provider, key_id, model, status) DO UPDATE SET attempts=attempts+excluded.attempts, requests=requests+excluded.requests, prompt_tokens=prompt_tokens+excluded.prompt_tokens, completion_tokens=completion_tokens+excluded.completion_tokens, total_tokens=total_tokens+excluded.total_tokens, cost_usd=cost_usd+excluded.cost_usd, estimated=estimated+excluded.estimated;
    INSERT INTO ledger_days VALUES (CAST(NEW.ts / 86400 AS INTEGER) * 86400, NEW.agent, NEW.route, NEW.provider, NEW.key_id, NEW.model, NEW.status, 1, NEW.requests, NEW.prompt_tokens, NEW.completion_tokens, NEW.total_tokens, NEW.cost_usd, (CASE WHEN NEW.status NOT IN ('error','refused') AND (CAST(NEW.estimated AS INTEGER)=1 OR NEW.detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END))
        ON CONFLICT (day, agent, route, provider, key_id, model, status) DO UPDATE SET attempts=attempts+excluded.attempts, requests=requests+excluded.requests, prompt_tokens=prompt_tokens+excluded.prompt_tokens, completion_tokens=completion_tokens+excluded.completion_tokens, total_tokens=total_tokens+excluded.total_tokens, cost_usd=cost_usd+excluded.cost_usd, estimated=estimated+excluded.estimated;
    INSERT INTO ledger_key_slots VALUES (NEW.key_id, CAST(NEW.ts / 900 AS INTEGER) * 900, 1, NEW.requests, NEW.prompt_tokens, NEW.completion_tokens, NEW.total_tokens, NEW.cost_usd, (NEW.status IN ('error','crashed')), (CASE WHEN NEW.status NOT IN ('error','refused') AND (CAST(NEW.estimated AS INTEGER)=1 OR NEW.detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END), (NEW.status = 'refused'))
        ON CONFLICT (key_id, slot) DO UPDATE SET attempts=attempts+excluded.attempts, requests=requests+excluded.requests, prompt_tokens=prompt_tokens+excluded.prompt_tokens, completion_tokens=completion_tokens+excluded.completion_tokens, total_tokens=total_tokens+excluded.total_tokens, cost_usd=cost_usd+excluded.cost_usd, errors=errors+excluded.errors, estimated=estimated+excluded.estimated, refused=refused+excluded.refused;
END;
-- Attempts a crash left pending are looked for at every start: a partial index holds only
-- rows in flight (a few), so that is a lookup, not a scan of every row.
CREATE INDEX IF NOT EXISTS ledger_pending ON ledger (ts) WHERE status = 'pending';
COMMIT;
