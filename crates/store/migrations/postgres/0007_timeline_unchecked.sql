-- The timeline's foreign key cost more than the rest of an entry's insert (a lookup and
-- a row lock on the incident per entry, 7 µs of the server's time each, measured on a
-- batch of 1,000): entries are written only in the transaction that creates or locks
-- their incident, and a comment checks its incident in its own statement.
ALTER TABLE timeline DROP CONSTRAINT IF EXISTS timeline_incident_id_fkey;
