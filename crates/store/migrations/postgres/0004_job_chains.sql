-- As on SQLite (0006_job_chains.sql): a job waits for its chain's job before it, which the
-- incident's row names (`incidents.job_chains`: each chain's last job), instead of a serial
-- key that every new job entered into an index.
DROP INDEX jobs_serial;
DROP INDEX jobs_state;
ALTER TABLE jobs DROP COLUMN serial_key;
ALTER TABLE jobs ADD COLUMN waits_for BIGINT;
ALTER TABLE incidents ADD COLUMN job_chains TEXT;
CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_finished ON jobs (state, updated_at) WHERE state IN ('done', 'dead');
