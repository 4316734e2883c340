-- Which replicas have watchers of the change feed (gRPC WatchIncidents), each row kept
-- fresh by its replica while it has some: the others send their changes over
-- LISTEN/NOTIFY only while a row is fresh, so that ingest pays nothing for a feed no one
-- reads.
CREATE TABLE change_watchers (
    replica TEXT PRIMARY KEY,
    until   TIMESTAMPTZ NOT NULL
);
