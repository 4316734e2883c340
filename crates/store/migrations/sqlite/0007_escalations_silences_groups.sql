-- Escalation: the policy a route gave an incident, and its level due next (while it
-- escalates); the pending level's job is the last of the incident's `escalate` chain.
ALTER TABLE incidents ADD COLUMN escalation_policy TEXT;
ALTER TABLE incidents ADD COLUMN escalation_level INTEGER;
ALTER TABLE incidents ADD COLUMN escalation_due_at INTEGER;
-- A level that an acknowledgement stopped is `cancelled`, and pruned like a finished job.
-- The condition is written with OR, not IN: SQLite proves that `state = 'dead'` implies it
-- (so pruning and listing dead jobs use the index, which they could not with IN), and a
-- new job checks it with three comparisons (an IN list of three builds a table first).
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (state, updated_at) WHERE state = 'done' OR state = 'dead' OR state = 'cancelled';
-- Silences (maintenance windows): matchers as written (JSON), a window, who and why.
CREATE TABLE silences (
    id         BLOB PRIMARY KEY,
    matchers   TEXT NOT NULL,
    starts_at  INTEGER NOT NULL,
    ends_at    INTEGER NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
-- The silences that have not ended, for each notification and escalation.
CREATE INDEX silences_ends ON silences (ends_at);
-- Grouped notifications (a route's `group_wait`): each route's latest group, and the
-- incidents each group holds.
CREATE TABLE notify_groups (
    route     TEXT PRIMARY KEY,
    group_id  BLOB NOT NULL,
    opened_at INTEGER NOT NULL,
    closes_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE notify_group_members (
    group_id    BLOB NOT NULL,
    incident_id BLOB NOT NULL,
    PRIMARY KEY (group_id, incident_id)
) WITHOUT ROWID;
