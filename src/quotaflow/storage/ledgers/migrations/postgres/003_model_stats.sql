-- Per key × model statistics (issue 7), as in the embedded ledger's 003_model_stats.sql.
CREATE TABLE IF NOT EXISTS model_stats (
    key_id     TEXT NOT NULL,
    model      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (key_id, model)
);
