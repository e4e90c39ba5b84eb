-- Rollups (issue 21), as in the embedded ledger's 008_rollups.sql: per 15-minute slot and
-- per UTC day × agent, route, provider, key, model and status, kept at commit. Here the
-- triggers are per statement (a batch of rows is one statement): one upsert per table per
-- batch, its rows in key order (replicas writing at once take the row locks in one order).
-- Pending rows are left out; deleting ledger rows does not touch the rollups (compaction).
CREATE TABLE IF NOT EXISTS ledger_meta (
    name  TEXT PRIMARY KEY,
    value DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_slots (
    slot              DOUBLE PRECISION NOT NULL,
    agent             TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    attempts          BIGINT  NOT NULL,
    requests          BIGINT  NOT NULL,
    prompt_tokens     BIGINT  NOT NULL,
    completion_tokens BIGINT  NOT NULL,
    total_tokens      BIGINT  NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    estimated         BIGINT  NOT NULL,  -- rows whose cost is an estimate (sql.ESTIMATED_COST)
    PRIMARY KEY (slot, agent, route, provider, key_id, model, status)
);
CREATE TABLE IF NOT EXISTS ledger_days (
    day               DOUBLE PRECISION NOT NULL,
    agent             TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    key_id            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    attempts          BIGINT  NOT NULL,
    requests          BIGINT  NOT NULL,
    prompt_tokens     BIGINT  NOT NULL,
    completion_tokens BIGINT  NOT NULL,
    total_tokens      BIGINT  NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    estimated         BIGINT  NOT NULL,  -- rows whose cost is an estimate (sql.ESTIMATED_COST)
    PRIMARY KEY (day, agent, route, provider, key_id, model, status)
);
-- Per key and slot alone: what a forecast reads for every key.
CREATE TABLE IF NOT EXISTS ledger_key_slots (
    key_id            TEXT   NOT NULL,
    slot              DOUBLE PRECISION NOT NULL,
    attempts          BIGINT NOT NULL,
    requests          BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    total_tokens      BIGINT NOT NULL,
    cost_usd          DOUBLE PRECISION NOT NULL,
    errors            BIGINT NOT NULL,
    estimated         BIGINT NOT NULL,
    refused           BIGINT NOT NULL,
    PRIMARY KEY (key_id, slot)
);
CREATE TABLE IF NOT EXISTS ledger_outcomes (
    slot     DOUBLE PRECISION PRIMARY KEY,
    answered BIGINT NOT NULL,
    refused  BIGINT NOT NULL,
    failed   BIGINT NOT NULL
);
-- The rows written before this migration (it runs once, under the migration lock, in one
-- transaction with the triggers: no row is counted twice or missed).
LOCK TABLE ledger IN SHARE MODE;
INSERT INTO ledger_slots (slot, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
SELECT FLOOR(ts / 900) * 900 AS b, agent, route, provider, key_id, model, status, COUNT(*), SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd), SUM(CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END)
FROM ledger WHERE status <> 'pending' GROUP BY b, agent, route, provider, key_id, model, status;
INSERT INTO ledger_days (day, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
SELECT FLOOR(ts / 86400) * 86400 AS b, agent, route, provider, key_id, model, status, COUNT(*), SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd), SUM(CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END)
FROM ledger WHERE status <> 'pending' GROUP BY b, agent, route, provider, key_id, model, status;

INSERT INTO ledger_outcomes (slot, answered, refused, failed)
SELECT FLOOR(first / 900) * 900 AS s, SUM(a), SUM(r), SUM(f)
FROM (SELECT first, CASE WHEN ok > 0 THEN 1 ELSE 0 END AS a, CASE WHEN ok = 0 AND ref > 0 THEN 1 ELSE 0 END AS r,
               CASE WHEN ok = 0 AND ref = 0 THEN 1 ELSE 0 END AS f
      FROM (SELECT MIN(ts) AS first, SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok, SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END) AS ref FROM ledger WHERE source = 'proxy' AND status <> 'pending'
            GROUP BY request_id) q) o
GROUP BY s;

INSERT INTO ledger_key_slots
SELECT key_id, FLOOR(ts / 900) * 900 AS b, COUNT(*), SUM(requests), SUM(prompt_tokens),
       SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd),
       SUM(CASE WHEN status IN ('error','crashed') THEN 1 ELSE 0 END), SUM(CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END)
FROM ledger WHERE status <> 'pending' GROUP BY key_id, b;

