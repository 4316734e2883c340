-- Writing a job is on the ingest path, so a new job now enters one index only, at its end
-- (`jobs_queued`: new jobs are due now). The serial key and its index go: the jobs of one
-- incident with one chain (a delivery's: its channel) run one at a time, in order, because
-- each waits for its chain's job before it (`waits_for`), which the incident's row names
-- (`incidents.job_chains`: a JSON object of each chain's last job). Jobs are numbered by
-- the writer, as timeline entries are.
DROP INDEX jobs_serial;
DROP INDEX jobs_state;
ALTER TABLE jobs DROP COLUMN serial_key;
ALTER TABLE jobs ADD COLUMN waits_for INTEGER;
ALTER TABLE incidents ADD COLUMN job_chains TEXT;
-- Running jobs: expired leases, handing jobs back.
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
-- Finished jobs: listing the dead ones, pruning the done ones.
CREATE INDEX jobs_finished ON jobs (state, updated_at) WHERE state IN ('done', 'dead');
