-- Per key × model statistics (issue 7, seed 004's apiStats): what the learning strategies
-- rank on. One row per (key_id, model); ``data`` is ModelStats.to_record() as JSON, so new
-- statistics need no new migration. Snapshotted periodically and at close, loaded at start.
CREATE TABLE IF NOT EXISTS model_stats (
    key_id     TEXT NOT NULL,
    model      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    updated_at REAL NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (key_id, model)
);
