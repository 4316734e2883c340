-- Comments are listed a page at a time without reading the rest of a timeline.
CREATE INDEX timeline_comments ON timeline (incident_id, seq) WHERE kind = 'comment';
