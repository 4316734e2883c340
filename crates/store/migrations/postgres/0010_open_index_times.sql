-- The count of open incidents (before every scrape) also reads when each was created and
-- whether it was acknowledged (incidents_unacknowledged_oldest_timestamp_seconds): the
-- index of open label sets carries both (and the state), so that the count can still be
-- answered from the index.
DROP INDEX incidents_open_labels;
CREATE INDEX incidents_open_labels ON incidents (severity, source, category)
    INCLUDE (state, created_at, acknowledged_at) WHERE state <> 'RESOLVED';
