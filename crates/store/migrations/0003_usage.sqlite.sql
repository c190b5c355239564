-- Usage: one row per request, written in batches. `at` is unix milliseconds.
-- (Postgres twin: 0003_usage.postgres.sql; only the id column differs.)
CREATE TABLE usage_records (
    id INTEGER PRIMARY KEY,
    at BIGINT NOT NULL,
    user_id TEXT,
    key_id TEXT,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    dialect TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached BOOLEAN NOT NULL,
    ttft_ms BIGINT,
    duration_ms BIGINT NOT NULL,
    status INTEGER NOT NULL,
    spend DOUBLE PRECISION NOT NULL
);
CREATE INDEX usage_records_user_at ON usage_records (user_id, at);
CREATE INDEX usage_records_key_at ON usage_records (key_id, at);
CREATE INDEX usage_records_at ON usage_records (at);
