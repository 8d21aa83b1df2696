-- Fabric schema v3 (PostgreSQL): shards with their owner levers, and fleet-wide settings
-- (conservative mode, tick interval).
CREATE TABLE shards (
    name              TEXT    PRIMARY KEY,
    paused            BOOLEAN NOT NULL DEFAULT FALSE,
    spillover_limit   INTEGER NOT NULL DEFAULT 10,
    latency_budget_ms BIGINT  NOT NULL DEFAULT 5000
);
INSERT INTO shards (name) VALUES ('earth'), ('luna'), ('mars'), ('helios'), ('edge');

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Claims of one shard (the scheduler's per-shard dispatch) read only that shard's queue.
CREATE INDEX jobs_shard_ready ON jobs (shard, priority DESC, id) WHERE state = 'pending';
