-- An event that attaches to an open incident changes only its count and times, none of
-- them indexed, so PostgreSQL can write the new row version beside the old one (a HOT
-- update: no new index entries, and the old version is pruned without a vacuum), but
-- only when the page has room. Incident pages are therefore filled to 70 % (new pages;
-- existing ones as they are rewritten), so that an alert storm updates in place rather
-- than adding an entry to each of the table's four indexes per event.
ALTER TABLE incidents SET (fillfactor = 70);
