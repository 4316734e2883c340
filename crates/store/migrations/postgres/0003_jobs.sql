-- The job queue (a transactional outbox): jobs an incident change causes are written in
-- the change's transaction; replicas claim them with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL,
    incident_id  UUID,
    payload      JSONB NOT NULL,
    state        TEXT NOT NULL,
    due_at       TIMESTAMPTZ NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_error   TEXT,
    serial_key   TEXT,
    worker       TEXT,
    lease_until  TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_queued ON jobs (kind, due_at) WHERE state = 'queued';
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_serial ON jobs (serial_key, id) WHERE serial_key IS NOT NULL AND state IN ('queued', 'running');
ALTER TABLE incidents ADD COLUMN route TEXT;
