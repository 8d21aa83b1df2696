-- Fabric schema v5 (SQLite): a job whose attempt failed waits for its retry in state
-- 'failed' (not 'pending'), so the claim index covers both states. A scenario store's
-- per-shard index is created again on open (SqliteOptions::shard_index) with the new predicate.
DROP INDEX IF EXISTS jobs_ready;
DROP INDEX IF EXISTS jobs_shard_ready;
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE state IN ('pending', 'failed');
