-- How an incident is stored, for the ingest path's sake.
--
-- An event that attaches to an open incident changes only its count and times, none of
-- them indexed, so PostgreSQL can write the new row version beside the old one (a HOT
-- update: no new index entries, and the old version is pruned without a vacuum), but
-- only when the page has room. Incident pages are therefore filled to 70 % (new pages;
-- existing ones as they are rewritten), so that an alert storm updates in place rather
-- than adding an entry to each of the table's four indexes per event.
ALTER TABLE incidents SET (fillfactor = 70);

-- The indexed text columns hold keys and vocabulary words, never prose: they compare
-- byte by byte (collation "C") rather than by the database's locale, which every index
-- insert and look-up paid for in `strcoll` (a new incident enters four indexes).
ALTER TABLE incidents
    ALTER COLUMN fingerprint TYPE TEXT COLLATE "C",
    ALTER COLUMN state TYPE TEXT COLLATE "C",
    ALTER COLUMN severity TYPE TEXT COLLATE "C",
    ALTER COLUMN source TYPE TEXT COLLATE "C",
    ALTER COLUMN category TYPE TEXT COLLATE "C";
ALTER TABLE jobs
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN state TYPE TEXT COLLATE "C";

-- A timeline is read by incident, in order (incident_id, seq); the primary key on seq
-- alone served no query, yet every entry (one per event) entered it. The pair is the key.
ALTER TABLE timeline DROP CONSTRAINT timeline_pkey;
DROP INDEX timeline_incident_seq;
ALTER TABLE timeline ADD PRIMARY KEY (incident_id, seq);
