-- As on SQLite (0008_triage.sql).
ALTER TABLE incidents ADD COLUMN classification TEXT;
ALTER TABLE incidents ADD COLUMN insights TEXT;
CREATE TABLE llm_cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX llm_cache_created ON llm_cache (created_at);
