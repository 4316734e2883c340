CREATE TABLE incidents (
    id               UUID PRIMARY KEY,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    severity         TEXT NOT NULL,
    category         TEXT NOT NULL,
    source           TEXT NOT NULL,
    state            TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    labels           JSONB NOT NULL,
    occurrence_count BIGINT NOT NULL,
    first_seen       TIMESTAMPTZ NOT NULL,
    last_seen        TIMESTAMPTZ NOT NULL,
    assignee         TEXT,
    team             TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    acknowledged_at  TIMESTAMPTZ,
    resolved_at      TIMESTAMPTZ,
    resolution_note  TEXT
);

-- The database decides dedup: at most one open incident per fingerprint, across replicas.
CREATE UNIQUE INDEX incidents_open_fingerprint ON incidents (fingerprint) WHERE state <> 'RESOLVED';
CREATE INDEX incidents_state_id ON incidents (state, id DESC);
-- Counting open incidents by label set (`incidents_active`, at every scrape) reads this
-- index alone, however many incidents are stored.
CREATE INDEX incidents_open_labels ON incidents (severity, source, category) WHERE state <> 'RESOLVED';

CREATE TABLE timeline (
    seq         BIGSERIAL PRIMARY KEY,
    incident_id UUID NOT NULL REFERENCES incidents (id),
    at          TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX timeline_incident_seq ON timeline (incident_id, seq);
