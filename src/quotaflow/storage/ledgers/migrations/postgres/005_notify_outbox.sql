-- Alert webhooks: the durable outbox. An event is stored here before any delivery is tried,
-- so a restart loses none; one row per destination × event, the unique pair making a second
-- enqueue of the same event a no-op. ``target`` is a hash of the destination's URL: a Slack
-- URL is itself a secret and is never stored.
CREATE TABLE IF NOT EXISTS notify_outbox (
    id           BIGSERIAL PRIMARY KEY,
    target       TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    body         TEXT NOT NULL,  -- the event as JSON; each destination's format is made at send time
    created_at   DOUBLE PRECISION NOT NULL,
    next_at      DOUBLE PRECISION NOT NULL,  -- when the next try is due
    attempts     INTEGER NOT NULL DEFAULT 0,
    done_at      DOUBLE PRECISION,           -- delivered, or given up (then last_error says why)
    last_error   TEXT,
    UNIQUE (target, event_id)
);
CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox (next_at) WHERE done_at IS NULL;
