-- Timelines are read a page at a time, oldest first (an incident deduplicated a million
-- times has a million entries). Each entry now also points to its incident's next entry,
-- and the incident to its first: a page is read by following `next` from the first entry
-- or from the last entry of the previous page. Appending sets `next` on the previous last
-- entry, which an active incident wrote moments before, so it is a page already written.
ALTER TABLE timeline ADD COLUMN next INTEGER;
ALTER TABLE incidents ADD COLUMN first_entry INTEGER;
CREATE INDEX migration_timeline_previous ON timeline (previous);
UPDATE timeline SET next = (SELECT later.seq FROM timeline AS later WHERE later.previous = timeline.seq);
DROP INDEX migration_timeline_previous;
CREATE INDEX migration_timeline_incident ON timeline (incident_id, seq);
UPDATE incidents SET first_entry = (SELECT min(seq) FROM timeline WHERE timeline.incident_id = incidents.id);
DROP INDEX migration_timeline_incident;
-- Comments are few: an index of their own lists them without walking a timeline.
CREATE INDEX timeline_comments ON timeline (incident_id, seq) WHERE kind = 'comment';
