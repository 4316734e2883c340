-- API keys (DESIGN §9): a hash of each key, never the key.
CREATE TABLE api_keys (
    name         TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
