-- The job queue (a transactional outbox): jobs an incident change causes are written in
-- the change's transaction. Times are Unix microseconds, payloads JSON.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY, -- rowid: grows with every job
    kind         TEXT NOT NULL,
    incident_id  BLOB,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL,
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_error   TEXT,
    -- Jobs with one key run one at a time, oldest first (one incident's notifications to
    -- one channel).
    serial_key   TEXT,
    worker       TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- Claiming: the due jobs of a kind, in order. New jobs enter at its end (due now).
CREATE INDEX jobs_queued ON jobs (kind, due_at) WHERE state = 'queued';
-- Listing by state, pruning finished jobs, finding running ones.
CREATE INDEX jobs_state ON jobs (state, id);
-- The unfinished jobs of a serial key.
CREATE INDEX jobs_serial ON jobs (serial_key, id) WHERE serial_key IS NOT NULL AND state IN ('queued', 'running');
-- The route that matched an incident when it was opened.
ALTER TABLE incidents ADD COLUMN route TEXT;
