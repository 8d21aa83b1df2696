-- Fabric schema v4 (PostgreSQL): a job whose attempt failed waits for its retry in state
-- 'failed' (not 'pending'), so the claim and due-time indexes cover both states.
DROP INDEX IF EXISTS jobs_ready;
DROP INDEX IF EXISTS jobs_due;
DROP INDEX IF EXISTS jobs_shard_ready;
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX jobs_shard_ready ON jobs (shard, priority DESC, id) WHERE state IN ('pending', 'failed');
