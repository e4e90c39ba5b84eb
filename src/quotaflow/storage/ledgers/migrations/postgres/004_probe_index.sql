-- The key tester's latest verdict per key × model is read at every start (key_states.py).
-- A partial index holds only the tester's rows, so it costs proxied writes nothing and turns
-- a full scan of the ledger into a lookup.
CREATE INDEX IF NOT EXISTS ledger_probe ON ledger (key_id, model, id) WHERE source = 'probe';
