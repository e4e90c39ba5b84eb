-- The rollups' triggers made lean (issue 21). SQLite runs a trigger's whole program for
-- every row its event touches, allocating and zeroing a frame for all the program's
-- registers before it even looks at the WHEN; a request's two ledger statements fired seven
-- programs, five of them to do nothing. Now an INSERT fires none (008: a row settled from
-- the start is written as pending and settled in its transaction), and the UPDATE that
-- settles a row no longer fires the program that took an updated settled row back out of
-- the rollups: nothing in quotaflow changes a settled row (a finish and a crash settlement
-- only settle pending rows; compaction deletes), so a one-line guard refuses such an update
-- instead, and rollups and rows can never part. Counted by callgrind in process
-- (benchmarks/hotpath.py, c=16): 857k -> 789k instructions a request.
--
-- One transaction: a ledger made before has the INSERT triggers; they go before any write
-- can see the new way of settling.
BEGIN IMMEDIATE;
DROP TRIGGER IF EXISTS ledger_rollup_insert;
DROP TRIGGER IF EXISTS ledger_outcome_insert_alone;
DROP TRIGGER IF EXISTS ledger_outcome_insert_joins;
DROP TRIGGER IF EXISTS ledger_rollup_unsettle;
CREATE TRIGGER IF NOT EXISTS ledger_settled_is_final AFTER UPDATE ON ledger WHEN OLD.status != 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a settled ledger row is final: the rollups count it as it is');
END;
CREATE TRIGGER IF NOT EXISTS ledger_outcome_settle_alone AFTER UPDATE ON ledger
    WHEN NEW.source = 'proxy' AND OLD.status = 'pending' AND NEW.status != 'pending' AND NOT EXISTS (SELECT 1 FROM ledger WHERE request_id = NEW.request_id AND id != NEW.id
        AND source = 'proxy' AND status != 'pending')
BEGIN
    INSERT INTO ledger_outcomes (slot, answered, refused, failed)
        VALUES (CAST(NEW.ts / 900 AS INTEGER) * 900, NEW.status = 'ok', NEW.status = 'refused', NEW.status NOT IN ('ok', 'refused'))
        ON CONFLICT (slot) DO UPDATE SET answered = answered + excluded.answered, refused = refused + excluded.refused, failed = failed + excluded.failed;
END;
CREATE TRIGGER IF NOT EXISTS ledger_outcome_settle_joins AFTER UPDATE ON ledger
    WHEN NEW.source = 'proxy' AND OLD.status = 'pending' AND NEW.status != 'pending' AND EXISTS (SELECT 1 FROM ledger WHERE request_id = NEW.request_id AND id != NEW.id
        AND source = 'proxy' AND status != 'pending')
BEGIN
    INSERT INTO ledger_outcomes (slot, answered, refused, failed)
        SELECT s, SUM(a), SUM(r), SUM(f) FROM (
            SELECT CAST(f0 / 900 AS INTEGER) * 900 AS s, -(ok0 > 0) AS a, -(ok0 = 0 AND ref0 > 0) AS r,
                   -(ok0 = 0 AND ref0 = 0) AS f FROM (SELECT MIN(CASE WHEN id != NEW.id THEN ts END) AS f0, MIN(ts) AS f1,
                      SUM(id != NEW.id) AS n0,
                      SUM(status = 'ok' AND id != NEW.id) AS ok0, SUM(status = 'ok') AS ok1,
                      SUM(status = 'refused' AND id != NEW.id) AS ref0,
                      SUM(status = 'refused') AS ref1
               FROM ledger WHERE request_id = NEW.request_id AND source = 'proxy'
                 AND status != 'pending') WHERE n0 > 0
            UNION ALL
            SELECT CAST(f1 / 900 AS INTEGER) * 900, ok1 > 0, ok1 = 0 AND ref1 > 0, ok1 = 0 AND ref1 = 0 FROM (SELECT MIN(CASE WHEN id != NEW.id THEN ts END) AS f0, MIN(ts) AS f1,
                      SUM(id != NEW.id) AS n0,
                      SUM(status = 'ok' AND id != NEW.id) AS ok0, SUM(status = 'ok') AS ok1,
                      SUM(status = 'refused' AND id != NEW.id) AS ref0,
                      SUM(status = 'refused') AS ref1
               FROM ledger WHERE request_id = NEW.request_id AND source = 'proxy'
                 AND status != 'pending')
        ) WHERE 1 GROUP BY s
        ON CONFLICT (slot) DO UPDATE SET answered = answered + excluded.answered, refused = refused + excluded.refused, failed = failed + excluded.failed;
END;
COMMIT;
