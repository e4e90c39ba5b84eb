-- Every ledger write maintains every index, on the hot path. 001 no longer creates these two,
-- which earn less than they cost (pending rows are looked for once, at start, where a scan
-- is fine; queries by provider are bounded by time and use ledger_ts); this drops them from
-- ledgers made before.
DROP INDEX IF EXISTS ledger_status;
DROP INDEX IF EXISTS ledger_provider_ts;