CREATE OR REPLACE FUNCTION ledger_rollup_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_slots AS r (slot, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
        SELECT FLOOR(ts / 900) * 900 AS b, agent, route, provider, key_id, model, status, SUM(n), SUM(requests), SUM(p), SUM(c),
               SUM(t), SUM(cost), SUM(est)
        FROM (SELECT ts, agent, route, provider, key_id, model, status, 1 AS n, requests AS requests, prompt_tokens AS p, completion_tokens AS c, total_tokens AS t, cost_usd AS cost, (CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM new_rows WHERE status <> 'pending') d
        GROUP BY b, agent, route, provider, key_id, model, status ORDER BY b, agent, route, provider, key_id, model, status
        ON CONFLICT (slot, agent, route, provider, key_id, model, status) DO UPDATE SET attempts = r.attempts + EXCLUDED.attempts, requests = r.requests + EXCLUDED.requests, prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens, total_tokens = r.total_tokens + EXCLUDED.total_tokens, cost_usd = r.cost_usd + EXCLUDED.cost_usd, estimated = r.estimated + EXCLUDED.estimated;
    INSERT INTO ledger_days AS r (day, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
        SELECT FLOOR(ts / 86400) * 86400 AS b, agent, route, provider, key_id, model, status, SUM(n), SUM(requests), SUM(p), SUM(c),
               SUM(t), SUM(cost), SUM(est)
        FROM (SELECT ts, agent, route, provider, key_id, model, status, 1 AS n, requests AS requests, prompt_tokens AS p, completion_tokens AS c, total_tokens AS t, cost_usd AS cost, (CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM new_rows WHERE status <> 'pending') d
        GROUP BY b, agent, route, provider, key_id, model, status ORDER BY b, agent, route, provider, key_id, model, status
        ON CONFLICT (day, agent, route, provider, key_id, model, status) DO UPDATE SET attempts = r.attempts + EXCLUDED.attempts, requests = r.requests + EXCLUDED.requests, prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens, total_tokens = r.total_tokens + EXCLUDED.total_tokens, cost_usd = r.cost_usd + EXCLUDED.cost_usd, estimated = r.estimated + EXCLUDED.estimated;
    INSERT INTO ledger_key_slots AS r
        SELECT key_id, FLOOR(ts / 900) * 900 AS b, SUM(n), SUM(requests), SUM(p), SUM(c), SUM(t),
               SUM(cost), SUM(CASE WHEN status IN ('error','crashed') THEN n ELSE 0 END), SUM(est),
               SUM(CASE WHEN status = 'refused' THEN n ELSE 0 END)
        FROM (SELECT ts, agent, route, provider, key_id, model, status, 1 AS n, requests AS requests, prompt_tokens AS p, completion_tokens AS c, total_tokens AS t, cost_usd AS cost, (CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM new_rows WHERE status <> 'pending') d
        GROUP BY key_id, b ORDER BY key_id, b
        ON CONFLICT (key_id, slot) DO UPDATE SET
            attempts = r.attempts + EXCLUDED.attempts,
            requests = r.requests + EXCLUDED.requests,
            prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens,
            total_tokens = r.total_tokens + EXCLUDED.total_tokens,
            cost_usd = r.cost_usd + EXCLUDED.cost_usd,
            errors = r.errors + EXCLUDED.errors,
            estimated = r.estimated + EXCLUDED.estimated,
            refused = r.refused + EXCLUDED.refused;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledger_rollup_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_slots AS r (slot, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
        SELECT FLOOR(ts / 900) * 900 AS b, agent, route, provider, key_id, model, status, SUM(n), SUM(requests), SUM(p), SUM(c),
               SUM(t), SUM(cost), SUM(est)
        FROM (SELECT ts, agent, route, provider, key_id, model, status, 1 AS n, requests AS requests, prompt_tokens AS p, completion_tokens AS c, total_tokens AS t, cost_usd AS cost, (CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM new_rows WHERE status <> 'pending'
            UNION ALL SELECT ts, agent, route, provider, key_id, model, status, -1 AS n, -requests AS requests, -prompt_tokens AS p, -completion_tokens AS c, -total_tokens AS t, -cost_usd AS cost, -(CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM old_rows WHERE status <> 'pending') d
        GROUP BY b, agent, route, provider, key_id, model, status ORDER BY b, agent, route, provider, key_id, model, status
        ON CONFLICT (slot, agent, route, provider, key_id, model, status) DO UPDATE SET attempts = r.attempts + EXCLUDED.attempts, requests = r.requests + EXCLUDED.requests, prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens, total_tokens = r.total_tokens + EXCLUDED.total_tokens, cost_usd = r.cost_usd + EXCLUDED.cost_usd, estimated = r.estimated + EXCLUDED.estimated;
    INSERT INTO ledger_days AS r (day, agent, route, provider, key_id, model, status, attempts, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, estimated)
        SELECT FLOOR(ts / 86400) * 86400 AS b, agent, route, provider, key_id, model, status, SUM(n), SUM(requests), SUM(p), SUM(c),
               SUM(t), SUM(cost), SUM(est)
        FROM (SELECT ts, agent, route, provider, key_id, model, status, 1 AS n, requests AS requests, prompt_tokens AS p, completion_tokens AS c, total_tokens AS t, cost_usd AS cost, (CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM new_rows WHERE status <> 'pending'
            UNION ALL SELECT ts, agent, route, provider, key_id, model, status, -1 AS n, -requests AS requests, -prompt_tokens AS p, -completion_tokens AS c, -total_tokens AS t, -cost_usd AS cost, -(CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM old_rows WHERE status <> 'pending') d
        GROUP BY b, agent, route, provider, key_id, model, status ORDER BY b, agent, route, provider, key_id, model, status
        ON CONFLICT (day, agent, route, provider, key_id, model, status) DO UPDATE SET attempts = r.attempts + EXCLUDED.attempts, requests = r.requests + EXCLUDED.requests, prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens, completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens, total_tokens = r.total_tokens + EXCLUDED.total_tokens, cost_usd = r.cost_usd + EXCLUDED.cost_usd, estimated = r.estimated + EXCLUDED.estimated;
    INSERT INTO ledger_key_slots AS r
        SELECT key_id, FLOOR(ts / 900) * 900 AS b, SUM(n), SUM(requests), SUM(p), SUM(c), SUM(t),
               SUM(cost), SUM(CASE WHEN status IN ('error','crashed') THEN n ELSE 0 END), SUM(est),
               SUM(CASE WHEN status = 'refused' THEN n ELSE 0 END)
        FROM (SELECT ts, agent, route, provider, key_id, model, status, 1 AS n, requests AS requests, prompt_tokens AS p, completion_tokens AS c, total_tokens AS t, cost_usd AS cost, (CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM new_rows WHERE status <> 'pending'
            UNION ALL SELECT ts, agent, route, provider, key_id, model, status, -1 AS n, -requests AS requests, -prompt_tokens AS p, -completion_tokens AS c, -total_tokens AS t, -cost_usd AS cost, -(CASE WHEN status NOT IN ('error','refused') AND (estimated OR detail LIKE 'cost estimated: the model has no known price%') THEN 1 ELSE 0 END) AS est FROM old_rows WHERE status <> 'pending') d
        GROUP BY key_id, b ORDER BY key_id, b
        ON CONFLICT (key_id, slot) DO UPDATE SET
            attempts = r.attempts + EXCLUDED.attempts,
            requests = r.requests + EXCLUDED.requests,
            prompt_tokens = r.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = r.completion_tokens + EXCLUDED.completion_tokens,
            total_tokens = r.total_tokens + EXCLUDED.total_tokens,
            cost_usd = r.cost_usd + EXCLUDED.cost_usd,
            errors = r.errors + EXCLUDED.errors,
            estimated = r.estimated + EXCLUDED.estimated,
            refused = r.refused + EXCLUDED.refused;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS ledger_rollup_insert ON ledger;
CREATE TRIGGER ledger_rollup_insert AFTER INSERT ON ledger
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_rollup_insert();
DROP TRIGGER IF EXISTS ledger_rollup_update ON ledger;
CREATE TRIGGER ledger_rollup_update AFTER UPDATE ON ledger
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_rollup_update();

-- Request outcomes (see the embedded ledger's 008_rollups.sql), once per statement.
CREATE OR REPLACE FUNCTION ledger_outcome_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The requests with a row that settled in this statement: their outcome before it (from
    -- their other settled rows) is taken back, their outcome now added, per first slot. Each
    -- request's rows are looked up by its id (LATERAL: an index scan per request, never a
    -- scan of the ledger, whatever the planner guesses of the transition table's size).
    WITH settled AS (SELECT id, request_id FROM new_rows WHERE source = 'proxy' AND status <> 'pending'),
    q AS (SELECT DISTINCT request_id FROM settled),
    now_ AS (SELECT n.* FROM q CROSS JOIN LATERAL (SELECT MIN(ts) AS first, SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
                       SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END) AS ref
                FROM ledger l WHERE l.request_id = q.request_id AND l.source = 'proxy'
                  AND l.status <> 'pending') n),
    before_ AS (SELECT b.* FROM q CROSS JOIN LATERAL (SELECT MIN(ts) AS first, SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
                       SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END) AS ref
                FROM ledger l WHERE l.request_id = q.request_id AND l.source = 'proxy'
                  AND l.status <> 'pending' AND l.id NOT IN (SELECT id FROM settled)) b)
    INSERT INTO ledger_outcomes AS o (slot, answered, refused, failed)
        SELECT s, SUM(a), SUM(r), SUM(f) FROM (
            SELECT FLOOR(first / 900) * 900 AS s, CASE WHEN ok > 0 THEN 1 ELSE 0 END AS a, CASE WHEN ok = 0 AND ref > 0 THEN 1 ELSE 0 END AS r,
                   CASE WHEN ok = 0 AND ref = 0 THEN 1 ELSE 0 END AS f
            FROM now_ WHERE first IS NOT NULL
            UNION ALL
            SELECT FLOOR(first / 900) * 900, -a, -r, -f FROM (
                SELECT first, CASE WHEN ok > 0 THEN 1 ELSE 0 END AS a, CASE WHEN ok = 0 AND ref > 0 THEN 1 ELSE 0 END AS r,
                   CASE WHEN ok = 0 AND ref = 0 THEN 1 ELSE 0 END AS f
                FROM before_ WHERE first IS NOT NULL) b
        ) d GROUP BY s ORDER BY s
        ON CONFLICT (slot) DO UPDATE SET answered = o.answered + EXCLUDED.answered,
            refused = o.refused + EXCLUDED.refused, failed = o.failed + EXCLUDED.failed;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledger_outcome_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The requests with a row that settled in this statement: their outcome before it (from
    -- their other settled rows) is taken back, their outcome now added, per first slot. Each
    -- request's rows are looked up by its id (LATERAL: an index scan per request, never a
    -- scan of the ledger, whatever the planner guesses of the transition table's size).
    WITH settled AS (SELECT n.id, n.request_id FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.source = 'proxy' AND o.status = 'pending' AND n.status <> 'pending'),
    q AS (SELECT DISTINCT request_id FROM settled),
    now_ AS (SELECT n.* FROM q CROSS JOIN LATERAL (SELECT MIN(ts) AS first, SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
                       SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END) AS ref
                FROM ledger l WHERE l.request_id = q.request_id AND l.source = 'proxy'
                  AND l.status <> 'pending') n),
    before_ AS (SELECT b.* FROM q CROSS JOIN LATERAL (SELECT MIN(ts) AS first, SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok,
                       SUM(CASE WHEN status = 'refused' THEN 1 ELSE 0 END) AS ref
                FROM ledger l WHERE l.request_id = q.request_id AND l.source = 'proxy'
                  AND l.status <> 'pending' AND l.id NOT IN (SELECT id FROM settled)) b)
    INSERT INTO ledger_outcomes AS o (slot, answered, refused, failed)
        SELECT s, SUM(a), SUM(r), SUM(f) FROM (
            SELECT FLOOR(first / 900) * 900 AS s, CASE WHEN ok > 0 THEN 1 ELSE 0 END AS a, CASE WHEN ok = 0 AND ref > 0 THEN 1 ELSE 0 END AS r,
                   CASE WHEN ok = 0 AND ref = 0 THEN 1 ELSE 0 END AS f
            FROM now_ WHERE first IS NOT NULL
            UNION ALL
            SELECT FLOOR(first / 900) * 900, -a, -r, -f FROM (
                SELECT first, CASE WHEN ok > 0 THEN 1 ELSE 0 END AS a, CASE WHEN ok = 0 AND ref > 0 THEN 1 ELSE 0 END AS r,
                   CASE WHEN ok = 0 AND ref = 0 THEN 1 ELSE 0 END AS f
                FROM before_ WHERE first IS NOT NULL) b
        ) d GROUP BY s ORDER BY s
        ON CONFLICT (slot) DO UPDATE SET answered = o.answered + EXCLUDED.answered,
            refused = o.refused + EXCLUDED.refused, failed = o.failed + EXCLUDED.failed;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS ledger_outcome_insert ON ledger;
CREATE TRIGGER ledger_outcome_insert AFTER INSERT ON ledger
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_outcome_insert();
DROP TRIGGER IF EXISTS ledger_outcome_update ON ledger;
CREATE TRIGGER ledger_outcome_update AFTER UPDATE ON ledger
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_outcome_update();
