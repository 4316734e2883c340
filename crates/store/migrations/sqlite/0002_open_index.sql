-- One partial index over the open incidents replaces two: it lists open incidents by
-- state, newest first, and counts them by label set (`incidents_active`, at every
-- scrape) without reading the table. Resolved incidents, most of the table, are listed
-- from the table itself. A new incident now writes one index entry fewer, a resolved
-- one three fewer.
DROP INDEX incidents_state_id;
DROP INDEX incidents_open_labels;
CREATE INDEX incidents_open ON incidents (state, id, severity, source, category) WHERE state <> 'RESOLVED';
