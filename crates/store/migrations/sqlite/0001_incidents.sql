-- Ids are the 16 bytes of the UUID (v7: they sort by creation time); times are Unix
-- microseconds (UTC); labels are a JSON object. `fingerprint_key` is 128 bits of SHA-256
-- of the fingerprint: the dedup index holds 16-byte keys whatever the senders write.
-- The table is clustered by id (WITHOUT ROWID): v7 ids append at its end.
CREATE TABLE incidents (
    id               BLOB PRIMARY KEY NOT NULL,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    severity         TEXT NOT NULL,
    category         TEXT NOT NULL,
    source           TEXT NOT NULL,
    state            TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    fingerprint_key  BLOB NOT NULL,
    labels           TEXT NOT NULL,
    occurrence_count INTEGER NOT NULL,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    assignee         TEXT,
    team             TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    acknowledged_at  INTEGER,
    resolved_at      INTEGER,
    resolution_note  TEXT
) WITHOUT ROWID;

-- The database decides dedup: at most one open incident per fingerprint.
CREATE UNIQUE INDEX incidents_open_fingerprint ON incidents (fingerprint_key) WHERE state <> 'RESOLVED';
CREATE INDEX incidents_state_id ON incidents (state, id);
-- Counting open incidents by label set (`incidents_active`, at every scrape) reads this
-- index alone, however many incidents are stored.
CREATE INDEX incidents_open_labels ON incidents (severity, source, category) WHERE state <> 'RESOLVED';

CREATE TABLE timeline (
    seq         INTEGER PRIMARY KEY, -- rowid: grows with every append (entries are never deleted)
    incident_id BLOB NOT NULL REFERENCES incidents (id),
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX timeline_incident_seq ON timeline (incident_id, seq);
