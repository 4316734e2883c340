-- Timelines are read a page at a time, oldest first (an incident deduplicated a million
-- times has a million entries). Each entry gets its number within its incident (`n`,
-- from 1), the incident the count of its entries, and every 64th entry of an incident a
-- mark in `timeline_marks`. A page of entries after number c is read from the first mark
-- at or past its end (or the incident's last entry), walking the chain back at most 63
-- entries more than the page holds. Appending writes a mark only for one entry in 64, so
-- the chain still writes next to no index.
ALTER TABLE timeline ADD COLUMN n INTEGER;
ALTER TABLE incidents ADD COLUMN entry_count INTEGER NOT NULL DEFAULT 0;
CREATE TABLE timeline_marks (
    incident_id BLOB NOT NULL,
    n           INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (incident_id, n)
) WITHOUT ROWID;
UPDATE timeline SET n = numbered.n
FROM (SELECT seq, row_number() OVER (PARTITION BY incident_id ORDER BY seq) AS n FROM timeline) AS numbered
WHERE numbered.seq = timeline.seq;
CREATE INDEX migration_timeline_incident ON timeline (incident_id);
UPDATE incidents SET entry_count = (SELECT count(*) FROM timeline WHERE timeline.incident_id = incidents.id);
DROP INDEX migration_timeline_incident;
INSERT INTO timeline_marks (incident_id, n, seq) SELECT incident_id, n, seq FROM timeline WHERE n % 64 = 0;
-- Comments are few: an index of their own lists them without walking a timeline.
CREATE INDEX timeline_comments ON timeline (incident_id, seq) WHERE kind = 'comment';
