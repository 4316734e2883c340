-- Triage: what the classifier or a model decided (JSON), and a model's insights (JSON).
ALTER TABLE incidents ADD COLUMN classification TEXT;
ALTER TABLE incidents ADD COLUMN insights TEXT;
-- Answers of LLM providers, by provider, model, operation, fingerprint and content, so a
-- recurring incident does not pay twice (and a restart keeps them).
CREATE TABLE llm_cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX llm_cache_created ON llm_cache (created_at);
