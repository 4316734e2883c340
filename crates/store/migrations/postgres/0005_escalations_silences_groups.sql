-- As on SQLite (0007_escalations_silences_groups.sql).
ALTER TABLE incidents ADD COLUMN escalation_policy TEXT;
ALTER TABLE incidents ADD COLUMN escalation_level INTEGER;
ALTER TABLE incidents ADD COLUMN escalation_due_at TIMESTAMPTZ;
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (state, updated_at) WHERE state IN ('done', 'dead', 'cancelled');
CREATE TABLE silences (
    id         UUID PRIMARY KEY,
    matchers   JSONB NOT NULL,
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);
CREATE TABLE notify_groups (
    route     TEXT PRIMARY KEY,
    group_id  UUID NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    closes_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE notify_group_members (
    group_id    UUID NOT NULL,
    incident_id UUID NOT NULL,
    PRIMARY KEY (group_id, incident_id)
);
