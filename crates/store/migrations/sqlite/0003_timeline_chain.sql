-- A timeline is a chain: each entry points to its incident's previous entry and the
-- incident to its last one, so appending an entry writes no index. An index by incident
-- put every entry at a random place once many open incidents receive events at once
-- (an alert storm), and the pages those inserts dirtied were most of what a commit wrote.
ALTER TABLE timeline ADD COLUMN previous INTEGER;
ALTER TABLE incidents ADD COLUMN last_entry INTEGER;
UPDATE timeline SET previous = (
    SELECT max(earlier.seq) FROM timeline AS earlier
    WHERE earlier.incident_id = timeline.incident_id AND earlier.seq < timeline.seq
);
UPDATE incidents SET last_entry = (SELECT max(seq) FROM timeline WHERE timeline.incident_id = incidents.id);
DROP INDEX timeline_incident_seq;
